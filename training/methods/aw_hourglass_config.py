"""Settings of the aw_hourglass method: its phase names, its config section ``aw_hourglass.*`` and rule rows.

Pure Python (read by :mod:`training.config`); the phases themselves are in ``training/methods/aw_hourglass.py``.
The paper gives no hyperparameter values; the defaults below are this toolkit's choices (issue 10).
"""
from __future__ import annotations

from dataclasses import dataclass

#: phase names this method adds (``phase=<name>``): synthetic pretraining, then end-to-end adaptation
PHASES: tuple[str, ...] = ("aw_pretrain", "aw_adapt")
#: what the adaptation phase puts between the domains: nothing (joint training, the paper's wo/AWH),
#: a plain Wasserstein critic on z (w/WH, Shen et al. 2018) or the critic on α ⊙ z (w/AWH, Eq. 5–6)
CRITICS = ("none", "wasserstein", "adaptive")


@dataclass
class AWHourglassConfig:
    """The ``aw_hourglass.*`` section (loss weights of Eq. 4, 8, 11; critic and depth regulariser)."""

    critic: str = "adaptive"  # none | wasserstein | adaptive (phase aw_adapt)
    lambda_res: float = 1.0  # λ_res of Eq. 11 (2.5D / 2D regression)
    lambda_alpha: float = 1.0  # λ_α of Eq. 8 (Zⁿ term; 2D in heatmap pixels)
    lambda_reg: float = 0.1  # λ_reg of Eq. 11 (depth regulariser, Eq. 10)
    lambda_wd: float = 0.01  # λ_wd of Eq. 11 (the network minimises λ_wd·L_wd)
    lambda_gp: float = 10.0  # λ_gp of Eq. 4 (gradient penalty)
    critic_steps: int = 5  # critic updates per network step
    critic_lr: float = 1.0e-4  # Adam learning rate of the critic (β = 0.5, 0.9 as WGAN-GP)
    critic_width: int = 64  # channels of the critic's convolutions
    regularizer_width: int = 32  # channels of the depth regulariser's transposed convolutions
    target_2d: bool = True  # aw_adapt: L^t_2D on the real 2D labels (off: only the regulariser and critic)


def _positive(v) -> bool:
    return v > 0


#: (key, accepts(value), what is expected) — appended to training.config.VALUE_RULES
VALUE_RULES: list = [
    ("aw_hourglass.critic", lambda v: v in CRITICS, f"one of {CRITICS}"),
    *((f"aw_hourglass.{k}", lambda v: v >= 0, ">= 0")
      for k in ("lambda_res", "lambda_alpha", "lambda_reg", "lambda_wd", "lambda_gp")),
    ("aw_hourglass.critic_steps", lambda v: v >= 1, ">= 1"),
    ("aw_hourglass.critic_lr", _positive, "> 0"),
    ("aw_hourglass.critic_width", _positive, "> 0"),
    ("aw_hourglass.regularizer_width", _positive, "> 0"),
]
#: (applies(cfg), holds(cfg), message) — appended to training.config.PHASE_RULES
PHASE_RULES: list = [
    (lambda c: c.phase == "aw_adapt", lambda c: bool(c.data.adapt),
     "phase aw_adapt needs data.adapt (the real / target domain: RGB, 2D keypoints and depth)"),
    (lambda c: c.phase == "aw_pretrain", lambda c: not c.data.adapt,
     "phase aw_pretrain trains on data.train only (synthetic, no critic); data.adapt belongs to phase aw_adapt"),
    (lambda c: c.phase in PHASES, lambda c: c.data.image_size % 16 == 0,
     "phase {phase}: the hourglass needs data.image_size divisible by 16"),
    (lambda c: c.phase in PHASES, lambda c: c.modality == "rgb", "phase {phase} reads RGB"),
]
