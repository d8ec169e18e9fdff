#!/usr/bin/env python
"""Run a declared experiment (arms x seeds, each an ordinary run directory) and aggregate it into
DIR/results.json, DIR/results.md, DIR/results.png and DIR/curves.png. Rerunning resumes: finished
arms are not retrained. See docs/experiments.md.

Examples:
    python tools/experiment.py --list
    python tools/experiment.py synth-table1 --quick --out /tmp/synth1_quick
    python tools/experiment.py synth-table2 --seeds 3 --out runs/experiments/synth-table2
    python tools/experiment.py table2 --data-root data --cluster slurm --slurm-partition gpu --gpus-per-job 1
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from common.cli import add_progress_switch, apply_progress_switch, positive_int, run_tool, tool_parser  # noqa: E402
from training.checkpoint import CheckpointError  # noqa: E402
from training.experiments import EXPERIMENTS, RunOptions, build, run_experiment  # noqa: E402
from training.trainer import NonFiniteLossError  # noqa: E402


def list_experiments() -> str:
    lines = []
    for name, (summary, _) in EXPERIMENTS.items():
        experiment = build(name)
        lines.append(f"{name:15s} {summary}; {len(experiment.arms)} arms per seed, {experiment.seeds} seeds")
    return "\n".join(lines)


def _main(argv: list[str] | None = None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument("name", nargs="?", help="experiment to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the declared experiments and exit")
    parser.add_argument("--seeds", type=positive_int, default=None, help="number of seeds 0..N-1 (default: the experiment's)")
    parser.add_argument("--quick", action="store_true", help="the same arms at tiny size (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="experiment directory (default runs/experiments/NAME)")
    parser.add_argument("--data-root", type=Path, default=Path("data"),
                        help="folder of converted datasets for table1-3 (default: data)")
    parser.add_argument("--data-cache", type=Path, default=None,
                        help="folder of the rendered data steps (default: OUT/data; may be shared between runs)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="folder of the arm run directories (default: OUT/runs); experiments given the same "
                             "one share the arms they declare alike, e.g. synth-table1 and synth-table2's teacher "
                             "and student")
    parser.add_argument("--arms", default="", help="comma-separated arms to run (with what they depend on)")
    parser.add_argument("--cluster", choices=("none", "local", "slurm"), default="none",
                        help="none: one after another here; local/slurm: submitit jobs (default: none)")
    parser.add_argument("--max-jobs", type=int, default=0,
                        help="--cluster local: at most this many jobs at once (0: all whose dependencies are done)")
    parser.add_argument("--slurm-partition", default="", help="SLURM partition of the jobs")
    parser.add_argument("--timeout-min", type=positive_int, default=24 * 60, help="time limit of each job (minutes)")
    parser.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per SLURM job")
    parser.add_argument("--cpus-per-job", type=int, default=2, help="CPUs per SLURM job")
    add_progress_switch(parser)
    args = parser.parse_args(argv)
    progress = apply_progress_switch(args)
    if args.list:
        print(list_experiments())
        return 0
    if not args.name:
        parser.error("name an experiment to run, or use --list")
    default_out = Path("runs") / "experiments" / (args.name + ("-quick" if args.quick else ""))
    options = RunOptions(out=args.out or default_out,
                         quick=args.quick, seeds=args.seeds, data_root=args.data_root, data_cache=args.data_cache,
                         runs_dir=args.runs_dir,
                         arms=tuple(a for a in args.arms.split(",") if a), cluster=args.cluster,
                         slurm_partition=args.slurm_partition, timeout_min=args.timeout_min,
                         gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, max_jobs=args.max_jobs,
                         progress=progress)
    results = run_experiment(args.name, options)
    print(f"results: {results} (and results.md, results.png, curves.png beside it)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Missing datasets, bad declarations or configs and failed jobs end in one line on stderr (exit 2)."""
    return run_tool(_main, argv, extra_errors=(CheckpointError, NonFiniteLossError))


if __name__ == "__main__":
    sys.exit(main())
