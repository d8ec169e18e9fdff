"""Tiny raw RHD, STB and FreiHAND downloads in their exact on-disk formats (`datasets.md` §1.7, §2.2, §3).

Each ``write_*`` function writes a fixture under a directory and returns a dataclass with
the ground truth it wrote (joints in mano21, metres, camera frames; intrinsics; depth;
expected hand choices), so reader and converter tests can compare against it.

The hands come from :func:`hand_skeleton`, a simple parametric right hand (a left hand is
its mirror image) with anatomically ordered, curled fingers; source layouts are produced
from mano21 with permutations derived from joint names, as the readers undo them.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from datasets.geometry import project
from datasets.images import encode_rhd_depth, encode_stb_depth
from datasets.joints import FINGERS, MANO21, index, permutation

STB_SEQUENCES = tuple(f"B{b}{kind}" for b in range(1, 7) for kind in ("Counting", "Random"))
#: STB constants (`datasets.md` §2.4), repeated here so fixture and reader are independent.
STB_SK_COLOR_K = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1]])
STB_BB_K = np.array([[822.79041, 0, 318.47345], [0, 822.79041, 250.31296], [0, 0, 1]])
STB_BB_BASELINE_MM = 120.054
STB_SK_OM = np.array([0.00531, -0.01196, 0.00301])
STB_SK_T_MM = np.array([-24.0381, -0.4563, -1.2326])
#: Per-camera blue value of the STB fixture images, so tests can tell which file was read.
STB_CAMERA_CODE = {"SK_color": 50, "BB_left": 100, "BB_right": 150}
FREIHAND_VERSIONS = ("gs", "hom", "sample", "auto")

# Source joint orders written out from the dataset READMEs (`datasets.md` §1.3, §2.3), independently
# of `datasets.conventions`, so a wrong layout there makes the reader tests fail.
RHD_README_ORDER = (
    "wrist",
    "thumb_tip", "thumb_dip", "thumb_pip", "thumb_mcp", "index_tip", "index_dip", "index_pip", "index_mcp",
    "middle_tip", "middle_dip", "middle_pip", "middle_mcp", "ring_tip", "ring_dip", "ring_pip", "ring_mcp",
    "pinky_tip", "pinky_dip", "pinky_pip", "pinky_mcp",
)
STB_README_ORDER = (
    "palm",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip", "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip", "index_mcp", "index_pip", "index_dip", "index_tip",
    "thumb_mcp", "thumb_pip", "thumb_dip", "thumb_tip",
)


# --------------------------------------------------------------------------- hands
_MCP_LOCAL = {  # right hand, metres: x across the palm (thumb side = −x), y along the fingers
    "index": (-0.025, 0.085, 0.0),
    "middle": (-0.005, 0.090, 0.0),
    "ring": (0.013, 0.085, 0.0),
    "pinky": (0.029, 0.075, 0.0),
}
_PHALANGES = {"index": (0.038, 0.024, 0.019), "middle": (0.042, 0.027, 0.02),
              "ring": (0.039, 0.026, 0.019), "pinky": (0.031, 0.019, 0.017)}


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def hand_skeleton(rng: np.random.Generator, *, left: bool = False, depth: float = 0.5,
                  offset_x: float = 0.0) -> np.ndarray:
    """A plausible hand in mano21 ``(21, 3)``, metres, camera frame (OpenCV axes).

    Local frame of a right hand: thumb towards −x, fingers along +y, palm side −z; each
    finger flexes towards the palm by a random angle per joint. The left hand is the
    mirror image (x → −x). The hand is turned to face the camera with fingers pointing
    up in the image, tilted a little at random, and centred at ``(offset_x, 0, depth)``.
    """
    joints = {"wrist": np.zeros(3)}
    for finger, mcp in _MCP_LOCAL.items():
        position, angle = np.array(mcp), 0.0
        joints[f"{finger}_mcp"] = position
        for joint, length in zip(("pip", "dip", "tip"), _PHALANGES[finger]):
            angle += rng.uniform(0.15, 0.5)
            position = position + length * np.array([0.0, np.cos(angle), -np.sin(angle)])
            joints[f"{finger}_{joint}"] = position
    position = np.array([-0.02, 0.025, -0.01])
    direction = np.array([-0.6, 0.75, -0.28])
    joints["thumb_mcp"] = position
    for joint, length in zip(("pip", "dip", "tip"), (0.035, 0.03, 0.025)):
        direction = direction / np.linalg.norm(direction) + np.array([0.15, 0.1, -0.1])
        position = position + length * direction / np.linalg.norm(direction)
        joints[f"thumb_{joint}"] = position
    local = np.stack([joints[n] for n in MANO21])
    if left:
        local[:, 0] = -local[:, 0]
    local -= local.mean(axis=0)
    face_camera = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])  # fingers up, palm to camera
    tilt = _rotation(*rng.uniform(-0.35, 0.35, size=3))
    return local @ (tilt @ face_camera).T + np.array([offset_x, 0.0, depth])


def handedness(joints: np.ndarray) -> float:
    """+1 for a right hand, −1 for a left hand (mano21 joints, any rigid pose).

    The normal ``(index_mcp − pinky_mcp) × (middle_mcp − wrist)`` points to the palm side
    of a right hand and the back of a left hand; curled fingertips lie on the palm side.
    """
    j = {n: np.asarray(joints[index(n)], np.float64) for n in MANO21}
    normal = np.cross(j["index_mcp"] - j["pinky_mcp"], j["middle_mcp"] - j["wrist"])
    curl = sum(j[f"{f}_tip"] - j[f"{f}_mcp"] for f in FINGERS[1:])
    return float(np.sign(normal @ curl))


# --------------------------------------------------------------------------- RHD
@dataclass
class RHDFixture:
    root: Path  # the RHD_published_v2 directory
    split: str
    joints: np.ndarray  # (N, 2, 21, 3) mano21, [left, right], metres
    uv: np.ndarray  # (N, 2, 21, 2)
    visible: np.ndarray  # (N, 2, 21) bool
    K: np.ndarray  # (N, 3, 3)
    rgb: np.ndarray  # (N, 320, 320, 3) uint8
    depth: np.ndarray  # (N, 320, 320) metres before quantisation
    mask: np.ndarray  # (N, 320, 320) uint8 RHD labels 0..33
    choice_mask: list = field(default_factory=list)  # "left"/"right" per sample, rule "more mask pixels"
    choice_visible: list = field(default_factory=list)  # rule "more visible keypoints"


# (left pixels, right pixels, left visible, right visible) per sample: right wins by
# pixels / left by visibility; left / right; tie / tie (ties go to the right hand).
_RHD_CASES = ((300, 600, 21, 15), (800, 200, 10, 18), (400, 400, 16, 16))


def write_rhd(root: str | Path, split: str = "training", num: int = 3, seed: int = 0) -> RHDFixture:
    """Write ``root/<split>/{color,depth,mask}/%05d.png`` and ``anno_<split>.pickle``."""
    root, rng = Path(root), np.random.default_rng(seed)
    folder = root / split
    for sub in ("color", "depth", "mask"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    to_rhd = permutation(MANO21, RHD_README_ORDER)
    size = 320
    collected = dict(joints=[], uv=[], visible=[], K=[], rgb=[], depth=[], mask=[])
    choice_mask, choice_visible, anno = [], [], {}
    rows, cols = np.mgrid[0:size, 0:size]
    for i in range(num):
        left_px, right_px, left_vis, right_vis = _RHD_CASES[i % len(_RHD_CASES)]
        focal = 283.1 + rng.uniform(-5, 5)
        K = np.array([[focal, 0, 160.0 + rng.uniform(-2, 2)], [0, focal, 160.0 + rng.uniform(-2, 2)], [0, 0, 1]])
        hands = np.stack([hand_skeleton(rng, left=True, depth=0.55, offset_x=-0.08),
                          hand_skeleton(rng, left=False, depth=0.6, offset_x=0.08)])
        uv = project(hands, K)
        visible = np.zeros((2, 21), bool)
        for side, count in enumerate((left_vis, right_vis)):
            visible[side, rng.permutation(21)[:count]] = True
        depth = 1.0 + 3.9 * (rows * size + cols) / (size * size)  # ramp: R and G bytes both vary
        mask = np.where(rows < 40, 1, 0).astype(np.uint8)  # a strip of "person" pixels
        for side, (count, labels) in enumerate(((left_px, range(2, 18)), (right_px, range(18, 34)))):
            u0, v0 = np.floor(uv[side].min(axis=0)).astype(int)
            box = (rows >= v0) & (cols >= u0)
            ids = np.flatnonzero(box & (mask < 2))[:count]
            mask.flat[ids] = np.resize(np.array(list(labels), np.uint8), count)
            depth.flat[ids] = hands[side, :, 2].mean()
        rgb = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / "color" / f"{i:05d}.png")
        Image.fromarray(encode_rhd_depth(depth)).save(folder / "depth" / f"{i:05d}.png")
        Image.fromarray(mask, mode="L").save(folder / "mask" / f"{i:05d}.png")
        xyz = np.concatenate([hands[0][to_rhd], hands[1][to_rhd]]).astype(np.float32)
        uv_vis = np.concatenate([np.concatenate([uv[s][to_rhd], visible[s][to_rhd, None]], axis=1) for s in (0, 1)])
        anno[i] = {"xyz": xyz, "uv_vis": uv_vis.astype(np.float32), "K": K.astype(np.float32)}
        choice_mask.append("left" if left_px > right_px else "right")
        choice_visible.append("left" if left_vis > right_vis else "right")
        for key, value in zip(collected, (hands, uv, visible, K, rgb, depth, mask)):
            collected[key].append(value)
    with open(folder / f"anno_{split}.pickle", "wb") as fh:
        pickle.dump(anno, fh)
    arrays = {k: np.stack(v) for k, v in collected.items()}
    for key in ("K", "joints"):  # the values as stored (float32)
        arrays[key] = arrays[key].astype(np.float32).astype(np.float64)
    return RHDFixture(root=root, split=split, choice_mask=choice_mask, choice_visible=choice_visible, **arrays)


# --------------------------------------------------------------------------- STB
@dataclass
class STBFixture:
    root: Path
    sequences: tuple
    frames: int
    color_joints: dict  # seq → (frames, 21, 3) mano21 with the true wrist, metres, SK colour camera
    bb_joints: dict  # seq → (frames, 21, 3) mano21 with the true wrist, metres, left Bumblebee camera
    sk_depth: dict  # seq → (frames, 480, 640) metres written to SK_depth_<i>.png


def stb_rotation() -> np.ndarray:
    """Rodrigues rotation of the SK extrinsics ``om`` (colour → depth), via scipy."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(STB_SK_OM).as_matrix()


