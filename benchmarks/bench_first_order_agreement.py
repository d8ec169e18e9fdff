"""Agreement of the first-order phi-gradient with the exact one (Algorithm 1) along distillation training.

A depth teacher is trained briefly on the set (L_REG), then a student is distilled from it with
Adam and phi is meta-learned with the exact algorithm, as ``prior.algorithm=exact`` trains it. At
every step both phi-gradients are computed at the same theta and batch (``training.meta``,
``MetaPriorLearner.meta_gradients``; the BatchNorm statistics are restored between the two so
that the real statistics advance once per step) and compared: cosine similarity and relative
error ``||g_first_order - g_exact|| / ||g_exact||``. A second prior, phi_fo, is learned beside
phi from the first-order gradients alone along the same theta trajectory; the table also
compares the two learned priors. Both gradients come from the same theta-gradient grad G(theta).

The data is a shard directory, e.g. rendered with::

    python tools/render_synth.py --out /tmp/fo_synth --num 512 --size 128 --shard-size 256
    python benchmarks/bench_first_order_agreement.py --data /tmp/fo_synth --size 64 --steps 300 \\
        --out docs/step_benchmark.md --json docs/first_order_agreement.json

JSON: ``rows`` (one per reported step: ``step``, ``g``, ``cosine``, ``relative_error``,
``phi_cosine``, ``phi_relative_error``), ``summary`` (median / worst over every step),
``settings``, ``environment``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.results_json import JSON_HELP, publish  # noqa: E402
from models import build_model  # noqa: E402
from training.data import evaluation_loader  # noqa: E402
from training.losses import regression_loss  # noqa: E402
from training.meta import MetaPriorLearner  # noqa: E402
from training.prior import init_phi  # noqa: E402


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, nargs="+", help="shard directories (training set)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=int, default=16, help="base channels (paper: 64)")
    parser.add_argument("--size", type=int, default=64, help="crop size (paper: 256)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="distillation steps")
    parser.add_argument("--teacher-steps", type=int, default=100, help="L_REG steps of the depth teacher first")
    parser.add_argument("--every", type=int, default=25, help="report a row every this many steps")
    parser.add_argument("--lr", type=float, default=2.5e-4, help="Adam learning rate (paper: 2.5e-4)")
    parser.add_argument("--alpha", type=float, default=2.5e-4, help="inner step size (paper: the learning rate)")
    parser.add_argument("--beta", type=float, default=1e-3, help="SGD step of phi (paper: 1e-3)")
    parser.add_argument("--prior", default="l2", choices=("l2", "l1"))
    parser.add_argument("--inner-steps", type=int, default=1, help="l")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--out", default=None, help="markdown file to append the table to")
    parser.add_argument("--json", default=None, metavar="PATH", help=JSON_HELP)
    return parser.parse_args(argv)


def load_set(directories, size: int) -> dict[str, torch.Tensor]:
    """The whole set in memory as network inputs: rgb_input, depth_input, target (evaluation crop)."""
    parts = {"rgb_input": [], "depth_input": [], "target": []}
    for batch in evaluation_loader(directories, image_size=size, batch_size=64):
        for key in parts:
            parts[key].append(batch[key])
    return {key: torch.cat(values) for key, values in parts.items()}


def batches(data: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator):
    """Endless shuffled batches (rgb, depth, target), dropping the last incomplete one of each epoch."""
    count = len(data["target"])
    if count < batch_size:
        raise ValueError(f"the data holds {count} samples, fewer than one batch of {batch_size}")
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            yield data["rgb_input"][index], data["depth_input"][index], data["target"][index]


def train_teacher(teacher, data, args, generator) -> float:
    """A few Adam steps of L_REG on depth so that L_DIST distils a network that knows the task."""
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    teacher.train()
    loss = float("nan")
    stream = batches(data, args.batch, generator)
    for _ in range(args.teacher_steps):
        _, depth, target = next(stream)
        optimizer.zero_grad(set_to_none=True)
        value = regression_loss(teacher(depth)["pred"], target)
        value.backward()
        optimizer.step()
        loss = value.item()
    teacher.eval().requires_grad_(False)
    return loss


def _flat(mapping) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in mapping.values()])


def compare(candidate: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(cosine similarity, relative error ||candidate - reference|| / ||reference||)."""
    cosine = torch.nn.functional.cosine_similarity(candidate, reference, dim=0).item()
    return cosine, ((candidate - reference).norm() / reference.norm()).item()


