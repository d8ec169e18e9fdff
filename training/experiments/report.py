"""Aggregate an experiment's run directories: ``results.json``, ``results.md``, ``results.png``, ``curves.png``.

``results.json`` follows the contract of ``docs`` (interfaces, "Experiments"):
``{"experiment", "quick", "arms": [{"name", "seeds", "epe_mean_mm", "auc", "auc_range_mm"}, …]}``, one
value per seed in ``seeds``' order, plus: ``epe_median_mm`` and ``pa_epe_mean_mm`` (Procrustes-aligned,
when the evaluation wrote it) per seed, ``summary`` (mean and sample standard deviation, ddof = 1, of
each metric over seeds), the arm's note, test set and declared overrides, wall time per seed, data
sizes, the settings table and the arms this checkout could not run.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from datasets.atomic import atomic_write, write_text_atomic
from training.experiments.runner import Plan
from training.experiments.spec import EvalArm, RenderData, TrainArm

METRICS = ("epe_mean_mm", "epe_median_mm", "pa_epe_mean_mm", "auc")
CURVE = "loss/reg"  # L_REG: logged by every phase, so all arms share one scale


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof = 1; ``None`` for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"mean": None, "std": None, "n": 0}
    std = float(array.std(ddof=1)) if array.size > 1 else None
    return {"mean": float(array.mean()), "std": std, "n": int(array.size)}


def detectable_difference(pooled_std: float, seeds: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest difference of two arms' means that ``seeds`` seeds per arm resolve (two-sided two-sample t-test).

    ``(t_{1−α/2, 2n−2} + t_{power, 2n−2}) · s · √(2/n)`` with ``s`` the pooled seed-to-seed standard
    deviation — the usual normal-approximation sample-size formula with t quantiles; n = 3, α = 0.05,
    power 0.8 gives 3.03·s.
    """
    if seeds < 2 or pooled_std is None:
        return None
    from scipy.stats import t

    dof = 2 * seeds - 2
    return float((t.ppf(1 - alpha / 2, dof) + t.ppf(power, dof)) * pooled_std * math.sqrt(2.0 / seeds))


def _power(arms: list[dict], seeds: int) -> dict:
    """Pooled seed-to-seed std of EPE over the arms (root mean variance) and the difference it lets us detect."""
    variances = [a["summary"]["epe_mean_mm"]["std"] ** 2 for a in arms
                 if a["summary"].get("epe_mean_mm", {}).get("std") is not None]
    pooled = math.sqrt(sum(variances) / len(variances)) if variances else None
    return {"pooled_std_epe_mm": pooled, "seeds": seeds, "alpha": 0.05, "power": 0.8,
            "detectable_difference_epe_mm": detectable_difference(pooled, seeds) if pooled is not None else None}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _arm_result(plan: Plan, arm) -> dict:
    """One arm's entry of ``results.json``: the contract's per-seed lists, then summaries and provenance."""
    seeds, per_metric, wall, samples = [], {m: [] for m in METRICS}, [], None
    for seed in plan.seeds:
        run_dir = plan.run_dir(arm.name, seed)
        metrics = _read_json(run_dir / "eval" / "metrics.json")
        if metrics is None:
            continue
        seeds.append(seed)
        for name in METRICS:
            if name in metrics:
                per_metric[name].append(float(metrics[name]))
        record = _read_json(run_dir / "experiment.json") or {}
        wall.append(sum(float(v) for k, v in record.items() if k.endswith("_s")))
        samples = metrics.get("num_samples", samples)
    result = {"name": arm.name, "seeds": seeds, "epe_mean_mm": per_metric["epe_mean_mm"], "auc": per_metric["auc"],
              "auc_range_mm": list(arm.auc_range), "epe_median_mm": per_metric["epe_median_mm"]}
    if seeds and len(per_metric["pa_epe_mean_mm"]) == len(seeds):
        result["pa_epe_mean_mm"] = per_metric["pa_epe_mean_mm"]
    result["summary"] = {name: mean_std(values) for name, values in per_metric.items()
                         if values and len(values) == len(seeds)}
    if arm.name in plan.experiment.paper:
        result["paper_epe_mm"] = plan.experiment.paper[arm.name]
    result.update(note=arm.note, evaluated_on=arm.evaluate_on, test_samples=samples, wall_s=wall,
                  missing_seeds=[s for s in plan.seeds if s not in seeds])
    if isinstance(arm, TrainArm):
        result.update(phase=arm.config, overrides=list(arm.overrides))
    elif isinstance(arm, EvalArm):
        result.update(phase="evaluation only", model=arm.model)
    return result


