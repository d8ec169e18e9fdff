"""Reader for the raw Stereo Hand Pose Tracking Benchmark (STB, Zhang et al. 2017), read in place.

Layout (`datasets.md` §2.1–2.2)::

    <root>/images/<Seq>/SK_color_<i>.png, BB_left_<i>.png, BB_right_<i>.png   (640×480)
    <root>/labels/<Seq>_SK.mat, <Seq>_BB.mat     handPara (3, 21, frames), millimetres

(``<root>/<Seq>/`` without ``images/`` is accepted too.) Twelve sequences ``B1Counting …
B6Random``; the standard split tests on ``B1*`` and trains on the other ten (§2.5).

Cameras (§2.4): ``camera="sk_color"`` (default) reads the RealSense colour images; their
labels are in *depth-camera* coordinates and are moved to the colour camera with
``X_c = Rᵀ (X_d − T)``, ``R`` the Rodrigues rotation of ``om``. ``"bb_left"`` /
``"bb_right"`` read the Bumblebee pair; the right camera sees ``X_r = X_l − [b, 0, 0]``
with baseline ``b = 120.054`` mm. ``joints2d`` are the projection of ``joints3d`` with
the camera's intrinsics. STB labels a palm centre, replaced by a wrist with
:func:`datasets.conventions.palm_to_wrist` (rule ``palm_to_wrist``, default "ring").

STB has only left hands (``is_left=True``); ``mirror=True`` returns them mirrored as right
hands. STB has no visibility labels: ``visible`` = in front of the camera and inside the
image. The ``SK_depth`` images are in the depth camera's frame, not registered to the
colour image, so samples carry no ``depth`` (decode them with
:func:`datasets.images.read_stb_depth`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.io
from torch.utils.data import Dataset

from datasets.conventions import (PALM_TO_WRIST_RULES, STB_TO_MANO21_PALM_ROOT, check_joints, in_frame,
                                  make_sample, mirror_sample)
from datasets.conventions import palm_to_wrist as convert_palm_to_wrist
from datasets.errors import DatasetError
from datasets.geometry import project
from datasets.images import read_rgb

STB_SEQUENCES = tuple(f"B{b}{kind}" for b in range(1, 7) for kind in ("Counting", "Random"))
STB_TEST_SEQUENCES = ("B1Counting", "B1Random")
STB_SPLITS = {
    "train": tuple(s for s in STB_SEQUENCES if s not in STB_TEST_SEQUENCES),
    "test": STB_TEST_SEQUENCES,
    "all": STB_SEQUENCES,
}
STB_IMAGE_SIZE = (640, 480)  # (width, height)


def _intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


#: Intrinsics (`datasets.md` §2.4).
STB_K = {
    "sk_color": _intrinsics(607.92271, 607.88192, 314.78337, 236.42484),
    "sk_depth": _intrinsics(475.62768, 474.77709, 336.41179, 238.77962),
    "bb": _intrinsics(822.79041, 822.79041, 318.47345, 250.31296),
}
STB_BB_BASELINE_M = 0.120054
#: SK extrinsics: ``X_depth = R(om)·X_colour + T`` (T in metres).
STB_SK_OM = np.array([0.00531, -0.01196, 0.00301])
STB_SK_T_M = np.array([-24.0381, -0.4563, -1.2326]) * 1e-3
#: camera option → (label file suffix, image file prefix)
STB_CAMERAS = {"sk_color": ("SK", "SK_color"), "bb_left": ("BB", "BB_left"), "bb_right": ("BB", "BB_right")}


def rodrigues(rotation_vector: Sequence[float]) -> np.ndarray:
    """Rotation matrix of an axis-angle vector: ``R = I + sin θ [k]× + (1 − cos θ) [k]×²``."""
    omega = np.asarray(rotation_vector, np.float64)
    theta = np.linalg.norm(omega)
    if theta == 0.0:
        return np.eye(3)
    kx, ky, kz = omega / theta
    cross = np.array([[0.0, -kz, ky], [kz, 0.0, -kx], [-ky, kx, 0.0]])
    return np.eye(3) + np.sin(theta) * cross + (1.0 - np.cos(theta)) * cross @ cross


STB_SK_R = rodrigues(STB_SK_OM)


def sk_depth_to_color(points: np.ndarray) -> np.ndarray:
    """SK depth-camera points ``(..., 3)`` (metres) → colour camera: ``X_c = Rᵀ (X_d − T)``."""
    return (np.asarray(points, np.float64) - STB_SK_T_M) @ STB_SK_R


def sk_color_to_depth(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`sk_depth_to_color`: ``X_d = R X_c + T``."""
    return np.asarray(points, np.float64) @ STB_SK_R.T + STB_SK_T_M


