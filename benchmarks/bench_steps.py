"""Time one training iteration of each kind on one fixed batch and write a table to docs/.

Kinds: plain student step (L_REG), distillation step (G = L_REG + L_DIST, Eq. 8), meta step with
Algorithm 1 (exact, second order), with the supplement's efficient algorithm and first order
(``training.meta``). Every kind ends with an Adam step, as in training. Repetitions are
interleaved (kind A, B, C, D, E, A, B, ...) so that load from other processes on a shared
machine hits all kinds alike; medians are reported, as ratios to the distillation step
measured in the same run.

Example::

    python benchmarks/bench_steps.py --model resnet18 --width 16 --batch 32 --size 128 \
        --repeats 7 --out docs/step_benchmark.md --json docs/step_benchmark.json

JSON: ``{"ratio": {"student", "distill": 1.0, "exact", "efficient", "first_order"}`` (median
wall time / the distillation step's), ``ratio_cpu`` (the same from process CPU time),
``median_wall_s``, ``median_cpu_s``, ``settings`` and ``environment`` (load average).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.results_json import JSON_HELP, publish  # noqa: E402
from models import build_model  # noqa: E402
from training.losses import regression_loss  # noqa: E402
from training.meta import MetaPriorLearner, distillation_step  # noqa: E402
from training.prior import init_phi  # noqa: E402


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=int, default=16, help="base channels (paper: 64)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="input height = width (paper: 256)")
    parser.add_argument("--inner-steps", type=int, default=1, help="l of Algorithm 1")
    parser.add_argument("--repeats", type=int, default=7, help="timed iterations per kind")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="markdown file to append the table to (default: print only)")
    parser.add_argument("--json", default=None, metavar="PATH", help=JSON_HELP)
    return parser.parse_args(argv)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


META_KINDS = ("exact", "efficient", "first_order")
KINDS = ("teacher", "student", "distill") + META_KINDS
BASE = "distill"


def labels(inner_steps: int) -> dict[str, str]:
    """Table label of each kind."""
    return {"teacher": "teacher step (depth, L_REG)", "student": "plain student step (L_REG)",
            "distill": "distillation step (G)", "exact": f"Algorithm 1, exact (l={inner_steps})",
            "efficient": f"Algorithm 3, efficient (l={inner_steps})", "first_order": f"first order (l={inner_steps})"}


def make_steps(model: str = "resnet18", width: int = 16, batch: int = 32, size: int = 128, inner_steps: int = 1,
               device: str = "cpu", kinds=KINDS[1:], autocast_dtype: torch.dtype | None = None,
               channels_last: bool = False) -> dict:
    """{kind: callable running one training iteration with an Adam step} on one fixed random batch.

    The student, the frozen teacher (distillation and meta kinds) and the batch are shared; the
    teacher kind trains a separate depth network. ``autocast_dtype`` runs each iteration under
    ``torch.autocast`` (e.g. bfloat16); ``channels_last`` stores networks and images NHWC.
    """
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)

    def network(channels):
        return build_model(model, channels, width=width).to(device=device, memory_format=memory_format)

    def images(channels):
        return torch.rand(batch, channels, size, size, device=device).contiguous(memory_format=memory_format)

    student = network(3).train()
    teacher = network(1).eval().requires_grad_(False)
    rgb, depth, target = images(3), images(1), torch.randn(batch, 63, device=device)
    optimizer = torch.optim.Adam(student.parameters(), lr=2.5e-4)
    learners = {algorithm: MetaPriorLearner(student, teacher, init_phi(student), alpha=2.5e-4, beta=1e-3,
                                            inner_steps=inner_steps, algorithm=algorithm)
                for algorithm in META_KINDS if algorithm in kinds}
    depth_network = network(1).train() if "teacher" in kinds else None
    depth_optimizer = torch.optim.Adam(depth_network.parameters(), lr=2.5e-4) if depth_network else None

    def iteration(fn, opt=optimizer):
        def run():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                fn()
            opt.step()
        return run

    def meta(algorithm):
        return iteration(lambda: learners[algorithm].step(rgb, depth, target))

    steps = {
        "teacher": lambda: iteration(lambda: regression_loss(depth_network(depth)["pred"].float(), target).backward(),
                                     depth_optimizer),
        "student": lambda: iteration(lambda: regression_loss(student(rgb)["pred"].float(), target).backward()),
        "distill": lambda: iteration(lambda: distillation_step(student, teacher, rgb, depth, target)),
        **{algorithm: (lambda a=algorithm: meta(a)) for algorithm in META_KINDS},
    }
    return {kind: steps[kind]() for kind in kinds}


def build_steps(args):
    """The step of every kind but the teacher's at the command line's settings."""
    return make_steps(args.model, args.width, args.batch, args.size, args.inner_steps, args.device)


def measure(steps, repeats, warmup, device):
    """Interleaved timing: {kind: {"wall": [seconds, ...], "cpu": [seconds, ...]}}.

    "cpu" is the process CPU time (all threads): on a CPU device shared with other jobs it
    counts the work done rather than the time spent waiting for a core.
    """
    times = {kind: {"wall": [], "cpu": []} for kind in steps}
    for r in range(warmup + repeats):
        for kind, fn in steps.items():
            _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            _sync(device)
            if r >= warmup:
                times[kind]["wall"].append(time.perf_counter() - wall)
                times[kind]["cpu"].append(time.process_time() - cpu)
    return times


def summarize(times) -> dict:
    """Medians and ratios to the distillation step (wall and CPU time)."""
    wall = {kind: statistics.median(t["wall"]) for kind, t in times.items()}
    cpu = {kind: statistics.median(t["cpu"]) for kind, t in times.items()}
    return {"median_wall_s": wall, "median_cpu_s": cpu,
            "ratio": {kind: wall[kind] / wall[BASE] for kind in times},
            "ratio_cpu": {kind: cpu[kind] / cpu[BASE] for kind in times}}


def table(args, summary, load_before) -> str:
    load_after = os.getloadavg()
    lines = [
        f"Settings: {args.model}, width {args.width}, batch {args.batch}, input {args.size}x{args.size}, "
        f"l = {args.inner_steps}, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{args.repeats} interleaved repetitions after {args.warmup} warm-up, {datetime.date.today().isoformat()}; "
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"on {os.cpu_count()} CPUs.",
        "",
        "| step | median wall s | ratio (wall) | median CPU s | ratio (CPU) |",
        "|---|---|---|---|---|",
    ]
    names = labels(args.inner_steps)
    for kind in summary["ratio"]:
        lines.append(f"| {names[kind]} | {summary['median_wall_s'][kind]:.3f} | {summary['ratio'][kind]:.2f} | "
                     f"{summary['median_cpu_s'][kind]:.3f} | {summary['ratio_cpu'][kind]:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    summary = summarize(measure(build_steps(args), args.repeats, args.warmup, device))
    result = table(args, summary, load_before)
    publish("benchmarks/bench_steps.py", argv, result, summary, vars(args), args.out, args.json, load_before)


if __name__ == "__main__":
    main()
