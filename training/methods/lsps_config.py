"""Settings of the lsps method: its phase names, its config section ``lsps.*`` and rule rows.

Pure Python (read by :mod:`training.config`); the phases themselves are in ``training/methods/lsps.py``.

Loss weights (Abdi et al., BMVC 2018, §5): ``lsps.preset=paper`` (default) takes the paper's
λ0 = λ2 = 0.1, λ1 = λ3 = λ5 = 100, λ4 = λ7 = 10, λ6 = 1e4, λ8 = 1 in the posterior stage and
1e-4 in the depth stage, with PyTorch's Adam betas (0.9, 0.999); ``lsps.preset=code`` the
authors' public code: λ5 = λ6 = 1000, feature matching 1e-3 in the depth stage and 10 in the
posterior stage, pose VAE with 50 hidden units, Adam betas (0.5, 0.999) (its weight decay 1e-4
is the common ``optim.weight_decay=1e-4``, which every optimiser of the phase then uses). Any
``lsps.lambdaK`` ≥ 0 overrides the preset's value (−1 = take the preset's).
"""
from __future__ import annotations

from dataclasses import dataclass

#: phase names this method adds (``phase=<name>``): the three stages and the baseline regressor
PHASES: tuple[str, ...] = ("lsps_pose", "lsps_depth", "lsps_posterior", "lsps_regressor")
PRESETS = ("paper", "code")
BRANCHES = ("real", "synthetic")

#: weights of each preset; ``lambda8_depth`` is λ8 of Eq. 9 while the depth model trains (Eq. 2)
PRESET_VALUES = {
    "paper": {"lambda0": 0.1, "lambda1": 100.0, "lambda2": 0.1, "lambda3": 100.0, "lambda4": 10.0,
              "lambda5": 100.0, "lambda6": 1.0e4, "lambda7": 10.0, "lambda8": 1.0, "lambda8_depth": 1.0e-4,
              "pose_hidden": 30, "betas": (0.9, 0.999)},
    "code": {"lambda0": 0.1, "lambda1": 100.0, "lambda2": 0.1, "lambda3": 100.0, "lambda4": 10.0,
             "lambda5": 1000.0, "lambda6": 1000.0, "lambda7": 10.0, "lambda8": 10.0, "lambda8_depth": 1.0e-3,
             "pose_hidden": 50, "betas": (0.5, 0.999)},
}
WEIGHT_KEYS = ("lambda0", "lambda1", "lambda2", "lambda3", "lambda4", "lambda5", "lambda6", "lambda7", "lambda8",
               "lambda8_depth")


@dataclass
class LSPSConfig:
    """The ``lsps.*`` section (weights: −1 = the preset's value)."""

    preset: str = "paper"  # paper | code (see the module docstring)
    lambda0: float = -1.0  # KL of the pose VAE, Eq. 1
    lambda1: float = -1.0  # NLL (ℓ1) of the pose VAE, Eq. 1
    lambda2: float = -1.0  # KL of the depth VAEs and cycles, Eqs. 3, 5
    lambda3: float = -1.0  # NLL (ℓ1) of the depth VAEs and cycles, Eqs. 3, 5
    lambda4: float = -1.0  # GAN terms, Eqs. 4, 6
    lambda5: float = -1.0  # ‖M(z_y) − z_s‖₂, Eq. 6
    lambda6: float = -1.0  # NLL of G_s(M(z_y)), Eq. 6
    lambda7: float = -1.0  # ‖P(x_s) − z_y‖₂, Eq. 7
    lambda8: float = -1.0  # feature matching in the posterior stage, Eq. 9
    lambda8_depth: float = -1.0  # feature matching in the depth stage (Eq. 2 with Eq. 9)
    pose_hidden: int = 0  # hidden units of the pose VAE (0 = preset: paper 30, code 50)
    pose_latent: int = 20  # dimension of the pose latent space z_y
    branch: str = "real"  # lsps_posterior: which posterior the evaluated network uses (real = P on real depth)
    disc_steps: int = 1  # discriminator updates per generator update (lsps_depth)


def resolved(cfg: LSPSConfig) -> dict:
    """The effective weights, hidden units and Adam betas: the preset's, with explicit ``lambdaK`` ≥ 0 kept."""
    values = dict(PRESET_VALUES[cfg.preset])
    for key in WEIGHT_KEYS:
        if getattr(cfg, key) >= 0:
            values[key] = float(getattr(cfg, key))
    if cfg.pose_hidden:
        values["pose_hidden"] = int(cfg.pose_hidden)
    return values


def _weight(v) -> bool:
    return v >= 0 or v == -1.0


#: (key, accepts(value), what is expected) — appended to training.config.VALUE_RULES
VALUE_RULES: list = [
    ("lsps.preset", lambda v: v in PRESETS, f"one of {PRESETS}"),
    *((f"lsps.{k}", _weight, ">= 0, or -1 for the preset's value") for k in WEIGHT_KEYS),
    ("lsps.pose_hidden", lambda v: v >= 0, ">= 0 (0 = the preset's)"),
    ("lsps.pose_latent", lambda v: v >= 1, ">= 1"),
    ("lsps.branch", lambda v: v in BRANCHES, f"one of {BRANCHES}"),
    ("lsps.disc_steps", lambda v: v >= 1, ">= 1"),
]


def _is_pow2(size: int) -> bool:
    return size >= 32 and not size & (size - 1)


#: (applies(cfg), holds(cfg), message) — appended to training.config.PHASE_RULES
PHASE_RULES: list = [
    (lambda c: c.phase in PHASES, lambda c: _is_pow2(c.data.image_size),
     "phase {phase} needs data.image_size a power of two >= 32 (the LSPS networks halve it to 2x2)"),
    (lambda c: c.phase in ("lsps_depth", "lsps_posterior"), lambda c: bool(c.data.adapt),
     "phase {phase} needs data.adapt (the real depth set, labelled by data.adapt_label_fraction)"),
    (lambda c: c.phase in ("lsps_depth", "lsps_posterior", "lsps_regressor"), lambda c: bool(c.model.init),
     "phase {phase} needs model.init (lsps_depth, lsps_regressor: the lsps_pose run's model.pt; "
     "lsps_posterior: the lsps_depth run's)"),
    (lambda c: c.phase in ("lsps_pose", "lsps_regressor"), lambda c: not c.data.adapt,
     "phase {phase} reads data.train only; data.adapt is for lsps_depth and lsps_posterior"),
]
