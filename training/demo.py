"""``make demo``: the whole method at toy scale on CPU, from rendering to a report.

Steps (each resumable: a rerun skips rendered shards and finished runs):

1. render a *source* set (RGB + depth, default lighting and skin tones) and a
   domain-shifted *target* set (dimmer, flatter light and darker skin tones — plus other
   background families when the renderer offers a choice), each with a held-out test split;
2. train with the phase configs of ``configs/``: teacher (depth) → student (RGB) →
   distillation with the meta-learned prior φ, next to the RGB control (the student continued
   for the distillation's epochs with L_REG only and the same optimiser restart) → fresh target
   students: one regularised by φ (Algorithm 2), one without a regulariser and one with plain ℓ2
   (σΣθ², the paper's Table 2 baseline);
3. evaluate every network and write ``report.md`` with a metrics table, φ statistics,
   ``pck.png`` and ``predictions.png``.

The scale is tiny (a ResNet-18 of width 16 on 64×64 crops, a few thousand samples, a few
epochs, a larger learning rate than the paper's with a cosine schedule) so that it runs in
about five minutes on 2 CPU cores; its numbers show that the pipeline works end to end, not
the paper's results. It uses the recipe of the synthetic experiments (``docs/experiments.md``):
the resolution-independent L_ATT, β by ``prior.beta_rule=paper_product`` (α·β·N as in the
paper: φ moves as far as it does there), the paper's unconstrained φ, and target students trained
without augmentation on a small target set (the regime where a student from scratch over-fits).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from training.config import load_config, load_run_config
from training.evaluation import evaluate_checkpoint, plot_pck
from training.logging import read_log
from training.metrics import PCK_RANGES
from training.phases import meta_beta
from render.domains import SOURCE_BACKGROUNDS, TARGET_BACKGROUNDS, domain_options  # noqa: F401
from training.prior import read_prior
from training.trainer import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRIOR_LABEL = "target student + learned prior"
NONE_LABEL = "target student, no regulariser"
L2_LABEL = "target student, ℓ2 (σ = {sigma:g})"


@dataclass
class DemoSettings:
    """Sizes of the demo; the defaults took 4 min 48 s on 2 CPU cores (docs/demo_report.md)."""

    source_train: int = 2048
    source_test: int = 256
    target_train: int = 300  # small next to the source, as the paper's target sets
    target_test: int = 256
    render_size: int = 64  # rendered image side (px)
    image_size: int = 64  # network input crop (px)
    width: int = 16  # ResNet-18 base width (paper: 64); fastest per sample on one CPU thread
    batch_size: int = 32
    lr: float = 1.0e-3  # paper: 2.5e-4 over 100-200 epochs
    schedule: str = "cosine"  # learning rate to 0 over each phase (paper: constant)
    teacher_epochs: int = 6
    student_epochs: int = 6
    distill_epochs: int = 2
    #: β rule: paper_product sets β so that α·β·N equals the paper's (training.phases.meta_beta).
    prior_beta_rule: str = "paper_product"
    prior_beta: float = 1.0e-3  # used when prior_beta_rule is "fixed" (the paper's value)
    prior_nonnegative: bool = False  # project φ ≥ 0 after each step (toolkit option, not in the paper)
    target_epochs: int = 16
    target_augment: bool = False  # the target students over-fit without augmentation (the paper's regime)
    #: strength of the plain ℓ2 target baseline (paper Table 2: 1e-3); 0 leaves that run out.
    l2_sigma: float = 1.0e-3
    render_workers: int = 2
    data_workers: int = 1  # one loader process next to ...
    threads: int = 1  # ... one compute thread: 2 cores, no oversubscription
    seed: int = 0


def _render(out: Path, num: int, seed: int, size: int, workers: int, domain: str) -> Path:
    """Render ``num`` samples of the ``source`` or ``target`` domain into ``out`` (resumable)."""
    from render.sampling import SynthConfig
    from render.synth import GenerationJob, generate

    options = dict(domain_options(domain)[0], image_size=size)
    job = GenerationJob(out=out, num=num, seed=seed, shard_size=max(1, min(num, 128)), workers=workers,
                        config=SynthConfig(**options), command=f"training.demo ({domain})")
    generate(job, progress_bar=True, log=lambda message: None)
    return out


def _phase_config(phase: str, out: Path, train_dirs: list[Path], s: DemoSettings, epochs: int, extra: list[str]):
    """The phase's YAML file of ``configs/`` with the demo's sizes as overrides."""
    overrides = [f"out={out}", f"data.train=[{','.join(str(d) for d in train_dirs)}]", "data.val=[]",
                 f"data.image_size={s.image_size}", f"data.workers={s.data_workers}", f"model.width={s.width}",
                 f"optim.lr={s.lr}", f"optim.schedule={s.schedule}", f"optim.batch_size={s.batch_size}",
                 f"optim.epochs={epochs}", f"seed={s.seed}", f"threads={s.threads}", "device=cpu", "log_every=5",
                 *extra]
    return load_config(CONFIGS / f"{phase}.yaml", overrides)


def prior_statistics(prior_path: Path, target_run: Path) -> dict:
    """φ's size and where it is largest, and R(θ; φ) relative to L_REG during target training."""
    phi = read_prior(prior_path)[0]
    flat = torch.cat([v.flatten() for v in phi.values()])
    by_tensor = sorted(((float(v.mean()), name) for name, v in phi.items()), reverse=True)
    log = read_log(target_run / "log.csv")
    reg, l_reg = dict(log.get("loss/regularizer", [])), dict(log.get("loss/reg", []))
    steps = sorted(set(reg) & set(l_reg))
    ratios = [reg[k] / l_reg[k] for k in steps if l_reg[k] > 0]
    return {"elements": int(flat.numel()), "max": float(flat.max()), "min": float(flat.min()),
            "mean": float(flat.mean()), "abs_max": float(flat.abs().max()),
            "positive_fraction": float((flat > 0).float().mean()),
            "negative_fraction": float((flat < 0).float().mean()),
            "largest_mean_tensors": [{"name": name, "mean": value} for value, name in by_tensor[:3]],
            "regularizer_first": reg[steps[0]] if steps else float("nan"),
            "l_reg_first": l_reg[steps[0]] if steps else float("nan"),
            "regularizer_last": reg[steps[-1]] if steps else float("nan"),
            "l_reg_last": l_reg[steps[-1]] if steps else float("nan"),
            "regularizer_over_l_reg_mean": sum(ratios) / len(ratios) if ratios else float("nan")}


