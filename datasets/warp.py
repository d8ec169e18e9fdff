"""Image warps of a sample dict that keep images, ``K`` and joints consistent.

A :class:`Warp` is a planned homography ``M`` (source pixel → output pixel) together
with what it means for the camera: the output intrinsics ``K`` and, for rotations of the
scene about the camera centre, the rotation ``R`` applied to ``joints3d``. Warps compose
(:meth:`Warp.then`), so a chain of geometric transforms resamples each image only once.

Pixel convention: pixel ``i`` covers ``[i − 0.5, i + 0.5]`` (OpenCV: integer coordinates
are pixel centres). :func:`apply_warp` makes one ``grid_sample`` call for the colour image
(bilinear) and one for depth and mask together (nearest neighbour, so no depth is invented
at the hand's silhouette). Parts of the output outside the source image are zero (depth
0 = no data).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def inverse3(M: np.ndarray) -> np.ndarray:
    """Inverse of a 3×3 matrix by the adjugate, in scalar arithmetic (no LAPACK call, whose thread
    start-up dominates at this size, and no small-array numpy calls: this runs twice per loaded sample)."""
    (a, b, c), (d, e, f), (g, h, i) = np.asarray(M, dtype=np.float64).tolist()
    cofactor_a, cofactor_b, cofactor_c = e * i - f * h, f * g - d * i, d * h - e * g
    determinant = a * cofactor_a + b * cofactor_b + c * cofactor_c
    if not abs(determinant) > 1e-300:
        raise ValueError(f"singular 3×3 matrix {np.asarray(M).tolist()}")
    adjugate = [[cofactor_a, c * h - b * i, b * f - c * e],
                [cofactor_b, a * i - c * g, c * d - a * f],
                [cofactor_c, b * g - a * h, a * e - b * d]]
    return np.array(adjugate) / determinant


def rotation_about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix by ``angle`` radians about ``axis`` (normalised here; right-hand rule)."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * skew + (1.0 - math.cos(angle)) * skew @ skew


def apply_homography(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map pixel points ``(N, 2)`` through the 3×3 homography ``M``."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ M.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def inside_image(uv: np.ndarray, height: int, width: int) -> np.ndarray:
    """Whether pixel points ``(N, 2)`` lie inside an image of that size (pixel edges included)."""
    return (uv[:, 0] >= -0.5) & (uv[:, 0] <= width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= height - 0.5)


@dataclass(frozen=True)
class Warp:
    """A planned warp: homography ``M`` (source → output pixels), output ``size`` (h, w) and ``K``.

    ``rotation`` (3×3 or ``None``) is the rotation of the scene about the camera centre the
    warp stands for (``M = A·K·R·K⁻¹`` with ``K_out = A·K``): ``joints3d`` becomes ``R·J``.
    ``colour`` lists (brightness, contrast, saturation) factors applied after the warp.
    """

    M: np.ndarray
    size: tuple
    K: np.ndarray
    rotation: np.ndarray | None = None
    colour: tuple = ()

    def then(self, later: "Warp") -> "Warp":
        """This warp followed by ``later``, as one warp."""
        if self.rotation is None or later.rotation is None:
            rotation = later.rotation if self.rotation is None else self.rotation
        else:
            rotation = later.rotation @ self.rotation
        return Warp(later.M @ self.M, later.size, later.K, rotation, self.colour + later.colour)


def _source_pixels(M: np.ndarray, height: int, width: int) -> np.ndarray:
    """Source pixel ``(u, v)`` of every output pixel, ``(height, width, 2)``, for the map ``M`` (source → output)."""
    inverse = inverse3(M)
    u = np.arange(width, dtype=np.float64)[None, :]
    v = np.arange(height, dtype=np.float64)[:, None]
    x = inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2]  # elementwise: no threaded BLAS call
    y = inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2]
    w = inverse[2, 0] * u + inverse[2, 1] * v + inverse[2, 2]
    return np.stack([x / w, y / w], axis=-1)


def _sampling_grid(source_uv: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``grid_sample`` grid (1, h, w, 2) for source pixel positions in an image of ``height``×``width``."""
    grid = torch.from_numpy(source_uv.astype(np.float32))
    grid[..., 0].mul_(2.0 / width).add_(1.0 / width - 1.0)  # pixel centre i → (2i + 1) / W − 1
    grid[..., 1].mul_(2.0 / height).add_(1.0 / height - 1.0)
    return grid[None]


