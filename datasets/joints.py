"""Joint layouts, by name.

The toolkit's one joint layout is **mano21** (`method.md` §2; the FreiHAND / manopth /
OpenPose order): the wrist, then each finger thumb → pinky from the palm outwards
(mcp, pip, dip, tip). Every source's layout is written here as a list of *names* in the
mano21 vocabulary, and every permutation is derived from names with
:func:`permutation` — never typed as an index list.

Thumb joints are named positionally ("mcp/pip/dip" = MANO thumb1/2/3, anatomically
CMC/MCP/IP), as in every public hand dataset.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
FINGER_JOINTS = ("mcp", "pip", "dip", "tip")

#: mano21: wrist, then for each finger (thumb → pinky) mcp, pip, dip, tip.
MANO21 = ("wrist",) + tuple(f"{f}_{j}" for f in FINGERS for j in FINGER_JOINTS)

#: The 16 kinematic joints of the MANO model in MANO/smplx order
#: (wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3; `datasets.md` §4.1).
MANO16 = ("wrist",) + tuple(
    f"{f}_{j}" for f in ("index", "middle", "pinky", "ring", "thumb") for j in ("mcp", "pip", "dip")
)


def _kinematic_parent(name: str) -> str | None:
    """Parent of a MANO16 joint: the wrist for MCPs, the previous joint of the finger otherwise."""
    if name == "wrist":
        return None
    finger, joint = name.split("_")
    return "wrist" if joint == "mcp" else f"{finger}_{FINGER_JOINTS[FINGER_JOINTS.index(joint) - 1]}"


#: Kinematic parent of each MANO16 joint, by name (the wrist has none).
MANO16_PARENTS = {name: _kinematic_parent(name) for name in MANO16}
#: Fingertips appended after the 16 MANO joints, in smplx's vertex-id order.
MANO_TIPS = ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip")
#: smplx/HaMeR "MANO + tips" order (`datasets.md` §4.3 a).
MANO16_WITH_TIPS = MANO16 + MANO_TIPS

#: Bones of the hand skeleton as (parent, child) names in mano21.
BONES = tuple(
    [("wrist", f"{f}_mcp") for f in FINGERS]
    + [(f"{f}_{a}", f"{f}_{b}") for f in FINGERS for a, b in zip(FINGER_JOINTS[:-1], FINGER_JOINTS[1:])]
)

ROOT = "wrist"
#: The scale bone: middle finger MCP–PIP (`method.md` §2).
SCALE_BONE = ("middle_mcp", "middle_pip")


def permutation(src_names: Sequence[str], dst_names: Sequence[str] = MANO21) -> np.ndarray:
    """Gather indices ``idx`` such that ``joints_dst = joints_src[..., idx, :]``.

    Raises ``KeyError`` naming every destination joint missing from the source.
    """
    missing = [n for n in dst_names if n not in src_names]
    if missing:
        raise KeyError(f"source layout lacks joints {missing}; it has {list(src_names)}")
    return np.array([list(src_names).index(n) for n in dst_names], dtype=np.int64)


def index(name: str, layout: Sequence[str] = MANO21) -> int:
    """Position of joint ``name`` in ``layout``."""
    return list(layout).index(name)


BONE_INDICES = np.array([[index(a), index(b)] for a, b in BONES], dtype=np.int64)


def root_and_scale(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root joint (wrist) and scale (middle MCP–PIP length) of mano21 joints ``(..., 21, 3)``."""
    joints = np.asarray(joints)
    root = joints[..., index(ROOT), :]
    scale = np.linalg.norm(joints[..., index(SCALE_BONE[1]), :] - joints[..., index(SCALE_BONE[0]), :], axis=-1)
    return root, scale
