"""From a raw render to stored labels: compositing, depth encoding and joint visibility."""
from __future__ import annotations

import numpy as np


def composite(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Hand pixels from ``rgb`` where ``mask`` (H,W) is non-zero, ``background`` elsewhere; all uint8.

    Renders are single-sample (no anti-aliasing), so each pixel is wholly hand or wholly
    background: no edge pixel mixes the clear colour in, hence no halo. ``out`` (H,W,3),
    if given, receives the result (it may be ``background`` itself). One masked copy
    (``cv2.copyTo``).
    """
    import cv2

    if out is None:
        out = background.copy()
    elif out is not background:
        out[...] = background
    result = cv2.copyTo(rgb, mask, out)
    if result is not out:  # cv2 writes into ``out`` when its shape and type fit, which they do here
        out[...] = result
    return out


def depth_to_millimetres(depth: np.ndarray) -> np.ndarray:
    """Camera-z depth in metres (0 = background) → uint16 millimetres, rounded to nearest; 0 stays 0.

    One OpenCV pass (the product in double precision, then rounded half to even).
    """
    import cv2

    _check_millimetre_range(depth)
    return cv2.multiply(np.asarray(depth, np.float32), 1000.0, dtype=cv2.CV_16U)


def _check_millimetre_range(depth: np.ndarray) -> None:
    largest = float(np.max(depth, initial=0.0))
    if largest * 1000.0 > np.iinfo(np.uint16).max + 0.5:
        raise ValueError(f"depth {largest:.1f} m exceeds the uint16 millimetre range (65.5 m)")


def finish_sample(rgb: np.ndarray, depth: np.ndarray, stored_depth: np.ndarray, background: np.ndarray,
                  rgb_out: np.ndarray, depth_out: np.ndarray, mask_out: np.ndarray) -> None:
    """The stored images of one render: ``mask_out`` = (``depth`` > 0), ``depth_out`` =
    :func:`depth_to_millimetres` of ``stored_depth`` (the render's ``depth`` itself, or a simulated
    sensor's), both in one compiled pass (:func:`render.kernels.depth_labels`), and ``rgb_out`` =
    :func:`composite` of ``rgb`` over ``background`` by that mask (``background`` may be ``rgb_out``
    itself: the hand is then copied over it in place). Same results as those functions (tested),
    without their intermediate arrays.
    """
    from render.kernels import depth_labels

    _check_millimetre_range(stored_depth)
    depth_labels(depth, stored_depth, depth_out, mask_out)
    composite(rgb, mask_out, background, out=rgb_out)


def joint_visibility(joints_cam: np.ndarray, joints_px: np.ndarray, depth: np.ndarray,
                     tolerance_m: float) -> np.ndarray:
    """Visible joints (J,) bool: inside the image and not hidden by the hand itself.

    Joints lie inside the fingers, so the rendered surface at a joint's pixel is always a
    little in front of it (about a finger radius). A joint counts as occluded only when
    that surface is more than ``tolerance_m`` in front of the joint's camera z; a pixel
    with no surface (depth 0) cannot occlude.

    joints_cam (J,3) metres (OpenCV camera frame); joints_px (J,2) pixels (u, v);
    depth (H,W) metres, 0 = background.
    """
    height, width = depth.shape
    cols = np.rint(joints_px[:, 0]).astype(np.int64)
    rows = np.rint(joints_px[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height) & (joints_cam[:, 2] > 0)
    surface = np.zeros(len(joints_px), dtype=np.float64)
    surface[inside] = depth[rows[inside], cols[inside]]
    unoccluded = (surface == 0) | (surface >= joints_cam[:, 2] - tolerance_m)
    return inside & unoccluded