def _data_sizes(plan: Plan) -> dict:
    sizes = {}
    for step in plan.experiment.data:
        path = plan.data_path(step.name)
        manifest = _read_json(path / "manifest.json") or {}
        sizes[step.name] = {"path": str(path), "num_samples": manifest.get("num_samples"),
                            **({"domain": step.domain, "image_size": step.image_size, "seed": step.seed}
                               if isinstance(step, RenderData) else {})}
    return sizes


def _phi_statistics(plan: Plan) -> dict:
    """Per-layer-type statistics of every prior file the experiment wrote (learned φ and the controls), per seed
    (:func:`training.prior_controls.prior_file_statistics`: mean, std, min, max, fraction negative, Σφ)."""
    from training.prior_controls import prior_file_statistics

    out = {}
    for arm in plan.experiment.arms:
        if arm.name in plan.unavailable or isinstance(arm, EvalArm):
            continue
        files = {s: p for s in plan.seeds if (p := plan.run_dir(arm.name, s) / "prior.pt").is_file()}
        if files:
            out[arm.name] = {"seeds": list(files), "statistics": [prior_file_statistics(p) for p in files.values()]}
    return out


def collect(plan: Plan, wall_s: float | None = None) -> dict:
    """The results of every reported arm, from the run directories (nothing is recomputed)."""
    from training.experiments.orderings import check_orderings

    arms = [_arm_result(plan, a) for a in plan.experiment.reported_arms if a.name not in plan.unavailable]
    complete = [a for a in arms if a["epe_mean_mm"]]
    return {"experiment": plan.name, "quick": plan.options.quick, "arms": arms,
            "power": _power(arms, len(plan.seeds)), "phi": _phi_statistics(plan),
            "orderings": check_orderings({"experiment": plan.name, "arms": complete}),
            "description": plan.experiment.description, "seeds_requested": plan.seeds,
            "unavailable": [{"name": n, "reason": r} for n, r in plan.unavailable.items()],
            "data": _data_sizes(plan), "settings": plan.experiment.settings,
            "common_overrides": list(plan.experiment.common), "wall_s": wall_s}


def _format(stats: dict | None, digits: int) -> str:
    if not stats or stats["mean"] is None:
        return "–"
    text = f"{stats['mean']:.{digits}f}"
    return text + (f" ± {stats['std']:.{digits}f}" if stats["std"] is not None else "")


def _cell(text) -> str:
    return str(text).replace("|", "\\|")  # a literal bar (|θ|) must not end a table cell


