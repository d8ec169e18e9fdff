"""The open hand's 10 shape directions (MANO's ``shapedirs``), built from bone stretches.

A *stretch* scales every bone of the rest skeleton: digit bones along their length (λ)
and across it (ρ, thickness), the palm (the wrist bone) along x, y, z (length, thickness,
width). Joints follow the stretched bones from the wrist outwards and a vertex follows
the bones it is skinned to, ``v' = Σ_b w_b [J'_b + M_b (v − J_b)]`` with
``M_b = λ_b t tᵀ + ρ_b (I − t tᵀ)`` (``t`` the bone direction; for the palm
``M_0 = diag(length, thickness, width)``). ``v'`` is affine in the stretch factors, so
each shape direction — a fixed combination of stretches, :data:`SHAPE_DIRECTIONS` — is
exactly linear in its β, as in MANO.
"""
from __future__ import annotations

import numpy as np

from render.open_hand.skeleton import FINGER_ORDER, PARENTS, HandSkeleton

def _digit_joints(skeleton: HandSkeleton, names) -> list[int]:
    return [j for n in names for j in skeleton.fingers[n].joint_ids]


#: β_k = 1 means: (description, {stretch: relative change}); stretch keys are
#: "length:<digits>", "thickness:<digits>", "distal:<digits>", "palm_length", "palm_thickness", "palm_width".
SHAPE_DIRECTIONS = (
    ("overall size +6%", {"length:all": 0.06, "thickness:all": 0.06, "palm_length": 0.06,
                          "palm_thickness": 0.06, "palm_width": 0.06}),
    ("long fingers +5% relative to the palm", {"length:index,middle,ring,pinky": 0.05, "palm_length": -0.02}),
    ("palm width +7%", {"palm_width": 0.07}),
    ("digit thickness +10%", {"thickness:all": 0.10}),
    ("palm thickness +10%", {"palm_thickness": 0.10}),
    ("thumb length +7%", {"length:thumb": 0.07}),
    ("index +4% / ring −4% (digit ratio)", {"length:index": 0.04, "length:ring": -0.04}),
    ("little finger length +8%", {"length:pinky": 0.08}),
    ("palm length +6%", {"palm_length": 0.06}),
    ("distal phalanges +10% longer, +5% thicker", {"distal:all": 0.10, "distal_thickness:all": 0.05}),
)


def _stretch_vector(skeleton: HandSkeleton, changes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-joint length factors (16,), thickness factors (16,), palm factors (3,) for ``changes``."""
    length = np.ones(16)
    thickness = np.ones(16)
    palm = np.ones(3)  # x (length), y (thickness), z (width)
    for key, value in changes.items():
        if key.startswith("palm_"):
            palm[{"palm_length": 0, "palm_thickness": 1, "palm_width": 2}[key]] += value
            continue
        kind, digits = key.split(":")
        names = FINGER_ORDER if digits == "all" else digits.split(",")
        if kind in ("length", "thickness"):
            ids = _digit_joints(skeleton, names)
        else:  # distal segment only
            ids = [skeleton.fingers[n].joint_ids[2] for n in names]
        target = length if kind in ("length", "distal") else thickness
        target[ids] += value
    return length, thickness, palm


def stretch(skeleton: HandSkeleton, vertices: np.ndarray, weights: np.ndarray,
            length: np.ndarray, thickness: np.ndarray, palm: np.ndarray) -> np.ndarray:
    """Vertices (V, 3) after stretching the bones (see the module docstring)."""
    joints = skeleton.joints
    new_joints = joints.copy()
    directions = np.zeros((16, 3))
    for name in FINGER_ORDER:
        f = skeleton.fingers[name]
        chain = list(f.joint_ids)
        ends = np.vstack([joints[chain], f.points[3]])
        directions[chain] = np.diff(ends, axis=0) / np.linalg.norm(np.diff(ends, axis=0), axis=1, keepdims=True)
    for j in range(1, 16):  # parents precede children in MANO order
        p = PARENTS[j]
        if p == 0:
            new_joints[j] = joints[0] + palm * (joints[j] - joints[0])
        else:
            new_joints[j] = new_joints[p] + length[p] * (joints[j] - joints[p])
    result = np.zeros_like(vertices)
    offsets = vertices - joints[0]
    result += weights[:, :1] * (new_joints[0] + palm * offsets)
    for b in range(1, 16):
        t = directions[b]
        local = vertices - joints[b]
        along = local @ t
        moved = new_joints[b] + length[b] * along[:, None] * t + thickness[b] * (local - along[:, None] * t)
        result += weights[:, b:b + 1] * moved
    return result


def shape_directions(skeleton: HandSkeleton, vertices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MANO ``shapedirs`` (V, 3, 10): the vertex displacement for β_k = 1."""
    dirs = []
    base = stretch(skeleton, vertices, weights, np.ones(16), np.ones(16), np.ones(3))
    for _, changes in SHAPE_DIRECTIONS:
        dirs.append(stretch(skeleton, vertices, weights, *_stretch_vector(skeleton, changes)) - base)
    return np.stack(dirs, axis=2)
