#!/usr/bin/env python
"""Train one phase (teacher, student, distill, target) from a YAML config plus key=value overrides.

Example:
    python tools/train.py --config configs/teacher.yaml data.train=[shards/synth] optim.epochs=5 out=runs/t
    torchrun --nproc_per_node 2 tools/train.py --config configs/student.yaml   # several GPUs / processes
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.errors import DatasetError  # noqa: E402
from models.resnet import CheckpointError as ModelCheckpointError  # noqa: E402
from training.checkpoint import CheckpointError  # noqa: E402
from training.config import ConfigError, load_config, valid_keys  # noqa: E402
from training.prior import PriorError  # noqa: E402
from training.trainer import NonFiniteLossError, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="phase YAML file, e.g. configs/distill.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides, e.g. optim.lr=1e-3 model.arch=resnet50 data.train=[a,b]")
    parser.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    args = parser.parse_args(argv)
    if args.list_keys:
        print("\n".join(valid_keys()))
        return 0
    try:
        result = train(load_config(args.config, args.overrides))
    except (ConfigError, CheckpointError, ModelCheckpointError, PriorError, DatasetError,
            NonFiniteLossError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"finished {result.steps} steps; model: {result.checkpoint}"
          + (f"; prior: {result.prior}" if result.prior else ""))
    if result.metrics:
        print(f"validation: EPE {result.metrics['epe_mean_mm']:.2f} mm, AUC {result.metrics['auc']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
