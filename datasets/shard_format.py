"""The HDF5 shard format shared by rendered and converted datasets (`interfaces.md`).

A dataset is a directory of ``shard-000000.h5`` … plus ``manifest.json``. A shard holds N
samples as the arrays of :data:`ARRAYS`; it appears under its final name only when
complete (:func:`write_shard` writes to a temporary name, checks it, then renames). The
manifest records each shard's sample count and SHA-256, the generating config and the
history of the commands that filled the directory (:func:`record_invocation`; shard files
never hold a command line, so equal settings give bitwise equal shards). It is updated
under a file lock so several processes or machines can fill one directory
(:func:`record_shards`). Readers check every shard against its recorded SHA-256 before
use (:func:`verify_checksums`).

This module owns the schema; writers (``render``, ``datasets.convert``) and readers
(``datasets.shards``) go through it.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import h5py
import hdf5plugin  # registers the Blosc filter of DEFAULT_COMPRESSION for every reader and writer of shards
import numpy as np

from datasets.atomic import atomic_write, write_text_atomic
from datasets.errors import DatasetError
from datasets.joints import MANO21

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = re.compile(r"^shard-(\d{6})\.h5$")


@dataclass(frozen=True)
class ArraySpec:
    dtype: str
    per_sample_shape: tuple  # "H"/"W" stand for the image size
    required: bool
    meaning: str


#: Per-sample arrays of a shard (contract: `interfaces.md`, "Synthetic and converted shards").
ARRAYS: dict[str, ArraySpec] = {
    "rgb": ArraySpec("uint8", ("H", "W", 3), True, "colour image"),
    "depth": ArraySpec("uint16", ("H", "W"), False, "depth in millimetres along camera z, 0 = no data"),
    "mask": ArraySpec("uint8", ("H", "W"), False, "1 = hand, 0 = other"),
    "joints3d": ArraySpec("float32", (21, 3), True, "metres, camera frame (OpenCV axes), mano21"),
    "joints2d": ArraySpec("float32", (21, 2), True, "pixels (u = column, v = row)"),
    "visible": ArraySpec("bool", (21,), True, "joint not occluded by the hand itself or out of frame"),
    "K": ArraySpec("float32", (3, 3), True, "intrinsics of the stored image"),
}

#: Image arrays are chunked one sample per chunk and compressed; see docs/shard_storage.md
#: for the measurement behind this choice.
IMAGE_ARRAYS = ("rgb", "depth", "mask")
#: Blosc (lz4, level 9, byte shuffle) from hdf5plugin: half lzf's CPU to write and to read for 2 % more
#: bytes (docs/shard_storage.md). Shards written with lzf (the previous default) stay readable.
DEFAULT_COMPRESSION: dict[str, Any] = dict(hdf5plugin.Blosc(cname="lz4", clevel=9, shuffle=hdf5plugin.Blosc.SHUFFLE))


class ShardError(DatasetError):
    """A shard or manifest is missing, truncated, corrupt or of an unknown schema."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.h5"


def shard_index(name: str) -> int | None:
    match = SHARD_PATTERN.match(Path(name).name)
    return int(match.group(1)) if match else None