def stb_image_code(sequence: str, frame: int, camera: str) -> tuple[int, int, int]:
    """The solid colour of a fixture image, identifying its sequence, frame and camera."""
    return (10 * STB_SEQUENCES.index(sequence) + 5, 10 * frame + 5, STB_CAMERA_CODE[camera])


def _stb_labels(hands_m: np.ndarray) -> np.ndarray:
    """mano21 hands (F, 21, 3) in metres → STB ``handPara`` (3, 21, F) in mm with a palm root.

    The palm is ``(wrist + ring_mcp) / 2``, so the "ring" rule recovers the wrist exactly.
    """
    with_palm = hands_m.copy()
    with_palm[:, 0] = 0.5 * (hands_m[:, index("wrist")] + hands_m[:, index("ring_mcp")])
    stb = with_palm[:, permutation(("palm",) + MANO21[1:], STB_README_ORDER)] * 1000.0
    return stb.transpose(2, 1, 0)


def write_stb(root: str | Path, sequences=STB_SEQUENCES, frames: int = 2, seed: int = 0,
              images: bool = True) -> STBFixture:
    """Write ``root/images/<Seq>/{SK_color,SK_depth,BB_left,BB_right}_<i>.png`` (640×480) and
    ``root/labels/<Seq>_{SK,BB}.mat`` (``handPara`` (3, 21, frames), mm; SK in depth-camera
    coordinates ``X_d = R·X_c + T``)."""
    root, rng = Path(root), np.random.default_rng(seed)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    R = stb_rotation()
    color_joints, bb_joints, sk_depth = {}, {}, {}
    for seq in sequences:
        color = np.stack([hand_skeleton(rng, left=True, depth=0.45) for _ in range(frames)])
        bb = np.stack([hand_skeleton(rng, left=True, depth=0.6) for _ in range(frames)])
        depth_mm = (color * 1000.0) @ R.T + STB_SK_T_MM  # X_d = R X_c + T, row vectors
        scipy.io.savemat(root / "labels" / f"{seq}_SK.mat", {"handPara": _stb_labels(depth_mm / 1000.0)})
        scipy.io.savemat(root / "labels" / f"{seq}_BB.mat", {"handPara": _stb_labels(bb)})
        color_joints[seq], bb_joints[seq] = color, bb
        sk_depth[seq] = np.stack([np.full((480, 640), 0.3 + 0.1 * i + 0.0257) for i in range(frames)])
        if images:
            folder = root / "images" / seq
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(frames):
                for camera in STB_CAMERA_CODE:
                    image = np.empty((480, 640, 3), np.uint8)
                    image[:] = stb_image_code(seq, i, camera)
                    Image.fromarray(image).save(folder / f"{camera}_{i}.png")
                Image.fromarray(encode_stb_depth(sk_depth[seq][i])).save(folder / f"SK_depth_{i}.png")
    return STBFixture(root, tuple(sequences), frames, color_joints, bb_joints, sk_depth)


