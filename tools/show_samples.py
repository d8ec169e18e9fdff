#!/usr/bin/env python
"""Write a PNG grid of samples from a shard directory: RGB with the projected skeleton
(one colour per finger; occluded joints hollow), colour-mapped depth and mask.

Example:
    python tools/show_samples.py data/synth --out docs/images/samples.png --count 8 --columns 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render.preview import sample_grid  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="directory of shard-*.h5 files")
    parser.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG to write (default samples.png)")
    parser.add_argument("--count", type=int, default=8, help="number of samples (default 8)")
    parser.add_argument("--columns", type=int, default=2, help="samples per row (default 2)")
    args = parser.parse_args(argv)
    try:
        grid = sample_grid(args.data, args.count, args.columns)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
