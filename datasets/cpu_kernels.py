"""Compiled per-pixel loops (numba) of the CPU input pipeline: one pass per image where torch or
OpenCV would make several.

Worker side (:class:`datasets.compact_samples.CompactSamples`):

- :func:`source_map` — the source pixel ``M⁻¹·p`` (dehomogenised) of every output pixel
  ``p``, once per sample, so the RGB (bilinear) and the depth (nearest) warps share one
  coordinate computation in ``cv2.remap`` instead of two ``cv2.warpPerspective`` calls.

Main-process side (:class:`datasets.batch_transform.BatchTransform`, batches the workers
warped): the torch formulation is a handful of whole-batch operations, each a pass over
~10 MB that does not stay in cache (``tests/test_batch_transform.py`` keeps it as the reference);
what is left after the warp is per pixel, so

- :func:`finish_rgb` — ``y_c = clip(α_c·x_c + β_c·g + d_c, lo_c, hi_c)`` with ``x`` the
  uint8 value, ``g = w·x`` its grey (``w`` the luma weights): one colour-jitter set of
  :meth:`BatchTransform._rgb` with the 1/255 and the normalisation
  ``(y − mean)/std`` folded into ``α, β, d`` and the bounds;
- :func:`channel_sums` — per-channel sums of the uint8 planes (their means give the
  grey mean of the contrast factor, ``mean(g) = w·mean(x)``, without a float pass);
- :func:`finish_depth` — ``clip(z·(n·p)/(m·p) − r, −1, 1)``, ``DEPTH_BACKGROUND`` where
  ``z = 0``: :meth:`BatchTransform._depth` with the rotation's per-pixel depth factor
  ``n·p / m·p`` (``p = (u, v, 1)``, ``m`` the last row of ``M⁻¹``, ``n = k·(R·K_s⁻¹)_z·M⁻¹``).

Kernels are compiled on first use and cached on disk (``cache=True``); they are
single-threaded (the DataLoader workers hold the other cores) and use no BLAS, so
their results do not depend on a library's thread count. ``tests/test_batch_transform.py``
checks them against the torch path and ``cv2.warpPerspective``.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def source_map(M_inverse, map_x, map_y):  # pragma: no cover - compiled
    """``(map_x, map_y)[v, u] = dehomogenised M⁻¹·(u, v, 1)`` (float64 arithmetic, float32 maps of the output's shape)."""
    height, width = map_x.shape
    for v in range(height):
        fv = float(v)
        x_row = M_inverse[0, 1] * fv + M_inverse[0, 2]
        y_row = M_inverse[1, 1] * fv + M_inverse[1, 2]
        w_row = M_inverse[2, 1] * fv + M_inverse[2, 2]
        for u in range(width):
            fu = float(u)
            scale = 1.0 / (M_inverse[2, 0] * fu + w_row)
            map_x[v, u] = (M_inverse[0, 0] * fu + x_row) * scale
            map_y[v, u] = (M_inverse[1, 0] * fu + y_row) * scale


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def channel_sums(rgb8):  # pragma: no cover - compiled
    """Sum of each channel of uint8 images ``(B, 3, H, W)`` → int64 ``(B, 3)``."""
    count = rgb8.shape[0]
    sums = np.zeros((count, 3), np.int64)
    for b in range(count):
        for c in range(3):
            plane = rgb8[b, c].ravel()
            total = 0
            for i in range(plane.size):
                total += plane[i]
            sums[b, c] = total
    return sums


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def finish_rgb(rgb8, alpha, beta, offset, low, high, luma, out):  # pragma: no cover - compiled
    """``out[b, c] = clip(α[b,c]·x_c + β[b,c]·(w·x) + d[b,c], low[c], high[c])`` for uint8 ``x`` (B, 3, H, W).

    ``alpha``, ``beta``, ``offset``: float32 ``(B, 3)``; ``low``, ``high``, ``luma``: float32 ``(3,)``;
    ``out``: float32 ``(B, 3, H, W)``.
    """
    w0, w1, w2 = luma[0], luma[1], luma[2]
    for b in range(rgb8.shape[0]):
        r_in, g_in, b_in = rgb8[b, 0].ravel(), rgb8[b, 1].ravel(), rgb8[b, 2].ravel()
        r_out, g_out, b_out = out[b, 0].ravel(), out[b, 1].ravel(), out[b, 2].ravel()
        a0, a1, a2 = alpha[b, 0], alpha[b, 1], alpha[b, 2]
        c0, c1, c2 = beta[b, 0], beta[b, 1], beta[b, 2]
        d0, d1, d2 = offset[b, 0], offset[b, 1], offset[b, 2]
        for i in range(r_in.size):
            red, green, blue = np.float32(r_in[i]), np.float32(g_in[i]), np.float32(b_in[i])
            grey = w0 * red + w1 * green + w2 * blue
            r_out[i] = min(max(a0 * red + c0 * grey + d0, low[0]), high[0])
            g_out[i] = min(max(a1 * green + c1 * grey + d1, low[1]), high[1])
            b_out[i] = min(max(a2 * blue + c2 * grey + d2, low[2]), high[2])


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def finish_depth(depth16, numerator, denominator, root, background, out):  # pragma: no cover - compiled
    """``out[b, 0, v, u] = clip(z·(n·p)/(m·p) − root[b], −1, 1)``, ``background`` where ``z = 0``.

    ``depth16``: uint16 ``(B, H, W)``; ``numerator`` ``n`` and ``denominator`` ``m``: float32
    ``(B, 3)`` coefficients of ``p = (u, v, 1)``; ``root``: float32 ``(B,)``; ``out``: float32 ``(B, 1, H, W)``.
    """
    height, width = depth16.shape[1], depth16.shape[2]
    one = np.float32(1.0)
    for b in range(depth16.shape[0]):
        n0, n1, n2 = numerator[b, 0], numerator[b, 1], numerator[b, 2]
        m0, m1, m2 = denominator[b, 0], denominator[b, 1], denominator[b, 2]
        shift = root[b]
        for v in range(height):
            fv = np.float32(v)
            n_row, m_row = n1 * fv + n2, m1 * fv + m2
            z_row, o_row = depth16[b, v], out[b, 0, v]
            for u in range(width):
                fu = np.float32(u)
                z = np.float32(z_row[u])
                value = min(max(z * (n0 * fu + n_row) / (m0 * fu + m_row) - shift, -one), one)
                o_row[u] = background if z_row[u] == 0 else value


__all__ = ["channel_sums", "finish_depth", "finish_rgb", "source_map"]
