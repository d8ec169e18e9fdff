#!/usr/bin/env python
"""Evaluate a checkpoint on shard directories: metrics.json (EPE, PCK curve, AUC, per-joint errors),
pck.png and predictions.png. Predictions are de-normalised with the ground-truth root and scale.

Example:
    # STB: PCK over 20-50 mm, chosen from the shards' source (RHD and others: 0-50 mm)
    python tools/evaluate.py --checkpoint runs/target/model.pt --data data/stb_256/test

Without --out the results go to <run>/eval_<data directory names>, never to <run>/eval
(the training run's own end-of-run validation).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import (add_progress_switch, apply_progress_switch, positive_int, run_tool, tool_parser,  # noqa: E402
                        writing_into)

#: Smallest crop the networks accept (ResNets downsample by 32).
MIN_IMAGE_SIZE = 32


def default_out(checkpoint: str | Path, data: list[str]) -> Path:
    """``<run>/eval_<data names>``: beside the run, never its own end-of-run ``<run>/eval``."""
    directory = Path(checkpoint).resolve().parent
    run = directory.parent if directory.name == "checkpoints" else directory
    names = "+".join(Path(d).resolve().name for d in data)
    return run / f"eval_{names}"


def image_size(text: str) -> int:
    value = positive_int(text)
    if value < MIN_IMAGE_SIZE:
        import argparse

        raise argparse.ArgumentTypeError(f"expected at least {MIN_IMAGE_SIZE} pixels (the networks downsample "
                                         f"by 32), found {value}")
    return value


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: expected a CUDA device, found none available "
                         "(torch.cuda.is_available() is False); use --device cpu")


def _main(argv: list[str] | None) -> int:
    from training.metrics import DEFAULT_STEPS, PCK_RANGES

    parser = tool_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="model.pt or checkpoints/last.pt of a run")
    parser.add_argument("--data", required=True, nargs="+", help="one or more shard directories")
    parser.add_argument("--out", default=None, help="output directory (default: <run>/eval_<data names>)")
    parser.add_argument("--protocol", choices=["auto", *sorted(PCK_RANGES)], default="auto",
                        help="PCK threshold range: auto = from the data's source (STB 20-50 mm, RHD and others "
                             "0-50 mm), rhd 0-50 mm, stb 20-50 mm")
    parser.add_argument("--pck-min", type=float, default=None, help="lowest threshold in mm (overrides --protocol)")
    parser.add_argument("--pck-max", type=float, default=None, help="highest threshold in mm (overrides --protocol)")
    parser.add_argument("--pck-steps", type=positive_int, default=DEFAULT_STEPS, help="number of thresholds")
    parser.add_argument("--visible-only", action="store_true", help="count only joints marked visible")
    parser.add_argument("--image-size", type=image_size, default=None, help="crop size (default: the training size)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="samples per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    add_progress_switch(parser)
    args = parser.parse_args(argv)
    show_progress = apply_progress_switch(args)
    check_device(args.device)
    out = Path(args.out) if args.out else default_out(args.checkpoint, args.data)
    from training.evaluation import evaluate_checkpoint

    with writing_into(out):
        metrics = evaluate_checkpoint(args.checkpoint, args.data, out, device=args.device, image_size=args.image_size,
                                      protocol=args.protocol, t_min=args.pck_min, t_max=args.pck_max,
                                      steps=args.pck_steps, batch_size=args.batch_size,
                                      visible_only=args.visible_only, progress=show_progress)
    summary = {k: metrics[k] for k in ("epe_mean_mm", "epe_median_mm", "auc", "pck_range_mm", "pck_range_reason",
                                       "num_samples")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'metrics.json'}, {out / 'pck.png'}, {out / 'predictions.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from training.checkpoint import CheckpointError  # a RuntimeError; DatasetError and the others are ValueErrors

    return run_tool(_main, argv, extra_errors=(CheckpointError,), error_code=1)


if __name__ == "__main__":
    sys.exit(main())
