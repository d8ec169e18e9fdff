"""Compiled per-vertex and per-pixel loops (numba) of the hand renderer.

Both replace numpy chains that made several passes (and temporaries) per frame with the same
float32 arithmetic in the same order, so the frames do not change (the render stage of
``docs/rendering_benchmark.md`` measures the renderer with them):

- :func:`vertex_normals` — area-weighted vertex normals: each face's normal
  ``(v1 − v0) × (v2 − v0)`` summed onto its three vertices in face order (the order of the
  sparse incidence product it replaces), then normalised (lengths below 1e-12 kept at 1e-12);
- :func:`linear_depth` — OpenGL window depth ``w`` (rows bottom-up) to camera-z depth
  ``2·n·f / (f + n − (2w − 1)(f − n))`` with rows top-down, 0 where ``w ≥ 1`` (nothing drawn).

and two loops of the sample pipeline, each one pass instead of a chain of numpy/OpenCV calls
(tested against those chains, ``tests/test_render_geometry.py``):

- :func:`skin_colours` — ``clip(base · jitter · (1 − g·a(v)·w) · (1 + s·n_v), 0, 1)`` per vertex,
  with ``a(v)`` the vertex's normalised position along a direction (:func:`render.sampling.draw_skin`);
- :func:`depth_labels` — millimetre depth and mask of one render
  (:func:`render.postprocess.finish_sample`).

Compiled on first use and cached on disk (``cache=True``); no BLAS, no threads, and no
floating-point contraction (numba's default), so results do not depend on the machine's CPU.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, boundscheck=False)
def vertex_normals(vertices, faces, out):  # pragma: no cover - compiled
    """Unit area-weighted normals ``out`` (V, 3) float32 of the mesh ``faces`` (F, 3) posed at ``vertices`` (V, 3)."""
    out[:] = 0.0
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x, e1y, e1z = vertices[b, 0] - vertices[a, 0], vertices[b, 1] - vertices[a, 1], vertices[b, 2] - vertices[a, 2]
        e2x, e2y, e2z = vertices[c, 0] - vertices[a, 0], vertices[c, 1] - vertices[a, 1], vertices[c, 2] - vertices[a, 2]
        nx, ny, nz = e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x
        for v in (a, b, c):
            out[v, 0] += nx
            out[v, 1] += ny
            out[v, 2] += nz
    floor = np.float32(1e-12)
    for v in range(out.shape[0]):
        length = np.sqrt(out[v, 0] * out[v, 0] + out[v, 1] * out[v, 1] + out[v, 2] * out[v, 2])
        length = max(length, floor)
        out[v, 0] /= length
        out[v, 1] /= length
        out[v, 2] /= length


@njit(cache=True, nogil=True, boundscheck=False)
def linear_depth(window_z, near, far, out):  # pragma: no cover - compiled
    """Camera-z depth ``out`` (H, W) float32 from OpenGL window depth ``window_z`` (H, W), flipping the rows."""
    height = window_z.shape[0]
    numerator = np.float32(2.0 * near * far)
    offset, scale = np.float32(far + near), np.float32(far - near)
    one, two = np.float32(1.0), np.float32(2.0)
    for row in range(height):
        source, target = window_z[height - 1 - row], out[row]
        for u in range(source.shape[0]):
            w = source[u]
            target[u] = np.float32(0.0) if w >= one else numerator / (offset - (two * w - one) * scale)


@njit(cache=True, nogil=True, boundscheck=False)
def skin_colours(base, jitter, axis, template, gradient, channel_weights, noise_scale, noise, out):  # pragma: no cover
    """Per-vertex colours ``out`` (V, 3) float32 (float64 arithmetic, products in the order of the formula above).

    ``base`` (V, 3) (a broadcast tone or texture colours), ``jitter`` (3,), unit ``axis`` (3,),
    ``template`` (V, 3), ``gradient`` = g, ``channel_weights`` (3,) = w, ``noise`` (V,) standard normal.
    """
    count = template.shape[0]
    along = np.empty(count, np.float64)
    low, high = np.inf, -np.inf
    for v in range(count):
        a = np.float64(template[v, 0]) * axis[0] + np.float64(template[v, 1]) * axis[1] \
            + np.float64(template[v, 2]) * axis[2]
        along[v] = a
        low, high = min(low, a), max(high, a)
    span = max(high - low, 1e-9)
    for v in range(count):
        position = (along[v] - low) / span
        factor = 1.0 + noise_scale * noise[v]
        for c in range(3):
            value = base[v, c] * jitter[c] * (1.0 - gradient * position * channel_weights[c]) * factor
            out[v, c] = min(max(value, 0.0), 1.0)


@njit(cache=True, nogil=True, boundscheck=False)
def depth_labels(depth, stored_depth, millimetres_out, mask_out):  # pragma: no cover - compiled
    """One pass over a render's depth: ``mask_out`` = (``depth`` > 0) as uint8 and ``millimetres_out`` =
    round-half-even(1000 · ``stored_depth``) saturated to uint16 (the caller checks the range first)."""
    height, width = depth.shape
    for row in range(height):
        for u in range(width):
            millimetres = np.rint(np.float64(stored_depth[row, u]) * 1000.0)
            millimetres_out[row, u] = np.uint16(min(max(millimetres, 0.0), 65535.0))
            mask_out[row, u] = np.uint8(depth[row, u] > 0)


__all__ = ["depth_labels", "linear_depth", "skin_colours", "vertex_normals"]
