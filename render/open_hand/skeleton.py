"""Anatomical proportions of the open hand: joint centres, finger radii and joint axes.

Frame of the rest (template) pose, metres, wrist joint at the origin:

- ``+x`` points from the wrist along the middle finger (distal),
- ``+y`` points out of the back of the hand (dorsal; the palm faces ``-y``),
- ``+z`` points towards the little finger (ulnar); the thumb lies on the ``-z`` side.

That is a *right* hand: ``(index_mcp - wrist) x (pinky_mcp - wrist)`` points out of the
palm (``-y``), the side the fingers curl towards. The fingers are straight and slightly
spread, the thumb is abducted about 45 degrees in the palm plane and turned so that its
nail faces sideways, as in MANO's flat template.

Lengths are those of an average adult hand (hand length, wrist crease to middle
fingertip, about 18.4 cm; palm breadth at the knuckles about 8 cm), with phalanx ratios
after published hand-segment proportions (proximal : middle : distal phalanx of the long
fingers roughly 1.8 : 1.1 : 1, thumb metacarpal : proximal : distal roughly 1.7 : 1.2 : 1).
Joint centres follow MANO's 16-joint tree and order
(wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3; ``datasets.md`` §4.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.joints import MANO16, MANO16_PARENTS

#: Fingers in the toolkit's order (thumb first); tip vertex ids are stored in this order.
FINGER_ORDER = ("thumb", "index", "middle", "ring", "pinky")
#: MANO16 parent index of every joint (-1 for the wrist).
PARENTS = np.array([-1 if MANO16_PARENTS[n] is None else MANO16.index(MANO16_PARENTS[n]) for n in MANO16])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _fan(degrees: float) -> np.ndarray:
    """Unit direction in the palm plane, ``degrees`` from ``+x`` towards the little finger."""
    a = np.deg2rad(degrees)
    return np.array([np.cos(a), 0.0, np.sin(a)])


@dataclass(frozen=True)
class FingerSpec:
    """Rest geometry of one digit.

    ``base`` is where the digit's palm part starts (metacarpal base; for the thumb its
    CMC joint, which is joint 1). ``points`` are joint 1, joint 2, joint 3 and the end of
    the digit's axis (the fingertip surface point lies ``radii[3]`` beyond it).
    ``radii`` are lateral half-widths at those four points; the dorsal-palmar half
    thickness is ``FLATTEN`` times that. ``dorsal`` is the nail direction per segment.
    """

    name: str
    joint_ids: tuple[int, int, int]
    base: np.ndarray
    points: np.ndarray  # (4, 3)
    radii: np.ndarray  # (4,)
    dorsal: np.ndarray  # (3, 3): nail direction of segments joint1→2, 2→3, 3→end

    def segment_directions(self) -> np.ndarray:
        """(3, 3) unit directions of the three movable segments."""
        d = np.diff(self.points, axis=0)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def flexion_axes(self) -> np.ndarray:
        """(3, 3) unit flexion axes of joints 1–3: a positive rotation curls the digit palmwards.

        For a segment direction ``d`` and nail direction ``n`` the axis is ``n × d``, so
        that ``axis × d = −n`` (the distal end moves towards the palm side).
        """
        return np.cross(self.dorsal, self.segment_directions())

    def abduction_axes(self) -> np.ndarray:
        """(3, 3) unit axes of sideways (radial/ulnar) motion: the nail directions."""
        return self.dorsal.copy()


FLATTEN = 0.85  # finger cross-sections are slightly flatter than wide

# Long fingers: MCP centre, spread angle, segment lengths MCP→PIP, PIP→DIP, DIP→tip
# (the last one to the fingertip surface), radii at MCP, PIP, DIP, tip.
_LONG_FINGERS = {
    "index": dict(mcp=(0.086, 0.004, -0.025), base=(0.012, 0.004, -0.012), fan=-8.0,
                  lengths=(0.041, 0.024, 0.021), radii=(0.0100, 0.0090, 0.0080, 0.0072)),
    "middle": dict(mcp=(0.088, 0.004, -0.003), base=(0.012, 0.004, -0.002), fan=0.0,
                   lengths=(0.045, 0.028, 0.023), radii=(0.0102, 0.0092, 0.0082, 0.0074)),
    "ring": dict(mcp=(0.082, 0.002, 0.017), base=(0.012, 0.002, 0.009), fan=7.0,
                 lengths=(0.042, 0.027, 0.022), radii=(0.0096, 0.0087, 0.0077, 0.0070)),
    "pinky": dict(mcp=(0.073, 0.000, 0.036), base=(0.012, 0.000, 0.019), fan=15.0,
                  lengths=(0.033, 0.020, 0.019), radii=(0.0086, 0.0077, 0.0069, 0.0062)),
}
# Thumb: CMC centre, per-segment directions (CMC→MCP, MCP→IP, IP→tip), lengths, radii
# at CMC, MCP, IP, tip, and the nail direction before orthogonalisation.
_THUMB = dict(cmc=(0.020, -0.010, -0.020),
              directions=((0.70, -0.25, -0.67), (0.80, -0.20, -0.56), (0.86, -0.15, -0.48)),
              lengths=(0.046, 0.032, 0.026), radii=(0.0125, 0.0110, 0.0098, 0.0088),
              nail=(0.0, 0.45, -0.89))


def _orthogonal(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``n`` made perpendicular to ``d`` and unit length."""
    return _unit(n - np.dot(n, d) * d)