# --------------------------------------------------------------------------- FreiHAND
@dataclass
class FreiHANDFixture:
    root: Path
    num_unique: int
    xyz: np.ndarray  # (num_unique, 21, 3) training joints, metres
    K: np.ndarray  # (num_unique, 3, 3)
    mask_boxes: list  # (top, left, bottom, right) of the hand in each training mask
    eval_xyz: np.ndarray
    eval_K: np.ndarray


def freihand_image_code(version: int, idx: int) -> tuple[int, int, int]:
    """Solid colour of training image ``idx + num_unique·version`` (survives JPEG within ±3)."""
    return (60 * version + 10, 30 * idx + 10, 200)


def _freihand_split(rng, count: int):
    K = np.stack([np.array([[490 + rng.uniform(-20, 20), 0, 112.0], [0, 490 + rng.uniform(-20, 20), 112.0],
                            [0, 0, 1]]) for _ in range(count)])
    xyz = np.stack([hand_skeleton(rng, left=False, depth=0.7) for _ in range(count)])
    scale = np.linalg.norm(xyz[:, index("middle_mcp")] - xyz[:, index("middle_pip")], axis=-1)
    verts = xyz.mean(axis=1, keepdims=True) + rng.normal(0, 0.03, size=(count, 778, 3))
    return K, xyz, scale, verts


