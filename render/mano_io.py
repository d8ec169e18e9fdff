"""Reading and writing MANO-format hand model files without chumpy and without running code.

The official ``MANO_RIGHT.pkl`` is a Python-2 pickle holding numpy arrays, chumpy ``Ch``
objects (e.g. ``shapedirs``) and a ``scipy.sparse`` CSC ``J_regressor``. A plain
``pickle.load`` would import chumpy (unmaintained) and would run whatever a tampered file
asks for. :func:`load_mano_pkl` goes through :func:`datasets.safe_pickle.restricted_load`
with an allow-list that maps those classes to inert stand-ins that only *store* their
pickled state; the state is then turned into numpy arrays here. Any other global (say
``os.system``) is refused before anything is called.

A chumpy object pickles its ``__dict__`` (minus caches): a plain ``Ch`` keeps its value
under ``'x'``; the few derived classes supported here keep their operands (``'a'``,
``'b'``) and parameters. A CSC matrix pickles ``data``, ``indices``, ``indptr`` and
``_shape``; it is densified.

``.npz`` files use MANO's own key names, so ``smplx.MANO(..., ext='npz')`` reads them
unchanged; :func:`save_mano_npz` writes them atomically and byte-for-byte
deterministically (sorted keys, fixed zip timestamps).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from datasets.atomic import atomic_write
from datasets.safe_pickle import NUMPY_GLOBALS, UnsafePickleError, restricted_load


class ManoFileError(ValueError):
    """A MANO-format file is missing, unreadable, or has missing or mis-shaped arrays."""


#: key -> (expected shape with None for "any", meaning). V = vertices, F = faces.
REQUIRED_KEYS: dict[str, tuple[tuple, str]] = {
    "v_template": (("V", 3), "template vertices, metres"),
    "f": ((None, 3), "triangle vertex indices"),
    "weights": (("V", 16), "skinning weights per joint"),
    "posedirs": (("V", 3, 135), "pose corrective blend shapes"),
    "shapedirs": (("V", 3, None), "shape blend shapes"),
    "J_regressor": ((16, "V"), "joint regressor"),
    "kintree_table": ((2, 16), "kinematic tree (parents, ids)"),
    "hands_components": ((45, 45), "PCA pose basis, rows are components"),
    "hands_mean": ((45,), "mean finger pose, axis-angle"),
}


def validate_mano(data: Mapping[str, Any], source: str) -> None:
    """Raise :class:`ManoFileError` naming ``source`` and the first missing or mis-shaped key."""
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ManoFileError(f"{source}: missing MANO key(s) {missing}; found keys {sorted(data)}")
    num_vertices = np.shape(data["v_template"])[0]
    for key, (expected, meaning) in REQUIRED_KEYS.items():
        shape = np.shape(data[key])
        want = tuple(num_vertices if e == "V" else e for e in expected)
        if len(shape) != len(want) or any(w is not None and s != w for s, w in zip(shape, want)):
            pretty = "(" + ", ".join("any" if w is None else str(w) for w in want) + ")"
            raise ManoFileError(f"{source}: key '{key}' ({meaning}) should have shape {pretty}, found {shape}")
    faces = np.asarray(data["f"])
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ManoFileError(f"{source}: key 'f' indexes vertices outside 0..{num_vertices - 1}")


# --------------------------------------------------------------------------- pickle (.pkl)

class _PickledState:
    """Inert stand-in for a foreign class: records the pickled state, runs nothing."""

    source_class = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stand_in(module: str, name: str) -> type:
    return type(f"StandIn_{name}", (_PickledState,), {"source_class": f"{module}.{name}"})


_CHUMPY_CLASSES = [("chumpy.ch", "Ch"), ("chumpy.reordering", "Select"), ("chumpy.reordering", "Reshape"),
                   ("chumpy.reordering", "transpose"), ("chumpy.ch_ops", "add"),
                   ("chumpy.ch_ops", "subtract"), ("chumpy.ch_ops", "multiply")]
_SPARSE_CLASSES = [("scipy.sparse.csc", "csc_matrix"), ("scipy.sparse._csc", "csc_matrix"),
                   ("scipy.sparse._csc", "csc_array"), ("scipy.sparse.csr", "csr_matrix"),
                   ("scipy.sparse._csr", "csr_matrix"), ("scipy.sparse._csr", "csr_array")]
_STAND_INS = {key: _stand_in(*key) for key in _CHUMPY_CLASSES + _SPARSE_CLASSES}


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """Safe replacement of ``copyreg._reconstructor`` (protocol 0/1 pickles): stand-ins only."""
    if not (isinstance(cls, type) and issubclass(cls, _PickledState)) or base is not object or state is not None:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r} from base {base!r}")
    return object.__new__(cls)


MANO_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    **NUMPY_GLOBALS,
    **_STAND_INS,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    # Python-2 pickles (the official files) spell builtins as __builtin__; chumpy state holds sets.
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "slice"): slice,
    ("__builtin__", "complex"): complex,
}


def _materialise(value: Any, source: str) -> Any:
    """Turn stand-ins (recursively) into numpy arrays."""
    if isinstance(value, dict):
        return {k: _materialise(v, source) for k, v in value.items()}
    if not isinstance(value, _PickledState):
        return value
    state = getattr(value, "state", None)
    if not isinstance(state, dict):
        raise ManoFileError(f"{source}: a pickled {value.source_class} object has no state dictionary")
    kind = value.source_class
    get = lambda key: np.asarray(_materialise(state[key], source))  # noqa: E731
    try:
        if kind.startswith("scipy.sparse"):
            import scipy.sparse
            shape = tuple(state.get("_shape", state.get("shape")))
            build = scipy.sparse.csc_matrix if "csc" in kind else scipy.sparse.csr_matrix
            return build((state["data"], state["indices"], state["indptr"]), shape=shape).toarray()
        short = kind.rsplit(".", 1)[-1]
        if short == "Ch":
            return np.array(get("x"), dtype=np.float64)
        if short == "Select":
            out = get("a").ravel()[np.asarray(state["idxs"]).ravel()]
            shape = state.get("preferred_shape")
            return out.reshape(shape) if shape is not None else out
        if short == "Reshape":
            return get("a").reshape(state["newshape"])
        if short == "transpose":
            return np.transpose(get("a"), state.get("axes"))
        ops = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}
        return ops[short](get("a"), get("b"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ManoFileError(f"{source}: could not rebuild a pickled {kind} object ({type(exc).__name__}: {exc})") from exc


def load_mano_pkl(path: str | Path) -> dict[str, np.ndarray]:
    """MANO model arrays from an official-format pickle, chumpy-free and without running code.

    Raises :class:`~datasets.safe_pickle.UnsafePickleError` if the pickle references any
    global outside the allow-list, :class:`ManoFileError` for a missing file or bad content.
    """
    path = Path(path)
    if not path.is_file():
        raise ManoFileError(f"{path}: MANO model file not found")
    raw = restricted_load(path, MANO_PICKLE_GLOBALS)
    if not isinstance(raw, dict):
        raise ManoFileError(f"{path}: expected a pickled dict of MANO arrays, found {type(raw).__name__}")
    data = {}
    for key, value in _materialise(raw, str(path)).items():
        array = np.asarray(value)
        if array.dtype == object:
            raise ManoFileError(f"{path}: key '{key}' holds a {type(value).__name__}, not an array")
        data[str(key)] = array
    validate_mano(data, str(path))
    return data


# --------------------------------------------------------------------------- npz

def load_mano_npz(path: str | Path) -> dict[str, np.ndarray]:
    """MANO model arrays from an ``.npz`` (no pickled objects allowed), validated."""
    path = Path(path)
    if not path.is_file():
        raise ManoFileError(f"{path}: MANO model file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {key: archive[key] for key in archive.files}
    except ValueError as exc:
        raise ManoFileError(f"{path}: holds pickled objects; expected plain arrays ({exc})") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise ManoFileError(f"{path}: not a readable .npz archive ({exc})") from exc
    validate_mano(data, str(path))
    return data


_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def save_mano_npz(path: str | Path, data: Mapping[str, np.ndarray]) -> Path:
    """Write ``data`` as an uncompressed ``.npz`` atomically and deterministically.

    Keys are written sorted with a fixed zip timestamp, so equal arrays give equal bytes.
    The file appears under ``path`` only when complete (temporary name, then rename).
    """
    path = Path(path)
    validate_mano(data, str(path))
    with atomic_write(path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive:
            for key in sorted(data):
                buffer = io.BytesIO()
                array = np.asarray(data[key])  # (np.ascontiguousarray would turn 0-d into 1-d)
                np.lib.format.write_array(buffer, array.copy(order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())
    return path


def load_mano(path: str | Path) -> dict[str, np.ndarray]:
    """Load a ``.pkl`` or ``.npz`` MANO-format model by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".pkl":
        return load_mano_pkl(path)
    if suffix == ".npz":
        return load_mano_npz(path)
    raise ManoFileError(f"{path}: unknown model file type '{suffix}'; expected a MANO .pkl or .npz")
