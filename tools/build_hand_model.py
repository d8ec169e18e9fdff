"""Build the embedded open hand model (``assets/open_hand/MANO_RIGHT.npz``).

Deterministic: a rebuild reproduces the committed file byte for byte. See
``docs/hand_model.md`` for how the hand is constructed.

Example:
    python tools/build_hand_model.py --out assets/open_hand/MANO_RIGHT.npz
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.cli import run_tool, tool_parser, writing_into  # noqa: E402


def _main(argv: list[str] | None) -> int:
    parser = tool_parser(
        __doc__.split("\n\n")[0],
        epilog="example: python tools/build_hand_model.py --out assets/open_hand/MANO_RIGHT.npz",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "open_hand" / "MANO_RIGHT.npz",
                        help="output .npz path (default: the embedded model's path)")
    args = parser.parse_args(argv)
    from render.open_hand.build import write_open_hand

    with writing_into(args.out.parent):
        path = write_open_hand(args.out)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
