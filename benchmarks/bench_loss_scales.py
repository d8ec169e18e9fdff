"""Gradient-norm balance of the distillation objective's terms, and a finite-difference check of
the φ-gradient, in a benchmark setting (real shards, trained networks).

For each student checkpoint given (e.g. a random initialisation, the RGB student that
distillation starts from, a distilled student), on a few fixed batches of ``--data``:

- the values of ``L_REG`` (reductions ``mean`` and Eq. 1's ``sum``), ``L_ACT`` and ``λ·L_ATT``
  (normalisations ``literal`` and ``resolution``, ``training.losses``);
- ``‖∇_θ term‖`` of each, and their ratios to ``‖∇_θ L_REG‖`` — under Adam the update follows the
  largest gradient, so these ratios decide what distillation does;
- with ``--check-phi`` the efficient φ-gradient (Algorithm 3) against the central finite
  difference of ``G(θ̈(φ))`` along a random direction of φ, in float64, at the run's α.

Example::

    python benchmarks/bench_loss_scales.py --data D/source_test --teacher D/runs/depth/seed0/model.pt \
        --student init= --student rgb=D/runs/rgb/seed0/model.pt --size 64 \
        --out docs/loss_scales.md --json docs/loss_scales.json --check-phi
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.results_json import JSON_HELP, environment, write_json  # noqa: E402
from datasets.atomic import write_text_atomic  # noqa: E402
from training.checkpoint import load_checkpoint, load_model_weights  # noqa: E402
from training.data import evaluation_loader  # noqa: E402
from training.losses import LossTerms, activation_loss, attention_loss, regression_loss, teacher_features  # noqa: E402
from training.meta import MetaPriorLearner  # noqa: E402
from training.phases import build_network  # noqa: E402


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="shard directory with RGB and depth")
    parser.add_argument("--teacher", required=True, help="depth teacher checkpoint")
    parser.add_argument("--student", action="append", default=[], metavar="LABEL=CKPT",
                        help="student checkpoint to measure (an empty path = a fresh initialisation of the "
                             "teacher's architecture with --seed); repeatable")
    parser.add_argument("--size", type=int, default=64, help="input crop size")
    parser.add_argument("--batches", type=int, default=4, help="batches of 32 averaged")
    parser.add_argument("--lambda-att", type=float, default=1e3)
    parser.add_argument("--alpha", type=float, default=1e-3, help="inner step α of the φ-gradient check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-phi", action="store_true", help="finite-difference check of the φ-gradient")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument("--json", default=None, metavar="PATH", help=JSON_HELP)
    return parser.parse_args(argv)


def _grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))


def term_balance(student, teacher, batches, lambda_att: float) -> dict[str, dict[str, float]]:
    """Mean over batches of each term's value and gradient norm (student in train mode, as in training)."""
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    sums: dict[str, dict[str, float]] = {}
    for batch in batches:
        t_feats = teacher_features(teacher, batch["depth_input"])
        out = student(batch["rgb_input"])
        terms = {
            "L_REG (mean)": regression_loss(out["pred"], batch["target"], "mean"),
            "L_REG (sum, Eq. 1)": regression_loss(out["pred"], batch["target"], "sum"),
            "L_ACT": activation_loss(out["features"]["layer4"], t_feats["layer4"]),
            "λ·L_ATT (literal)": lambda_att * attention_loss(out["features"], t_feats, normalization="literal"),
            "λ·L_ATT (resolution)": lambda_att * attention_loss(out["features"], t_feats, normalization="resolution"),
        }
        for name, value in terms.items():
            entry = sums.setdefault(name, {"value": 0.0, "grad_norm": 0.0})
            entry["value"] += float(value.detach()) / len(batches)
            entry["grad_norm"] += _grad_norm(value, params) / len(batches)
    reference = sums["L_REG (mean)"]["grad_norm"]
    for entry in sums.values():
        entry["grad_ratio_to_l_reg_mean"] = entry["grad_norm"] / reference if reference else float("inf")
    return sums