def list_shards(directory: str | Path) -> list[Path]:
    """Complete shards of a dataset directory, in index order (temporary files ignored)."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if shard_index(p.name) is not None)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_arrays(arrays: Mapping[str, np.ndarray], where: str) -> int:
    missing = [k for k, spec in ARRAYS.items() if spec.required and k not in arrays]
    if missing:
        raise ShardError(f"{where}: missing required arrays {missing}")
    n = len(arrays["rgb"])
    height, width = arrays["rgb"].shape[1:3]
    for key, spec in ARRAYS.items():
        if key not in arrays:
            continue
        value = arrays[key]
        expected = tuple({"H": height, "W": width}.get(d, d) for d in spec.per_sample_shape)
        if value.dtype != np.dtype(spec.dtype) or value.shape != (n,) + expected:
            raise ShardError(
                f"{where}: array '{key}' should be {spec.dtype} {(n,) + expected}, "
                f"found {value.dtype} {value.shape}"
            )
    return n


def write_shard(
    directory: str | Path,
    index: int,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    compression: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one shard atomically and return its manifest entry.

    ``arrays`` holds the :data:`ARRAYS` plus any extra per-sample arrays (hand parameters,
    seeds); ``attrs`` must include ``source`` and ``config`` (a JSON string) and may hold
    more. The file is written to a temporary name, flushed to disk (while it is re-opened,
    checked and hashed: fsync and hashlib both release the GIL), then renamed, so a shard
    under its final name is always complete. The write runs on a fresh thread stack
    (:func:`_on_fresh_stack`), so the same arrays give the same bytes.
    """
    directory = Path(directory)
    final = directory / shard_name(index)
    n = _check_arrays(arrays, str(final))
    compression = dict(DEFAULT_COMPRESSION if compression is None else compression)
    with atomic_write(final, fsync=False) as temporary:  # this thread owns the temporary file: removed on any error
        _on_fresh_stack(_write_h5, temporary, n, arrays, attrs, compression)
        with open(temporary, "rb+") as handle, ThreadPoolExecutor(1, thread_name_prefix="shard-fsync") as disk:
            flushed = disk.submit(os.fsync, handle.fileno())  # the wait for the disk overlaps the checks below
            open_shard(temporary).close()  # read back and validate before the rename
            entry = {"name": final.name, "num_samples": int(n), "sha256": file_sha256(temporary),
                     "bytes": temporary.stat().st_size}
            flushed.result()  # on disk before the rename (atomic_write renames when this block ends)
    return entry