def _resample(image: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    return F.grid_sample(image[None].float(), grid, mode=mode, padding_mode="zeros", align_corners=False)[0]


def jitter_colour(rgb: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """Scale brightness, then contrast about the mean grey, then saturation about each pixel's grey; clip to [0, 1]."""
    rgb = rgb * brightness
    grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    rgb = (rgb - grey.mean()) * contrast + grey.mean()
    grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return ((rgb - grey) * saturation + grey).clamp_(0.0, 1.0)


def apply_warp(sample: dict, warp: Warp) -> dict:
    """Warp every image of ``sample`` and update ``K``, ``joints2d``, ``joints3d`` and ``visible``.

    Depth under a rotation: a pixel ``p`` of depth ``z`` is the point ``X = z·K⁻¹·[p, 1]``,
    which moves to ``R·X``, so its new depth is ``z·(R·K⁻¹·[p, 1])_z`` (``K``, ``p`` of the
    source). ``joints2d`` is mapped by ``M``; joints that leave the image become invisible.
    """
    height, width = warp.size
    out = dict(sample)
    source_uv = _source_pixels(warp.M, height, width)
    grid = _sampling_grid(source_uv, *sample["rgb"].shape[-2:])
    out["rgb"] = _resample(sample["rgb"], grid, "bilinear").clamp_(0.0, 1.0)
    nearest_keys = [k for k in ("depth", "mask") if k in sample]
    if nearest_keys:
        warped = _resample(torch.cat([sample[k].float() for k in nearest_keys], dim=0), grid, "nearest")
        for channel, key in enumerate(nearest_keys):
            out[key] = warped[channel : channel + 1].contiguous()
    if warp.rotation is not None and "depth" in out:
        row = (warp.rotation @ inverse3(as_numpy(sample["K"])))[2]
        factor = source_uv[..., 0] * row[0] + source_uv[..., 1] * row[1] + row[2]
        out["depth"] = out["depth"] * torch.from_numpy(factor.astype(np.float32))[None]
    uv = apply_homography(warp.M, as_numpy(sample["joints2d"]).astype(np.float64))
    out["joints2d"] = torch.from_numpy(uv.astype(np.float32))
    out["K"] = torch.from_numpy(np.asarray(warp.K, dtype=np.float32))
    if warp.rotation is not None:
        joints = as_numpy(sample["joints3d"]).astype(np.float64) @ np.asarray(warp.rotation).T
        out["joints3d"] = torch.from_numpy(joints.astype(np.float32))
    out["visible"] = torch.from_numpy(as_numpy(sample["visible"]).astype(bool) & inside_image(uv, height, width))
    for factors in warp.colour:
        out["rgb"] = jitter_colour(out["rgb"], *factors)
    return out


# --------------------------------------------------------------------------- compact (uint8/uint16) images

def warp_stored_image(image: np.ndarray, M: np.ndarray, size: tuple, nearest: bool = False) -> np.ndarray:
    """Warp a stored image (uint8 ``(H, W[, C])`` or uint16 depth ``(H, W)``) by ``M`` with OpenCV.

    One resample to ``size`` (h, w), in the pixel convention above (cv2's too: integer
    coordinates are pixel centres); outside the source is 0. ``nearest`` for depth and
    masks. An affine ``M`` (bottom row ``0 0 1``) takes the cheaper ``warpAffine``. OpenCV
    quantises source positions to 1/32 pixel for bilinear sampling (``INTER_BITS = 5``), a
    sub-pixel error far below what augmentation moves images by. Measured in
    ``docs/loader_benchmark.md``: several times faster than ``grid_sample`` on float images.
    """
    import cv2

    height, width = size
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    M = np.asarray(M, np.float64)
    if M[2, 0] == 0.0 and M[2, 1] == 0.0 and M[2, 2] == 1.0:
        return cv2.warpAffine(image, M[:2], (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.warpPerspective(image, M, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def warp_stored_pair(rgb: np.ndarray, depth: np.ndarray | None, M: np.ndarray, rgb_out: np.ndarray,
                     depth_out: np.ndarray | None, maps: tuple[np.ndarray, np.ndarray]) -> None:
    """:func:`warp_stored_image` of a uint8 RGB image (bilinear) and its uint16 depth (nearest) by one ``M``.

    The source position ``M⁻¹·p`` of every output pixel is computed once
    (:func:`datasets.cpu_kernels.source_map`, into the float32 ``maps`` of the output's
    shape) and both images are resampled from it with ``cv2.remap``, into ``rgb_out``
    (h, w, 3) and ``depth_out`` (h, w). Same sampling as ``warpPerspective`` (1/32-pixel
    bilinear weights; outside is 0), one coordinate computation instead of two.
    """
    import cv2

    from datasets.cpu_kernels import source_map

    map_x, map_y = maps
    source_map(inverse3(M), map_x, map_y)
    pairs = [(rgb, rgb_out, cv2.INTER_LINEAR)] + ([] if depth is None else [(depth, depth_out, cv2.INTER_NEAREST)])
    for image, out, interpolation in pairs:
        written = cv2.remap(image, map_x, map_y, interpolation, dst=out, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if written.ctypes.data != out.ctypes.data:  # OpenCV reallocates a dst it cannot use, silently
            raise ValueError(f"warp output must be a C-contiguous {image.dtype} array of shape "
                             f"{map_x.shape + image.shape[2:]}, found {out.dtype} {out.shape}")
