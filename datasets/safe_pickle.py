"""Restricted unpickling for user files (MANO models, RHD annotations).

A plain ``pickle.load`` of a user's file can run arbitrary code. :func:`restricted_load`
resolves only the globals a caller allows and refuses everything else *before* any of it
is called, raising :class:`UnsafePickleError` with the file name and the offending global.
"""
from __future__ import annotations

import codecs
import collections
import io
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list."""


#: Globals needed to rebuild plain numpy arrays, dtypes and scalars.
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # protocol-2 pickles (Python 2 era files such as RHD and MANO) store bytes through codecs.encode
    ("_codecs", "encode"): codecs.encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,  # Python 2 spelling
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: Mapping[tuple[str, str], Any], source: str):
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._allowed:
            return self._allowed[key]
        raise UnsafePickleError(
            f"{self._source}: refusing to load global '{module}.{name}' from the pickle; expected plain data "
            f"(numpy arrays and {len(self._allowed)} allowed classes such as {_examples(self._allowed)}); "
            "the file may be tampered with or is not the file you meant"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: persistent ids are not accepted in the pickle")


def _examples(allowed: Mapping[tuple[str, str], Any], count: int = 3) -> str:
    names = sorted(f"{m}.{n}" for m, n in allowed if not m.startswith(("numpy", "_codecs", "builtins", "__builtin__")))
    return ", ".join(names[:count]) or "numpy.ndarray"


def restricted_load(
    path_or_file: str | Path | io.BufferedIOBase,
    allowed: Mapping[tuple[str, str], Any] | None = None,
) -> Any:
    """Unpickle ``path_or_file`` resolving only ``allowed`` globals (default: numpy data).

    ``allowed`` maps ``(module, name)`` to the object to use instead, so a caller can map
    foreign classes (e.g. chumpy's) to harmless stand-ins.
    """
    allowed = dict(NUMPY_GLOBALS if allowed is None else allowed)
    if isinstance(path_or_file, (str, Path)):
        source = str(path_or_file)
        with open(path_or_file, "rb") as f:
            return _load(f, allowed, source)
    return _load(path_or_file, allowed, getattr(path_or_file, "name", "<stream>"))


def _load(file, allowed, source: str) -> Any:
    try:
        return _RestrictedUnpickler(file, allowed, source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or not a pickle at all
        raise pickle.UnpicklingError(f"{source}: not a readable pickle (expected a pickle file, found content "
                                     f"that fails with {type(exc).__name__}: {exc}; truncated or another format?)") from exc


def allow(*entries: tuple[str, str, Callable[..., Any] | type]) -> dict[tuple[str, str], Any]:
    """Build an allow-list ``{(module, name): obj}`` on top of :data:`NUMPY_GLOBALS`."""
    table = dict(NUMPY_GLOBALS)
    table.update({(m, n): obj for m, n, obj in entries})
    return table
