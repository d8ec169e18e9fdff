"""Transforms on the sample dict (`sample_api.md`): hand crop, augmentation, normalisation.

Every transform is a callable ``sample -> sample`` on the dict every dataset returns
(``rgb`` (3,H,W) in [0, 1], optional ``depth`` (1,H,W) metres and ``mask`` (1,H,W),
``joints3d`` (21,3) metres, ``joints2d`` (21,2) pixels, ``visible`` (21,), ``K`` (3,3),
``index``). Geometric transforms (:class:`HandCrop`, :class:`Augment`) move the image,
``K``, ``joints2d`` and (for rotations) ``joints3d`` together, so the projection invariant
``project(joints3d, K) == joints2d`` still holds afterwards. Each one *plans* a
:class:`datasets.warp.Warp` from the sample's geometry; :class:`Compose` chains the plans
of consecutive geometric transforms and resamples the images once (faster, and one
interpolation instead of two).

Random transforms are reproducible: with a ``seed`` each sample draws from
``np.random.default_rng([seed, epoch, index, stream])`` (``stream`` keeps the crop jitter
and the augmentation independent), so DataLoader workers and resumed runs see the same
draws. Call ``set_epoch(epoch)`` (on the transform or on :class:`Compose`) before each
epoch's DataLoader iterator is created (workers copy the transform when they start).

The training and evaluation loaders (:mod:`training.data`) run these chains split in two
(:mod:`datasets.batch_transform`): the workers plan the warps with the classes below and
deliver compact uint8/uint16 images, the main process finishes whole batches on the
training device. The per-sample chain here is the reference that split is tested against.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from datasets.joints import index as joint_index, root_and_scale
from datasets.warp import Warp, apply_homography, apply_warp, as_numpy, inverse3, rotation_about_axis

#: ImageNet statistics used to normalise RGB input (`method.md` §3: one place, saved with each run).
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
#: Half-size in metres of the depth cube around the root joint mapped to [-1, 1].
DEPTH_CUBE_HALF_SIZE = 0.15
#: Value of ``depth_input`` where the depth map has no data (depth 0): "far background".
DEPTH_BACKGROUND = 1.0
#: Smallest crop side in source pixels (guards against degenerate boxes of collapsed joints).
MIN_CROP_SIDE_PX = 8.0

_ROOT = joint_index("wrist")
_CROP_STREAM, _AUGMENT_STREAM = 0, 1


def input_normalization_config() -> dict:
    """The input normalisation constants, as a dict to save next to every run."""
    return {
        "rgb_mean": list(RGB_MEAN),
        "rgb_std": list(RGB_STD),
        "depth_cube_half_size_m": DEPTH_CUBE_HALF_SIZE,
        "depth_reference": "z of the root joint (wrist)",
        "depth_clip": [-1.0, 1.0],
        "depth_background": DEPTH_BACKGROUND,
    }


# --------------------------------------------------------------------------- geometric transforms


def geometry_of(sample: dict) -> dict:
    """What a geometric transform plans from: ``K``, image ``size`` (h, w), ``joints2d``, ``index``, ``mask``."""
    view = {"K": as_numpy(sample["K"]).astype(np.float64), "size": tuple(sample["rgb"].shape[-2:]),
            "joints2d": as_numpy(sample["joints2d"]).astype(np.float64)}
    for key in ("index", "mask"):
        if key in sample:
            view[key] = sample[key]
    return view


def _after(view: dict, warp: Warp) -> dict:
    """The geometry after ``warp`` (the images themselves are not warped yet, so no mask)."""
    out = {"K": np.asarray(warp.K, np.float64), "size": tuple(warp.size),
           "joints2d": apply_homography(warp.M, view["joints2d"])}
    if "index" in view:
        out["index"] = view["index"]
    return out


class GeometricTransform:
    """A transform defined by a planned warp; ``seed``/``rng`` give its per-sample random generator.

    Subclasses implement ``plan(view) -> Warp``; ``view`` is :func:`geometry_of` the
    current sample. ``needs_images`` is True when the plan reads the images (so a pending
    warp must be applied first).
    """

    _stream = 0
    needs_images = False

    def __init__(self, seed: int | None = None, rng: np.random.Generator | None = None):
        self.seed = seed
        self.rng = rng
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _generator(self, view: dict) -> np.random.Generator:
        """``default_rng([seed, epoch, index, stream])``; ``rng`` or fresh entropy without a seed."""
        if self.seed is None:
            return self.rng if self.rng is not None else np.random.default_rng()
        if "index" not in view:
            raise KeyError(f"{type(self).__name__}(seed={self.seed}) needs the sample's 'index' to draw reproducibly")
        return np.random.default_rng([int(self.seed), self.epoch, int(view["index"]), self._stream])

    def plan(self, view: dict) -> Warp:
        raise NotImplementedError

    def __call__(self, sample: dict) -> dict:
        return apply_warp(sample, self.plan(geometry_of(sample)))


class HandCrop(GeometricTransform):
    """Hand-centred square crop resized to ``size``×``size``; updates rgb/depth/mask, ``K`` and ``joints2d``.

    The box is the bounding box of the 2D joints (``source="joints"``) or of the hand mask
    (``source="mask"``; falls back to the joints when the mask is empty), made square with
    side ``max(w, h)·(1 + 2·margin)``. ``jitter`` moves the centre by up to ``jitter·side``
    in each direction and scales the side by a factor in ``[1 − jitter, 1 + jitter]``.
    The crop is the similarity ``u' = a·(u − u₀) − 0.5`` (``a = size / side``, ``u₀`` the
    box's left or top edge), so ``K' = A·K`` and ``joints3d`` is unchanged. Joints outside
    the crop become invisible; parts of the box outside the image are zero.
    """

    _stream = _CROP_STREAM

    def __init__(self, size: int = 256, margin: float = 0.25, jitter: float = 0.0, source: str = "joints",
                 rng: np.random.Generator | None = None, seed: int | None = None):
        super().__init__(seed=seed, rng=rng)
        if source not in ("joints", "mask"):
            raise ValueError(f"HandCrop source should be 'joints' or 'mask', found {source!r}")
        if size <= 0 or margin < 0 or not 0 <= jitter < 1:
            raise ValueError(f"HandCrop needs size > 0, margin >= 0, 0 <= jitter < 1; found {size}, {margin}, {jitter}")
        self.size, self.margin, self.jitter, self.source = int(size), float(margin), float(jitter), source
        self.needs_images = source == "mask"

    def box(self, view: dict) -> tuple[np.ndarray, float]:
        """Centre ``(u, v)`` and side (source pixels) of the crop before jitter."""
        low = high = None
        if self.source == "mask":
            if "mask" not in view:
                raise KeyError("HandCrop(source='mask') needs a 'mask' in the sample; this source has none")
            rows, cols = np.nonzero(as_numpy(view["mask"])[0] > 0.5)
            if len(rows):
                low = np.array([cols.min(), rows.min()], np.float64) - 0.5
                high = np.array([cols.max(), rows.max()], np.float64) + 0.5
        if low is None:
            uv = view["joints2d"][np.isfinite(view["joints2d"]).all(axis=1)]
            if not len(uv):
                raise ValueError(f"sample {view.get('index')}: no finite 2D joints to crop around")
            low, high = uv.min(axis=0), uv.max(axis=0)
        side = max(float((high - low).max()) * (1.0 + 2.0 * self.margin), MIN_CROP_SIDE_PX)
        return (low + high) / 2.0, side

    def plan(self, view: dict) -> Warp:
        centre, side = self.box(view)
        if self.jitter > 0:
            rng = self._generator(view)
            centre = centre + rng.uniform(-self.jitter, self.jitter, size=2) * side
            side = side * (1.0 + rng.uniform(-self.jitter, self.jitter))
        a = self.size / side
        t = -(centre - side / 2.0) * a - 0.5  # box edge → −0.5, far edge → size − 0.5
        A = np.array([[a, 0.0, t[0]], [0.0, a, t[1]], [0.0, 0.0, 1.0]])
        return Warp(A, (self.size, self.size), A @ view["K"])


class Augment(GeometricTransform):
    """Random rotation, scale and colour jitter, consistent across images, ``K`` and joints.

    Rotation by ``angle ~ U(±rotation_deg)`` about the viewing ray ``d = K⁻¹·[c, 1]`` of a
    centre pixel ``c`` (``about="centre"``: the image centre, where :class:`HandCrop` puts
    the hand; ``about="principal_point"``: ``c = (cx, cy)``, so ``d`` is the optical axis).
    Rotating the scene by ``R = rot(d, angle)`` moves each image point by the homography
    ``H = K·R·K⁻¹`` (since ``K·(R·X) = H·(K·X)``), so the image is warped by ``H``,
    ``joints3d`` becomes ``R·J``, ``K`` is unchanged, and depth is corrected to the new z.
    About the principal point ``R`` is a rotation about the camera z axis and, with
    ``fx = fy``, ``H`` is the plain in-plane rotation by ``angle`` about ``(cx, cy)``.
    (After a crop the principal point may lie far from the hand, which that rotation would
    swing out of the image; hence the default.) Positive angles turn x towards y
    (clockwise on screen, y pointing down).

    Scale: a zoom by ``s ~ U(1 ± scale)`` about the image centre, ``A``; ``K' = A·K``,
    ``joints3d`` unchanged. Colour: brightness, contrast and saturation factors in
    ``U(1 ± color_jitter)``, applied to ``rgb`` only (after the warp).
    """

    _stream = _AUGMENT_STREAM

    def __init__(self, rotation_deg: float = 30.0, scale: float = 0.1, color_jitter: float = 0.2,
                 seed: int | None = None, about: str = "centre", rng: np.random.Generator | None = None):
        super().__init__(seed=seed, rng=rng)
        if about not in ("centre", "principal_point"):
            raise ValueError(f"Augment about should be 'centre' or 'principal_point', found {about!r}")
        if rotation_deg < 0 or not 0 <= scale < 1 or not 0 <= color_jitter < 1:
            raise ValueError(f"Augment needs rotation_deg >= 0, 0 <= scale < 1, 0 <= color_jitter < 1; "
                             f"found {rotation_deg}, {scale}, {color_jitter}")
        self.rotation_deg, self.scale, self.color_jitter, self.about = rotation_deg, scale, color_jitter, about

    def plan(self, view: dict) -> Warp:
        rng = self._generator(view)
        angle = math.radians(rng.uniform(-self.rotation_deg, self.rotation_deg))
        zoom = rng.uniform(1.0 - self.scale, 1.0 + self.scale)
        colour = tuple(rng.uniform(1.0 - self.color_jitter, 1.0 + self.color_jitter, size=3))
        (height, width), K = view["size"], view["K"]
        centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        pivot = centre if self.about == "centre" else K[:2, 2]
        K_inverse = inverse3(K)
        R = rotation_about_axis(K_inverse @ np.append(pivot, 1.0), angle)
        H = K @ R @ K_inverse
        A = np.array([[zoom, 0.0, (1 - zoom) * centre[0]], [0.0, zoom, (1 - zoom) * centre[1]], [0.0, 0.0, 1.0]])
        return Warp(A @ H, (height, width), A @ K, rotation=R, colour=(colour,) if self.color_jitter > 0 else ())


class NormalizeTarget:
    """Adds the regression target ``y = (J − J_root) / scale`` (`method.md` §2), ``root`` (3,) and ``scale`` ().

    Root = wrist, scale = ‖middle_pip − middle_mcp‖. :func:`denormalize_target` inverts it.
    """

    def __call__(self, sample: dict) -> dict:
        joints = as_numpy(sample["joints3d"]).astype(np.float64)
        root, scale = root_and_scale(joints)
        if not scale > 0:
            raise ValueError(f"sample {sample.get('index')}: scale bone middle_mcp–middle_pip has length {scale}")
        out = dict(sample)
        out["target"] = torch.from_numpy(((joints - root) / scale).astype(np.float32))
        out["root"] = torch.from_numpy(root.astype(np.float32))
        out["scale"] = torch.tensor(float(scale), dtype=torch.float32)
        return out


def denormalize_target(target: torch.Tensor, root: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Joints in metres from a normalised target: ``J = y·scale + root`` (batched: (B,21,3), (B,3), (B,))."""
    return target * scale[..., None, None] + root[..., None, :]


