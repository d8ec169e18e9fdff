"""Rigging of the open hand: skinning weights, joint regressor, fingertips, shape directions.

Skinning weights (MANO's ``weights``, (V, 16), rows sum to 1) are the product of two
smooth factors:

- *which digit*: a soft assignment ``m_f = softmax(−d_f / τ)`` over the five digits, where
  ``d_f`` is the distance to digit f's axis (metacarpal included) minus its radius, then
  diffused over the mesh (:data:`MEMBERSHIP_DIFFUSION` steps of ``m ← (m + mean of the
  neighbours' m) / 2``) so that the switch between neighbouring digits — in the webs and
  the thenar region — spreads over about two centimetres of skin along the surface
  (geodesically, so separate fingers do not influence each other);
- *which segment of that digit*: along the digit, joint k's plane (normal = the bisector
  of the two bones meeting there) splits parent from child with a smoothstep of width
  ``2·w_k`` centred on the joint, so every joint bends with a blended sleeve of skin
  instead of a hinge (no tearing). Proximal of joint 1 everything follows the wrist.

The joint regressor (``J_regressor``, (16, V)) averages a ring of surface vertices around
each joint and is corrected (minimum-norm) so that it reproduces the designed joint centre
exactly and is an affine combination (weights sum to 1), hence moves with the shape.

Shape directions (``shapedirs``, (V, 3, 10)) come from a per-bone affine stretch
``v' = Σ_b w_b [J'_b + M_b (v − J_b)]`` (bone length along the bone, thickness across it,
palm length/width/thickness for the wrist bone), which is linear in the stretch factors, so
each direction is exactly the displacement for β_k = 1.
"""
from __future__ import annotations

import numpy as np

from render.open_hand.skeleton import FINGER_ORDER, PARENTS, HandSkeleton

MEMBERSHIP_SOFTNESS = 0.0025  # τ (metres)
MEMBERSHIP_DIFFUSION = 20
#: Half-width of the skin blend around joints 1, 2, 3 (metres), long fingers and thumb.
BLEND_HALF_WIDTH = {"finger": (0.011, 0.0065, 0.0055), "thumb": (0.014, 0.0075, 0.0060)}


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1), t


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _digit_chain(skeleton: HandSkeleton, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Chain points (base, joint1, joint2, joint3, axis end) and radii at them."""
    f = skeleton.fingers[name]
    if name == "thumb":
        base = np.zeros(3)  # the thumb's metacarpal region starts at the wrist
        base_radius = 0.014
    else:
        base, base_radius = f.base, 0.012
    return np.vstack([base, f.points]), np.concatenate([[base_radius], f.radii])


def digit_membership(skeleton: HandSkeleton, vertices: np.ndarray) -> np.ndarray:
    """(V, 5) soft assignment of each vertex to the digits in FINGER_ORDER (rows sum to 1)."""
    distances = []
    for name in FINGER_ORDER:
        points, radii = _digit_chain(skeleton, name)
        best = np.full(len(vertices), np.inf)
        for i in range(len(points) - 1):
            d, t = _segment_distance(vertices, points[i], points[i + 1])
            best = np.minimum(best, d - (radii[i] + (radii[i + 1] - radii[i]) * t))
        distances.append(best)
    logits = -np.stack(distances, axis=1) / MEMBERSHIP_SOFTNESS
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def diffuse(values: np.ndarray, edges: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` rounds of ``x ← (x + mean of the neighbours' x) / 2`` over mesh ``edges`` (E, 2)."""
    count = np.bincount(edges.ravel(), minlength=len(values)).astype(np.float64)
    for _ in range(steps):
        total = np.zeros_like(values)
        np.add.at(total, edges[:, 0], values[edges[:, 1]])
        np.add.at(total, edges[:, 1], values[edges[:, 0]])
        values = 0.5 * values + 0.5 * total / count[:, None]
    return values


def skinning_weights(skeleton: HandSkeleton, vertices: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(V, 16) linear-blend-skinning weights of a mesh with ``edges`` (see the module docstring)."""
    membership = diffuse(digit_membership(skeleton, vertices), edges, MEMBERSHIP_DIFFUSION)
    weights = np.zeros((len(vertices), 16))
    for col, name in enumerate(FINGER_ORDER):
        points, _ = _digit_chain(skeleton, name)
        widths = BLEND_HALF_WIDTH["thumb" if name == "thumb" else "finger"]
        bones = np.diff(points, axis=0)
        bones /= np.linalg.norm(bones, axis=1, keepdims=True)
        carried = np.ones(len(vertices))  # product of the smoothsteps of the joints passed
        chain = [0] + list(skeleton.fingers[name].joint_ids)
        for k in range(3):
            normal = bones[k] + bones[k + 1]
            normal /= np.linalg.norm(normal)
            u = (vertices - points[k + 1]) @ normal
            sigma = _smoothstep((u + widths[k]) / (2 * widths[k]))
            weights[:, chain[k]] += membership[:, col] * carried * (1 - sigma)
            carried = carried * sigma
        weights[:, chain[3]] += membership[:, col] * carried
    return weights


def joint_regressor(skeleton: HandSkeleton, vertices: np.ndarray, rays: int = 12) -> np.ndarray:
    """(16, V) affine regressor with ``J_regressor @ vertices == skeleton.joints``.

    For each joint, cast ``rays`` directions perpendicular to the bone leaving it and take
    the nearest vertex roughly along each; start from their mean and apply the
    minimum-norm correction that hits the joint centre exactly.
    """
    regressor = np.zeros((16, len(vertices)))
    for j in range(16):
        centre = skeleton.joints[j]
        axis = _joint_axis(skeleton, j)
        helper = np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(axis, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        offsets = vertices - centre
        dist = np.linalg.norm(offsets, axis=1)
        axial = np.abs(offsets @ axis)
        chosen = []
        for a in np.linspace(0.0, 2 * np.pi, rays, endpoint=False):
            ray = np.cos(a) * e1 + np.sin(a) * e2
            cosine = offsets @ ray / np.maximum(dist, 1e-9)
            score = np.where((cosine > 0.8) & (axial < 0.006), dist, np.inf)
            if np.isfinite(score.min()):
                chosen.append(int(np.argmin(score)))
        chosen = np.unique(chosen)
        if chosen.size < 4:
            raise ValueError(f"joint {j}: only {chosen.size} surface vertices found around it")
        a_mat = np.vstack([vertices[chosen].T, np.ones(chosen.size)])  # (4, n)
        w0 = np.full(chosen.size, 1.0 / chosen.size)
        target = np.concatenate([centre, [1.0]])
        w = w0 + a_mat.T @ np.linalg.solve(a_mat @ a_mat.T, target - a_mat @ w0)
        regressor[j, chosen] = w
    return regressor


def _joint_axis(skeleton: HandSkeleton, j: int) -> np.ndarray:
    """Unit direction of the bone leaving joint ``j`` (the wrist: towards the middle MCP)."""
    children = np.flatnonzero(PARENTS == j)
    if j == 0:
        target = skeleton.joints[4]
    elif children.size:
        target = skeleton.joints[children[0]]
    else:
        name = next(n for n, f in skeleton.fingers.items() if j in f.joint_ids)
        target = skeleton.fingers[name].points[3]
    d = target - skeleton.joints[j]
    return d / np.linalg.norm(d)
