"""The supervision_transfer experiments (synthetic analogue and real-data protocol), declared as tables.

``EXPERIMENTS`` is merged into :data:`training.experiments.catalog.EXPERIMENTS`.

- ``synth-supervision-transfer``: on paired synthetic RGB-depth renders (the paper's direction, L = RGB,
  U = depth): an RGB network Φ trained with labels; supervision transfer to a depth network Ψ with no
  labels (its model.pt evaluated as is = zero-shot, paper Table 5); Ψ fine-tuned with 1 %, 10 %, 100 %
  of the depth labels (whole network; head only at 10 %, Table 1 rows D vs B) against a depth network
  trained from scratch on the same labels for the same number of steps (Table 1 row A); the depth test
  set of the same renders.
- ``supervision-transfer``: the same protocol on a converted paired real set (RHD train / test, which
  have RGB and depth), with the configs' paper-scale settings.

Label fractions: 1 % of 1500 samples is 15, smaller than a batch of 32, which
:class:`training.data.ResumableSampler` refuses; every arm at a fraction whose subset is smaller than
the batch uses the largest batch of at most ``optim.batch_size`` that fits (8 here; the scratch
baseline of that fraction uses the same), and every fine-tune and scratch arm runs the same number of
optimiser steps (``finetune_steps``), so the budgets are equal within each fraction.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from training.experiments.catalog import REAL_DATA, SynthSizes, _synth_common
from training.experiments.spec import AUC_RHD, Experiment, RealData, RenderData, TrainArm


@dataclass(frozen=True)
class TransferSizes:
    """One row of :data:`SYNTH_SUPERVISION_TRANSFER`: the synthetic sizes plus this method's schedule."""

    synth: SynthSizes
    transfer_epochs: int = 10
    finetune_steps: int = 300  # every fine-tune and from-scratch arm (equal budgets)
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    head_only_fractions: tuple[float, ...] = (0.1,)
    small_batch: int = 8  # batch of the fractions whose subset is smaller than synth.batch_size


SYNTH_SUPERVISION_TRANSFER = {
    "full": TransferSizes(SynthSizes(source_train=1500, source_test=500, teacher_epochs=10, data_workers=0,
                                     seeds=3)),
    "quick": TransferSizes(SynthSizes(image_size=32, width=8, source_train=64, source_test=32, batch_size=16,
                                      teacher_epochs=1, seeds=2, data_workers=0, render_workers=1),
                           transfer_epochs=1, finetune_steps=3, fractions=(0.1, 1.0), small_batch=4),
}


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}pct"


def _batch(sizes: TransferSizes, train_samples: int, fraction: float) -> int:
    labelled = max(1, round(fraction * train_samples)) if fraction < 1 else train_samples
    return sizes.synth.batch_size if labelled >= sizes.synth.batch_size else min(sizes.small_batch, labelled)


def finetune_arms(sizes: TransferSizes, train: str, test: str, train_samples: int, transfer_arm: str,
                  prefix: str = "", auc=AUC_RHD, extra: tuple[str, ...] = ()) -> list[TrainArm]:
    """Fine-tuned transfer (whole; head only) and from-scratch depth networks per label fraction, equal steps."""
    arms = []
    for fraction in sizes.fractions:
        common = (f"data.train=[{{{train}}}]", f"data.train_fraction={fraction}",
                  f"optim.batch_size={_batch(sizes, train_samples, fraction)}",
                  f"optim.max_steps={sizes.finetune_steps}", "optim.epochs=100000", *extra)
        pct = _pct(fraction)
        arms.append(TrainArm(f"{prefix}supervision_transfer_ft_{pct}", "supervision_transfer_finetune",
                             (*common, f"model.init={{{transfer_arm}}}/model.pt", "transfer.finetune=whole"), test,
                             auc, f"transferred depth network + fresh head, whole network, {pct} labels (Table 1 D)"))
        if fraction in sizes.head_only_fractions:
            arms.append(TrainArm(f"{prefix}supervision_transfer_ft_head_{pct}", "supervision_transfer_finetune",
                                 (*common, f"model.init={{{transfer_arm}}}/model.pt", "transfer.finetune=head"),
                                 test, auc, f"transferred trunk frozen, head only, {pct} labels (Table 1 B)"))
        arms.append(TrainArm(f"{prefix}scratch_{pct}", "supervision_transfer_finetune",
                             (*common, "model.init=", "transfer.finetune=whole"), test, auc,
                             f"depth network from random init, {pct} labels, same steps (Table 1 A)"))
    return arms


def transfer_arms(sizes: TransferSizes, train: str, test: str, train_samples: int, prefix: str = "",
                  auc=AUC_RHD, extra: tuple[str, ...] = ()) -> list[TrainArm]:
    """RGB teacher Φ (labels), transfer to depth (no labels; evaluated = zero-shot), then :func:`finetune_arms`."""
    s = sizes.synth
    teacher, transfer = f"{prefix}rgb_teacher", f"{prefix}supervision_transfer_zero_shot"
    data = f"data.train=[{{{train}}}]"
    return [
        TrainArm(teacher, "student", (data, f"optim.epochs={s.teacher_epochs}", *extra), test, auc,
                 "Φ: RGB network trained with labels (evaluated on RGB)"),
        TrainArm(transfer, "supervision_transfer",
                 (data, f"transfer.teacher={{{teacher}}}/model.pt", f"optim.epochs={sizes.transfer_epochs}", *extra),
                 test, auc, "Ψ by supervision transfer at layer4 (Eq. 2, no labels); zero-shot: Φ's head on "
                            "t(Ψ), evaluated on depth (Table 5)"),
        *finetune_arms(sizes, train, test, train_samples, transfer, prefix, auc, extra),
    ]