def run(args) -> dict:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    data = load_set(args.data, args.size)
    student = build_model(args.model, 3, width=args.width).train()
    teacher = build_model(args.model, 1, width=args.width)
    teacher_loss = train_teacher(teacher, data, args, generator)
    phi, phi_fo = init_phi(student), init_phi(student)
    learner = {algorithm: MetaPriorLearner(student, teacher, prior_phi, alpha=args.alpha, beta=args.beta,
                                           inner_steps=args.inner_steps, algorithm=algorithm, prior=args.prior)
               for algorithm, prior_phi in (("exact", phi), ("first_order", phi_fo))}
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)
    stream = batches(data, args.batch, generator)
    rows, cosines, errors, theta_gap = [], [], [], 0.0
    for step in range(args.steps):
        batch = next(stream)
        buffers = {n: b.clone() for n, b in student.named_buffers()}
        theta_fo, grads_fo, _ = learner["first_order"].meta_gradients(*batch)
        with torch.no_grad():  # the real statistics advance once per step, by the exact call below
            for n, b in student.named_buffers():
                b.copy_(buffers[n])
        theta_grads, grads, losses = learner["exact"].meta_gradients(*batch)
        cosine, error = compare(_flat(grads_fo), _flat(grads))
        cosines.append(cosine)
        errors.append(error)
        theta_gap = max(theta_gap, compare(_flat(theta_fo), _flat(theta_grads))[1])
        optimizer.zero_grad(set_to_none=True)
        for n, p in student.named_parameters():
            p.grad = theta_grads[n]
        with torch.no_grad():
            for n in phi:
                phi[n].sub_(args.beta * grads[n])
                phi_fo[n].sub_(args.beta * grads_fo[n])
        optimizer.step()
        if step % args.every == 0 or step == args.steps - 1:
            phi_cosine, phi_error = compare(_flat(phi_fo), _flat(phi))
            rows.append({"step": step, "g": losses["g"], "l_reg": losses["l_reg"], "cosine": cosine,
                         "relative_error": error, "phi_cosine": phi_cosine, "phi_relative_error": phi_error})
            print(f"step {step:4d}  G {losses['g']:.4f}  cosine {cosine:.6f}  relative error {error:.2e}  "
                  f"learned phi: cosine {phi_cosine:.6f}  relative error {phi_error:.2e}", flush=True)
    summary = {"cosine_median": statistics.median(cosines), "cosine_min": min(cosines),
               "relative_error_median": statistics.median(errors), "relative_error_max": max(errors),
               "phi_cosine_final": rows[-1]["phi_cosine"], "phi_relative_error_final": rows[-1]["phi_relative_error"],
               "theta_gradient_relative_difference_max": theta_gap, "teacher_final_l_reg": teacher_loss,
               "steps": args.steps, "samples": len(data["target"])}
    return {"rows": rows, "summary": summary}


def table(args, result, load_before) -> str:
    s = result["summary"]
    lines = [
        f"Settings: {args.model}, width {args.width}, batch {args.batch}, crops {args.size}x{args.size} "
        f"from {s['samples']} rendered samples, {args.prior} prior, l = {args.inner_steps}, alpha {args.alpha:g}, "
        f"beta {args.beta:g}, Adam lr {args.lr:g}; teacher {args.teacher_steps} L_REG steps first "
        f"(final L_REG {s['teacher_final_l_reg']:.4f}); torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average (1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after on {os.cpu_count()} CPUs.",
        "",
        "| step | G | cosine (step's φ-gradient) | relative error | cosine (learned φ) | relative error (learned φ) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['step']} | {r['g']:.4f} | {r['cosine']:.6f} | {r['relative_error']:.2e} | "
                     f"{r['phi_cosine']:.6f} | {r['phi_relative_error']:.2e} |")
    lines += ["", f"Over all {s['steps']} steps: cosine median {s['cosine_median']:.6f}, minimum {s['cosine_min']:.6f}; "
              f"relative error median {s['relative_error_median']:.2e}, maximum {s['relative_error_max']:.2e}. "
              f"The two algorithms' θ-gradients differ by at most {s['theta_gradient_relative_difference_max']:.1e} "
              f"(relative; one backward of G against the sum of the backwards of L_REG and L_DIST)."]
    return "\n".join(lines)


def main(argv=None):
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result = run(args)
    text = table(args, result, load_before)
    publish("benchmarks/bench_first_order_agreement.py", argv, text, result, vars(args), args.out, args.json, load_before)


if __name__ == "__main__":
    main()