def _write_h5(temporary: Path, n: int, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
              compression: Mapping[str, Any]) -> None:
    """The HDF5 file of :func:`write_shard` (run on a fresh thread stack)."""
    with h5py.File(temporary, "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["joint_layout"] = "mano21"
        f.attrs["joint_names"] = json.dumps(list(MANO21))
        f.attrs["num_samples"] = n
        for key, value in attrs.items():
            f.attrs[key] = value if isinstance(value, (str, int, float, np.number)) else json.dumps(value)
        for key, value in arrays.items():
            value = np.ascontiguousarray(value)
            if key in IMAGE_ARRAYS and n > 0:
                f.create_dataset(key, data=value, chunks=(1,) + value.shape[1:], **compression)
            else:
                f.create_dataset(key, data=value)


def open_shard(path: str | Path, expected_samples: int | None = None) -> h5py.File:
    """Open a shard read-only after validating its schema; raise :class:`ShardError` if bad."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 shard (truncated or corrupt?): {exc}") from exc
    try:
        version = f.attrs.get("schema_version")
        if version is None:
            raise ShardError(f"{path}: no 'schema_version' attribute; not a shard of this toolkit")
        if int(version) != SCHEMA_VERSION:
            raise ShardError(f"{path}: schema_version {int(version)} is unknown; this toolkit reads {SCHEMA_VERSION}")
        if f.attrs.get("joint_layout") != "mano21":
            raise ShardError(f"{path}: joint_layout should be 'mano21', found {f.attrs.get('joint_layout')!r}")
        n = int(f.attrs.get("num_samples", -1))
        if expected_samples is not None and n != expected_samples:
            raise ShardError(f"{path}: expected {expected_samples} samples, the file says {n}")
        for key, spec in ARRAYS.items():
            if key not in f:
                if spec.required:
                    raise ShardError(f"{path}: missing required array '{key}'")
                continue
            ds = f[key]
            if ds.shape[0] != n or ds.dtype != np.dtype(spec.dtype):
                raise ShardError(
                    f"{path}: array '{key}' should be {spec.dtype} with {n} samples, found {ds.dtype} {ds.shape}"
                )
    except ShardError:
        f.close()
        raise
    except Exception as exc:  # h5py raises assorted errors on damaged files
        f.close()
        raise ShardError(f"{path}: damaged shard ({type(exc).__name__}: {exc})") from exc
    return f


def verify_checksums(directory: str | Path, names: list[str] | None = None) -> tuple[int, int]:
    """Check shards of ``directory`` (default: all the manifest lists) against their recorded
    SHA-256; return ``(shards, bytes)`` checked or raise :class:`ShardError` naming the first
    bad shard and the manifest. Cost: one sequential read of every byte (docs/integrity.md).

    A directory without a manifest (hand-made shards, indexed from their own attributes by
    :mod:`datasets.shards`) has nothing to check against: ``(0, 0)``.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        return 0, 0
    listed = read_manifest(directory)["shards"]
    checked_bytes = 0
    for name in (sorted(listed) if names is None else names):
        path = directory / name
        expected = listed.get(name, {}).get("sha256")
        if expected is None:
            raise ShardError(f"{path}: {manifest_path} records no sha256 for this shard; expected one per shard")
        if not path.is_file():
            raise ShardError(f"{path}: shard file not found; {manifest_path} lists it")
        actual = file_sha256(path)
        if actual != expected:
            raise ShardError(f"{path}: SHA-256 {actual[:16]}… does not match {expected[:16]}… recorded in "
                             f"{manifest_path}; the shard is damaged or was changed (rerun the command that made it "
                             "to redo damaged shards)")
        checked_bytes += path.stat().st_size
    return len(listed) if names is None else len(names), checked_bytes


# --------------------------------------------------------------------------- manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a dataset directory, or an empty one if none exists yet."""
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "shards": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ShardError(f"{path}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), dict):
        raise ShardError(f"{path}: manifest should be an object with a 'shards' object")
    return manifest


@contextlib.contextmanager
def _manifest_lock(directory: Path) -> Iterator[None]:
    """Hold ``.manifest.json.lock`` exclusively; the lock file is removed when released.

    Removing a lock file is safe only if every holder checks, once it has the lock, that the
    path still names the file it locked (another holder may have removed it meanwhile);
    otherwise it retries on the new file.
    """
    path = directory / f".{MANIFEST_NAME}.lock"
    while True:
        lock = open(path, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(lock.fileno()).st_ino:  # removed by the previous holder: lock the new one
                continue
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return
        finally:
            lock.close()  # also releases the lock


def record_invocation(directory: str | Path, command: str, **details: Any) -> dict[str, Any]:
    """Append one run's command line (and ``details``) to the manifest's ``invocations`` list.

    How a run was typed (flag order, ``--workers``, the job-array index) is history, kept in
    the manifest only: shard files carry only what determines their samples, so the same
    seed and config give bitwise identical shards whatever the command line.
    """
    directory = Path(directory)
    with _manifest_lock(directory):
        manifest = read_manifest(directory)
        manifest["schema_version"] = SCHEMA_VERSION
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        manifest.setdefault("invocations", []).append({"command": command, "time": now, **details})
        write_text_atomic(directory / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def record_shards(directory: str | Path, entries: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """Add shard entries (and top-level ``fields``) to the manifest, atomically and under a lock."""
    directory = Path(directory)
    with _manifest_lock(directory):
        manifest = read_manifest(directory)
        manifest["schema_version"] = SCHEMA_VERSION
        manifest.update(fields)
        for entry in entries:
            manifest["shards"][entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
        manifest["shards"] = dict(sorted(manifest["shards"].items()))
        manifest["num_samples"] = sum(e["num_samples"] for e in manifest["shards"].values())
        manifest["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_text_atomic(directory / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------- bitwise-stable lzf
#
# Write a shard on a fresh thread stack, so that its lzf-compressed bytes depend only on the data.
#
# h5py's lzf compressor (``lzf_c.c``, built with ``INIT_HTAB = 0``) keeps its 16 k-entry hash
# table of match positions on the stack without clearing it (h5py issue #419). Stale values
# left there by earlier calls in the same thread — OpenCV, numpy, GL, earlier shards — that
# happen to point into the chunk being compressed are taken as match candidates, so the same
# arrays can compress to different (equally valid) bytes in two processes with different
# histories: a resumed run then differs bitwise from an uninterrupted one.
#
# :func:`_on_fresh_stack` runs the write in a new thread whose stack is too large for
# glibc's cache of thread stacks (40 MiB), hence freshly mapped zero pages: the hash table
# starts empty and later chunks of the same shard see only what this write left there.
# The cost is one thread start per shard (virtual memory only; pages are touched on use).

#: Larger than glibc's thread-stack cache, so an exited writer's stack is unmapped, never reused.
FRESH_STACK_BYTES = 64 * 1024 * 1024


def _on_fresh_stack(write: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``write(*args, **kwargs)`` on a new thread with a fresh stack; its result, or its exception re-raised."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = write(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    previous = threading.stack_size(FRESH_STACK_BYTES)
    try:
        thread = threading.Thread(target=run, name="shard-writer")
        thread.start()
    finally:
        threading.stack_size(previous)
    try:
        thread.join()
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) while the writer runs: let it finish with the file before
        # the caller's cleanup removes it, then pass the interruption on.
        while thread.is_alive():
            with contextlib.suppress(BaseException):
                thread.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