def run_demo(out: str | Path, settings: DemoSettings | None = None) -> Path:
    """Run the demo into ``out``; returns the path of ``report.md``."""
    s = settings or DemoSettings()
    out = Path(out)
    timings: dict[str, float] = {}
    load_before = os.getloadavg()
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    # Step 1: data.
    data = out / "data"
    src_train = _render(data / "source_train", s.source_train, s.seed + 1, s.render_size, s.render_workers, "source")
    src_test = _render(data / "source_test", s.source_test, s.seed + 2, s.render_size, s.render_workers, "source")
    tgt_train = _render(data / "target_train", s.target_train, s.seed + 3, s.render_size, s.render_workers, "target")
    tgt_test = _render(data / "target_test", s.target_test, s.seed + 4, s.render_size, s.render_workers, "target")
    lap("render")

    # Step 2: the four phases (the target phase with the learned prior, without, and with plain ℓ2).
    runs = out / "runs"
    teacher = train(_phase_config("teacher", runs / "teacher", [src_train], s, s.teacher_epochs, []))
    lap("teacher")
    student = train(_phase_config("student", runs / "student", [src_train], s, s.student_epochs, []))
    lap("student")
    distill = train(_phase_config("distill", runs / "distill", [src_train], s, s.distill_epochs,
                                  [f"model.init={student.checkpoint}", f"distill.teacher={teacher.checkpoint}",
                                   "prior.learn=true", f"prior.beta={s.prior_beta}",
                                   f"prior.beta_rule={s.prior_beta_rule}",
                                   f"prior.nonnegative={str(s.prior_nonnegative).lower()}"]))
    lap("distill + meta-learned prior")
    control = train(_phase_config("student", runs / "control", [src_train], s, s.distill_epochs,
                                  [f"model.init={student.checkpoint}"]))
    lap("RGB control")
    targets = {PRIOR_LABEL: ["regularizer.kind=prior", f"regularizer.prior={distill.prior}"],
               NONE_LABEL: ["regularizer.kind=none", "regularizer.prior="]}
    if s.l2_sigma > 0:
        targets[L2_LABEL.format(sigma=s.l2_sigma)] = ["regularizer.kind=l2", "regularizer.prior=",
                                                      f"regularizer.sigma={s.l2_sigma}"]
    target_runs = {}
    for (label, extra), name in zip(targets.items(), ("target_prior", "target_none", "target_l2")):
        extra = [*extra, f"data.augment={str(s.target_augment).lower()}"]
        target_runs[label] = train(_phase_config("target", runs / name, [tgt_train], s, s.target_epochs, extra))
        lap(label.replace("target student", "target").replace(", ", " "))

    # Step 3: evaluation (RHD protocol, 0-50 mm) and the report.
    t_min, t_max = PCK_RANGES["rhd"]
    evaluations = [
        ("teacher (depth)", teacher.checkpoint, src_test, "source test"),
        ("student (RGB, L_REG)", student.checkpoint, src_test, "source test"),
        ("RGB control (student + L_REG epochs)", control.checkpoint, src_test, "source test"),
        ("distilled student (RGB, G)", distill.checkpoint, src_test, "source test"),
        ("distilled student, no target training", distill.checkpoint, tgt_test, "target test"),
        *((label, run.checkpoint, tgt_test, "target test") for label, run in target_runs.items()),
    ]
    results = {}
    for index, (label, checkpoint, data_dir, split) in enumerate(evaluations):
        metrics = evaluate_checkpoint(checkpoint, [data_dir], out / "eval" / f"{index}", t_min=t_min, t_max=t_max,
                                      image_size=s.image_size, label=label)
        results[label] = dict(metrics, split=split)
    lap("evaluation")
    prior_stats = prior_statistics(distill.prior, target_runs[PRIOR_LABEL].run_dir)
    prior_stats["beta"] = meta_beta(load_run_config(distill.run_dir), distill.steps)
    machine = {"cpus": os.cpu_count(), "load_average_1min_start": load_before[0],
               "load_average_1min_end": os.getloadavg()[0]}
    return write_report(out, s, results, timings, prior_stats, machine, out / "eval" / "5" / "predictions.png")


