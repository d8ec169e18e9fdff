#!/usr/bin/env python
"""Evaluate a checkpoint on shard directories: metrics.json (EPE, PCK curve, AUC, per-joint errors),
pck.png and predictions.png. Predictions are de-normalised with the ground-truth root and scale.

Example:
    python tools/evaluate.py --checkpoint runs/target_prior/model.pt --data shards/stb_test \
        --out runs/target_prior/eval_stb --protocol stb          # PCK 20-50 mm
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.errors import DatasetError  # noqa: E402
from training.checkpoint import CheckpointError  # noqa: E402
from training.evaluation import evaluate_checkpoint  # noqa: E402
from training.metrics import DEFAULT_STEPS, PCK_RANGES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="model.pt or checkpoints/last.pt of a run")
    parser.add_argument("--data", required=True, nargs="+", help="one or more shard directories")
    parser.add_argument("--out", default=None, help="output directory (default: <checkpoint dir>/eval)")
    parser.add_argument("--protocol", choices=sorted(PCK_RANGES), default="rhd",
                        help="PCK threshold range: rhd 0-50 mm (default), stb 20-50 mm")
    parser.add_argument("--pck-min", type=float, default=None, help="lowest threshold in mm (overrides --protocol)")
    parser.add_argument("--pck-max", type=float, default=None, help="highest threshold in mm (overrides --protocol)")
    parser.add_argument("--pck-steps", type=int, default=DEFAULT_STEPS, help="number of thresholds")
    parser.add_argument("--visible-only", action="store_true", help="count only joints marked visible")
    parser.add_argument("--image-size", type=int, default=None, help="crop size (default: the training size)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    t_min, t_max = PCK_RANGES[args.protocol]
    t_min = t_min if args.pck_min is None else args.pck_min
    t_max = t_max if args.pck_max is None else args.pck_max
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "eval"
    try:
        metrics = evaluate_checkpoint(args.checkpoint, args.data, out, device=args.device, image_size=args.image_size,
                                      t_min=t_min, t_max=t_max, steps=args.pck_steps, batch_size=args.batch_size,
                                      visible_only=args.visible_only)
    except (CheckpointError, DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {k: metrics[k] for k in ("epe_mean_mm", "epe_median_mm", "auc", "pck_range_mm", "num_samples")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'metrics.json'}, {out / 'pck.png'}, {out / 'predictions.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
