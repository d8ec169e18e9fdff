"""Convert a MANO-format pickle (e.g. the official ``MANO_RIGHT.pkl``) to a chumpy-free ``.npz``.

The pickle is read without chumpy and without running any code from it (see
``render/mano_io.py``); a file that asks for anything else is refused. The ``.npz`` keeps
MANO's key names, so ``smplx.MANO(..., ext='npz')`` and ``render.hand_model.HandModel``
read it directly.

Example:
    python tools/convert_mano.py ~/mano/MANO_RIGHT.pkl --out ~/mano/MANO_RIGHT.npz
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
        epilog="example: python tools/convert_mano.py ~/mano/MANO_RIGHT.pkl --out ~/mano/MANO_RIGHT.npz",
    )
    parser.add_argument("pkl", type=Path, help="MANO-format .pkl file")
    parser.add_argument("--out", type=Path, default=None, help="output .npz (default: next to the input)")
    args = parser.parse_args(argv)
    from render.mano_io import load_mano_pkl, save_mano_npz

    out = args.out or args.pkl.with_suffix(".npz")
    data = load_mano_pkl(args.pkl)  # ManoFileError (a ValueError) or a refused/unreadable pickle: one line
    with writing_into(out.parent, flag="--out"):
        save_mano_npz(out, data)
    print(f"wrote {out} ({len(data)} arrays, {data['v_template'].shape[0]} vertices)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
