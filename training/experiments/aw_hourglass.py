"""The aw_hourglass experiments (synthetic analogue and real-data protocol), declared as tables.

``EXPERIMENTS`` is merged into :data:`training.experiments.catalog.EXPERIMENTS`.

- ``synth-aw-hourglass``: the paper's Table 2 on synthetic renders. One hourglass pretrained on the
  source renders per seed (``aw_hourglass_pretrain``, also evaluated on the target as the
  synthetic-only reference), then three adaptation arms from it on source + the domain-shifted
  target renders, whose 3D labels are hidden from training (``data.adapt``: RGB, 2D, depth) and used
  only by the evaluation on ``target_test``: ``aw_hourglass_none`` (joint training, wo/AWH),
  ``aw_hourglass_wasserstein`` (w/WH), ``aw_hourglass_adaptive`` (w/AWH). AUC over 0–30 mm as the paper.
- ``aw-hourglass``: RHD (fully labelled) → STB (10 sequences with 2D + depth for training, 2 for the
  test), the paper's protocol. Its target (``data.adapt``) is ``stb_depth_train``, STB shards whose samples
  carry the SK depth registered to the colour crop (``tools/convert_dataset.py stb --option depth=true``,
  ``datasets/stb.py``); the test is ``stb_test`` (RGB only).

:func:`synth_methods_arms` gives the arms of this method for the shared ``synth-methods`` experiment.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from training.experiments.catalog import REAL_DATA
from training.experiments.spec import Experiment, RealData, RenderData, TrainArm

#: the paper's AUC range (Tables 1–2: AUC over 0–30 mm)
AUC_0_30 = (0.0, 30.0)
#: paper Table 2 (STB): EPE mm / AUC 0–30 mm
PAPER_TABLE2 = {"aw_hourglass_none": (13.1, 0.576), "aw_hourglass_wasserstein": (13.1, 0.578),
                "aw_hourglass_adaptive": (12.8, 0.589)}
ADAPT_ARMS = {"none": "joint training on source + target 2D/depth, no critic (paper: wo/AWH+wo/FSS)",
              "wasserstein": "+ WGAN-GP critic on the bottleneck z, α ≡ 1 (paper: w/WH+wo/FSS)",
              "adaptive": "+ critic on α ⊙ z, α = channel cosine of the pair (paper: w/AWH+wo/FSS, Eq. 5–6)"}


@dataclass(frozen=True)
class AWSizes:
    """Sizes and schedule of ``synth-aw-hourglass`` (same data steps as synth-table2, so a shared
    ``--data-cache`` renders them once)."""

    image_size: int = 64
    width: int = 16
    source_train: int = 1500
    target_train: int = 300
    target_test: int = 500
    batch_size: int = 16  # 16 source + 16 target per adaptation step
    pretrain_lr: float = 1.0e-3  # short schedules: 10× the paper-default 1e-4 (configs/aw_hourglass*.yaml)
    adapt_lr: float = 3.0e-4
    schedule: str = "cosine"
    pretrain_epochs: int = 6
    adapt_epochs: int = 4  # epochs of data.train (the target set is cycled alongside)
    lambda_wd: float = 0.01
    lambda_reg: float = 0.1
    critic_steps: int = 5
    sweep_lambda_wd: float = 0.1  # an extra adaptive arm with this λ_wd (the issue: "sweep to 0.1")
    seeds: int = 3
    threads: int = 1
    data_workers: int = 0
    render_workers: int = 2
    extra: tuple[str, ...] = ()


_QUICK = dict(image_size=32, width=8, source_train=64, target_train=32, target_test=32, batch_size=16,
              pretrain_epochs=1, adapt_epochs=1, critic_steps=2, seeds=2, render_workers=1)
SYNTH_AW_HOURGLASS = {"full": AWSizes(), "quick": AWSizes(**_QUICK)}


def _common(s: AWSizes) -> tuple[str, ...]:
    return (f"data.image_size={s.image_size}", f"data.workers={s.data_workers}", f"model.width={s.width}",
            f"optim.schedule={s.schedule}", f"optim.batch_size={s.batch_size}", f"threads={s.threads}",
            "log_every=5", "data.val=[]", *s.extra)


def adapt_arms(train: str, adapt: str, test: str, pretrain: str, auc, extra: tuple[str, ...] = (),
               prefix: str = "aw_hourglass") -> list[TrainArm]:
    """The three adaptation arms (none / wasserstein / adaptive) from the pretrained hourglass arm ``pretrain``."""
    data = (f"data.train=[{{{train}}}]", f"data.adapt=[{{{adapt}}}]", f"model.init={{{pretrain}}}/model.pt")
    return [TrainArm(f"{prefix}_{kind}", "aw_hourglass", (*data, f"aw_hourglass.critic={kind}", *extra), test, auc,
                     note) for kind, note in ADAPT_ARMS.items()]


def synth_methods_arms(s: AWSizes, source_train: str = "source_train", target_train: str = "target_train",
                       target_test: str = "target_test", auc=AUC_0_30) -> list[TrainArm]:
    """This method's arms for the shared ``synth-methods`` experiment (data step names of the caller;
    the caller's common overrides apply, these fix only the method's own schedule and loss weights)."""
    pretrain = TrainArm("aw_hourglass_pretrain", "aw_hourglass_pretrain",
                        (f"data.train=[{{{source_train}}}]", f"optim.epochs={s.pretrain_epochs}",
                         f"optim.lr={s.pretrain_lr}", f"optim.batch_size={s.batch_size}"),
                        target_test, auc, "hourglass pretrained on the source only (no critic), on the target")
    extra = (f"optim.epochs={s.adapt_epochs}", f"optim.lr={s.adapt_lr}", f"optim.batch_size={s.batch_size}",
             f"aw_hourglass.lambda_wd={s.lambda_wd}", f"aw_hourglass.lambda_reg={s.lambda_reg}",
             f"aw_hourglass.critic_steps={s.critic_steps}")
    return [pretrain, *adapt_arms(source_train, target_train, target_test, pretrain.name, auc, extra)]


def synth_aw_hourglass(s: AWSizes) -> Experiment:
    data = (RenderData("source_train", s.source_train, 1, "source", s.image_size, s.render_workers),
            RenderData("target_train", s.target_train, 3, "target", s.image_size, s.render_workers),
            RenderData("target_test", s.target_test, 4, "target", s.image_size, s.render_workers))
    arms = synth_methods_arms(s)
    adaptive = arms[-1]
    sweep = replace(adaptive, name=f"aw_hourglass_adaptive_wd{s.sweep_lambda_wd:.0e}",
                    overrides=(*adaptive.overrides, f"aw_hourglass.lambda_wd={s.sweep_lambda_wd}"),
                    note=f"adaptive critic with λ_wd = {s.sweep_lambda_wd:g} (10× the default)")
    return Experiment("synth-aw-hourglass", "AW Hourglass Table 2 analogue: hourglass pretrained on synthetic "
                      "source renders, adapted to shifted target renders (2D + depth only) without a critic, with "
                      "a Wasserstein critic, with the adaptive (α-weighted) critic; target test, AUC 0-30 mm",
                      data, (*arms, sweep), s.seeds, _common(s), asdict(s))


#: the real protocol at the paper's scale (its configs: 256 px, ResNet-18 width 64, Adam 1e-4, batch 16 + 16)
PAPER_AW = {"seeds": 3, "pretrain_epochs": 50, "adapt_epochs": 50}


def aw_hourglass_real(quick: bool) -> Experiment:
    data = tuple(RealData(n, REAL_DATA[n][0], REAL_DATA[n][1]) for n in ("rhd_train", "stb_depth_train", "stb_test"))
    pretrain = TrainArm("aw_hourglass_pretrain", "aw_hourglass_pretrain",
                        ("data.train=[{rhd_train}]", f"optim.epochs={PAPER_AW['pretrain_epochs']}"), "stb_test",
                        AUC_0_30, "hourglass pretrained on RHD (no critic), evaluated on STB")
    arms = (pretrain, *adapt_arms("rhd_train", "stb_depth_train", "stb_test", pretrain.name, AUC_0_30,
                                  (f"optim.epochs={PAPER_AW['adapt_epochs']}",)))
    return Experiment("aw-hourglass", "AW Hourglass paper Table 2: RHD → STB (2D + registered depth for training, "
                      "RGB at test), no adaptation / Wasserstein / adaptive Wasserstein; EPE and AUC 0-30 mm",
                      data, arms, PAPER_AW["seeds"], (), dict(PAPER_AW),
                      {name: epe for name, (epe, _) in PAPER_TABLE2.items()})


EXPERIMENTS: dict = {
    "synth-aw-hourglass": ("AW Hourglass Table 2 analogue: none / Wasserstein / adaptive critic on synthetic "
                           "renders (2 CPU cores)",
                           lambda quick: synth_aw_hourglass(SYNTH_AW_HOURGLASS["quick" if quick else "full"])),
    "aw-hourglass": ("AW Hourglass paper Table 2, RHD → STB (needs converted RHD and STB with depth)",
                     aw_hourglass_real),
}

__all__ = ["EXPERIMENTS", "synth_methods_arms", "adapt_arms", "SYNTH_AW_HOURGLASS", "AWSizes", "PAPER_TABLE2",
           "AUC_0_30"]
