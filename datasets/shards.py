"""Read any directory of HDF5 shards (synthetic or converted) as the sample dict of `interfaces.md`.

The index (shard names and sample counts) comes from ``manifest.json``, or from the
shards' own attributes when there is no manifest. Files are opened lazily, once per
process: the dataset remembers the pid that opened them and reopens after a fork, so it
is safe with DataLoader worker processes. Each shard is validated once when opened
(:func:`datasets.shard_format.open_shard`); reading an item then reads only that
sample's chunk of each array.
"""
from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.shard_format import MANIFEST_NAME, ShardError, list_shards, open_shard, read_manifest
from datasets.splits import check_shard_directory

#: Arrays of the sample dict read by default (those a shard lacks are skipped).
SAMPLE_KEYS = ("rgb", "depth", "mask", "joints3d", "joints2d", "visible", "K")
#: Arrays of at most this many bytes per sample are read whole when a shard is opened (one h5py
#: call per array and shard instead of one per sample: at 256² that read cost as much as an image's).
_SMALL_BYTES = 4096


def _per_sample_bytes(dataset: h5py.Dataset) -> int:
    return int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize


def _shard_split(path: Path) -> str | None:
    try:
        with h5py.File(path, "r") as f:
            split = f.attrs.get("split")
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 shard (truncated or corrupt?): {exc}") from exc
    return None if split is None else str(split)


def _shard_count(path: Path) -> int:
    with open_shard(path) as f:
        return int(f.attrs["num_samples"])


def build_index(root: Path, split: str | None) -> list[tuple[Path, int]]:
    """``(shard path, sample count)`` of every shard of ``root`` in ``split`` (``None`` = all)."""
    if not root.is_dir():
        raise ShardError(f"{root}: shard directory not found")
    manifest_path = root / MANIFEST_NAME
    if manifest_path.exists():
        manifest = read_manifest(root)
        listed = [(root / name, int(entry["num_samples"]), entry.get("split", manifest.get("split")))
                  for name, entry in manifest["shards"].items()]
        missing = [str(path.name) for path, _, _ in listed if not path.is_file()]
        if missing:
            raise ShardError(f"{manifest_path}: lists shards that are not in {root}: {missing}")
    else:
        listed = [(path, _shard_count(path), None) for path in list_shards(root)]
    if not listed:
        raise ShardError(f"{root}: no shards (expected files named shard-000000.h5, ... and a {MANIFEST_NAME})")
    if split is None:
        return [(path, count) for path, count, _ in listed]
    splits = [known if known is not None else _shard_split(path) for path, _, known in listed]
    selected = [(path, count) for (path, count, _), found in zip(listed, splits) if found == split]
    if not selected:
        available = sorted({str(s) for s in splits})
        raise ShardError(f"{root}: no shard has split {split!r}; splits found: {available}")
    return selected


