#!/usr/bin/env python
"""The README's demo: render a small source set (with depth) and a domain-shifted target set, train
teacher -> student -> distillation with the meta-learned prior -> target students with the prior,
without a regulariser and with plain l2, evaluate, and write <out>/report.md (metrics table, PCK plot, prediction grid).
Toy scale on CPU: about 5 minutes on 2 CPU cores (4 min 48 s measured, docs/demo_report.md), as the README
says; rerunning resumes where it stopped.

Example:
    python tools/demo.py --out demo_output
    python tools/demo.py --out /tmp/demo_quick --quick      # a smaller, faster smoke run
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

from common.cli import add_progress_switch, apply_progress_switch, run_tool, tool_parser, writing_into  # noqa: E402


def _main(argv: list[str] | None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument("--out", default="demo_output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="a few samples and steps only (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the renders and of every training run")
    add_progress_switch(parser)
    args = parser.parse_args(argv)
    apply_progress_switch(args)  # the demo's renders and training runs read it from the environment
    from training.demo import DemoSettings, run_demo

    settings = DemoSettings(seed=args.seed)
    if args.quick:
        settings = DemoSettings(seed=args.seed, source_train=64, source_test=32, target_train=64, target_test=32,
                                width=8, image_size=32, teacher_epochs=2, student_epochs=2, distill_epochs=1,
                                target_epochs=2, data_workers=0, prior_beta=1.0)
    with writing_into(args.out):
        report = run_demo(args.out, settings)
    print(f"report: {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from render.gl import GLUnavailableError
    from training.checkpoint import CheckpointError
    from training.trainer import NonFiniteLossError

    return run_tool(_main, argv, extra_errors=(GLUnavailableError, CheckpointError, NonFiniteLossError))


if __name__ == "__main__":
    sys.exit(main())