def _prior_verdict(results: dict, s: DemoSettings) -> str:
    """One honest sentence on whether the learned prior helped on this run."""
    prior, none = results[PRIOR_LABEL]["epe_mean_mm"], results[NONE_LABEL]["epe_mean_mm"]
    text = (f"On this run the target student with the learned prior reaches {prior:.1f} mm against "
            f"{none:.1f} mm without a regulariser "
            f"({'better' if prior < none else 'worse'} by {abs(prior - none):.1f} mm)")
    l2_label = L2_LABEL.format(sigma=s.l2_sigma)
    if l2_label in results:
        l2 = results[l2_label]["epe_mean_mm"]
        text += f" and {l2:.1f} mm with plain ℓ2 ({'better' if prior < l2 else 'worse'} by {abs(prior - l2):.1f} mm)"
    return text + (". This is one run of one seed at toy scale: it is **not** evidence for or against the "
                   "method, and differences of a few millimetres between these rows are within what a "
                   "different seed alone changes.")


def write_report(out: Path, s: DemoSettings, results: dict, timings: dict, prior_stats: dict, machine: dict,
                 grid: Path) -> Path:
    """``report.md`` + ``metrics.json`` + ``pck.png`` (target curves) + ``pck_source.png`` + ``predictions.png``."""
    target_curves = {k: v for k, v in results.items() if v["split"] == "target test"}
    plot_pck(target_curves, out / "pck.png", title="3D PCK on the shifted target domain")
    plot_pck({k: v for k, v in results.items() if v["split"] == "source test"}, out / "pck_source.png",
             title="3D PCK on the source domain")
    (out / "predictions.png").write_bytes(grid.read_bytes())
    (out / "metrics.json").write_text(json.dumps(
        {"settings": dataclasses.asdict(s), "timings_s": timings, "machine": machine, "prior": prior_stats,
         "results": results}, indent=2) + "\n")
    rows = "\n".join(f"| {label} | {r['split']} | {r['epe_mean_mm']:.1f} | {r['epe_median_mm']:.1f} | {r['auc']:.3f} |"
                     for label, r in results.items())
    time_rows = "\n".join(f"| {name} | {seconds:.0f} |" for name, seconds in timings.items())
    total = sum(timings.values())
    p = prior_stats
    tensors = ", ".join(f"`{t['name']}` ({t['mean']:.2g})" for t in p["largest_mean_tensors"])
    l2_text = (f", one with plain ℓ2 σΣθ² (σ = {s.l2_sigma:g}, the paper's Table 2 baseline)"
               if s.l2_sigma > 0 else "")
    projection_text = ("The projection φ ≥ 0 (not in the paper) keeps R a proper Gaussian prior that only pulls "
                       "weights towards zero; with the paper's unconstrained SGD and a large β, negative φ would "
                       "reward large weights and make R unbounded below." if s.prior_nonnegative else "")
    report = f"""# Demo report: knowledge as priors, at toy scale

**Scale, honestly:** ResNet-18 of width {s.width} (paper: 64) on {s.image_size}×{s.image_size} crops
(paper: 256), {s.source_train} synthetic source images and {s.target_train} target images (paper: tens of
thousands of real and synthetic images), teacher/student/distill/target epochs
{s.teacher_epochs}/{s.student_epochs}/{s.distill_epochs}/{s.target_epochs} (paper: 200/100/100/–), Adam with
lr {s.lr:g} ({s.schedule} schedule; paper 2.5e-4, constant) and batch {s.batch_size}, CPU only, one seed.
These numbers show that every stage runs and is wired correctly; they are
**not** the paper's results and say little about the method's benefit.

Source: synthetic MANO-style renders of the embedded open hand with paired depth. Target: the
same generator with a domain shift ({domain_options("target")[1]}), RGB only for training.
Three fresh target students are trained on it: one regularised by the learned prior
R(θ; φ) = Σφθ² (Eq. 10, Algorithm 2), one without a regulariser{l2_text}. Errors: mean 3D joint
error after de-normalising with the ground-truth root and scale (the paper's protocol), PCK over
0–50 mm in 20 steps, AUC normalised by the range.

| network | evaluated on | EPE mean (mm) | EPE median (mm) | AUC 0–50 mm |
|---|---|---|---|---|
{rows}

{_prior_verdict(results, s)}

## The learned prior φ

φ has {p['elements']} weights, learned by SGD with **β = {p['beta']:.3g}** (`prior.beta_rule={s.prior_beta_rule}`)
for {s.distill_epochs} distillation epochs{", projected onto φ ≥ 0 after every step (`prior.nonnegative`)" if s.prior_nonnegative else ""}:
max φ = {p['max']:.3g}, mean φ = {p['mean']:.3g}, {100 * p['positive_fraction']:.0f}% positive,
{100 * p['negative_fraction']:.0f}% negative. The largest mean φ is on {tensors}.

The φ-gradient of the meta step is −2αθ ⊙ ∂G/∂θ'' (α = the student's learning rate), so φ moves
about as far as β·Σ_t α_t allows; `paper_product` sets β so that this equals the paper's
2.5e-4 · 1e-3 · 285k ≈ 0.071 on the demo's few hundred steps. φ then has the paper's scale — and at
that scale R(θ; φ) is orders of magnitude below L_REG, so "with prior" and "without" differ only by
training noise; `docs/experiments.md` measures this over 3 seeds, with a 1000× larger φ and its
shuffled and magnitude-matched controls.
{projection_text}

Size of the regulariser in the target run with the prior: R = {p['regularizer_first']:.3g} against
L_REG = {p['l_reg_first']:.3g} at the first logged step, R = {p['regularizer_last']:.3g} against
L_REG = {p['l_reg_last']:.3g} at the end; R / L_REG averages {p['regularizer_over_l_reg_mean']:.2f} over the run.

![PCK on the target domain](pck.png)

![PCK on the source domain](pck_source.png)

Predicted (red) vs. true (green) skeletons of the target student trained with the learned prior:

![predictions](predictions.png)

## Time

{machine['cpus']} CPU cores; 1-minute load average {machine['load_average_1min_start']:.2f} at the start and
{machine['load_average_1min_end']:.2f} at the end of the run (other processes share the machine's cores).

| stage | seconds |
|---|---|
{time_rows}
| **total** | **{total:.0f}** |

Reproduce: `make demo` (or `python tools/demo.py --out demo_output`). Each network's run
directory (config.yaml, log.csv, TensorBoard scalars, checkpoints) is under `runs/`, each
evaluation (metrics.json with per-joint errors, pck.png, predictions.png) under `eval/`.
"""
    path = out / "report.md"
    path.write_text(report)
    return path
