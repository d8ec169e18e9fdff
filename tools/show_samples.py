#!/usr/bin/env python
"""Write a PNG grid of samples from a shard directory: RGB with the projected skeleton
(one colour per finger; occluded joints hollow), colour-mapped depth and mask.

Example:
    python tools/show_samples.py data/synth --out docs/images/samples.png --count 8 --columns 2
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import positive_int, run_tool, tool_parser, writing_into  # noqa: E402


def _main(argv: list[str] | None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument("data", type=Path, help="directory of shard-*.h5 files")
    parser.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG to write")
    parser.add_argument("--count", type=positive_int, default=8, help="number of samples")
    parser.add_argument("--columns", type=positive_int, default=2, help="samples per row")
    args = parser.parse_args(argv)
    from datasets.atomic import atomic_write
    from render.preview import sample_grid

    grid = sample_grid(args.data, args.count, args.columns)
    with writing_into(args.out.parent), atomic_write(args.out) as temporary:
        grid.save(temporary, format="PNG")
    print(f"wrote {args.out} ({grid.width}x{grid.height})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
