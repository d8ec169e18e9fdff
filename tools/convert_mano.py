"""Convert a MANO-format pickle (e.g. the official ``MANO_RIGHT.pkl``) to a chumpy-free ``.npz``.

The pickle is read without chumpy and without running any code from it (see
``render/mano_io.py``); a file that asks for anything else is refused. The ``.npz`` keeps
MANO's key names, so ``smplx.MANO(..., ext='npz')`` and ``render.hand_model.HandModel``
read it directly.

Example:
    python tools/convert_mano.py ~/mano/MANO_RIGHT.pkl --out ~/mano/MANO_RIGHT.npz
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from render.mano_io import ManoFileError, load_mano_pkl, save_mano_npz  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python tools/convert_mano.py ~/mano/MANO_RIGHT.pkl --out ~/mano/MANO_RIGHT.npz",
    )
    parser.add_argument("pkl", type=Path, help="MANO-format .pkl file")
    parser.add_argument("--out", type=Path, default=None, help="output .npz (default: next to the input)")
    args = parser.parse_args(argv)
    out = args.out or args.pkl.with_suffix(".npz")
    try:
        data = load_mano_pkl(args.pkl)
        save_mano_npz(out, data)
    except (ManoFileError, pickle.UnpicklingError) as exc:  # UnsafePickleError is an UnpicklingError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(data)} arrays, {data['v_template'].shape[0]} vertices)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