def markdown(results: dict) -> str:
    """``results.md``: mean ± std over seeds and the per-seed values of every arm, then the settings."""
    paper = any("paper_epe_mm" in a for a in results["arms"])
    lines = [f"# {results['experiment']}{' (quick)' if results['quick'] else ''}", "", results["description"], "",
             f"Seeds {results['seeds_requested']}; ± is the sample standard deviation over seeds (ddof = 1). EPE is "
             "the mean 3D joint error (mm) after de-normalising with the ground-truth root and scale; PA-EPE after "
             "Procrustes alignment (when evaluated); AUC over the PCK range given per arm.", "",
             "| arm | what | test set | seeds | EPE mean (mm) | EPE median (mm) | PA-EPE (mm) | AUC (range mm) "
             f"| EPE per seed | wall s / seed |{' paper EPE (mm) |' if paper else ''}",
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if paper else "")]
    for arm in results["arms"]:
        s = arm["summary"]
        per_seed = ", ".join(f"{v:.2f}" for v in arm["epe_mean_mm"]) or "–"
        wall = f"{np.mean(arm['wall_s']):.0f}" if arm["wall_s"] else "–"
        lo, hi = arm["auc_range_mm"]
        lines.append(f"| {arm['name']} | {_cell(arm['note'])} | {arm['evaluated_on']} | {len(arm['seeds'])} "
                     f"| {_format(s.get('epe_mean_mm'), 2)} | {_format(s.get('epe_median_mm'), 2)} "
                     f"| {_format(s.get('pa_epe_mean_mm'), 2)} | {_format(s.get('auc'), 3)} ({lo:g}–{hi:g}) "
                     f"| {per_seed} | {wall} |" + (f" {arm.get('paper_epe_mm', '–')} |" if paper else ""))
    power = results["power"]
    if power["detectable_difference_epe_mm"] is not None:
        lines += ["", f"Pooled seed-to-seed std of EPE {power['pooled_std_epe_mm']:.2f} mm: with {power['seeds']} seeds "
                  f"per arm, a difference of {power['detectable_difference_epe_mm']:.2f} mm between two arms is "
                  f"detected with power {power['power']:g} at α = {power['alpha']:g} (two-sided t-test)."]
    if results.get("orderings"):
        from training.experiments.orderings import orderings_table

        lines += ["", "## The paper's orderings", "", "Lower EPE is better. *holds*: the 1-std bands of the seeds "
                  "do not overlap; *consistent*: the means are ordered, within 1 std; paired Δ: mean ± standard "
                  "error of the per-seed differences (same seed = same source networks and initialisation).", "",
                  orderings_table(results["orderings"])]
    if results["unavailable"]:
        lines += ["", "Not run in this checkout:", ""]
        lines += [f"- `{u['name']}`: {u['reason']}" for u in results["unavailable"]]
    incomplete = [a for a in results["arms"] if a["missing_seeds"]]
    if incomplete:
        lines += ["", "Seeds without results (not finished or failed): "
                  + "; ".join(f"`{a['name']}` {a['missing_seeds']}" for a in incomplete)]
    if results["phi"]:
        lines += ["", "## The priors φ", "", "Per layer type, mean over seeds (per-seed values in `results.json`).", "",
                  "| prior file of | layer type | elements | mean φ | min φ | max φ | fraction φ < 0 | Σφ |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm, entry in results["phi"].items():
            for kind in entry["statistics"][0]:
                rows = [s[kind] for s in entry["statistics"] if kind in s]
                mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mean", "min", "max", "fraction_negative",
                                                                          "sum")}
                lines.append(f"| {arm} | {kind} | {rows[0]['count']} | {mean['mean']:.3g} | {mean['min']:.3g} "
                             f"| {mean['max']:.3g} | {mean['fraction_negative']:.2f} | {mean['sum']:.3g} |")
    lines += ["", "## Data", "", "| step | samples | details |", "|---|---|---|"]
    for name, info in results["data"].items():
        details = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("path", "num_samples"))
        lines.append(f"| {name} | {info['num_samples']} | {details or info['path']} |")
    lines += ["", "## Settings", "", "| key | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in results["settings"].items()]
    lines += [f"| common overrides | {' '.join(results['common_overrides']) or '–'} |"]
    if results["wall_s"] is not None:
        lines += [f"| wall time of this invocation (s) | {results['wall_s']:.0f} |"]
    lines += ["", "Each arm's overrides (on top of `configs/<phase>.yaml` and the common overrides) are in "
              "`results.json`; every run directory is `runs/<arm>/seed<k>` with its `config.yaml` and `log.csv`.", ""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_write(path) as temporary:
        fig.savefig(temporary, format="png")
    plt.close(fig)
    return path


def plot_results(results: dict, path: Path) -> Path:
    """Horizontal bars of mean EPE per arm with ±1 std error bars and each seed as a dot."""
    plt = _pyplot()
    arms = [a for a in results["arms"] if a["epe_mean_mm"]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(arms)) + 1.2), dpi=100)
    tests = sorted({a["evaluated_on"] for a in arms})
    colours = {t: f"C{i}" for i, t in enumerate(tests)}
    for row, arm in enumerate(arms):
        stats = arm["summary"]["epe_mean_mm"]
        ax.barh(row, stats["mean"], xerr=stats["std"] or 0.0, color=colours[arm["evaluated_on"]], alpha=0.7,
                capsize=3, label=arm["evaluated_on"])
        ax.plot(arm["epe_mean_mm"], [row] * len(arm["epe_mean_mm"]), "k.", markersize=4)
    ax.set_yticks(range(len(arms)), [a["name"] for a in arms], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("EPE mean (mm), bars ±1 std over seeds, dots = seeds")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), [f"test: {k}" for k in unique], fontsize=7, loc="lower right")
    ax.set_title(f"{results['experiment']}{' (quick)' if results['quick'] else ''}")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def training_curve(log_csv: Path, name: str = CURVE) -> dict[float, float]:
    """Scalar ``name`` of one ``log.csv`` against the epoch (``step / steps per epoch``; fractional)."""
    points: dict[int, float] = {}
    last_epoch = 0
    with open(log_csv, newline="") as f:
        for row in csv.DictReader(f):
            last_epoch = max(last_epoch, int(row["epoch"]))
            if row["name"] == name and math.isfinite(float(row["value"])):
                points[int(row["step"])] = float(row["value"])
    if not points:
        return {}
    # the last logged step ends the last epoch (the trainer logs step == total), so this is the epoch length
    per_epoch = max(points) / (last_epoch + 1)
    return {step / per_epoch: value for step, value in sorted(points.items())}


