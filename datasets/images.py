"""Image readers for the raw datasets; every failure is a :class:`DatasetError` naming the file.

Sizes are given as ``(width, height)``, the order image tools print. Arrays come back in
numpy's ``(height, width[, channels])`` order.

Depth encodings (`datasets.md` §1.4, §2.1):

- RHD: a PNG read as RGB, ``R`` = high byte, ``G`` = low byte,
  ``depth_m = (R·256 + G) / 65535 · 5``. (``cv2.imread`` would return BGR: R is *not*
  channel 0 there. PIL returns RGB, so it is channel 0 here.)
- STB ``SK_depth``: a 3-channel PNG with ``depth = R + 256·G`` in millimetres (the unit
  is inferred, not documented), returned here in metres.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.errors import DatasetError

RHD_DEPTH_MAX_M = 5.0
STB_DEPTH_UNIT_M = 1e-3

_COLOUR_MODES = ("RGB", "RGBA")
_GRAY_MODES = ("L", "P", "1", "I", "I;16")


def _open(path: str | Path, expected_size: tuple[int, int] | None) -> Image.Image:
    """Open and fully decode ``path``; check its size ``(width, height)``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        image = Image.open(path)
        image.load()  # decode now, so a truncated file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from exc
    if expected_size is not None and tuple(image.size) != tuple(expected_size):
        w, h = expected_size
        raise DatasetError(
            f"{path}: expected an image of {w}×{h} (width×height), found {image.size[0]}×{image.size[1]}"
        )
    return image


def _colour_array(path: str | Path, expected_size: tuple[int, int] | None, what: str) -> np.ndarray:
    image = _open(path, expected_size)
    if image.mode not in _COLOUR_MODES:
        raise DatasetError(
            f"{path}: expected a 3-channel {what} (mode RGB), found mode {image.mode} "
            f"with {len(image.getbands())} channel(s)"
        )
    return np.asarray(image)[..., :3]


def read_rgb(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Colour image as uint8 ``(H, W, 3)`` in RGB order (an alpha channel is dropped)."""
    return _colour_array(path, expected_size, "colour image")


def read_gray(path: str | Path, expected_size: tuple[int, int] | None = None, *, channel: int | None = None) -> np.ndarray:
    """Single-channel image (labels, masks) as ``(H, W)``.

    Palette images give their palette indices (the stored labels). A colour image is
    refused unless ``channel`` names which of its channels to use (FreiHAND stores its
    masks as colour JPEGs; HandMesh reads channel 0).
    """
    image = _open(path, expected_size)
    if image.mode in _GRAY_MODES:
        return np.asarray(image)
    if channel is not None and image.mode in _COLOUR_MODES:
        return np.asarray(image)[..., channel]
    raise DatasetError(
        f"{path}: expected a single-channel image (mode L or P), found mode {image.mode} "
        f"with {len(image.getbands())} channels"
    )


def read_rhd_depth(path: str | Path, expected_size: tuple[int, int] | None = (320, 320)) -> np.ndarray:
    """RHD depth PNG → float32 metres ``(H, W)``: ``(R·256 + G) / 65535 · 5`` (`datasets.md` §1.4)."""
    rgb = _colour_array(path, expected_size, "RHD depth PNG").astype(np.int32)
    return ((rgb[..., 0] * 256 + rgb[..., 1]) * (RHD_DEPTH_MAX_M / 65535.0)).astype(np.float32)


def encode_rhd_depth(depth_m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`read_rhd_depth`: metres ``(H, W)`` → uint8 ``(H, W, 3)`` (B = 0)."""
    d16 = np.clip(np.round(np.asarray(depth_m, np.float64) / RHD_DEPTH_MAX_M * 65535.0), 0, 65535).astype(np.int32)
    out = np.zeros(d16.shape + (3,), np.uint8)
    out[..., 0] = d16 >> 8
    out[..., 1] = d16 & 255
    return out


def read_stb_depth(path: str | Path, expected_size: tuple[int, int] | None = (640, 480)) -> np.ndarray:
    """STB ``SK_depth`` PNG → float32 metres ``(H, W)``: ``(R + 256·G)`` mm (`datasets.md` §2.1)."""
    rgb = _colour_array(path, expected_size, "STB depth PNG").astype(np.int32)
    return ((rgb[..., 0] + 256 * rgb[..., 1]) * STB_DEPTH_UNIT_M).astype(np.float32)


def encode_stb_depth(depth_m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`read_stb_depth`: metres ``(H, W)`` → uint8 ``(H, W, 3)`` (B = 0)."""
    mm = np.clip(np.round(np.asarray(depth_m, np.float64) / STB_DEPTH_UNIT_M), 0, 65535).astype(np.int32)
    out = np.zeros(mm.shape + (3,), np.uint8)
    out[..., 0] = mm & 255
    out[..., 1] = mm >> 8
    return out
