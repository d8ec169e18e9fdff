"""DataLoaders over shard directories (one or a mix of several) with the standard transforms.

Training order is a pure function of ``(seed, epoch)`` (:class:`ResumableSampler`): the
global order is one permutation, split over processes the way ``DistributedSampler``
splits it (process r takes positions r, r+W, r+2W, …), so batch k of a W-process run
holds exactly the samples of batch k of a 1-process run with a W-times larger batch.
A resumed run starts the epoch at the batch where the checkpoint was taken. The random
transforms draw from ``(seed, epoch, index)`` (``datasets.transforms``), so worker count
and interruptions do not change the samples.
"""
from __future__ import annotations

import bisect
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from datasets import build_dataset
from datasets.batch_transform import BatchTransform, DeviceBatches
from datasets.compact_samples import CompactSamples, collate_compact
from datasets.splits import check_shard_directory, check_training_directory
from datasets.transforms import evaluation_transform, training_transform

#: Seeds of the transforms of the k-th directory of a mix differ by this stride, so equal
#: indices in two mixed datasets do not share their augmentation.
_SEED_STRIDE = 7919


class ResumableSampler(Sampler[int]):
    """Shuffled (or ordered) indices for one process, per epoch, starting at a given batch.

    Args:
        size: dataset length. batch_size: per-process batch. rank, world_size: this process.
        seed: the permutation of epoch e is ``default_rng([seed, e]).permutation(size)``.
        drop_last: keep only full global batches (training); otherwise pad nothing and let
            the last batch be short (single-process evaluation only).
        subset: draw only these dataset indices (``size`` is then their count); the
            permutation is over the subset's positions (``data.train_fraction``).
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True, subset: Sequence[int] | None = None):
        self.subset = None if subset is None else np.asarray(subset, dtype=np.int64)
        if self.subset is not None:
            size = len(self.subset)
        if drop_last and size < batch_size * world_size:
            raise ValueError(f"the training set has {size} samples, fewer than one global batch "
                             f"({batch_size} per process x {world_size} processes); lower optim.batch_size")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    @property
    def batches_per_epoch(self) -> int:
        global_batch = self.batch_size * self.world_size
        return self.size // global_batch if self.drop_last else -(-self.size // global_batch)

    def _indices(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        if self.drop_last:
            order = order[: self.batches_per_epoch * self.batch_size * self.world_size]
        order = order[self.rank :: self.world_size]
        return order if self.subset is None else self.subset[order]

    def batch_indices(self, batch: int) -> list[int]:
        """Dataset indices of batch ``batch`` (counted from the epoch's start) of this process."""
        return [int(i) for i in self._indices()[batch * self.batch_size : (batch + 1) * self.batch_size]]

    def __iter__(self) -> Iterator[int]:
        indices = self._indices()[self.start_batch * self.batch_size :]
        return iter(int(i) for i in indices)

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start_batch * self.batch_size)


def labelled_subset(size: int, fraction: float, seed: int = 0) -> np.ndarray:
    """The sorted dataset indices of a labelled fraction: the first ``max(1, round(fraction·size))``
    of ``default_rng([seed, 104729]).permutation(size)`` (all indices for ``fraction >= 1``, none for 0).

    Nested: for one ``seed`` the 1 % subset lies inside the 10 % one, which lies inside 100 %,
    so label fractions compare like with like. Used for ``data.train_fraction`` (train on a
    labelled subset) and ``data.adapt_label_fraction`` (labels of the adaptation domain).
    """
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    if fraction >= 1:
        return np.arange(size, dtype=np.int64)
    count = min(size, max(1, int(round(fraction * size))))
    return np.sort(np.random.default_rng([seed, 104729]).permutation(size)[:count]).astype(np.int64)


def shard_datasets(directories: Sequence[str | Path], transform_for: Callable[[int], Callable]) -> Dataset:
    """One dataset over several shard directories; ``transform_for(k)`` gives the k-th one's transform."""
    for directory in directories:
        check_shard_directory(directory)  # a parent of split directories: say which splits it holds
    parts = [build_dataset("shards", str(d), transform=transform_for(k)) for k, d in enumerate(directories)]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def batched_datasets(directories: Sequence[str | Path], transform_for: Callable[[int], Callable],
                     warp_in_worker: bool, keep_rgb: bool = True) -> tuple[Dataset, BatchTransform]:
    """:func:`shard_datasets` delivering compact samples, and the batch transform that finishes them
    (:mod:`datasets.batch_transform`); every directory must need the same one. ``keep_rgb``: also
    deliver ``rgb`` in [0, 1] (evaluation shows it; the training phases read only ``rgb_input``)."""
    dataset = shard_datasets(directories, transform_for)
    parts = [CompactSamples(part, warp_in_worker, keep_rgb)
             for part in (dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset])]
    finishing = {repr(part.batch_transform) for part in parts}
    if len(finishing) > 1:
        raise ValueError(f"{list(map(str, directories))}: the directories' transforms finish differently "
                         f"({sorted(finishing)}); one batch needs one")
    return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), parts[0].batch_transform


