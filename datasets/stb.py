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
image.

Depth: the ``SK_depth_<i>.png`` images (:func:`datasets.images.read_stb_depth`, metres) are
in the *depth* camera's frame. ``depth=True`` (camera ``sk_color`` only) adds ``depth``
(1, H, W) metres, 0 = no data, registered into the colour image by
:func:`register_sk_depth`: each valid depth pixel is back-projected with ``K_depth``, moved
to the colour camera (:func:`sk_depth_to_color`), projected with ``K_colour`` and splatted
onto the colour pixel centres its pixel's footprint covers (the colour camera magnifies
×1.28), z-buffered (the nearest surface wins). By default (``fill_depth_holes=True``) the
remaining 1-pixel holes are closed from two agreeing opposite neighbours
(:func:`fill_one_pixel_holes`); wider holes (the background beside a near surface that only
the colour camera sees, pixels outside the depth camera's view, depth dropouts) stay 0.
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
from datasets.images import read_rgb, read_stb_depth

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


#: Two opposite neighbours of a 1-pixel hole fill it only when their depths differ by at most this.
HOLE_FILL_TOLERANCE_M = 0.01
#: Offsets (dv, du) of one neighbour of each opposite pair: left/right, up/down, the two diagonals.
_HOLE_PAIRS = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Footprints of neighbouring depth pixels overlap by this (colour px), so rounding opens no slivers.
_FOOTPRINT_OVERLAP_PX = 0.01


def register_sk_depth(depth_m: np.ndarray, fill_holes: bool = True,
                      size: tuple[int, int] = STB_IMAGE_SIZE,
                      hole_tolerance_m: float = HOLE_FILL_TOLERANCE_M) -> np.ndarray:
    """SK depth image ``(H, W)`` metres (depth-camera frame, 0 = no data) → depth in the colour image.

    Every pixel ``(u, v)`` with depth ``d > 0`` becomes ``X_d = d·K_depth⁻¹·[u, v, 1]``, then
    ``X_c = Rᵀ (X_d − T)`` (:func:`sk_depth_to_color`), projected with ``K_colour`` to
    ``(u_c, v_c)`` (pixel centres at integer coordinates, OpenCV convention). The point is
    splatted onto the colour pixel centres inside its pixel's footprint, the square of
    half-side ``½·(f_colour / f_depth)·(d / z_c)`` around ``(u_c, v_c)`` (≈ 1.28 px: one to four
    pixels), and the smallest colour-camera ``z_c`` landing on a pixel wins (z-buffer). Without
    the footprint the ×1.28 magnification would leave gaps in every surface, through which
    the surfaces behind would show. Returns float32 ``(H, W)`` of ``size = (width, height)``,
    metres along the colour camera's z, 0 = no data; ``fill_holes`` then closes the remaining
    1-pixel holes (:func:`fill_one_pixel_holes`).
    """
    depth_m = np.asarray(depth_m, np.float64)
    if depth_m.ndim != 2:
        raise ValueError(f"register_sk_depth expects an (H, W) depth image, found shape {depth_m.shape}")
    width, height = size
    rows, cols = np.nonzero(np.isfinite(depth_m) & (depth_m > 0))
    d = depth_m[rows, cols]
    pixels = np.stack([cols, rows, np.ones_like(rows)], axis=-1).astype(np.float64)
    rays = pixels @ np.linalg.inv(STB_K["sk_depth"]).T  # float64 throughout (geometry.unproject gives float32)
    points = sk_depth_to_color(rays * d[:, None])
    front = points[:, 2] > 1e-6
    points, d = points[front], d[front]
    z = points[:, 2]
    uv = (points @ STB_K["sk_color"].T)[:, :2] / z[:, None]
    magnification = np.diag(STB_K["sk_color"])[:2] / np.diag(STB_K["sk_depth"])[:2]
    half = 0.5 * magnification[None] * (d / z)[:, None] + _FOOTPRINT_OVERLAP_PX  # (N, 2) half-sides, px
    first = np.ceil(uv - half).astype(np.int64)  # first pixel centre inside the footprint, per axis
    steps = range(int(np.ceil(2.0 * half.max(initial=0.0))) + 1)
    zbuffer = np.full(height * width, np.inf)
    for du in steps:
        u = first[:, 0] + du
        for dv in steps:
            v = first[:, 1] + dv
            keep = ((u <= uv[:, 0] + half[:, 0]) & (v <= uv[:, 1] + half[:, 1])
                    & (u >= 0) & (u < width) & (v >= 0) & (v < height))
            np.minimum.at(zbuffer, v[keep] * width + u[keep], z[keep])
    zbuffer = zbuffer.reshape(height, width)
    zbuffer[np.isinf(zbuffer)] = 0.0
    if fill_holes:
        zbuffer = fill_one_pixel_holes(zbuffer, hole_tolerance_m)
    return zbuffer.astype(np.float32)


def fill_one_pixel_holes(depth: np.ndarray, tolerance_m: float = HOLE_FILL_TOLERANCE_M) -> np.ndarray:
    """Close 1-pixel holes: an empty pixel (0) whose two opposite neighbours (left/right, up/down or a
    diagonal) both have depth, differing by at most ``tolerance_m``, gets their mean (several such
    pairs: the mean of the pairs' means). Wider holes and gaps between surfaces stay 0."""
    depth = np.asarray(depth, np.float64)
    padded = np.pad(depth, 1)
    height, width = depth.shape
    total, count = np.zeros_like(depth), np.zeros_like(depth)

    def shifted(dv, du):
        return padded[1 + dv:1 + dv + height, 1 + du:1 + du + width]

    for dv, du in _HOLE_PAIRS:
        a, b = shifted(dv, du), shifted(-dv, -du)
        usable = (a > 0) & (b > 0) & (np.abs(a - b) <= tolerance_m)
        total += np.where(usable, (a + b) / 2.0, 0.0)
        count += usable
    out = depth.copy()
    fill = (depth == 0) & (count > 0)
    out[fill] = total[fill] / count[fill]
    return out


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
        depth: bool = False,
        fill_depth_holes: bool = True,
    ):
        if split not in STB_SPLITS:
            raise ValueError(f"unknown STB split {split!r}; choose one of {tuple(STB_SPLITS)}")
        if camera not in STB_CAMERAS:
            raise ValueError(f"unknown STB camera {camera!r}; choose one of {tuple(STB_CAMERAS)}")
        if palm_to_wrist not in PALM_TO_WRIST_RULES:
            raise ValueError(f"unknown palm_to_wrist rule {palm_to_wrist!r}; choose one of {PALM_TO_WRIST_RULES}")
        if not isinstance(depth, (bool, np.bool_)) or not isinstance(fill_depth_holes, (bool, np.bool_)):
            raise ValueError(f"STB depth and fill_depth_holes must be true or false; found {depth!r}, "
                             f"{fill_depth_holes!r}")
        if depth and camera != "sk_color":
            raise ValueError(f"STB depth=True needs camera='sk_color' (the SK_depth images, registered to the "
                             f"RealSense colour camera); camera {camera!r} has no depth")
        self.depth, self.fill_depth_holes = bool(depth), bool(fill_depth_holes)
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

    def depth_path(self, i: int) -> Path:
        """The frame's ``SK_depth`` PNG (depth-camera frame; read only with ``depth=True``)."""
        folder, frame = self.frames[i]
        return folder / f"SK_depth_{frame}.png"

    def registered_depth(self, i: int) -> np.ndarray:
        """Frame ``i``'s SK depth registered into the colour image, ``(480, 640)`` metres (:func:`register_sk_depth`)."""
        return register_sk_depth(read_stb_depth(self.depth_path(i), STB_IMAGE_SIZE), self.fill_depth_holes)

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
            depth=self.registered_depth(i) if self.depth else None,
        )
        if self.mirror:
            sample = mirror_sample(sample)
        return self.transform(sample) if self.transform is not None else sample
