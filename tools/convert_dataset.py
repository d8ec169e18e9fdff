#!/usr/bin/env python
"""Convert a raw hand dataset into shards of hand-centred crops, or verify a shard directory.

Each split goes into its own shard directory OUT/<split>; train on a training split, evaluate
on an evaluation/test split (training refuses those unless data.allow_eval_split=true).

Examples:
  python tools/convert_dataset.py rhd --root data/RHD_published_v2 --out data/rhd_256   # data/rhd_256/{training,evaluation}
  python tools/convert_dataset.py stb --root data/STB --out data/stb_256 --split test --limit 100   # data/stb_256/test
  python tools/convert_dataset.py stb --root data/STB --out data/stb_256_depth --option depth=true   # + SK depth registered to colour
  python tools/convert_dataset.py freihand --root data/FreiHAND_pub_v2 --out data/fh_all --option domain=all
  python tools/convert_dataset.py verify data/rhd_256/training
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from common.cli import (HelpFormatter, apply_progress_switch, positive_int, run_tool, tool_parser,  # noqa: E402
                        writing_into)
from datasets.convert import DEFAULT_SHARD_SIZE, DEFAULT_SPLITS, ConvertConfig, convert  # noqa: E402
from datasets.errors import DatasetError  # noqa: E402
from datasets.splits import SPLITS, check_shard_directory  # noqa: E402
from datasets.verify import DEFAULT_TOLERANCE_PX, verify_report  # noqa: E402


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def parse_args(argv=None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for source, splits in DEFAULT_SPLITS.items():
        sub = commands.add_parser(source, help=f"convert raw {source} (default splits: {', '.join(splits)})",
                                  formatter_class=HelpFormatter)
        sub.add_argument("--root", required=True, type=Path, help="the raw download, read in place")
        sub.add_argument("--out", required=True, type=Path,
                         help="output folder: each split is written to OUT/<split> (rerun to resume)")
        sub.add_argument("--split", nargs="+", default=None, choices=sorted(SPLITS[source]),
                         help=f"splits to convert (default {' '.join(splits)})")
        sub.add_argument("--size", type=positive_int, default=256, help="crop size in pixels")
        sub.add_argument("--margin", type=float, default=0.25, help="crop margin per side, fraction of the hand box")
        sub.add_argument("--crop-source", choices=("joints", "mask"), default="joints",
                         help="what the crop box encloses")
        sub.add_argument("--limit", type=positive_int, default=None, help="convert only the first N samples of each split")
        sub.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE, help="samples per shard")
        sub.add_argument("--workers", type=positive_int, default=1, help="worker processes (each converts whole shards)")
        sub.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                         help="reader option, e.g. hand=visible (rhd), palm_to_wrist=middle or depth=true (stb), domain=all")
        sub.add_argument("--no-progress", action="store_true",
                         help="no progress bar or progress lines (also: environment HANDKIT_PROGRESS=0)")
    check = commands.add_parser("verify", help="check a shard directory and list every problem",
                                formatter_class=HelpFormatter)
    check.add_argument("directory", type=Path)
    check.add_argument("--tolerance-px", type=float, default=DEFAULT_TOLERANCE_PX,
                       help=f"projection invariant tolerance in pixels (default {DEFAULT_TOLERANCE_PX})")
    check.add_argument("--deep", action="store_true", help="also decode every image chunk")
    return parser.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "verify":
        check_shard_directory(args.directory)  # a parent of split directories: name the splits
        report = verify_report(args.directory, tolerance_px=args.tolerance_px, deep=args.deep)
        for problem in report.problems:
            print(problem)
        print(report.summary())
        return 1 if report.problems else 0
    show_progress = apply_progress_switch(args)
    config = ConvertConfig(source=args.command, splits=tuple(args.split or ()), size=args.size,
                           margin=args.margin, crop_source=args.crop_source, limit=args.limit,
                           shard_size=args.shard_size, reader_options=dict(args.option))
    command = shlex.join(["tools/convert_dataset.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        with writing_into(args.out):
            summary = convert(args.root, args.out, config, workers=args.workers, progress=show_progress,
                              command=command)
    except TypeError as exc:  # an --option the reader does not take
        raise DatasetError(f"--option: {exc}") from None
    for split, done in summary["splits"].items():
        print(f"{done['out']}: {split} ({'evaluation/test' if SPLITS[args.command][split] else 'training'} split), "
              f"{done['samples']} samples in {done['shards']} shards "
              f"({done['written']} written, {done['skipped']} already complete)")
    return 0


def main(argv=None) -> int:
    return run_tool(_main, argv)  # DatasetError and bad settings are ValueErrors: one line, exit code 2


if __name__ == "__main__":
    sys.exit(main())
