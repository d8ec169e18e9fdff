#!/usr/bin/env python
"""Train one phase (teacher, student, distill, target) from a YAML config plus key=value overrides.

Example:
    python tools/train.py --config configs/teacher.yaml data.train=[shards/synth] optim.epochs=5 out=runs/t
    torchrun --nproc_per_node 2 tools/train.py --config configs/student.yaml   # several GPUs / processes
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import add_progress_switch, apply_progress_switch, run_tool, tool_parser, writing_into  # noqa: E402


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device}: expected a CUDA device, found none available "
                         "(torch.cuda.is_available() is False); use device=cpu or device=auto")


def _main(argv: list[str] | None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument("--config", required=True, help="phase YAML file, e.g. configs/distill.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. optim.lr=1e-3 model.arch=resnet50 data.train=[a,b]")
    parser.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    add_progress_switch(parser)
    args = parser.parse_args(argv)
    from training.config import load_config, valid_keys

    if args.list_keys:
        print("\n".join(valid_keys()))
        return 0
    apply_progress_switch(args)
    cfg = load_config(args.config, args.overrides)
    check_device(cfg.device)
    from training.trainer import train

    with writing_into(cfg.out, flag="out="):
        result = train(cfg)
    print(f"finished {result.steps} steps; model: {result.checkpoint}"
          + (f"; prior: {result.prior}" if result.prior else ""))
    if result.metrics:
        print(f"validation: EPE {result.metrics['epe_mean_mm']:.2f} mm, AUC {result.metrics['auc']:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # ConfigError, DatasetError, PriorError and the model's CheckpointError are ValueErrors.
    from training.checkpoint import CheckpointError
    from training.trainer import NonFiniteLossError

    return run_tool(_main, argv, extra_errors=(CheckpointError, NonFiniteLossError), error_code=1)


if __name__ == "__main__":
    sys.exit(main())