def plot_curves(plan: Plan, path: Path) -> Path | None:
    """Training curves: L_REG against the epoch (mean over seeds, band ±1 std), one panel per phase."""
    plt = _pyplot()
    by_phase: dict[str, list] = {}
    for arm in plan.experiment.arms:
        if isinstance(arm, TrainArm) and arm.name not in plan.unavailable:
            curves = [training_curve(p) for s in plan.seeds if (p := plan.run_dir(arm.name, s) / "log.csv").is_file()]
            curves = [c for c in curves if c]
            if curves:
                by_phase.setdefault(arm.config, []).append((arm.name, curves))
    if not by_phase:
        return None
    fig, axes = plt.subplots(1, len(by_phase), figsize=(4.2 * len(by_phase), 3.6), dpi=100, squeeze=False)
    for ax, (phase, entries) in zip(axes[0], by_phase.items()):
        for name, curves in entries:
            epochs = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[e] for e in epochs] for c in curves])
            mean = values.mean(axis=0)
            ax.plot(epochs, mean, marker=".", markersize=3, label=name)
            if len(curves) > 1:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("L_REG (training batches)")
        ax.set_title(f"phase {phase}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{plan.name}: training curves (mean over seeds, ±1 std)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def write_results(plan: Plan, wall_s: float | None = None) -> Path:
    """Write ``results.json``, ``results.md``, ``results.png`` and ``curves.png`` into the experiment's ``out``."""
    out = plan.options.out
    out.mkdir(parents=True, exist_ok=True)
    results = collect(plan, wall_s)
    path = write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown(results))
    if any(a["epe_mean_mm"] for a in results["arms"]):
        plot_results(results, out / "results.png")
    plot_curves(plan, out / "curves.png")
    return path
