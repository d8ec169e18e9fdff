"""The declared experiments, as tables: ``build(name, quick)`` → :class:`~training.experiments.spec.Experiment`.

- ``table1``, ``table2``, ``table3``: the paper's real-data protocols with its hyperparameters
  (`method.md` §5 and §8; the phase files of ``configs/`` hold them: Adam, batch 32, lr 2.5e-4,
  256-px crops, ResNet-18 of width 64, teacher/student/distill 200/100/100 epochs, β = 1e-3),
  reading converted shard directories under ``--data-root`` (:data:`REAL_DATA`).
- ``synth-table1``, ``synth-table2``: their analogues on synthetic renders (source with depth,
  a domain-shifted target without), sized for 2 CPU cores by :data:`SYNTH_TABLE1` and
  :data:`SYNTH_TABLE2` — tuning an experiment is editing its row there.

Arm names carry the words scripts look for: ``depth`` (teacher), ``rgb`` (student), ``control``,
``kd``, ``none``, ``l1``, ``l2``, ``prior``, ``shuffled``, ``matched``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

from training.experiments.spec import (AUC_RHD, AUC_STB, EvalArm, Experiment, ExperimentError, PriorControl,
                                       RealData, RenderData, TrainArm)

#: Converted datasets, relative to ``--data-root``: `tools/convert_dataset.py` writes each split to OUT/<split>
#: (split names: ``datasets.splits.SPLITS``).
#: name → (path, command that creates it; ``{root}`` is the data root, RAW the user's raw download).
REAL_DATA = {
    "rhd_train": ("rhd_256/training", "python tools/convert_dataset.py rhd --root <path of RHD_published_v2> --out {root}/rhd_256"),
    "rhd_test": ("rhd_256/evaluation", "python tools/convert_dataset.py rhd --root <path of RHD_published_v2> --out {root}/rhd_256"),
    "stb_train": ("stb_256/train", "python tools/convert_dataset.py stb --root <path of STB> --out {root}/stb_256"),
    "stb_test": ("stb_256/test", "python tools/convert_dataset.py stb --root <path of STB> --out {root}/stb_256"),
    # SK depth registered into the colour crop (datasets.stb.register_sk_depth): AW Hourglass, LSPS
    "stb_depth_train": ("stb_256_depth/train",
                        "python tools/convert_dataset.py stb --root <path of STB> --out {root}/stb_256_depth --option depth=true"),
    "stb_depth_test": ("stb_256_depth/test",
                       "python tools/convert_dataset.py stb --root <path of STB> --out {root}/stb_256_depth --option depth=true"),
    **{f"freihand_{d}_{part}": (f"freihand_256_{d}/{split}",
                                f"python tools/convert_dataset.py freihand --root <path of FreiHAND_pub_v2> "
                                f"--out {{root}}/freihand_256_{d} --option domain={d}")
       for d in ("gs", "hom", "sample", "auto") for part, split in (("train", "paper_train"), ("test", "paper_eval"))},
}
#: FreiHAND's versions as the paper names them in Table 3.
FREIHAND_DOMAINS = {"g": "gs", "h": "hom", "s": "sample", "a": "auto"}


@dataclass(frozen=True)
class SynthSizes:
    """Sizes, schedule and strengths of a synthetic experiment (one row of :data:`SYNTH_TABLE1` / ``2``)."""

    image_size: int = 64  # rendered image = network crop (px)
    width: int = 16  # ResNet-18 base width (paper: 64)
    source_train: int = 4000
    source_test: int = 500
    target_train: int = 1000  # the paper's target sets are small next to the source
    target_test: int = 1000
    batch_size: int = 32
    lr: float = 1.0e-3
    schedule: str = "cosine"
    teacher_epochs: int = 10
    student_epochs: int = 10
    distill_epochs: int = 5  # also the RGB control's continuation
    target_epochs: int = 15
    prior_beta: float = 0.1  # see training/demo.py on why β must grow on short schedules
    prior_nonnegative: bool = True
    l1_sigmas: tuple[float, ...] = (1.0e-4, 1.0e-6)  # paper Table 2
    l2_sigmas: tuple[float, ...] = (1.0e-3, 1.0e-5)
    l2_sweep_sigmas: tuple[float, ...] = (1.0e-5, 1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1, 1.0)  # synth-l2-sweep
    auc_range: tuple[float, float] = AUC_RHD
    seeds: int = 3
    threads: int = 1  # compute threads per run ...
    data_workers: int = 1  # ... next to its loader processes
    render_workers: int = 2
    extra: tuple[str, ...] = ()  # extra overrides of every training arm (e.g. the L_REG reduction)
    distill_extra: tuple[str, ...] = ()  # extra overrides of every distillation arm (loss scales, ...)
    target_extra: tuple[str, ...] = ()  # extra overrides of every target arm (prior application, ...)


_QUICK = dict(image_size=32, width=8, source_train=64, source_test=32, target_train=64, target_test=32,
              batch_size=16, teacher_epochs=1, student_epochs=1, distill_epochs=1, target_epochs=2, prior_beta=1.0,
              seeds=2, data_workers=0, render_workers=1)
#: synth-table2 changes only what happens after the source phases, so that with one --runs-dir and
#: --data-cache both experiments share the source data, the depth teacher and the RGB student.
#: Full sizes (lead's calibration, docs/experiments.md): ~0.2 CPU-s per step of a width-16 ResNet-18 at
#: 64 px, two runs at a time on the 2-core machine; the target set is small and trained without
#: augmentation (a student from scratch over-fits it: 92 mm vs 69 mm with augmentation), β follows
#: the paper's α·β·N (prior.beta_rule=paper_product) and φ is the paper's unconstrained one.
SYNTH_TABLE1 = {"full": SynthSizes(source_train=1500, source_test=500, teacher_epochs=10, student_epochs=10,
                                   distill_epochs=4, data_workers=0, seeds=3),
                "quick": SynthSizes(**_QUICK)}
SYNTH_TABLE2 = {"full": replace(SYNTH_TABLE1["full"], target_train=300, target_test=500, target_epochs=16,
                                prior_nonnegative=False, distill_extra=("prior.beta_rule=paper_product",),
                                target_extra=("data.augment=false",)),
                "quick": replace(SYNTH_TABLE1["quick"])}


def _sigma(value: float) -> str:
    return f"{value:.0e}"  # 1e-04: readable and safe in a directory name


# --------------------------------------------------------------------------- synthetic analogues


def _synth_common(s: SynthSizes) -> tuple[str, ...]:
    return (f"data.image_size={s.image_size}", f"data.workers={s.data_workers}", f"model.width={s.width}",
            f"optim.lr={s.lr}", f"optim.schedule={s.schedule}", f"optim.batch_size={s.batch_size}",
            f"threads={s.threads}", "log_every=5", "data.val=[]", *s.extra)


def _source_arms(s: SynthSizes, train: str, test: str) -> list[TrainArm]:
    """Depth teacher and RGB student on the source set."""
    data = f"data.train=[{{{train}}}]"
    return [
        TrainArm("depth_teacher", "teacher", (data, f"optim.epochs={s.teacher_epochs}"), test, s.auc_range,
                 "teacher on depth, L_REG"),
        TrainArm("rgb_student", "student", (data, f"optim.epochs={s.student_epochs}"), test, s.auc_range,
                 "student on RGB, L_REG"),
    ]


def _distill(s: SynthSizes, name: str, train: str, test: str, extra: tuple[str, ...], note: str) -> TrainArm:
    """A distillation run from the RGB student and the depth teacher of the same seed."""
    return TrainArm(name, "distill", (f"data.train=[{{{train}}}]", "model.init={rgb_student}/model.pt",
                                      "distill.teacher={depth_teacher}/model.pt", f"optim.epochs={s.distill_epochs}",
                                      *s.distill_extra, *extra), test, s.auc_range, note)


def synth_table1(s: SynthSizes) -> Experiment:
    data = (RenderData("source_train", s.source_train, 1, "source", s.image_size, s.render_workers),
            RenderData("source_test", s.source_test, 2, "source", s.image_size, s.render_workers))
    no_prior = "prior.learn=false"
    arms = (
        *_source_arms(s, "source_train", "source_test"),
        TrainArm("rgb_control", "student", ("data.train=[{source_train}]", "model.init={rgb_student}/model.pt",
                                            f"optim.epochs={s.distill_epochs}"), "source_test", s.auc_range,
                 "RGB student continued for the distillation's epochs with L_REG only and a fresh optimiser"),
        _distill(s, "kd_act", "source_train", "source_test", (no_prior, "distill.lambda_att=0"), "KD with L_ACT only"),
        _distill(s, "kd_att", "source_train", "source_test", (no_prior, "distill.weight_act=0"), "KD with L_ATT only"),
        _distill(s, "kd_act_att", "source_train", "source_test", (no_prior,), "KD with L_ACT + λ·L_ATT (Eq. 4)"),
        _distill(s, "kd_act_att_weak", "source_train", "source_test",
                 (no_prior, "distill.lambda_att=100", "distill.weight_act=0.1"),
                 "ablation: KD with L_DIST scaled by 0.1 (λ = 100, w_act = 0.1)"),
    )
    return Experiment("synth-table1", "Table 1 analogue: depth teacher, RGB student, RGB control and KD variants "
                      "on synthetic renders, evaluated on the source test set", data, arms, s.seeds,
                      _synth_common(s), asdict(s))


def _target_arms(prefix: str, train: str, test: str, sources: dict[str, str],
                 l1_sigmas, l2_sigmas, auc, extra: tuple[str, ...] = ()) -> list:
    """Target students on ``train``: none, ℓ1 and ℓ2 per σ, and R from the prior files in ``sources``
    (keys ``prior``, ``prior_l1``, ``prior_shuffled``, ``l2_matched`` → the step holding ``prior.pt``)."""
    data = (f"data.train=[{{{train}}}]", *extra)
    arms = [TrainArm(f"{prefix}none", "target", (*data, "regularizer.kind=none", "regularizer.prior="), test, auc,
                     "no regulariser")]
    for kind, sigmas in (("l1", l1_sigmas), ("l2", l2_sigmas)):
        arms += [TrainArm(f"{prefix}{kind}_{_sigma(v)}", "target",
                          (*data, f"regularizer.kind={kind}", f"regularizer.sigma={v}", "regularizer.prior="),
                          test, auc, f"{'σΣ|θ|' if kind == 'l1' else 'σΣθ²'}, σ = {v:g}") for v in sigmas]
    notes = {"prior": ("prior", "R = Σφθ², learned φ (Algorithm 2)"),
             "prior_l1": ("prior_l1", "R = Σφ|θ|, learned ℓ1-weighted φ"),
             "prior_shuffled": ("prior", "control: learned φ permuted within each tensor"),
             "l2_matched": ("prior", "control: ℓ2 with σ = each tensor's mean φ")}
    for name, step in sources.items():
        kind, note = notes[name]
        arms.append(TrainArm(f"{prefix}{name}", "target",
                             (*data, f"regularizer.kind={kind}", f"regularizer.prior={{{step}}}/prior.pt"),
                             test, auc, note))
    return arms


def _prior_controls() -> list[PriorControl]:
    """The two control priors derived from the ℓ2 prior of ``kd_meta_l2`` (same seed)."""
    return [PriorControl("phi_shuffled", "shuffled", "kd_meta_l2", "φ of kd_meta_l2 permuted within each tensor"),
            PriorControl("phi_matched", "matched", "kd_meta_l2", "φ of kd_meta_l2 replaced by each tensor's mean")]


def _meta_arms(train: str, test: str, auc, extra: tuple[str, ...]) -> list:
    """Distillation with φ meta-learned in both forms, from the RGB student and depth teacher of the same seed."""
    common = ("data.train=[{%s}]" % train, "model.init={rgb_student}/model.pt",
              "distill.teacher={depth_teacher}/model.pt", "prior.learn=true", *extra)
    return [TrainArm("kd_meta_l2", "distill", (*common, "prior.form=l2"), test, auc, "KD learning φ of R = Σφθ²"),
            TrainArm("kd_meta_l1", "distill", (*common, "prior.form=l1"), test, auc, "KD learning φ of R = Σφ|θ|")]


_PRIOR_SOURCES = {"prior": "kd_meta_l2", "prior_l1": "kd_meta_l1", "prior_shuffled": "phi_shuffled",
                  "l2_matched": "phi_matched"}


def _scaled_prior_ablation(s: SynthSizes, factor: float) -> list:
    """Ablation: φ of ``kd_meta_l2`` × ``factor`` (the prior a β ``factor`` times larger learns, to first
    order, ``training.prior_controls.scaled_prior``) with its shuffled and matched controls, applied as a
    gradient and decoupled."""
    x = f"x{factor:g}"
    data = ("data.train=[{target_train}]", f"optim.epochs={s.target_epochs}", *s.target_extra)
    controls = [PriorControl(f"phi_{x}", "scaled", "kd_meta_l2", f"φ of kd_meta_l2 × {factor:g}", factor),
                PriorControl(f"phi_{x}_shuffled", "shuffled", f"phi_{x}", f"φ × {factor:g} permuted within each tensor"),
                PriorControl(f"phi_{x}_matched", "matched", f"phi_{x}", f"φ × {factor:g} replaced by each tensor's mean"),
                PriorControl(f"phi_{x}_positive", "positive", f"phi_{x}", f"max(φ × {factor:g}, 0)")]
    def arm(name, step, extra, note):
        return TrainArm(name, "target", (*data, "regularizer.kind=prior", f"regularizer.prior={{{step}}}/prior.pt",
                                         *extra), "target_test", s.auc_range, note)
    return [*controls,
            arm(f"target_prior_{x}", f"phi_{x}", (), f"ablation: R with φ × {factor:g} (β × {factor:g})"),
            arm(f"target_prior_{x}_shuffled", f"phi_{x}_shuffled", (), f"ablation control: φ × {factor:g}, shuffled"),
            arm(f"target_l2_matched_{x}", f"phi_{x}_matched", (), f"ablation control: ℓ2 with σ = mean of φ × {factor:g}"),
            arm(f"target_prior_{x}_decoupled", f"phi_{x}", ("regularizer.apply=decoupled",),
                f"ablation: R with φ × {factor:g} applied as decoupled decay θ(1 − 2·lr·φ)"),
            arm(f"target_prior_{x}_positive", f"phi_{x}_positive", (), f"ablation: R with max(φ × {factor:g}, 0)")]


def synth_table2(s: SynthSizes) -> Experiment:
    data = (RenderData("source_train", s.source_train, 1, "source", s.image_size, s.render_workers),
            RenderData("source_test", s.source_test, 2, "source", s.image_size, s.render_workers),
            RenderData("target_train", s.target_train, 3, "target", s.image_size, s.render_workers),
            RenderData("target_test", s.target_test, 4, "target", s.image_size, s.render_workers))
    meta = (f"optim.epochs={s.distill_epochs}", f"prior.beta={s.prior_beta}",
            f"prior.nonnegative={str(s.prior_nonnegative).lower()}", *s.distill_extra)
    arms = (
        *_source_arms(s, "source_train", "source_test"),
        *_meta_arms("source_train", "source_test", s.auc_range, meta),
        *_prior_controls(),
        EvalArm("kd_on_target", "kd_meta_l2", "target_test", s.auc_range,
                "distilled student (kd_meta_l2) evaluated on the target without target training"),
        *_target_arms("target_", "target_train", "target_test", _PRIOR_SOURCES, s.l1_sigmas, s.l2_sigmas,
                      s.auc_range, (f"optim.epochs={s.target_epochs}", *s.target_extra)),
        *_scaled_prior_ablation(s, 1000.0),
    )
    return Experiment("synth-table2", "Table 2 analogue: target students on a domain-shifted synthetic set without "
                      "depth, with no regulariser, ℓ1, ℓ2, the learned prior and its controls", data, arms, s.seeds,
                      _synth_common(s), asdict(s))


def synth_l2_sweep(s: SynthSizes) -> Experiment:
    """Is the target set in the paper's regime, where plain regularisation helps a student trained from
    scratch (STB: every regulariser beats none by 3.4-4.3 mm)? Target students with ℓ2 over a range of σ;
    run it before synth-table2 (same target data and arm names, so a shared --runs-dir reuses the runs)."""
    data = (RenderData("target_train", s.target_train, 3, "target", s.image_size, s.render_workers),
            RenderData("target_test", s.target_test, 4, "target", s.image_size, s.render_workers))
    arms = _target_arms("target_", "target_train", "target_test", {}, (), s.l2_sweep_sigmas, s.auc_range,
                        (f"optim.epochs={s.target_epochs}", *s.target_extra))
    return Experiment("synth-l2-sweep", "ℓ2 σ sweep of target students on the synthetic target set (is it in the "
                      "regime where regularisation matters?)", data, tuple(arms), s.seeds, _synth_common(s), asdict(s))


# --------------------------------------------------------------------------- the paper's real-data tables

#: the paper's settings live in configs/*.yaml; these only pick data, network and the row's losses.
PAPER = {"seeds": 3, "synthetic_samples": 50000, "image_size": 256, "render_workers": 8,
         "l1_sigmas": (1.0e-4, 1.0e-6), "l2_sigmas": (1.0e-3, 1.0e-5), "table3_l2_sigma": 1.0e-5}


#: The paper's EPE (mm) per arm (`method.md` §8), reported beside ours.
PAPER_EPE = {
    "table1": {"rgb_student": 24.68, "depth_teacher": 13.60, "kd_act": 23.41, "kd_act_att": 22.19,
               "rgb_student_synth": 23.07, "depth_teacher_synth": 12.06, "kd_act_att_synth": 20.89,
               "rgb_student_synth_resnet50": 20.74, "depth_teacher_synth_resnet50": 10.78,
               "kd_act_att_synth_resnet50": 18.06},
    "table2": {"target_none": 15.67, "target_l1_1e-04": 11.41, "target_l1_1e-06": 11.82, "target_l2_1e-03": 12.28,
               "target_l2_1e-05": 12.02, "target_prior_l1": 8.86, "target_prior": 8.18},
    "table3": {**{f"freihand_{letter}_{arm}": value
                  for letter, values in {"g": (12.37, 12.28, 12.27), "h": (14.49, 14.02, 13.82),
                                         "s": (15.80, 14.92, 14.26), "a": (16.18, 15.16, 14.18)}.items()
                  for arm, value in zip(("none", "l2_1e-05", "prior"), values)},
               "stb_none": 15.67, "stb_l2_1e-05": 12.02, "stb_prior": 8.18},
}


def _real(*names: str) -> tuple[RealData, ...]:
    return tuple(RealData(n, REAL_DATA[n][0], REAL_DATA[n][1]) for n in names)


def _synthetic_50k(quick: bool) -> RenderData:
    """Paper Sect. 5.1: 50,000 synthetic MANO renders with depth (embedded hand model here; 64 with ``--quick``)."""
    return RenderData("synth", 64 if quick else PAPER["synthetic_samples"], 0, "source", PAPER["image_size"],
                      PAPER["render_workers"])


def _paper_rhd_source(suffix: str, train: tuple[str, ...], extra: tuple[str, ...], meta: bool) -> list:
    data = "data.train=[%s]" % ",".join("{%s}" % t for t in train)
    teacher, student = f"depth_teacher{suffix}", f"rgb_student{suffix}"
    arms = [TrainArm(teacher, "teacher", (data, *extra), "rhd_test", AUC_RHD, "teacher on depth, 200 epochs"),
            TrainArm(student, "student", (data, *extra), "rhd_test", AUC_RHD, "student on RGB, 100 epochs")]
    distill = (data, *extra, f"model.init={{{student}}}/model.pt", f"distill.teacher={{{teacher}}}/model.pt")
    if meta:
        arms += [TrainArm("kd_meta_l2", "distill", (*distill, "prior.learn=true", "prior.form=l2"), "rhd_test",
                          AUC_RHD, "KD (L_ACT + L_ATT) learning φ of Σφθ², 100 epochs"),
                 TrainArm("kd_meta_l1", "distill", (*distill, "prior.learn=true", "prior.form=l1"), "rhd_test",
                          AUC_RHD, "KD (L_ACT + L_ATT) learning φ of Σφ|θ|, 100 epochs")]
    return arms


def table1(quick: bool) -> Experiment:
    no_prior = "prior.learn=false"
    arms = _paper_rhd_source("", ("rhd_train",), (), meta=False)
    arms += [TrainArm("kd_act", "distill", ("data.train=[{rhd_train}]", "model.init={rgb_student}/model.pt",
                                            "distill.teacher={depth_teacher}/model.pt", "distill.lambda_att=0", no_prior),
                      "rhd_test", AUC_RHD, "Table 1 row 1: KD with L_ACT, ResNet-18"),
             TrainArm("kd_act_att", "distill", ("data.train=[{rhd_train}]", "model.init={rgb_student}/model.pt",
                                                "distill.teacher={depth_teacher}/model.pt", no_prior),
                      "rhd_test", AUC_RHD, "Table 1 row 2: KD with L_ACT + L_ATT, ResNet-18")]
    for suffix, extra in (("_synth", ()), ("_synth_resnet50", ("model.arch=resnet50",))):
        arms += _paper_rhd_source(suffix, ("rhd_train", "synth"), extra, meta=False)
        arms.append(TrainArm(f"kd_act_att{suffix}", "distill",
                             ("data.train=[{rhd_train},{synth}]", *extra, f"model.init={{rgb_student{suffix}}}/model.pt",
                              f"distill.teacher={{depth_teacher{suffix}}}/model.pt", no_prior), "rhd_test", AUC_RHD,
                             f"Table 1: + synthetic data, {'ResNet-50' if extra else 'ResNet-18'}"))
    return Experiment("table1", "Paper Table 1 on RHD: RGB, depth and KD (L_ACT; L_ACT + L_ATT; + 50k synthetic "
                      "renders; ResNet-50)", (*_real("rhd_train", "rhd_test"), _synthetic_50k(quick)), tuple(arms),
                      PAPER["seeds"], (), dict(PAPER), PAPER_EPE["table1"])


def table2(quick: bool) -> Experiment:
    source = _paper_rhd_source("", ("rhd_train", "synth"), (), meta=True)
    arms = (*source, *_prior_controls(),
            EvalArm("kd_on_target", "kd_meta_l2", "stb_test", AUC_STB, "distilled student on STB, no target training"),
            *_target_arms("target_", "stb_train", "stb_test", _PRIOR_SOURCES, PAPER["l1_sigmas"],
                          PAPER["l2_sigmas"], AUC_STB))
    return Experiment("table2", "Paper Table 2: RHD + synthetic source (ResNet-18) → STB target, every regulariser "
                      "row plus the shuffled-φ and matched-ℓ2 controls",
                      (*_real("rhd_train", "rhd_test", "stb_train", "stb_test"), _synthetic_50k(quick)), arms,
                      PAPER["seeds"], (), dict(PAPER), PAPER_EPE["table2"])


def table3(quick: bool) -> Experiment:
    source = _paper_rhd_source("", ("rhd_train", "synth"), (), meta=True)[:3]
    arms = list(source)
    sigma = (PAPER["table3_l2_sigma"],)
    sources = {"prior": "kd_meta_l2"}
    for letter, domain in FREIHAND_DOMAINS.items():
        arms += _target_arms(f"freihand_{letter}_", f"freihand_{domain}_train", f"freihand_{domain}_test",
                             sources, (), sigma, AUC_RHD)
    arms += _target_arms("stb_", "stb_train", "stb_test", sources, (), sigma, AUC_STB)
    names = ["rhd_train", "rhd_test", "stb_train", "stb_test"]
    names += [f"freihand_{d}_{p}" for d in FREIHAND_DOMAINS.values() for p in ("train", "test")]
    return Experiment("table3", "Paper Table 3: none / default ℓ2 (σ = 1e-5) / R on FreiHAND G, H, S, A and STB",
                      (*_real(*names), _synthetic_50k(quick)), tuple(arms), PAPER["seeds"], (), dict(PAPER),
                      PAPER_EPE["table3"])


EXPERIMENTS: dict[str, tuple[str, Callable[[bool], Experiment]]] = {
    "table1": ("paper Table 1 on RHD (needs converted RHD)", table1),
    "table2": ("paper Table 2, RHD → STB (needs converted RHD and STB)", table2),
    "table3": ("paper Table 3, FreiHAND G/H/S/A and STB (needs converted data)", table3),
    "synth-table1": ("Table 1 analogue on synthetic renders (2 CPU cores)",
                     lambda quick: synth_table1(SYNTH_TABLE1["quick" if quick else "full"])),
    "synth-table2": ("Table 2 analogue, synthetic source → shifted synthetic target (2 CPU cores)",
                     lambda quick: synth_table2(SYNTH_TABLE2["quick" if quick else "full"])),
    "synth-l2-sweep": ("ℓ2 σ sweep on synth-table2's target set: does regularisation matter there?",
                       lambda quick: synth_l2_sweep(SYNTH_TABLE2["quick" if quick else "full"])),
}


def build(name: str, quick: bool = False) -> Experiment:
    """The declared experiment ``name`` (``--quick``: the same arms at tiny size)."""
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; declared: {', '.join(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name][1](quick)
    if quick and experiment.name.startswith("table"):  # a smoke run of the real-data protocol: 2 steps per run
        experiment = replace(experiment, common=(*experiment.common, "optim.max_steps=2"))
    return experiment


# --------------------------------------------------------------------------- the other methods' experiments
# Each method declares its experiments in its own module (which may import the tables above).
from training.experiments import aw_hourglass as _aw_hourglass, lsps as _lsps  # noqa: E402
from training.experiments import supervision_transfer as _supervision_transfer  # noqa: E402
from training.experiments import synth_methods as _synth_methods  # noqa: E402

for _module in (_supervision_transfer, _aw_hourglass, _lsps, _synth_methods):
    EXPERIMENTS.update(_module.EXPERIMENTS)
