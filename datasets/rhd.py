"""Reader for the raw Rendered Hand Pose Dataset (RHD, Zimmermann & Brox 2017), read in place.

Layout (`datasets.md` §1.1–1.5)::

    <root>/training/{color,depth,mask}/%05d.png   anno_training.pickle
    <root>/evaluation/{color,depth,mask}/%05d.png anno_evaluation.pickle

Each frame annotates two hands (42 keypoints). One sample is one hand, in mano21:

- ``hand="mask"`` (default, hand3d's rule): the hand with more mask pixels (left labels
  2–17, right labels 18–33); a tie goes to the right hand.
- ``hand="visible"`` (Minimal-Hand's rule): the hand with more visible keypoints; a tie
  goes to the right hand.
- ``hand="both"``: every frame gives two samples, left (even index) then right (odd).

Left hands are returned as they are with ``is_left=True``; ``mirror_left=True`` mirrors
them into right hands (:func:`datasets.conventions.mirror_sample`). ``joints2d`` are the
annotated ``uv`` (the projection of ``xyz`` through the per-sample ``K`` to annotation
precision); ``visible`` is ``uv_vis[:, 2] == 1``; ``mask`` marks the chosen hand's pixels;
``depth`` is decoded to metres (:func:`datasets.images.read_rhd_depth`).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from datasets.conventions import RHD42_TO_MANO21, check_joints, make_sample, mirror_sample
from datasets.errors import DatasetError
from datasets.images import read_gray, read_rgb, read_rhd_depth
from datasets.safe_pickle import restricted_load

RHD_SPLITS = ("training", "evaluation")
RHD_HAND_CHOICES = ("mask", "visible", "both")
RHD_IMAGE_SIZE = (320, 320)  # (width, height)
#: Mask label ranges of each hand (`datasets.md` §1.5): left 2–17, right 18–33.
RHD_MASK_LABELS = {"left": (2, 17), "right": (18, 33)}
SIDES = ("left", "right")
_ANNOTATION_SHAPES = {"xyz": (42, 3), "uv_vis": (42, 3), "K": (3, 3)}


def load_rhd_annotations(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read ``anno_<split>.pickle`` safely and validate it.

    Returns the sorted sample ids and ``{"xyz": (N,42,3), "uv_vis": (N,42,3), "K": (N,3,3)}``
    as float32. Any structural problem, NaN/inf, or a pickle that asks for code raises
    :class:`DatasetError` naming the file (and the sample id).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: RHD annotation file not found")
    try:
        anno = restricted_load(path)
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"RHD annotation pickle refused: {exc}") from exc
    if not isinstance(anno, dict) or not anno:
        raise DatasetError(f"{path}: expected a non-empty dict of sample id → annotation, found {type(anno).__name__}")
    bad_keys = [k for k in anno if not isinstance(k, (int, np.integer))]
    if bad_keys:
        raise DatasetError(f"{path}: expected integer sample ids as keys, found {bad_keys[:3]!r}")
    ids = np.array(sorted(int(k) for k in anno), dtype=np.int64)
    arrays = {key: np.empty((len(ids),) + shape, np.float32) for key, shape in _ANNOTATION_SHAPES.items()}
    for row, sample_id in enumerate(ids):
        entry = anno[sample_id]
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: sample {sample_id}: expected a dict with keys {sorted(_ANNOTATION_SHAPES)}, "
                               f"found {type(entry).__name__}")
        for key, shape in _ANNOTATION_SHAPES.items():
            if key not in entry:
                raise DatasetError(f"{path}: sample {sample_id}: missing key {key!r} (found keys {sorted(entry)})")
            value = entry[key]
            if isinstance(value, np.ndarray) and value.shape == shape and value.dtype.kind in "fiu":
                arrays[key][row] = value  # the common case; finiteness is checked for all rows below
            else:
                arrays[key][row] = check_joints(value, shape, f"{path}: sample {sample_id} {key!r}")
    for key, array in arrays.items():
        bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=(1, 2)))
        if len(bad_rows):
            raise DatasetError(f"{path}: sample {ids[bad_rows[0]]} {key!r}: contains NaN or inf values")
    return ids, arrays


class RHDDataset(Dataset):
    """RHD frames as sample dicts (`sample_api.md`), one hand per sample, mano21."""

    def __init__(
        self,
        root: str | Path,
        split: str = "training",
        hand: str = "mask",
        transform: Callable[[dict], dict] | None = None,
        mirror_left: bool = False,
    ):
        if split not in RHD_SPLITS:
            raise ValueError(f"unknown RHD split {split!r}; choose one of {RHD_SPLITS}")
        if hand not in RHD_HAND_CHOICES:
            raise ValueError(f"unknown RHD hand choice {hand!r}; choose one of {RHD_HAND_CHOICES}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: RHD root directory not found (expected RHD_published_v2/ "
                               f"with training/ and evaluation/)")
        self.folder = self.root / split
        for sub in ("color", "depth", "mask"):
            if not (self.folder / sub).is_dir():
                raise DatasetError(f"{self.folder / sub}: RHD image directory not found")
        self.split, self.hand, self.transform, self.mirror_left = split, hand, transform, mirror_left
        self.sample_ids, self.annotations = load_rhd_annotations(self.folder / f"anno_{split}.pickle")

    def __len__(self) -> int:
        return len(self.sample_ids) * (2 if self.hand == "both" else 1)

    def _image_path(self, kind: str, sample_id: int) -> Path:
        return self.folder / kind / f"{sample_id:05d}.png"

    def _choose_side(self, row: int, labels: np.ndarray) -> str:
        if self.hand == "mask":
            counts = [np.count_nonzero((labels >= lo) & (labels <= hi)) for lo, hi in RHD_MASK_LABELS.values()]
        else:
            vis = self.annotations["uv_vis"][row, :, 2] == 1
            counts = [np.count_nonzero(vis[RHD42_TO_MANO21[side]]) for side in SIDES]
        return "left" if counts[0] > counts[1] else "right"

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"RHD {self.split} index {i} out of range [0, {len(self)})")
        row = i // 2 if self.hand == "both" else i
        sample_id = int(self.sample_ids[row])
        labels = read_gray(self._image_path("mask", sample_id), RHD_IMAGE_SIZE)
        side = SIDES[i % 2] if self.hand == "both" else self._choose_side(row, labels)
        gather = RHD42_TO_MANO21[side]
        lo, hi = RHD_MASK_LABELS[side]
        sample = make_sample(
            rgb=read_rgb(self._image_path("color", sample_id), RHD_IMAGE_SIZE),
            depth=read_rhd_depth(self._image_path("depth", sample_id), RHD_IMAGE_SIZE),
            mask=(labels >= lo) & (labels <= hi),
            joints3d=self.annotations["xyz"][row, gather],
            joints2d=self.annotations["uv_vis"][row, gather, :2],
            visible=self.annotations["uv_vis"][row, gather, 2] == 1,
            K=self.annotations["K"][row],
            is_left=side == "left",
            index=i,
        )
        if self.mirror_left and side == "left":
            sample = mirror_sample(sample)
        return self.transform(sample) if self.transform is not None else sample