def phi_gradient_check(student, teacher, batch, alpha: float, lambda_att: float, seed: int) -> dict[str, float]:
    """Directional derivative of G(θ̈(φ)) along a random unit direction u of φ: the efficient
    φ-gradient's ``<∇_φ G, u>`` against ``(G(φ + εu) − G(φ − εu)) / 2ε``, all in float64, at φ
    drawn around 0 (as at the start of meta-learning)."""
    student = copy.deepcopy(student).double().train()
    teacher = copy.deepcopy(teacher).double().eval()
    batch = {k: v.double() for k, v in batch.items() if k in ("rgb_input", "depth_input", "target")}
    g = torch.Generator().manual_seed(seed)
    names = [n for n, _ in student.named_parameters()]
    phi = {n: 1e-2 * torch.randn(p.shape, generator=g, dtype=torch.float64) for n, p in student.named_parameters()}
    direction = {n: torch.randn(p.shape, generator=g, dtype=torch.float64) for n, p in student.named_parameters()}
    norm = torch.sqrt(sum(d.pow(2).sum() for d in direction.values()))
    direction = {n: d / norm for n, d in direction.items()}
    terms = LossTerms(attention_weight=lambda_att, attention_normalization="resolution")
    buffers = {n: b.clone() for n, b in student.named_buffers()}

    def learner(values):
        student.load_state_dict({**student.state_dict(), **buffers}, strict=False)
        return MetaPriorLearner(student, teacher, values, alpha=alpha, inner_steps=1, algorithm="efficient",
                                terms=terms)

    _, phi_grads, losses = learner(phi).meta_gradients(batch["rgb_input"], batch["depth_input"], batch["target"])
    analytic = float(sum((phi_grads[n] * direction[n]).sum() for n in names))
    # G is nearly linear in φ (it enters through α·φ·θ), so truncation error is negligible even at this ε, while
    # G's float64 rounding noise (~1e-14 after a network's worth of operations) divided by 2ε must stay far
    # below derivatives of ~1e-5: at 1e-3·max|φ| it was already 1e-5 of them.
    eps = 1e-2 * max(abs(float(v.abs().max())) for v in phi.values())

    def g_virtual(sign):
        values = {n: phi[n] + sign * eps * direction[n] for n in names}
        return learner(values).meta_gradients(batch["rgb_input"], batch["depth_input"], batch["target"])[2]["g_virtual"]

    numeric = (g_virtual(+1) - g_virtual(-1)) / (2 * eps)
    return {"analytic": analytic, "finite_difference": numeric, "epsilon": eps,
            "relative_error": abs(analytic - numeric) / max(abs(numeric), 1e-300), "alpha": alpha}


def _load(path: str, like: dict | None = None, seed: int = 0):
    if not path:
        torch.manual_seed(seed)
        return build_network({**like, "in_channels": 3, "modality": "rgb"})
    state = load_checkpoint(path)
    network = build_network(state["model_info"])
    load_model_weights(network, state["model"], path)
    return network


def main(argv=None) -> int:
    args = _parse(argv)
    load_before = os.getloadavg()
    torch.manual_seed(args.seed)
    teacher_state = load_checkpoint(args.teacher)
    teacher = _load(args.teacher)
    loader = evaluation_loader([args.data], image_size=args.size, batch_size=32)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) >= args.batches:
            break
    results = {}
    for spec in args.student or ["init="]:
        label, _, path = spec.partition("=")
        student = _load(path, teacher_state["model_info"], args.seed)
        entry = {"checkpoint": path or f"fresh initialisation (seed {args.seed})",
                 "terms": term_balance(student, teacher, batches, args.lambda_att)}
        if args.check_phi:
            entry["phi_gradient_check"] = phi_gradient_check(student, teacher, batches[0], args.alpha,
                                                             args.lambda_att, args.seed)
        results[label] = entry
        print(label, entry, flush=True)
    lines = [f"# Loss scales: gradient-norm balance of G's terms ({args.size}-px crops)", "",
             f"`python benchmarks/bench_loss_scales.py --data {args.data} --teacher {args.teacher} "
             + " ".join(f"--student {s}" for s in args.student) + f" --size {args.size}"
             + (" --check-phi" if args.check_phi else "") + "`", "",
             f"Teacher `{args.teacher}`; mean over {len(batches)} batches of 32 of `{args.data}`; student in "
             f"train mode; λ = {args.lambda_att:g}. Ratio = ‖∇θ term‖ / ‖∇θ L_REG (mean)‖.", "",
             "| student | term | value | ‖∇θ‖ | ratio |", "|---|---|---|---|---|"]
    for label, entry in results.items():
        for name, t in entry["terms"].items():
            lines.append(f"| {label} | {name} | {t['value']:.4g} | {t['grad_norm']:.4g} | "
                         f"{t['grad_ratio_to_l_reg_mean']:.3g} |")
    if args.check_phi:
        lines += ["", "φ-gradient (efficient, Algorithm 3, l = 1) against central finite differences of "
                  "G(θ̈(φ)) along a random unit direction, float64, λ-normalisation `resolution`:", "",
                  "| student | α | analytic | finite difference | relative error |", "|---|---|---|---|---|"]
        for label, entry in results.items():
            c = entry["phi_gradient_check"]
            lines.append(f"| {label} | {c['alpha']:g} | {c['analytic']:.6g} | {c['finite_difference']:.6g} | "
                         f"{c['relative_error']:.2e} |")
    if args.out:
        write_text_atomic(args.out, "\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    if args.json:
        write_json(args.json, {"students": results, "settings": vars(args), "environment": environment(load_before)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