def synth_supervision_transfer(sizes: TransferSizes) -> Experiment:
    s = sizes.synth
    data = (RenderData("source_train", s.source_train, 1, "source", s.image_size, s.render_workers),
            RenderData("source_test", s.source_test, 2, "source", s.image_size, s.render_workers))
    arms = transfer_arms(sizes, "source_train", "source_test", s.source_train, auc=s.auc_range)
    settings = dict(asdict(s), **{k: v for k, v in asdict(sizes).items() if k != "synth"})
    return Experiment("synth-supervision-transfer", "Supervision transfer on paired synthetic renders: RGB "
                      "teacher → depth student (no labels), zero-shot, and fine-tuning with 1/10/100 % of the "
                      "labels vs training from scratch with the same labels and steps", data, tuple(arms), s.seeds,
                      _synth_common(s), settings, PAPER_REFERENCE)


def synth_methods_arms(sizes: TransferSizes, source_train: str, target_train: str, target_test: str,
                       target_samples: int, auc=AUC_RHD) -> list[TrainArm]:
    """This method's arms of ``synth-methods``, with the supervision the paper uses: Φ = RGB network with
    source labels; transfer to depth on the *paired, unlabelled* target renders; fine-tune with the
    target labels of each fraction in ``sizes.fractions`` (and the zero-shot network). Every arm name
    starts with ``supervision_transfer``. ``target_train`` must have depth (paired)."""
    s = sizes.synth
    teacher, transfer = "supervision_transfer_rgb_teacher", "supervision_transfer_zero_shot"
    only = replace(sizes, head_only_fractions=())
    arms = [TrainArm(teacher, "student", (f"data.train=[{{{source_train}}}]", f"optim.epochs={s.teacher_epochs}"),
                     target_test, auc, "Φ: RGB network with source labels (evaluated on target RGB)"),
            TrainArm(transfer, "supervision_transfer",
                     (f"data.train=[{{{target_train}}}]", f"transfer.teacher={{{teacher}}}/model.pt",
                      f"optim.epochs={sizes.transfer_epochs}"), target_test, auc,
                     "zero-shot: transfer to depth on unlabelled paired target renders")]
    arms += [a for a in finetune_arms(only, target_train, target_test, target_samples, transfer)
             if a.name.startswith("supervision_transfer")]
    return arms


#: The paper's figures (NYUD2 detection mAP %, not comparable in unit to our EPE; quoted in the report).
PAPER_REFERENCE: dict = {}
PAPER_MAP = {"table1": {"1A no init": 22.7, "1B copy from RGB": 25.1, "1C supervision transfer": 29.7,
                        "1D supervision transfer (adapted Φ)": 30.5, "2A copy from RGB, ft fc only": 19.8,
                        "2B supervision transfer, ft fc only": 30.0},
             "table4": {"pool1": 24.4, "pool2": 28.4, "conv3": 30.6, "conv4": 29.9, "pool5": 30.5, "fc6": 29.7,
                        "fc7": 27.7, "conv3+fc7": 31.3}}

#: Paper-scale settings for the real-data protocol: the configs' ResNet-18, 256 px, batch 32.
REAL_SIZES = TransferSizes(SynthSizes(image_size=256, width=64, source_train=0, teacher_epochs=100, seeds=3),
                           transfer_epochs=100, finetune_steps=40000)


def supervision_transfer_real(quick: bool) -> Experiment:
    """RHD (paired RGB + depth): RGB teacher, transfer to depth, fine-tune vs scratch at 1/10/100 % of RHD's
    labels. RHD training has 41,258 samples, so 1 % (413) fills a batch."""
    sizes = REAL_SIZES
    arms = transfer_arms(sizes, "rhd_train", "rhd_test", 41258, auc=AUC_RHD)
    data = tuple(RealData(n, REAL_DATA[n][0], REAL_DATA[n][1]) for n in ("rhd_train", "rhd_test"))
    common = ("optim.max_steps=2",) if quick else ()
    return Experiment("supervision-transfer", "Supervision transfer on RHD: RGB teacher → depth student, zero-shot, "
                      "fine-tuning with 1/10/100 % of the labels vs from scratch", data, tuple(arms), sizes.synth.seeds,
                      common, dict(asdict(sizes.synth), transfer_epochs=sizes.transfer_epochs,
                                   finetune_steps=sizes.finetune_steps), PAPER_REFERENCE)


EXPERIMENTS = {
    "synth-supervision-transfer": ("supervision transfer RGB → depth on paired synthetic renders, 1/10/100 % labels "
                                   "vs scratch, zero-shot (2 CPU cores)",
                                   lambda quick: synth_supervision_transfer(
                                       SYNTH_SUPERVISION_TRANSFER["quick" if quick else "full"])),
    "supervision-transfer": ("supervision transfer RGB → depth on RHD (needs converted RHD)",
                             supervision_transfer_real),
}
