"""Small synthetic hands and shard directories for tests and benchmarks (no renderer needed).

A hand is a plausible mano21 skeleton (fingers ordered thumb → pinky across the palm,
each finger mcp → tip outwards), posed in front of an OpenCV camera; images are drawn as
discs around the projected joints, so rgb, depth (the joint's z) and mask agree with the
joints. ``joints2d`` is the exact projection of ``joints3d``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datasets.geometry import project
from datasets.joints import FINGERS
from datasets.shard_format import record_shards, write_shard
from datasets.warp import rotation_about_axis

# Hand frame: x across the palm (thumb at −x), y from the fingertips towards the wrist, z away from the palm.
_MCP = {"thumb": (-0.030, -0.025), "index": (-0.022, -0.085), "middle": (-0.003, -0.090),
        "ring": (0.015, -0.084), "pinky": (0.030, -0.074)}
_BONES = {"thumb": (0.035, 0.030, 0.025), "index": (0.040, 0.025, 0.020), "middle": (0.045, 0.028, 0.022),
          "ring": (0.042, 0.026, 0.021), "pinky": (0.032, 0.020, 0.018)}


def synthetic_hand(rng: np.random.Generator) -> np.ndarray:
    """mano21 joints ``(21, 3)`` in a hand frame (metres), with a random curl per finger."""
    joints = [np.zeros(3)]
    for finger in FINGERS:
        mcp = np.array([*_MCP[finger], 0.0])
        direction = mcp / np.linalg.norm(mcp)
        curl = rng.uniform(0.0, 0.5)
        point = mcp
        joints.append(point)
        for length in _BONES[finger]:
            direction = rotation_about_axis(np.array([1.0, 0.0, 0.0]), curl) @ direction
            point = point + length * direction
            joints.append(point)
    return np.array(joints)


def synthetic_sample(rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
    """One sample in shard storage types: rgb uint8 (H,W,3), depth uint16 mm, mask, joints, K."""
    hand = synthetic_hand(rng)
    axis = rng.normal(size=3)
    rotation = rotation_about_axis(axis, rng.uniform(-0.6, 0.6))
    centre = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), rng.uniform(0.45, 0.6)])
    joints3d = (hand - hand.mean(axis=0)) @ rotation.T + centre
    focal = size * rng.uniform(1.1, 1.4)
    K = np.array([[focal, 0.0, size / 2 + rng.uniform(-2, 2)], [0.0, focal, size / 2 + rng.uniform(-2, 2)],
                  [0.0, 0.0, 1.0]])
    joints2d = project(joints3d, K).astype(np.float64)
    v, u = np.mgrid[0:size, 0:size]
    distance = np.linalg.norm(np.stack([u, v], -1)[:, :, None, :] - joints2d[None, None], axis=-1)
    nearest = distance.argmin(axis=-1)
    mask = distance.min(axis=-1) < max(1.5, size / 24)
    background = rng.uniform(0, 255, size=(4, 4, 3))
    rgb = np.kron(background, np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
    rgb[mask] = (220, 170, 140)
    depth = np.where(mask, np.round(joints3d[nearest, 2] * 1000), 0)
    return {
        "rgb": rgb.astype(np.uint8),
        "depth": depth.astype(np.uint16),
        "mask": mask.astype(np.uint8),
        "joints3d": joints3d.astype(np.float32),
        "joints2d": project(joints3d.astype(np.float32), K.astype(np.float32)),
        "visible": np.ones(21, dtype=bool),
        "K": K.astype(np.float32),
    }


def synthetic_arrays(num: int, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    samples = [synthetic_sample(rng, size) for _ in range(num)]
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}


def write_synthetic_shards(directory: str | Path, shard_sizes=(3, 2), size: int = 32, seed: int = 0,
                           splits=None, manifest: bool = True, compression=None) -> Path:
    """A shard directory with ``len(shard_sizes)`` shards; ``splits[i]`` becomes shard i's ``split`` attribute."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, count in enumerate(shard_sizes):
        arrays = synthetic_arrays(count, size, seed=seed * 1000 + i)
        attrs = {"source": "test-synthetic", "config": json.dumps({"seed": seed, "size": size})}
        if splits is not None:
            attrs["split"] = splits[i]
        entry = write_shard(directory, i, arrays, attrs, compression=compression)
        if splits is not None:
            entry["split"] = splits[i]
        entries.append(entry)
    if manifest:
        record_shards(directory, entries, source="test-synthetic", command="tests")
    return directory