def set_transform_epoch(dataset: Dataset, epoch: int) -> None:
    """Forward ``set_epoch`` to the transform of every part (before the epoch's iterator is created)."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    for part in parts:
        transform = getattr(part, "transform", None)
        if hasattr(transform, "set_epoch"):
            transform.set_epoch(epoch)


def require_keys(dataset: Dataset, keys: Sequence[str], directories: Sequence[str | Path], why: str) -> None:
    """Fail early, naming the directories, when samples lack a key a phase needs (e.g. depth for the teacher)."""
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    for part, directory in zip(parts, directories):
        sample = part.preview() if hasattr(part, "preview") else part[0]  # compact: as the batch delivers it
        missing = [k for k in keys if k not in sample]
        if missing:
            raise ValueError(f"{directory}: samples have no {missing} but {why} needs them "
                             f"(found keys {sorted(sample)})")


def sample_sources(dataset: Dataset, indices: Sequence[int]) -> tuple[list[str], list[int]]:
    """The shard file and the index inside it of each dataset index (through ``ConcatDataset``
    and wrappers such as ``CompactSamples`` that keep their ``ShardDataset`` as ``.shards``)."""
    from datasets.shards import ShardDataset

    shards, samples = [], []
    for index in indices:
        part, local = dataset, int(index)
        if isinstance(part, ConcatDataset):
            k = bisect.bisect_right(part.cumulative_sizes, local)
            local -= part.cumulative_sizes[k - 1] if k else 0
            part = part.datasets[k]
        while not isinstance(part, ShardDataset):
            part = part.shards
        shard, inside = part.locate(local)
        shards.append(str(part.shards[shard][0]))
        samples.append(inside)
    return shards, samples


def describe_samples(shards: Sequence[str], samples: Sequence[int], limit: int = 6) -> str:
    """``"shard-000003.h5 samples [4, 17]; shard-000007.h5 sample [2]"``: where batch items came from."""
    by_shard: dict[str, list[int]] = {}
    for shard, sample in zip(shards, samples):
        by_shard.setdefault(str(shard), []).append(int(sample))
    parts = []
    for shard, indices in list(by_shard.items())[:limit]:
        shown = ", ".join(map(str, sorted(indices)[:limit])) + (", …" if len(indices) > limit else "")
        parts.append(f"{shard} sample{'s' if len(indices) > 1 else ''} [{shown}]")
    more = len(by_shard) - limit
    return "; ".join(parts) + (f"; and {more} more shard(s)" if more > 0 else "")


def verify_shard_checksums(directories: Sequence[str | Path]) -> tuple[int, int]:
    """Check every shard of ``directories`` against its manifest SHA-256 (once per run, main process);
    returns ``(shards, bytes)`` checked, or raises ``ShardError`` naming the bad shard and the manifest.
    A directory without ``manifest.json`` cannot be checked: one warning line says so."""
    from datasets.shard_format import MANIFEST_NAME, verify_checksums

    shards = size = 0
    for directory in dict.fromkeys(str(d) for d in directories):
        if not (Path(directory) / MANIFEST_NAME).is_file():
            print(f"warning: {directory} has no {MANIFEST_NAME}; its shards are read without a checksum check",
                  file=sys.stderr)
        counted, nbytes = verify_checksums(directory)
        shards, size = shards + counted, size + nbytes
    return shards, size


def training_loader(directories: Sequence[str | Path], *, image_size: int, augment: bool, batch_size: int,
                    seed: int, workers: int, rank: int = 0, world_size: int = 1,
                    pin_memory: bool = False, device: torch.device | str | None = None,
                    allow_eval_split: bool = False, fraction: float = 1.0,
                    subset_seed: int = 0) -> tuple[DeviceBatches, ResumableSampler]:
    """Loader of the training set; ``batch_size`` is per process. Call ``sampler.set_epoch`` and
    :func:`set_transform_epoch` before each epoch.

    Workers deliver compact batches that the batch transform finishes on ``device``
    (default: the current CUDA device with ``pin_memory``, else the CPU); on a CPU the
    workers also warp the images (cheaper there), on a GPU the device does. A directory holding an
    evaluation/test split is refused unless ``allow_eval_split`` (``data.allow_eval_split``). With
    ``fraction < 1`` only :func:`labelled_subset` ``(len, fraction, subset_seed)`` is drawn."""
    for directory in directories:
        check_training_directory(directory, allow_eval_split)
    device = torch.device(device if device is not None else ("cuda" if pin_memory else "cpu"))
    dataset, finish = batched_datasets(
        directories, lambda k: training_transform(size=image_size, augment=augment, seed=seed + _SEED_STRIDE * k),
        warp_in_worker=device.type != "cuda", keep_rgb=False)
    subset = None if fraction >= 1 else labelled_subset(len(dataset), fraction, subset_seed)
    sampler = ResumableSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size, subset=subset)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_compact, pin_memory=pin_memory, drop_last=True,
                        persistent_workers=False)
    return DeviceBatches(loader, finish, device), sampler


def evaluation_loader(directories: Sequence[str | Path], *, image_size: int, batch_size: int = 32,
                      workers: int = 0) -> DeviceBatches:
    """Loader over every sample, in order, with the deterministic evaluation transform (batches on the CPU)."""
    dataset, finish = batched_datasets(directories, lambda k: evaluation_transform(size=image_size),
                                       warp_in_worker=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_compact)
    return DeviceBatches(loader, finish, "cpu")
