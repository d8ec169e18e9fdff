"""The paper's orderings checked on an experiment's ``results.json``: does each hold beyond one std?

An ordering ``a < b`` (lower EPE is better) *holds* when ``mean(a) + std(a) < mean(b) − std(b)``
(the one-standard-deviation bands of the seeds do not overlap) — the criterion the experiments
issue asks for. It is *consistent* when ``mean(a) < mean(b)`` without that margin, and reversed
otherwise. A paired comparison is reported beside it: arms of the same seed share the source
networks and the initialisation, so the per-seed differences ``b − a`` remove the variance they
share; their mean and standard error (and how many seeds agree) say how sure the ordering is.

:data:`PAPER_ORDERINGS` lists the claims of the paper's Tables 1 and 2 by arm names of the
synthetic analogues (``training.experiments.catalog``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: experiment → [(better arm, worse arm, what the paper claims)], EPE of the better one lower.
PAPER_ORDERINGS: dict[str, list[tuple[str, str, str]]] = {
    "synth-table1": [
        ("depth_teacher", "kd_act_att", "Depth < KD (Table 1: 13.60 vs 22.19 mm)"),
        ("kd_act_att", "rgb_control", "KD < RGB at equal epochs (Table 1: 22.19 vs 24.68 mm)"),
        ("kd_act", "rgb_control", "KD with L_ACT < RGB (Table 1: 23.41 vs 24.68 mm)"),
        ("kd_act_att", "kd_act", "L_ACT + L_ATT < L_ACT (Table 1: 22.19 vs 23.41 mm)"),
        ("kd_att", "rgb_control", "KD with L_ATT only < RGB (not in the paper)"),
        ("rgb_control", "rgb_student", "extra L_REG epochs help (control, not in the paper)"),
        ("kd_act_att_weak", "rgb_control", "KD with 0.1·L_DIST < RGB (ablation, not in the paper)"),
        ("kd_act_att_weak", "kd_act_att", "a weaker L_DIST distils better (ablation, not in the paper)"),
    ],
    "synth-table2": [
        ("target_prior", "target_none", "R < none (Table 2: 8.18 vs 15.67 mm)"),
        ("target_prior", "target_l2_1e-03", "R < ℓ2 σ=1e-3 (8.18 vs 12.28 mm)"),
        ("target_prior", "target_l2_1e-05", "R < ℓ2 σ=1e-5 (8.18 vs 12.02 mm)"),
        ("target_prior", "target_l1_1e-04", "R < ℓ1 σ=1e-4 (8.18 vs 11.41 mm)"),
        ("target_prior", "target_l1_1e-06", "R < ℓ1 σ=1e-6 (8.18 vs 11.82 mm)"),
        ("target_prior_l1", "target_none", "R ℓ1-weighted < none (8.86 vs 15.67 mm)"),
        ("target_l2_1e-03", "target_none", "ℓ2 σ=1e-3 < none (12.28 vs 15.67 mm)"),
        ("target_l1_1e-04", "target_none", "ℓ1 σ=1e-4 < none (11.41 vs 15.67 mm)"),
        ("target_prior", "target_prior_shuffled", "R < shuffled R (control, not in the paper)"),
        ("target_prior", "target_l2_matched", "R < magnitude-matched ℓ2 (control, not in the paper)"),
        ("target_prior_x1000", "target_none", "ablation: R with φ × 1000 (β × 1000) < none"),
        ("target_prior_x1000", "target_prior_x1000_shuffled", "ablation: R (φ × 1000) < its shuffled control"),
        ("target_prior_x1000", "target_l2_matched_x1000", "ablation: R (φ × 1000) < its matched ℓ2"),
        ("target_prior_x1000_decoupled", "target_none", "ablation: decoupled R (φ × 1000) < none"),
        ("target_prior_x1000_positive", "target_none", "ablation: R with max(φ × 1000, 0) < none"),
        ("target_prior_x1000_positive", "target_prior_x1000", "ablation: φ ≥ 0 beats the literal two-signed φ"),
    ],
}


def _by_seed(arm: Mapping) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(arm["seeds"], arm["epe_mean_mm"])}


def compare(better: Mapping, worse: Mapping) -> dict:
    """The verdict on ``EPE(better) < EPE(worse)`` from two arms of ``results.json``."""
    a, b = _by_seed(better), _by_seed(worse)
    va, vb = np.array(list(a.values())), np.array(list(b.values()))
    mean_a, mean_b = float(va.mean()), float(vb.mean())
    std_a = float(va.std(ddof=1)) if len(va) > 1 else 0.0
    std_b = float(vb.std(ddof=1)) if len(vb) > 1 else 0.0
    if mean_a + std_a < mean_b - std_b:
        verdict = "holds"
    elif mean_a < mean_b:
        verdict = "consistent, within 1 std"
    else:
        verdict = "reversed"
    common = sorted(set(a) & set(b))
    diffs = np.array([b[s] - a[s] for s in common])
    paired = {"seeds": len(common), "mean_mm": float(diffs.mean()) if len(diffs) else math.nan,
              "se_mm": float(diffs.std(ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan,
              "seeds_agreeing": int((diffs > 0).sum())}
    return {"better": better["name"], "worse": worse["name"], "mean_mm": [mean_a, mean_b], "std_mm": [std_a, std_b],
            "difference_mm": mean_b - mean_a, "verdict": verdict, "paired": paired}


def check_orderings(results: Mapping, orderings: Sequence[tuple[str, str, str]] | None = None) -> list[dict]:
    """Every ordering of ``orderings`` (default :data:`PAPER_ORDERINGS` of the experiment) whose arms exist."""
    arms = {arm["name"]: arm for arm in results["arms"]}
    wanted = PAPER_ORDERINGS.get(results["experiment"], []) if orderings is None else orderings
    checked = []
    for better, worse, claim in wanted:
        if better in arms and worse in arms:
            checked.append({"claim": claim, **compare(arms[better], arms[worse])})
    return checked


def orderings_table(checked: Sequence[Mapping]) -> str:
    """Markdown table of :func:`check_orderings`."""
    lines = ["| claim | better arm (mean ± std) | worse arm (mean ± std) | Δ mm | paired Δ ± se (seeds agreeing) | verdict |",
             "|---|---|---|---|---|---|"]
    for c in checked:
        p = c["paired"]
        lines.append(f"| {c['claim']} | {c['better']} {c['mean_mm'][0]:.2f} ± {c['std_mm'][0]:.2f} | "
                     f"{c['worse']} {c['mean_mm'][1]:.2f} ± {c['std_mm'][1]:.2f} | {c['difference_mm']:+.2f} | "
                     f"{p['mean_mm']:+.2f} ± {p['se_mm']:.2f} ({p['seeds_agreeing']}/{p['seeds']}) | {c['verdict']} |")
    return "\n".join(lines)
