"""Atomic file writes: a file appears under its final name only when complete.

Every writer of the toolkit (shards, manifests, checkpoints, priors, configs, logs,
metrics, plots, model files) goes through :func:`atomic_write`: the content is written
to ``.<name>.tmp-<pid>`` beside the final path, flushed to disk, then renamed over it; on
any error (or an interrupt) the temporary file is removed and the old file is untouched.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def temporary_path(final: str | Path) -> Path:
    """The temporary name used while ``final`` is written (``.<name>.tmp-<pid>``)."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_write(final: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it over ``final``, else delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(final)
    try:
        yield temporary
        if fsync:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def write_text_atomic(final: str | Path, text: str) -> Path:
    """Write ``text`` to ``final`` atomically."""
    with atomic_write(final) as temporary:
        temporary.write_text(text)
    return Path(final)