class ShardDataset(Dataset):
    """A directory of shards as a ``torch.utils.data.Dataset`` of sample dicts.

    ``split`` selects shards by their ``split`` attribute (``None`` = all shards). ``keys``
    restricts which arrays are read (default :data:`SAMPLE_KEYS` present in the shards;
    extra per-sample arrays such as ``pose_pca`` may be named too). Items: ``rgb`` float
    (3,H,W) in [0, 1], ``depth`` float (1,H,W) metres, ``mask`` float (1,H,W),
    ``joints3d``, ``joints2d``, ``visible``, ``K`` as tensors, plus ``is_left`` (bool
    tensor; False unless the shard stores it) and ``index`` (int); :meth:`locate` tells which
    shard file holds an index.
    """

    def __init__(self, root: str | Path, split: str | None = None, transform: Callable | None = None,
                 keys: Sequence[str] | None = None):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        check_shard_directory(self.root)  # a parent of split directories is named with its splits
        self.shards = build_index(self.root, split)
        self._ends = np.cumsum([count for _, count in self.shards]).tolist()
        with open_shard(self.shards[0][0], expected_samples=self.shards[0][1]) as first:
            present = [k for k in first.keys()]
        if keys is None:
            keys = [k for k in SAMPLE_KEYS if k in present]
        unknown = [k for k in keys if k not in present]
        if unknown:
            raise ShardError(f"{self.shards[0][0]}: requested arrays {unknown} are not stored; it has {present}")
        self.keys = tuple(keys)
        self._read_is_left = "is_left" in present
        self._pid: int | None = None
        self._open: dict[int, tuple[h5py.File, dict]] = {}

    def __len__(self) -> int:
        return self._ends[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard number, sample within shard)`` of a dataset index."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples in {self.root}")
        index %= len(self)
        shard = bisect.bisect_right(self._ends, index)
        return shard, index - (self._ends[shard - 1] if shard else 0)

    def _arrays(self, shard: int) -> dict:
        if self._pid != os.getpid():  # first use in this process, or a forked worker: never share handles
            self._open = {}
            self._pid = os.getpid()
        if shard not in self._open:
            path, count = self.shards[shard]
            f = open_shard(path, expected_samples=count)
            names = self.keys + (("is_left",) if self._read_is_left else ())
            missing = [k for k in names if k not in f]
            if missing:
                f.close()
                raise ShardError(f"{path}: lacks arrays {missing} that the first shard of {self.root} has")
            try:  # small per-sample arrays (joints, K, flags) are read once per shard, the images per sample
                arrays = {k: f[k][()] if _per_sample_bytes(f[k]) <= _SMALL_BYTES else f[k] for k in names}
            except Exception as exc:
                f.close()
                raise ShardError(f"{path}: cannot read its per-sample arrays "
                                 f"(damaged shard? {type(exc).__name__}: {exc})") from exc
            self._open[shard] = (f, arrays)
        return self._open[shard][1]

    def stored_shape(self, index: int, key: str) -> tuple[int, ...]:
        """Shape of array ``key`` of one sample as stored (e.g. ``(H, W, 3)`` for ``rgb``), without reading it."""
        shard, _ = self.locate(index)
        return tuple(self._arrays(shard)[key].shape[1:])

    def read_raw(self, index: int, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The stored arrays of one sample (``keys``, default all read ones), as numpy, without conversion."""
        shard, local = self.locate(index)
        arrays = self._arrays(shard)
        try:
            return {key: np.array(dataset[local]) if isinstance(dataset, np.ndarray) else dataset[local]
                    for key, dataset in arrays.items() if keys is None or key in keys}
        except Exception as exc:  # h5py raises assorted errors on damaged chunks
            raise ShardError(f"{self.shards[shard][0]}: cannot read sample {local} "
                             f"(damaged shard? {type(exc).__name__}: {exc})") from exc

    def __getitem__(self, index: int) -> dict:
        raw = self.read_raw(index)
        sample = to_sample(raw)
        sample["index"] = int(index) % len(self)
        if self.transform is None:
            return sample
        try:
            return self.transform(sample)
        except ValueError as exc:  # e.g. no finite joints to crop around: name the file and sample
            shard, local = self.locate(index)
            raise ShardError(f"{self.shards[shard][0]}: sample {local}: {exc}") from exc

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"], state["_pid"] = {}, None  # open HDF5 handles cannot be pickled (spawned workers)
        return state

    def close(self) -> None:
        if self._pid == os.getpid():
            for f, _ in self._open.values():
                f.close()
        self._open = {}

    def __repr__(self) -> str:
        return f"ShardDataset({str(self.root)!r}, split={self.split!r}, {len(self.shards)} shards, {len(self)} samples)"


def to_sample(raw: dict[str, np.ndarray]) -> dict:
    """Stored arrays (uint8 images, depth in mm) → sample dict tensors (float [0, 1], metres)."""
    sample: dict = {}
    for key, value in raw.items():
        if key == "rgb":
            sample[key] = torch.from_numpy(np.ascontiguousarray(value.transpose(2, 0, 1))).float().div_(255.0)
        elif key == "depth":
            sample[key] = torch.from_numpy(value.astype(np.float32)).div_(1000.0)[None]
        elif key == "mask":
            sample[key] = torch.from_numpy((value > 0).astype(np.float32))[None]
        elif key == "visible" or key == "is_left":
            sample[key] = torch.from_numpy(np.asarray(value, dtype=bool))
        else:
            sample[key] = torch.from_numpy(np.asarray(value))
    sample.setdefault("is_left", torch.tensor(False))
    return sample


__all__ = ["ShardDataset", "SAMPLE_KEYS", "build_index", "to_sample"]