def _long_finger(name: str, spec: dict) -> FingerSpec:
    direction = _fan(spec["fan"])
    mcp = np.array(spec["mcp"], dtype=np.float64)
    lengths = np.array(spec["lengths"])
    radii = np.array(spec["radii"])
    # The axis ends one tip radius short of the fingertip surface.
    steps = lengths.copy()
    steps[2] -= radii[3]
    points = mcp + np.concatenate([[0.0], np.cumsum(steps)])[:, None] * direction
    dorsal = np.repeat(_orthogonal(np.array([0.0, 1.0, 0.0]), direction)[None], 3, axis=0)
    ids = tuple(MANO16.index(f"{name}_{j}") for j in ("mcp", "pip", "dip"))
    return FingerSpec(name, ids, np.array(spec["base"], dtype=np.float64), points, radii, dorsal)


def _thumb() -> FingerSpec:
    directions = np.array([_unit(d) for d in _THUMB["directions"]])
    radii = np.array(_THUMB["radii"])
    steps = np.array(_THUMB["lengths"], dtype=np.float64)
    steps[2] -= radii[3]
    points = [np.array(_THUMB["cmc"], dtype=np.float64)]
    for d, s in zip(directions, steps):
        points.append(points[-1] + s * d)
    nail = np.array(_THUMB["nail"], dtype=np.float64)
    dorsal = np.array([_orthogonal(nail, d) for d in directions])
    ids = tuple(MANO16.index(f"thumb_{j}") for j in ("mcp", "pip", "dip"))
    return FingerSpec("thumb", ids, points[0].copy(), np.array(points), radii, dorsal)


@dataclass(frozen=True)
class HandSkeleton:
    """The rest skeleton: 16 MANO joints and the five digits."""

    joints: np.ndarray  # (16, 3) metres, MANO16 order
    fingers: dict  # name -> FingerSpec, in FINGER_ORDER

    @property
    def fingertips(self) -> np.ndarray:
        """(5, 3) fingertip surface points in FINGER_ORDER (axis end + tip radius along the axis)."""
        tips = []
        for name in FINGER_ORDER:
            f = self.fingers[name]
            tips.append(f.points[3] + f.radii[3] * f.segment_directions()[2])
        return np.array(tips)


def build_skeleton() -> HandSkeleton:
    """The open hand's rest skeleton (see the module docstring for frame and proportions)."""
    fingers = {"thumb": _thumb()}
    fingers.update({name: _long_finger(name, spec) for name, spec in _LONG_FINGERS.items()})
    fingers = {name: fingers[name] for name in FINGER_ORDER}
    joints = np.zeros((16, 3))
    for f in fingers.values():
        joints[list(f.joint_ids)] = f.points[:3]
    return HandSkeleton(joints=joints, fingers=fingers)