class NormalizeInputs:
    """Adds ``rgb_input = (rgb − RGB_MEAN) / RGB_STD`` and, with depth, ``depth_input``.

    ``depth_input = clip((depth − z_root) / DEPTH_CUBE_HALF_SIZE, −1, 1)``, with ``z_root``
    the root joint's camera z and pixels without depth (0) set to ``DEPTH_BACKGROUND``.
    """

    def __init__(self, cube_half_size: float = DEPTH_CUBE_HALF_SIZE):
        self.cube_half_size = float(cube_half_size)
        self._mean = torch.tensor(RGB_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(RGB_STD, dtype=torch.float32)[:, None, None]

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        out["rgb_input"] = (sample["rgb"].float() - self._mean) / self._std
        if "depth" in sample:
            depth = sample["depth"].float()
            root_z = float(as_numpy(sample["joints3d"])[_ROOT, 2])
            relative = ((depth - root_z) / self.cube_half_size).clamp(-1.0, 1.0)
            out["depth_input"] = torch.where(depth > 0, relative, torch.full_like(depth, DEPTH_BACKGROUND))
        return out


class Compose:
    """Apply transforms in order; ``set_epoch`` reaches every member that has one.

    Consecutive :class:`GeometricTransform` s are planned one after the other and their
    warps composed, so the images are resampled once per run of geometric transforms.
    """

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        pending, view = None, None
        for transform in self.transforms:
            geometric = isinstance(transform, GeometricTransform)
            if pending is not None and (not geometric or transform.needs_images):
                sample, pending = apply_warp(sample, pending), None
            if not geometric:
                sample = transform(sample)
                continue
            view = geometry_of(sample) if pending is None else view
            warp = transform.plan(view)
            pending = warp if pending is None else pending.then(warp)
            view = _after(view, warp)
        return apply_warp(sample, pending) if pending is not None else sample

    def set_epoch(self, epoch: int) -> None:
        for transform in self.transforms:
            if hasattr(transform, "set_epoch"):
                transform.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"Compose({[type(t).__name__ for t in self.transforms]})"


def training_transform(size: int = 256, augment: bool = True, seed: int | None = None, margin: float = 0.25,
                       crop_jitter: float = 0.05, rotation_deg: float = 30.0, scale: float = 0.1,
                       color_jitter: float = 0.2) -> Compose:
    """Crop (with jitter) → [augment] → normalise target → normalise inputs."""
    steps: list = [HandCrop(size, margin=margin, jitter=crop_jitter if augment else 0.0, seed=seed)]
    if augment:
        steps.append(Augment(rotation_deg=rotation_deg, scale=scale, color_jitter=color_jitter, seed=seed))
    return Compose(steps + [NormalizeTarget(), NormalizeInputs()])


def evaluation_transform(size: int = 256, margin: float = 0.25) -> Compose:
    """Deterministic crop → normalise target → normalise inputs."""
    return Compose([HandCrop(size, margin=margin), NormalizeTarget(), NormalizeInputs()])
