"""Compiled per-vertex and per-pixel loops (numba) of the hand renderer.

Both replace numpy chains that made several passes (and temporaries) per frame with the same
float32 arithmetic in the same order, so the frames do not change (the render stage of
``docs/rendering_benchmark.md`` measures the renderer with them):

- :func:`vertex_normals` — area-weighted vertex normals: each face's normal
  ``(v1 − v0) × (v2 − v0)`` summed onto its three vertices in face order (the order of the
  sparse incidence product it replaces), then normalised (lengths below 1e-12 kept at 1e-12);
- :func:`linear_depth` — OpenGL window depth ``w`` (rows bottom-up) to camera-z depth
  ``2·n·f / (f + n − (2w − 1)(f − n))`` with rows top-down, 0 where ``w ≥ 1`` (nothing drawn).

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


__all__ = ["linear_depth", "vertex_normals"]