def _dump(path: Path, value) -> None:
    path.write_text(json.dumps(np.asarray(value).tolist()))


def write_freihand(root: str | Path, num_unique: int = 4, num_eval: int = 2, seed: int = 0) -> FreiHANDFixture:
    """Write ``FreiHAND_pub_v2``-style ``training/rgb`` (4 versions), ``training/mask``,
    ``evaluation/rgb`` (224×224 JPEG) and the ``training_*.json`` / ``evaluation_*.json`` lists."""
    root, rng = Path(root), np.random.default_rng(seed)
    for sub in ("training/rgb", "training/mask", "evaluation/rgb"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    K, xyz, scale, verts = _freihand_split(rng, num_unique)
    mano = np.zeros((num_unique, 1, 61))
    mano[:, 0, :58] = rng.normal(0, 0.2, size=(num_unique, 58))
    for name, value in (("K", K), ("xyz", xyz), ("scale", scale), ("verts", verts), ("mano", mano)):
        _dump(root / f"training_{name}.json", value)
    boxes = []
    for idx in range(num_unique):
        for version in range(len(FREIHAND_VERSIONS)):
            image = np.empty((224, 224, 3), np.uint8)
            image[:] = freihand_image_code(version, idx)
            Image.fromarray(image).save(root / "training/rgb" / f"{idx + num_unique * version:08d}.jpg", quality=95)
        top, left = 40 + 10 * idx, 60
        boxes.append((top, left, top + 80, left + 100))
        mask = np.zeros((224, 224, 3), np.uint8)
        mask[top:top + 80, left:left + 100] = 255
        Image.fromarray(mask).save(root / "training/mask" / f"{idx:08d}.jpg", quality=95)
    eK, exyz, escale, everts = _freihand_split(rng, num_eval)
    for name, value in (("K", eK), ("xyz", exyz), ("scale", escale), ("verts", everts)):
        _dump(root / f"evaluation_{name}.json", value)
    for idx in range(num_eval):
        image = np.empty((224, 224, 3), np.uint8)
        image[:] = (20, 30 * idx + 10, 90)
        Image.fromarray(image).save(root / "evaluation/rgb" / f"{idx:08d}.jpg", quality=95)
    return FreiHANDFixture(root, num_unique, xyz, K, boxes, exyz, eK)