def load_stb_labels(path: str | Path) -> np.ndarray:
    """``handPara`` of an STB ``.mat`` file → ``(frames, 21, 3)`` metres in STB joint order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: STB label file not found")
    try:
        content = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several unrelated types for corrupt files
        raise DatasetError(f"{path}: unreadable MATLAB file ({type(exc).__name__}: {exc})") from exc
    if "handPara" not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DatasetError(f"{path}: expected a variable 'handPara', found {found}")
    para = np.asarray(content["handPara"])
    if para.ndim != 3 or para.shape[:2] != (3, 21):
        raise DatasetError(f"{path}: expected 'handPara' of shape (3, 21, frames), found {para.shape}")
    return check_joints(para.transpose(2, 1, 0), (para.shape[2], 21, 3), f"{path}: 'handPara'") * 1e-3


class STBDataset(Dataset):
    """STB frames as sample dicts (`sample_api.md`), mano21 with a wrist root."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        sequences: Sequence[str] | None = None,
        camera: str = "sk_color",
        palm_to_wrist: str = "ring",
        mirror: bool = False,
        transform: Callable[[dict], dict] | None = None,
    ):
        if split not in STB_SPLITS:
            raise ValueError(f"unknown STB split {split!r}; choose one of {tuple(STB_SPLITS)}")
        if camera not in STB_CAMERAS:
            raise ValueError(f"unknown STB camera {camera!r}; choose one of {tuple(STB_CAMERAS)}")
        if palm_to_wrist not in PALM_TO_WRIST_RULES:
            raise ValueError(f"unknown palm_to_wrist rule {palm_to_wrist!r}; choose one of {PALM_TO_WRIST_RULES}")
        self.sequences = tuple(STB_SPLITS[split] if sequences is None else sequences)
        unknown = [s for s in self.sequences if s not in STB_SEQUENCES]
        if unknown:
            raise ValueError(f"unknown STB sequences {unknown}; known: {STB_SEQUENCES}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: STB root directory not found (expected images/ and labels/)")
        self.camera, self.mirror, self.transform = camera, mirror, transform
        self.K = STB_K["sk_color" if camera == "sk_color" else "bb"]
        label_suffix, self._image_prefix = STB_CAMERAS[camera]
        image_root = self.root / "images" if (self.root / "images").is_dir() else self.root
        joints, self.frames = [], []
        for seq in self.sequences:
            folder = image_root / seq
            if not folder.is_dir():
                raise DatasetError(f"{folder}: STB image directory of sequence {seq} not found")
            stb = load_stb_labels(self.root / "labels" / f"{seq}_{label_suffix}.mat")
            joints.append(self._to_camera(stb))
            self.frames += [(folder, frame) for frame in range(len(stb))]
        with_palm = np.concatenate(joints)[:, STB_TO_MANO21_PALM_ROOT]
        self.joints3d = convert_palm_to_wrist(with_palm, palm_to_wrist).astype(np.float32)
        self.joints2d = project(self.joints3d, self.K)

    def _to_camera(self, stb_joints: np.ndarray) -> np.ndarray:
        if self.camera == "sk_color":
            return sk_depth_to_color(stb_joints)
        if self.camera == "bb_right":
            return stb_joints - np.array([STB_BB_BASELINE_M, 0.0, 0.0])
        return stb_joints

    def __len__(self) -> int:
        return len(self.frames)

    def image_path(self, i: int) -> Path:
        folder, frame = self.frames[i]
        return folder / f"{self._image_prefix}_{frame}.png"

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"STB index {i} out of range [0, {len(self)})")
        sample = make_sample(
            rgb=read_rgb(self.image_path(i), STB_IMAGE_SIZE),
            joints3d=self.joints3d[i],
            joints2d=self.joints2d[i],
            visible=in_frame(self.joints2d[i], self.joints3d[i], *STB_IMAGE_SIZE),
            K=self.K,
            is_left=True,
            index=i,
        )
        if self.mirror:
            sample = mirror_sample(sample)
        return self.transform(sample) if self.transform is not None else sample
