"""Reader for the raw FreiHAND dataset (Zimmermann et al. 2019), read in place.

Layout (`datasets.md` §3.1)::

    <root>/training/rgb/%08d.jpg    4 versions × N unique (224×224)
    <root>/training/mask/%08d.jpg   N masks (one per unique sample)
    <root>/evaluation/rgb/%08d.jpg  evaluation images (version "gs" only)
    <root>/training_K.json, training_xyz.json, evaluation_K.json, evaluation_xyz.json

Training image ``idx + N·v`` is unique sample ``idx`` seen in version ``v`` of
:data:`FREIHAND_VERSIONS` (gs, hom, sample, auto); all versions share the annotations of
``idx`` (§3.2). ``N`` is the length of ``training_K.json`` (32,560 in the release), so a
tiny copy works the same way.

Splits:

- ``"training"``: every unique sample in each chosen version.
- ``"evaluation"``: the evaluation set (version gs; needs ``evaluation_xyz.json``).
- ``"paper_train"`` / ``"paper_eval"`` (`method.md` §7, paper Table 3): per version,
  unique samples ``idx < paper_train_size`` (30,000) / the remaining ones (2,560).

``domain`` picks the version(s): one of gs/hom/sample/auto, or "all". All hands are right
hands. FreiHAND has no visibility labels: ``visible`` = in front of the camera and inside
the image. ``mask`` (training images) is ``training/mask`` channel 0 above
:data:`MASK_THRESHOLD` (the masks are JPEGs, so values near 0/255 are blurred).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from datasets.conventions import FREIHAND_TO_MANO21, check_joints, in_frame, make_sample
from datasets.errors import DatasetError
from datasets.geometry import project
from datasets.images import read_gray, read_rgb

FREIHAND_VERSIONS = ("gs", "hom", "sample", "auto")
FREIHAND_DOMAINS = FREIHAND_VERSIONS + ("all",)
FREIHAND_SPLITS = ("training", "evaluation", "paper_train", "paper_eval")
FREIHAND_IMAGE_SIZE = (224, 224)  # (width, height)
PAPER_TRAIN_SIZE = 30000
MASK_THRESHOLD = 127


def load_json_list(path: str | Path, entry_shape: tuple[int, ...]) -> np.ndarray:
    """A FreiHAND ``*.json`` list of equally shaped entries → float array ``(N,) + entry_shape``.

    Raises :class:`DatasetError` naming the file (and the first bad entry) when the file is
    missing, not JSON, not a list, or holds an entry of another shape or NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: FreiHAND annotation file not found")
    try:
        entries = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{path}: expected a non-empty JSON list of {entry_shape} entries, "
                           f"found {type(entries).__name__}")
    try:
        array = np.asarray(entries, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape[1:] != entry_shape or not np.all(np.isfinite(array)):
        for i, entry in enumerate(entries):  # find and name the first bad entry
            check_joints(entry, entry_shape, f"{path}: entry {i}")
        raise DatasetError(f"{path}: expected entries of shape {entry_shape}, found {np.shape(entries)}")
    return array


class FreiHANDDataset(Dataset):
    """FreiHAND images as sample dicts (`sample_api.md`), mano21, right hands."""

    def __init__(
        self,
        root: str | Path,
        split: str = "training",
        domain: str = "gs",
        transform: Callable[[dict], dict] | None = None,
        paper_train_size: int = PAPER_TRAIN_SIZE,
    ):
        if split not in FREIHAND_SPLITS:
            raise ValueError(f"unknown FreiHAND split {split!r}; choose one of {FREIHAND_SPLITS}")
        if domain not in FREIHAND_DOMAINS:
            raise ValueError(f"unknown FreiHAND domain {domain!r}; choose one of {FREIHAND_DOMAINS}")
        if split == "evaluation" and domain not in ("gs", "all"):
            raise ValueError(f"FreiHAND evaluation images exist only in version 'gs', not {domain!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: FreiHAND root directory not found (expected FreiHAND_pub_v2/)")
        self.split, self.transform = split, transform
        self.set_name = "evaluation" if split == "evaluation" else "training"
        self.image_dir = self.root / self.set_name / "rgb"
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.image_dir}: FreiHAND image directory not found")
        self.K = load_json_list(self.root / f"{self.set_name}_K.json", (3, 3)).astype(np.float32)
        xyz_path = self.root / f"{self.set_name}_xyz.json"
        if split == "evaluation" and not xyz_path.is_file():
            raise DatasetError(f"{xyz_path}: FreiHAND annotation file not found; the evaluation split's 3D labels "
                               "are not in the main download but in FreiHAND's separate evaluation-annotation "
                               f"release (evaluation_xyz.json, evaluation_verts.json): put them into {self.root}")
        xyz = load_json_list(xyz_path, (21, 3))
        if len(xyz) != len(self.K):
            raise DatasetError(f"{self.root / f'{self.set_name}_xyz.json'}: {len(xyz)} entries, but "
                               f"{self.set_name}_K.json has {len(self.K)}; both list the same samples")
        self.joints3d = xyz[:, FREIHAND_TO_MANO21].astype(np.float32)
        self.joints2d = project(self.joints3d, self.K)
        self.num_unique = len(self.K)
        self.items = self._items(split, domain, paper_train_size)  # (version, unique idx) per sample

    def _items(self, split: str, domain: str, paper_train_size: int) -> list[tuple[int, int]]:
        if split == "evaluation":
            return [(0, idx) for idx in range(self.num_unique)]
        versions = range(len(FREIHAND_VERSIONS)) if domain == "all" else [FREIHAND_VERSIONS.index(domain)]
        unique = {
            "training": range(self.num_unique),
            "paper_train": range(min(paper_train_size, self.num_unique)),
            "paper_eval": range(paper_train_size, self.num_unique),
        }[split]
        if len(unique) == 0:
            raise ValueError(f"FreiHAND {split} is empty: paper_train_size={paper_train_size} with "
                             f"{self.num_unique} unique training samples")
        return [(v, idx) for v in versions for idx in unique]

    def image_id(self, i: int) -> int:
        """File id of sample ``i``: ``idx + num_unique · version`` (`datasets.md` §3.2)."""
        version, idx = self.items[i]
        return idx + self.num_unique * version

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"FreiHAND {self.split} index {i} out of range [0, {len(self)})")
        _, idx = self.items[i]
        mask = None
        if self.set_name == "training":
            labels = read_gray(self.root / "training" / "mask" / f"{idx:08d}.jpg", FREIHAND_IMAGE_SIZE, channel=0)
            mask = labels > MASK_THRESHOLD
        sample = make_sample(
            rgb=read_rgb(self.image_dir / f"{self.image_id(i):08d}.jpg", FREIHAND_IMAGE_SIZE),
            mask=mask,
            joints3d=self.joints3d[idx],
            joints2d=self.joints2d[idx],
            visible=in_frame(self.joints2d[idx], self.joints3d[idx], *FREIHAND_IMAGE_SIZE),
            K=self.K[idx],
            is_left=False,
            index=i,
        )
        return self.transform(sample) if self.transform is not None else sample
