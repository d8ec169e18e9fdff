"""Each raw source's joint layout in the mano21 vocabulary, palm → wrist, mirroring, the sample dict.

Layouts are lists of joint *names* (`datasets.md` §1.3, §2.3, §3); the gather indices
to mano21 are derived from them with :func:`datasets.joints.permutation`, never typed.

- **RHD** (42 = left hand 0–20, right hand 21–41): each hand is the wrist, then the
  fingers thumb → pinky, each finger *tip → MCP*.
- **STB** (21): the *palm centre* first, then the fingers pinky → thumb, each MCP → tip.
  The palm is not a mano21 joint: :data:`STB_TO_MANO21_PALM_ROOT` puts it in the
  wrist's slot and :func:`palm_to_wrist` replaces it by a wrist estimate (§2.6).
- **FreiHAND**: mano21 itself.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from datasets.errors import DatasetError
from datasets.joints import FINGER_JOINTS, FINGERS, MANO21, index, permutation

_TIP_TO_MCP = tuple(reversed(FINGER_JOINTS))

#: One RHD hand: the wrist, then each finger thumb → pinky from the tip down to the MCP.
RHD_HAND = ("wrist",) + tuple(f"{f}_{j}" for f in FINGERS for j in _TIP_TO_MCP)
#: All 42 RHD keypoints, named ``left/<joint>`` (0–20) and ``right/<joint>`` (21–41).
RHD42 = tuple(f"left/{n}" for n in RHD_HAND) + tuple(f"right/{n}" for n in RHD_HAND)
#: Gather indices from the 42 RHD keypoints to one hand in mano21, per side.
RHD42_TO_MANO21 = {
    side: permutation(RHD42, [f"{side}/{n}" for n in MANO21]) for side in ("left", "right")
}

PALM = "palm"
#: STB: the palm centre, then the fingers pinky → thumb, each from the MCP to the tip.
STB21 = (PALM,) + tuple(f"{f}_{j}" for f in reversed(FINGERS) for j in FINGER_JOINTS)
#: mano21 with the palm centre in the wrist's slot (the layout :func:`palm_to_wrist` expects).
MANO21_PALM_ROOT = (PALM,) + MANO21[1:]
#: Gather indices from STB to mano21, slot 0 still holding the palm centre.
STB_TO_MANO21_PALM_ROOT = permutation(STB21, MANO21_PALM_ROOT)

#: FreiHAND stores mano21 (`datasets.md` §3.3, §4.3 b).
FREIHAND21 = MANO21
FREIHAND_TO_MANO21 = permutation(FREIHAND21, MANO21)

#: Names of the palm → wrist rules of :func:`palm_to_wrist`.
PALM_TO_WRIST_RULES = ("ring", "middle", "mean_mcp")


def palm_to_wrist(joints: np.ndarray, rule: str = "ring") -> np.ndarray:
    """Replace the palm centre in slot 0 of ``joints (..., 21, 3)`` (layout :data:`MANO21_PALM_ROOT`) by a wrist.

    The three published rules (`datasets.md` §2.6), with ``p`` the palm and ``m_x`` the MCP of finger x:

    - ``"ring"`` (default; hand3d, hand-graph-cnn, Minimal-Hand): ``wrist = 2·p − m_ring``
    - ``"middle"`` (bihand): ``wrist = m_middle + 2.2·(p − m_middle)``
    - ``"mean_mcp"``: mean over index, middle, ring, pinky of ``m_x + 2.25·(p − m_x)``

    Returns a new array in mano21; the input is not modified.
    """
    joints = np.asarray(joints)
    if joints.shape[-2:] != (21, 3):
        raise ValueError(f"palm_to_wrist expects joints of shape (..., 21, 3), got {joints.shape}")
    palm = joints[..., 0, :]

    def mcp(finger: str) -> np.ndarray:
        return joints[..., index(f"{finger}_mcp"), :]

    if rule == "ring":
        wrist = 2.0 * palm - mcp("ring")
    elif rule == "middle":
        wrist = mcp("middle") + 2.2 * (palm - mcp("middle"))
    elif rule == "mean_mcp":
        wrist = np.mean([mcp(f) + 2.25 * (palm - mcp(f)) for f in ("index", "middle", "ring", "pinky")], axis=0)
    else:
        raise ValueError(f"unknown palm_to_wrist rule {rule!r}; choose one of {PALM_TO_WRIST_RULES}")
    out = joints.copy()
    out[..., 0, :] = wrist
    return out


def mirror_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror a sample dict left ↔ right, keeping image, ``K``, 2D and 3D joints consistent.

    The image is flipped horizontally, so pixel column ``u`` goes to ``u' = W − 1 − u``
    (pixel centres at integer coordinates). The matching camera-frame reflection is
    ``x' = −x``: from ``u = fx·x/z + s·y/z + cx`` follows
    ``u' = fx·(−x)/z − s·y/z + (W − 1 − cx)``, so ``K`` keeps ``fx``, negates the skew
    ``s`` and gets ``cx' = W − 1 − cx``; rows ``v`` and ``y``, ``z`` are unchanged.
    A reflection swaps the hand's chirality, so ``is_left`` is negated. Joint names do not
    change (a mirrored left thumb is a right thumb). Returns a new dict.
    """
    out = dict(sample)
    width = sample["rgb"].shape[-1]
    for key in ("rgb", "depth", "mask"):
        if key in sample:
            out[key] = torch.flip(sample[key], dims=[-1])
    joints3d = sample["joints3d"].clone()
    joints3d[:, 0] = -joints3d[:, 0]
    joints2d = sample["joints2d"].clone()
    joints2d[:, 0] = (width - 1) - joints2d[:, 0]
    K = sample["K"].clone()
    K[0, 1] = -K[0, 1]
    K[0, 2] = (width - 1) - K[0, 2]
    out.update(joints3d=joints3d, joints2d=joints2d, K=K, is_left=torch.logical_not(sample["is_left"]))
    return out


