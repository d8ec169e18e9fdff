"""Assemble the open hand's MANO-format arrays (``tools/build_hand_model.py`` writes them).

Everything is deterministic: fixed proportions, a fixed meshing grid, a seeded generator
(numpy's PCG64, identical on every platform) for the pose distribution. Floats are stored
as float32 after rounding to 1e-7 m / 1e-7 rad, well below anything visible.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from render.mano_io import save_mano_npz
from render.open_hand.pose_prior import build_pose_space
from render.open_hand.rig import joint_regressor, skinning_weights
from render.open_hand.shape_space import shape_directions
from render.open_hand.skeleton import PARENTS, build_skeleton
from render.open_hand.surface import build_surface, edges_of

#: Version tag stored in the file (``open_hand_version``) and shown in the hand identity.
VERSION = 2  # 2: exact covariance and canonical basis of the degenerate pose eigenspace


def _f32(a: np.ndarray) -> np.ndarray:
    # + 0.0 turns −0.0 into 0.0, so that a sign of zero never changes the bytes.
    return (np.round(np.asarray(a, dtype=np.float64), 7) + 0.0).astype(np.float32)


def build_open_hand() -> dict[str, np.ndarray]:
    """All arrays of the embedded hand, keyed as in MANO's own files."""
    skeleton = build_skeleton()
    vertices, faces = build_surface(skeleton)
    # The fingertip joints are surface vertices: put the nearest vertex exactly on each
    # designed fingertip (a move of at most a couple of millimetres along the surface).
    tips = [int(np.argmin(np.linalg.norm(vertices - tip, axis=1))) for tip in skeleton.fingertips]
    vertices[tips] = skeleton.fingertips
    weights = skinning_weights(skeleton, vertices, edges_of(faces))
    hands_mean, hands_components, _ = build_pose_space(skeleton)
    kintree = np.stack([PARENTS, np.arange(16)]).astype(np.int64)
    return {
        "v_template": _f32(vertices),
        "f": faces.astype(np.int32),
        "weights": _f32(weights),
        "posedirs": np.zeros((len(vertices), 3, 135), dtype=np.float32),
        "shapedirs": _f32(shape_directions(skeleton, vertices, weights)),
        "J_regressor": _f32(joint_regressor(skeleton, vertices)),
        "kintree_table": kintree,
        "hands_components": _f32(hands_components),
        "hands_mean": _f32(hands_mean),
        "tip_vertex_ids": np.array(tips, dtype=np.int64),
        "open_hand_version": np.array(VERSION, dtype=np.int64),
    }


def write_open_hand(path: str | Path) -> Path:
    """Build the embedded hand and write it to ``path`` (atomic, deterministic bytes)."""
    return save_mano_npz(path, build_open_hand())
