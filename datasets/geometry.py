"""Camera geometry shared by readers, transforms and the renderer (OpenCV axes, metres, pixels)."""
from __future__ import annotations

import numpy as np


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection ``uv = (K @ X)[:2] / z`` of points ``(..., N, 3)`` with ``K (..., 3, 3)``.

    Returns pixel coordinates ``(..., N, 2)`` with u = column, v = row.
    """
    points = np.asarray(points, dtype=np.float64)
    homogeneous = points @ np.swapaxes(np.asarray(K, dtype=np.float64), -1, -2)
    return (homogeneous[..., :2] / homogeneous[..., 2:3]).astype(np.float32)


def unproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Inverse of :func:`project`: pixels ``(..., N, 2)`` at camera-z ``depth (..., N)`` → points ``(..., N, 3)``."""
    uv = np.asarray(uv, dtype=np.float64)
    ones = np.ones(uv.shape[:-1] + (1,))
    rays = np.concatenate([uv, ones], axis=-1) @ np.swapaxes(np.linalg.inv(np.asarray(K, np.float64)), -1, -2)
    return (rays * np.asarray(depth, np.float64)[..., None]).astype(np.float32)
