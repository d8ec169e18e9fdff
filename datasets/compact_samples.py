"""The worker half of the batched input pipeline: stored arrays, a plan, and (on a CPU) one warp per image.

:class:`CompactSamples` wraps a :class:`~datasets.shards.ShardDataset` whose transform is a
:class:`~datasets.transforms.Compose` of geometric transforms and normalisations. Its items
are *compact samples*: the stored uint8 RGB and uint16 depth (mm), float32 joints and
``K``, and the plan of the geometric transforms — one composed warp ``M`` (source →
output pixels), output ``K``, scene rotation ``R`` and colour factors, drawn from
``(seed, epoch, index)`` exactly as the per-sample transforms draw them. With
``warp_in_worker`` the images are resampled once with OpenCV, staying uint8/uint16
(:func:`datasets.warp.warp_stored_pair`).

A DataLoader fetches a whole batch through :meth:`CompactSamples.__getitems__`: the worker
reads only the arrays the plan and the batch transform use, and warps each image straight
into its row of the batch tensors, which live in shared memory already, so the batch
reaches the main process without another copy. The main process finishes it with
:class:`datasets.batch_transform.BatchTransform`.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.transforms import Compose, GeometricTransform, NormalizeInputs, NormalizeTarget, _after
from datasets.warp import Warp, warp_stored_pair

#: Keys of a compact sample that are stacked as they are (the images may need padding).
PLAN_KEYS = ("joints3d", "joints2d", "visible", "K", "plan_M", "plan_K", "plan_R", "plan_colour", "plan_size",
             "index", "shard_sample")
#: Stored arrays a compact sample is made of (``mask`` only when a crop is planned from it).
_READ_KEYS = ("rgb", "depth", "joints3d", "joints2d", "visible", "K")


def split_compose(compose: Compose) -> tuple[list[GeometricTransform], bool, float | None]:
    """The geometric transforms of ``compose`` and what follows them: (transforms, target?, depth cube or None).

    Supported: geometric transforms (none of which reads the images after an earlier one
    warped them), then optionally :class:`NormalizeTarget` and :class:`NormalizeInputs`.
    """
    geometric, target, cube = [], False, None
    for position, transform in enumerate(compose.transforms):
        if isinstance(transform, GeometricTransform):
            if target or cube is not None:
                raise ValueError(f"batched loading needs the geometric transforms first; {compose} has "
                                 f"{type(transform).__name__} after a normalisation")
            if geometric and transform.needs_images:
                raise ValueError(f"batched loading plans all warps from the stored images; {compose} has "
                                 f"{type(transform).__name__} (reads the warped images) at position {position}")
            geometric.append(transform)
        elif isinstance(transform, NormalizeTarget):
            target = True
        elif isinstance(transform, NormalizeInputs):
            cube = transform.cube_half_size
        else:
            raise ValueError(f"batched loading supports crop, augmentation and normalisations; "
                             f"{compose} has {type(transform).__name__}")
    return geometric, target, cube


def plan_stored_sample(raw: dict, index: int, geometric: list[GeometricTransform],
                       size: tuple[int, int] | None = None) -> Warp:
    """The composed :class:`Warp` of ``geometric`` for one stored sample (same draws as the per-sample chain);
    ``size``: the stored image's (h, w) when ``raw`` holds no ``rgb`` (planned before the images are read)."""
    height, width = raw["rgb"].shape[:2] if size is None else size
    view = {"K": np.asarray(raw["K"], np.float64), "size": (height, width),
            "joints2d": np.asarray(raw["joints2d"], np.float64), "index": index}
    if "mask" in raw and any(t.needs_images for t in geometric):  # a crop around the mask
        view["mask"] = (np.asarray(raw["mask"]) > 0)[None]
    plan = Warp(np.eye(3), (height, width), view["K"])
    for transform in geometric:
        warp = transform.plan(view)
        plan = plan.then(warp)
        view = _after(view, warp)
    return plan


