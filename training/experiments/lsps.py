"""The lsps experiments (synthetic analogue and real-data protocol), declared as tables.

``EXPERIMENTS`` is merged into :data:`training.experiments.catalog.EXPERIMENTS`.

- ``synth-lsps`` — paper Table 1 / Fig. 5 on renders: synthetic depth with poses (exact depth)
  → "real" depth = renders of other hands through the depth-sensor model
  (:mod:`render.depth_sensor`, preset ``strong``). Arms: ``synthetic_only`` (G_y(P(x)) trained on
  synthetic depth alone), ``lsps_m0`` (unlabelled real depth, the paper's LSPS-Synthetic),
  ``lsps_m10`` (10 % of the real set labelled, §3.3), ``real_supervised``
  (G_y(P(x)) trained on the fully labelled real set: the upper bound); all evaluated on sensor depth.
  The paper's ordering (NYU, mean joint error): synthetic-only 25.24 mm > LSPS 17.84 mm > real 15.83 mm.
- ``lsps`` — the real-data protocol: 50k synthetic renders → STB's SK depth (``stb_depth_*``: converted with
  ``--option depth=true``: SK depth registered into the colour crop that carries the joints) at the
  paper's settings (configs/lsps_*.yaml: 128² crops, paper widths and
  iteration counts), m ∈ {0, 1, 5, 10, 25, 100} %.

Sizes for 2 CPU cores: :data:`SYNTH_LSPS` (the paper's networks at 128² with 256×32×32 latents
are far too heavy for 2 CPU cores; the analogue uses 32² crops, channel width 8/64 of the paper's ladder
(latent 32×8×8), a batch of 8 per domain and a few hundred steps per stage).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from training.experiments.catalog import REAL_DATA, RealData
from training.experiments.spec import AUC_RHD, AUC_STB, Experiment, RenderData, TrainArm


@dataclass(frozen=True)
class LSPSSizes:
    """One row of :data:`SYNTH_LSPS`."""

    image_size: int = 32
    width: int = 8  # channel scale of models/vae_gan.py (64 = paper)
    synth_train: int = 1500
    real_train: int = 1000
    real_test: int = 400
    sensor: str = "strong"  # render.depth_sensor preset of the "real" domain
    lr: float = 1.0e-3  # the paper's 1e-4 over 500K steps; short schedules need a larger step
    pose_batch: int = 64
    pose_steps: int = 600
    depth_batch: int = 8
    depth_steps: int = 500
    posterior_batch: int = 16
    posterior_steps: int = 400
    fractions: tuple[float, ...] = (0.0, 0.1)  # m of the LSPS arms
    seeds: int = 3
    threads: int = 1
    data_workers: int = 0
    render_workers: int = 2
    auc_range: tuple[float, float] = AUC_RHD


SYNTH_LSPS = {
    "full": LSPSSizes(),
    "quick": LSPSSizes(width=4, synth_train=32, real_train=32, real_test=16, pose_batch=8, pose_steps=3,
                       depth_batch=4, depth_steps=2, posterior_batch=4, posterior_steps=2, fractions=(0.0, 0.1), seeds=2,
                       render_workers=1),
}

#: the paper's Table 1 (NYU, mean joint error in mm) beside our arms
PAPER_EPE = {"synthetic_only": 25.24, "lsps_m0": 17.84, "real_supervised": 15.83}


def _percent(m: float) -> str:
    return f"{round(m * 100):d}"


def lsps_arms(s: LSPSSizes, synth: str, real: str, test: str, fractions=None, prefix: str = "",
              auc=None, baselines: bool = True, real_labels: str = "") -> list[TrainArm]:
    """The LSPS pipeline on data steps ``synth`` (depth with poses) and ``real`` (depth, labels for m):
    ``{prefix}lsps_pose``, per m ``{prefix}lsps_depth_m<m>`` and ``{prefix}lsps_m<m>`` (the posterior,
    the evaluated prediction), and with ``baselines`` ``{prefix}synthetic_only`` and ``{prefix}real_supervised``
    (on ``real_labels``, default ``real``). Every arm is evaluated on ``test``."""
    auc = auc or s.auc_range
    fractions = s.fractions if fractions is None else fractions
    pose = f"{prefix}lsps_pose"
    step = lambda batch, steps: (f"optim.batch_size={batch}", f"optim.max_steps={steps}", "optim.epochs=100000")
    arms = [TrainArm(pose, "lsps_pose", (f"data.train=[{{{synth}}}]", *step(s.pose_batch, s.pose_steps)), test, auc,
                     "stage 1: pose VAE (Eq. 1) on the synthetic poses (its prediction is untrained)")]
    if baselines:
        arms.append(TrainArm(f"{prefix}synthetic_only", "lsps_regressor",
                             (f"data.train=[{{{synth}}}]", f"model.init={{{pose}}}/model.pt",
                              *step(s.posterior_batch, s.posterior_steps)), test, auc,
                             "baseline: G_y(P(x)) with POS_s on synthetic depth only"))
    for m in fractions:
        depth, name = f"{prefix}lsps_depth_m{_percent(m)}", f"{prefix}lsps_m{_percent(m)}"
        real_data = (f"data.adapt=[{{{real}}}]", f"data.adapt_label_fraction={m}")
        arms.append(TrainArm(depth, "lsps_depth", (f"data.train=[{{{synth}}}]", *real_data,
                                                   f"model.init={{{pose}}}/model.pt",
                                                   *step(s.depth_batch, s.depth_steps)), test, auc,
                             f"stage 2: depth VAE-GANs + M (Eq. 2), m = {m:g} (its prediction: untrained P)"))
        arms.append(TrainArm(name, "lsps_posterior", (f"data.train=[{{{synth}}}]", *real_data,
                                                      f"model.init={{{depth}}}/model.pt",
                                                      *step(s.posterior_batch, s.posterior_steps)), test, auc,
                             f"LSPS, stage 3: P (Eq. 8), prediction G_y(P(x_r)), {m:.0%} of the real set labelled"))
    if baselines:
        arms.append(TrainArm(f"{prefix}real_supervised", "lsps_regressor",
                             (f"data.train=[{{{real_labels or real}}}]", f"model.init={{{pose}}}/model.pt",
                              *step(s.posterior_batch, s.posterior_steps)), test, auc,
                             "upper bound: G_y(P(x)) with POS on the fully labelled real set"))
    return arms


def _common(s: LSPSSizes) -> tuple[str, ...]:
    return (f"data.image_size={s.image_size}", f"data.workers={s.data_workers}", f"model.width={s.width}",
            f"optim.lr={s.lr}", f"threads={s.threads}", "log_every=10", "data.val=[]")


def synth_lsps(s: LSPSSizes) -> Experiment:
    data = (RenderData("synth_train", s.synth_train, 11, "source", s.image_size, s.render_workers),
            RenderData("real_train", s.real_train, 12, "source", s.image_size, s.render_workers, s.sensor),
            RenderData("real_test", s.real_test, 13, "source", s.image_size, s.render_workers, s.sensor))
    return Experiment("synth-lsps", "LSPS analogue (paper Table 1, Fig. 5): exact synthetic depth with poses → "
                      f"sensor-model depth ({s.sensor}) as the real domain; synthetic-only, LSPS at m = "
                      f"{', '.join(f'{m:.0%}' for m in s.fractions)} labelled, real-supervised",
                      data, tuple(lsps_arms(s, "synth_train", "real_train", "real_test")), s.seeds, _common(s),
                      asdict(s), PAPER_EPE)


def synth_methods_arms(synth: str, real: str, test: str, quick: bool = False, auc=AUC_RHD) -> list[TrainArm]:
    """This method's arms of the shared ``synth-methods`` experiment: the paper's unsupervised setting
    (synthetic depth with poses, unlabelled real depth): ``lsps_pose``, ``lsps_depth_m0`` and ``lsps_m0``
    (the reported one) on the caller's data steps; its common overrides are :func:`synth_methods_overrides`
    (prefix each with the arm's name if the experiment's common keys differ). ``real`` should hold depth
    through a sensor model (``RenderData(..., depth_sensor="strong")``) for the domain gap LSPS bridges."""
    s = replace(SYNTH_LSPS["quick" if quick else "full"], auc_range=auc)
    arms = lsps_arms(s, synth, real, test, fractions=(0.0,), baselines=False)
    return [replace(a, overrides=(*_common(s), *a.overrides)) for a in arms]


def real_lsps(quick: bool) -> Experiment:
    """STB's SK depth as the real domain (joints in its depth camera), 50k synthetic renders as the source."""
    names = ("stb_depth_train", "stb_depth_test")
    data = (RenderData("synth", 64 if quick else 50000, 0, "source", 128 if not quick else 32, 8),
            *(RealData(n, REAL_DATA[n][0], REAL_DATA[n][1]) for n in names))
    s = LSPSSizes(image_size=128, width=64, lr=1.0e-4, pose_batch=128, pose_steps=200_000, depth_batch=1,
                  depth_steps=500_000, posterior_batch=32, posterior_steps=50_000,
                  fractions=(0.0, 0.01, 0.05, 0.1, 0.25, 1.0), auc_range=AUC_STB)
    if quick:
        s = replace(s, image_size=32, width=4, pose_batch=4, pose_steps=2, depth_batch=2, depth_steps=2,
                    posterior_batch=4, posterior_steps=2, fractions=(0.0,))
    arms = lsps_arms(s, "synth", "stb_depth_train", "stb_depth_test")
    return Experiment("lsps", "LSPS on real data: synthetic depth renders → STB SK depth (paper protocol: 128² crops, "
                      "paper widths and schedule, m ∈ {0, 1, 5, 10, 25, 100} %)", data, tuple(arms), 3,
                      (f"data.image_size={s.image_size}", f"model.width={s.width}", f"optim.lr={s.lr}", "data.val=[]"),
                      asdict(s), PAPER_EPE)


EXPERIMENTS: dict = {
    "synth-lsps": ("LSPS analogue: exact synthetic depth → sensor-model depth (2 CPU cores)",
                   lambda quick: synth_lsps(SYNTH_LSPS["quick" if quick else "full"])),
    "lsps": ("LSPS on real data: synthetic depth → STB SK depth (needs converted STB)", real_lsps),
}