def make_sample(
    *,
    rgb: np.ndarray,
    joints3d: np.ndarray,
    joints2d: np.ndarray,
    visible: np.ndarray,
    K: np.ndarray,
    is_left: bool,
    index: int,
    depth: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Build the sample dict of `sample_api.md` from numpy arrays.

    ``rgb`` uint8 (H, W, 3); ``depth`` metres (H, W); ``mask`` (H, W), nonzero = hand;
    joints in mano21, metres / pixels.
    """
    sample: dict[str, Any] = {
        "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0),
        "joints3d": torch.as_tensor(np.asarray(joints3d, np.float32)),
        "joints2d": torch.as_tensor(np.asarray(joints2d, np.float32)),
        "visible": torch.as_tensor(np.asarray(visible, bool)),
        "K": torch.as_tensor(np.asarray(K, np.float32)),
        "is_left": torch.tensor(bool(is_left)),
        "index": int(index),
    }
    if depth is not None:
        sample["depth"] = torch.from_numpy(np.asarray(depth, np.float32)[None].copy())
    if mask is not None:
        sample["mask"] = torch.from_numpy((np.asarray(mask) != 0).astype(np.float32)[None])
    return sample


def in_frame(joints2d: np.ndarray, joints3d: np.ndarray, width: int, height: int) -> np.ndarray:
    """Visibility for sources without a visibility label: in front of the camera and inside the image."""
    u, v = joints2d[..., 0], joints2d[..., 1]
    return (joints3d[..., 2] > 0) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)


def check_joints(joints: np.ndarray, expected_shape: Sequence[int], where: str) -> np.ndarray:
    """Return ``joints`` as float array after checking its shape and that it is finite.

    Raises :class:`~datasets.errors.DatasetError` naming ``where`` (file and sample).
    """
    try:
        array = np.asarray(joints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: expected a numeric array of shape {tuple(expected_shape)}, found {exc}") from exc
    if array.shape != tuple(expected_shape):
        raise DatasetError(f"{where}: expected shape {tuple(expected_shape)}, found {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DatasetError(f"{where}: contains NaN or inf values")
    return array