def _plan_fields(raw: dict, plan: Warp, index: int) -> dict:
    """The small arrays of a compact sample: stored geometry and the plan."""
    return {"joints3d": np.asarray(raw["joints3d"], np.float32), "joints2d": np.asarray(raw["joints2d"], np.float32),
            "visible": np.asarray(raw["visible"], bool), "K": np.asarray(raw["K"], np.float32),
            "plan_M": np.asarray(plan.M, np.float64), "plan_K": np.asarray(plan.K, np.float64),
            "plan_R": np.eye(3) if plan.rotation is None else np.asarray(plan.rotation, np.float64),
            "plan_colour": np.asarray(plan.colour, np.float64).reshape(-1, 3),
            "plan_size": np.asarray(plan.size, np.int64), "index": np.int64(index)}


def compact_sample(raw: dict, index: int, geometric: list[GeometricTransform], warp_images: bool) -> dict:
    """Stored arrays + plan of one sample as small numpy arrays (images uint8/uint16, warped if ``warp_images``)."""
    plan = plan_stored_sample(raw, index, geometric)
    rgb, depth = raw["rgb"], raw.get("depth")
    if warp_images:
        height, width = plan.size
        rgb, maps = np.empty((height, width, 3), np.uint8), (np.empty(plan.size, np.float32),
                                                             np.empty(plan.size, np.float32))
        depth_out = None if depth is None else np.empty(plan.size, np.uint16)
        warp_stored_pair(raw["rgb"], depth, plan.M, rgb, depth_out, maps)
        depth = depth_out
    out = {"rgb8": _channels_first(rgb), **_plan_fields(raw, plan, index)}
    if depth is not None:
        out["depth16"] = np.ascontiguousarray(depth, np.uint16)
    return out


#: First byte of a recycled batch buffer: the worker sets IN_USE before passing it on, the
#: main process sets FREE once the batch transform has consumed it (``DeviceBatches``).
FREE, IN_USE = 0, 1
#: Offset of the first array in a batch buffer, and the alignment of each array in it.
_ALIGN = 64


class SharedBatchBuffers:
    """Shared-memory batch buffers that one DataLoader worker reuses from batch to batch.

    Fresh shared pages are expensive to fault in (the stage table of ``docs/loader_benchmark.md``
    measures a batch written into fresh against recycled shared pages). Each buffer holds a whole batch; its first byte says whether the main
    process still uses it. :meth:`take` returns a free buffer of at least ``nbytes`` or a new
    one, of which at most ``limit`` are kept for reuse (batches never released, e.g. by a caller
    iterating the DataLoader itself, only cost fresh pages again). Only the batch transform's
    inputs live here: it never returns a view of them (``BatchTransform`` copies what it passes on).
    """

    def __init__(self, limit: int = 8):
        self.limit, self._buffers, self._pid = int(limit), [], None

    def take(self, nbytes: int) -> torch.Tensor:
        """A uint8 tensor over a shared storage of at least ``nbytes`` bytes, its first byte IN_USE."""
        if self._pid != os.getpid():  # buffers of the parent are not this worker's
            self._buffers, self._pid = [], os.getpid()
        for buffer in self._buffers:
            if buffer.numel() >= nbytes and int(buffer[0]) == FREE:
                buffer[0] = IN_USE
                return buffer
        storage = torch.empty(0, dtype=torch.uint8).untyped_storage()._new_shared(int(nbytes))
        buffer = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (int(nbytes),))
        if len(self._buffers) < self.limit:
            self._buffers.append(buffer)
        buffer[0] = IN_USE
        return buffer


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


#: This process's buffers, when it is a DataLoader worker: recycled ones for batches the worker
#: warped (finished on the CPU, where ``DeviceBatches`` releases them), fresh ones (``limit=0``)
#: for the item-wise collate, whose batches may be copied to pinned memory and never come back.
_RECYCLED, _FRESH = SharedBatchBuffers(), SharedBatchBuffers(limit=0)


def worker_buffers(recycle: bool) -> SharedBatchBuffers | None:
    """This DataLoader worker's batch buffers (see ``_RECYCLED``), or ``None`` outside a worker."""
    if torch.utils.data.get_worker_info() is None:
        return None
    return _RECYCLED if recycle else _FRESH


def layout_batch(arrays: dict[str, tuple[tuple, np.dtype]], buffers: SharedBatchBuffers | None
                 ) -> dict[str, torch.Tensor]:
    """Tensors of the given shapes and dtypes, all views of one shared buffer taken from ``buffers``
    (``"_release"``: a view of its first byte, which ``DeviceBatches`` sets FREE), so passing them to
    the main process copies nothing; ordinary tensors when ``buffers`` is ``None``."""
    if buffers is None:
        return {key: torch.from_numpy(np.empty(shape, dtype)) for key, (shape, dtype) in arrays.items()}
    sizes = {key: int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
             for key, (shape, dtype) in arrays.items()}
    offsets, end = {}, _ALIGN
    for key, nbytes in sizes.items():
        offsets[key] = end
        end += -(-nbytes // _ALIGN) * _ALIGN
    buffer = buffers.take(end)
    out = {"_release": buffer[:1]}
    for key, (shape, dtype) in arrays.items():
        out[key] = buffer[offsets[key] : offsets[key] + sizes[key]].view(_torch_dtype(dtype)).view(shape)
    return out


def _channels_first(rgb: np.ndarray, out: list[np.ndarray] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) → (3, H, W), the layout of the network input (cv2.split: a fast de-interleave),
    into the three planes ``out`` when given."""
    import cv2

    rgb = np.ascontiguousarray(rgb, np.uint8)
    if out is not None:
        cv2.split(rgb, out)
        return None
    return np.stack(cv2.split(rgb))


def collate_compact(samples: list[dict] | dict) -> dict[str, torch.Tensor]:
    """Stack compact samples; unwarped images of different sizes are zero-padded (= outside the image).
    A batch :meth:`CompactSamples.__getitems__` delivered already stacked passes through."""
    if isinstance(samples, dict):
        return samples
    keys = [key for key in PLAN_KEYS + ("rgb8", "depth16") if key in samples[0]]
    shapes = {key: tuple(max(sizes) for sizes in zip(*(np.shape(s[key]) for s in samples))) for key in keys}
    batch = layout_batch({key: ((len(samples),) + shapes[key], np.asarray(samples[0][key]).dtype) for key in keys},
                         worker_buffers(recycle=False))
    for key in keys:
        arrays, out = [s[key] for s in samples], batch[key].numpy()
        if all(np.shape(a) == shapes[key] for a in arrays):
            np.stack(arrays, out=out)
            continue
        out[...] = 0  # also clears what a recycled buffer held
        for row, a in enumerate(arrays):
            out[(row,) + tuple(slice(0, n) for n in a.shape)] = a
    if "shard" in samples[0]:
        batch["shard"] = [s["shard"] for s in samples]
    return batch


class CompactSamples(Dataset):
    """A :class:`~datasets.shards.ShardDataset` whose items are compact samples of its transform's plan.

    ``shards.transform`` must be a :class:`Compose` of the form :func:`split_compose`
    accepts; ``transform`` is that Compose (``set_epoch`` goes through it). Pair with
    ``batch_transform`` (a :class:`~datasets.batch_transform.BatchTransform` matching ``warp_in_worker``).
    """

    def __init__(self, shards, warp_in_worker: bool = True, keep_rgb: bool = True):
        from datasets.batch_transform import BatchTransform

        if not isinstance(getattr(shards, "transform", None), Compose):
            raise ValueError(f"{shards}: batched loading needs a Compose transform, found {shards.transform!r}")
        self.shards, self.warp_in_worker = shards, bool(warp_in_worker)
        self.geometric, target, cube = split_compose(shards.transform)
        self.batch_transform = BatchTransform(target=target, cube_half_size=cube, warped=self.warp_in_worker,
                                              keep_rgb=keep_rgb)
        needs_mask = any(t.needs_images for t in self.geometric)
        self.read_keys = tuple(k for k in shards.keys if k in _READ_KEYS or (needs_mask and k == "mask"))
        self._image_keys = tuple(k for k in self.read_keys if k in ("rgb", "depth"))
        self._plan_keys = tuple(k for k in self.read_keys if k not in self._image_keys)
        self._threads_set_in: int | None = None
        self._scratch: tuple[np.ndarray, ...] | None = None
        if self.warp_in_worker:  # compile (or load) the warp's kernel here, so forked workers inherit it
            from datasets.cpu_kernels import source_map

            source_map(np.eye(3), np.empty((1, 1), np.float32), np.empty((1, 1), np.float32))

    @property
    def transform(self) -> Compose:
        return self.shards.transform

    def __len__(self) -> int:
        return len(self.shards)

    def _one_thread_per_worker(self) -> None:
        if self._threads_set_in != os.getpid() and torch.utils.data.get_worker_info() is not None:
            import cv2

            cv2.setNumThreads(1)  # one core per worker, like torch in DataLoader workers
            self._threads_set_in = os.getpid()

    def _provenance(self, index: int) -> tuple[str, np.int64]:
        shard, local = self.shards.locate(index)  # where the sample is stored, as ShardDataset items carry it
        return str(self.shards.shards[shard][0]), np.int64(local)

    def __getitem__(self, index: int) -> dict:
        self._one_thread_per_worker()
        raw = self.shards.read_raw(index, self.read_keys)
        sample = compact_sample(raw, int(index) % len(self), self.geometric, self.warp_in_worker)
        sample["shard"], sample["shard_sample"] = self._provenance(index)
        return sample

    def __getitems__(self, indices: list[int]) -> dict | list[dict]:
        """A whole batch, stacked (what :func:`collate_compact` would make of the items), with each
        image warped straight into its row of the batch; items as a list when the worker does not
        warp or the planned sizes differ (then the collate pads)."""
        if not self.warp_in_worker:
            return [self[i] for i in indices]
        self._one_thread_per_worker()
        # plan from the small arrays first; then read and warp one sample at a time, its images still in cache
        geometry = [self.shards.read_raw(i, self._plan_keys) for i in indices]
        plans = [plan_stored_sample(raw, int(i) % len(self), self.geometric, self.shards.stored_shape(i, "rgb")[:2])
                 for raw, i in zip(geometry, indices)]
        sizes = {tuple(plan.size) for plan in plans}
        if len(sizes) != 1:
            return [self[i] for i in indices]
        (height, width), count = sizes.pop(), len(indices)
        fields = [_plan_fields(raw, plan, int(i) % len(self)) for raw, plan, i in zip(geometry, plans, indices)]
        provenance = [self._provenance(i) for i in indices]
        for field, (_, local) in zip(fields, provenance):
            field["shard_sample"] = local
        arrays = {key: ((count,) + np.shape(fields[0][key]), np.asarray(fields[0][key]).dtype) for key in PLAN_KEYS}
        arrays["rgb8"] = ((count, 3, height, width), np.dtype(np.uint8))
        if "depth" in self._image_keys:
            arrays["depth16"] = ((count, height, width), np.dtype(np.uint16))
        batch = layout_batch(arrays, worker_buffers(recycle=True))
        for key in PLAN_KEYS:
            np.stack([field[key] for field in fields], out=batch[key].numpy())
        batch["shard"] = [shard for shard, _ in provenance]
        rgb = batch["rgb8"].numpy()
        depth = batch["depth16"].numpy() if "depth16" in batch else None
        if self._scratch is None or self._scratch[0].shape != (height, width, 3):
            self._scratch = (np.empty((height, width, 3), np.uint8),
                             np.empty((height, width), np.float32), np.empty((height, width), np.float32))
        scratch, maps = self._scratch[0], self._scratch[1:]
        for row, (index, plan) in enumerate(zip(indices, plans)):
            images = self.shards.read_raw(index, self._image_keys)
            warp_stored_pair(images["rgb"], images.get("depth"), plan.M, scratch,
                             None if depth is None else depth[row], maps)
            _channels_first(scratch, [rgb[row, 0], rgb[row, 1], rgb[row, 2]])
        return batch

    def preview(self, index: int = 0) -> dict[str, torch.Tensor]:
        """Sample ``index`` as the batch transform delivers it (a batch of one): what the phases see."""
        return self.batch_transform(collate_compact([self[index]]))

    def __repr__(self) -> str:
        return f"CompactSamples({self.shards!r}, warp_in_worker={self.warp_in_worker})"


__all__ = ["CompactSamples", "PLAN_KEYS", "SharedBatchBuffers", "collate_compact", "compact_sample",
           "layout_batch", "plan_stored_sample", "split_compose"]
