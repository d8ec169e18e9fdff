"""Source joint layouts, palm → wrist rules and left ↔ right mirroring (`datasets/conventions.py`)."""
import numpy as np
import pytest
import torch

from datasets.conventions import (
    FREIHAND_TO_MANO21, MANO21_PALM_ROOT, RHD42, RHD42_TO_MANO21, RHD_HAND, STB21, STB_TO_MANO21_PALM_ROOT,
    make_sample, mirror_sample, palm_to_wrist,
)
from datasets.geometry import project
from datasets.joints import BONES, FINGER_JOINTS, FINGERS, MANO21, index, permutation
from tests.raw_fixtures import hand_skeleton, handedness

# Code-sourced gather lists quoted in datasets.md §5 (tllib / bihand / Idein / hand-graph-cnn);
# the name-derived permutations must reproduce them.
LITERATURE_RHD_TO_FH = [0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17]
LITERATURE_STB_TO_FH = [0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4]


def test_rhd_and_stb_permutations_reproduce_the_published_index_lists():
    assert RHD42_TO_MANO21["left"].tolist() == LITERATURE_RHD_TO_FH
    assert RHD42_TO_MANO21["right"].tolist() == [i + 21 for i in LITERATURE_RHD_TO_FH]
    assert STB_TO_MANO21_PALM_ROOT.tolist() == LITERATURE_STB_TO_FH
    assert FREIHAND_TO_MANO21.tolist() == list(range(21))


def test_source_layouts_match_the_readme_descriptions():
    # RHD README: "0: wrist, 1-4: thumb [tip to palm], ..., 17-20: pinky"; right hand = +21.
    assert (RHD_HAND[0], RHD_HAND[1], RHD_HAND[4], RHD_HAND[5], RHD_HAND[17], RHD_HAND[20]) == (
        "wrist", "thumb_tip", "thumb_mcp", "index_tip", "pinky_tip", "pinky_mcp")
    assert RHD42[21] == "right/wrist" and RHD42[20] == "left/pinky_mcp"
    # STB README: palm, little_mcp..little_tip, ring, middle, index, thumb_mcp..thumb_tip.
    assert (STB21[0], STB21[1], STB21[4], STB21[5], STB21[17], STB21[20]) == (
        "palm", "pinky_mcp", "pinky_tip", "ring_mcp", "thumb_mcp", "thumb_tip")
    assert len(set(RHD42)) == 42 and len(set(STB21)) == 21


@pytest.mark.parametrize("layout, gather", [
    (RHD42[:21], RHD42_TO_MANO21["left"]),
    (RHD42[21:], RHD42_TO_MANO21["right"] - 21),
    (STB21, STB_TO_MANO21_PALM_ROOT),
])
def test_every_bone_connects_the_same_named_joints_after_reordering(layout, gather):
    rng = np.random.default_rng(1)
    hand = hand_skeleton(rng)
    names = [n.split("/")[-1].replace("palm", "wrist") for n in layout]
    source = hand[permutation(MANO21, names)]  # the hand written in the source's layout
    back = source[gather]
    np.testing.assert_array_equal(back, hand)
    for a, b in BONES:  # bone lengths are those of the named joints
        expected = np.linalg.norm(hand[index(a)] - hand[index(b)])
        assert np.linalg.norm(back[index(a)] - back[index(b)]) == pytest.approx(expected)


def _hand_with_palm(palm_from_wrist):
    hand = hand_skeleton(np.random.default_rng(2))
    with_palm = hand.copy()
    with_palm[0] = palm_from_wrist(hand)
    return hand, with_palm


def test_palm_to_wrist_rules_invert_their_palm_definitions():
    mcp = lambda h, f: h[index(f"{f}_mcp")]  # noqa: E731
    hand, palm = _hand_with_palm(lambda h: 0.5 * (h[0] + mcp(h, "ring")))
    np.testing.assert_allclose(palm_to_wrist(palm, "ring"), hand, atol=1e-12)
    np.testing.assert_allclose(palm_to_wrist(palm), hand, atol=1e-12)  # "ring" is the default
    hand, palm = _hand_with_palm(lambda h: mcp(h, "middle") + (h[0] - mcp(h, "middle")) / 2.2)
    np.testing.assert_allclose(palm_to_wrist(palm, "middle"), hand, atol=1e-12)
    mean_mcp = lambda h: np.mean([mcp(h, f) for f in FINGERS[1:]], axis=0)  # noqa: E731
    hand, palm = _hand_with_palm(lambda h: mean_mcp(h) + (h[0] - mean_mcp(h)) / 2.25)
    np.testing.assert_allclose(palm_to_wrist(palm, "mean_mcp"), hand, atol=1e-12)


def test_palm_to_wrist_hand_computed_values_and_no_side_effects():
    joints = np.zeros((21, 3))
    joints[0] = [1.0, 0.0, 0.0]  # palm
    joints[index("ring_mcp")] = [0.0, 1.0, 0.0]
    joints[index("middle_mcp")] = [0.0, 0.0, 1.0]
    original = joints.copy()
    np.testing.assert_allclose(palm_to_wrist(joints, "ring")[0], [2.0, -1.0, 0.0])
    np.testing.assert_allclose(palm_to_wrist(joints, "middle")[0], [2.2, 0.0, -1.2])
    # mean over index (0,0,0), middle (0,0,1), ring (0,1,0), pinky (0,0,0) of m + 2.25 (p - m)
    np.testing.assert_allclose(palm_to_wrist(joints, "mean_mcp")[0], [2.25, -0.3125, -0.3125])
    np.testing.assert_array_equal(joints, original)
    batch = np.stack([joints, joints + 1.0])
    np.testing.assert_allclose(palm_to_wrist(batch)[1, 0], [3.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mean_mcp"):
        palm_to_wrist(joints, "thumb")
    assert MANO21_PALM_ROOT[0] == "palm" and MANO21_PALM_ROOT[1:] == MANO21[1:]


def _sample(width=96, height=64, skew=1.5):
    rng = np.random.default_rng(3)
    joints = hand_skeleton(rng, depth=0.9)
    K = np.array([[70.0, skew, 40.0], [0.0, 72.0, 30.0], [0.0, 0.0, 1.0]])
    uv = project(joints, K)
    rgb = np.zeros((height, width, 3), np.uint8)
    for u, v in np.round(uv).astype(int):
        rgb[v, u] = 255  # a marker on every joint
    mask = rgb[..., 0] > 0
    depth = np.tile(np.arange(width, dtype=np.float32), (height, 1))
    sample = make_sample(rgb=rgb, depth=depth, mask=mask, joints3d=joints, joints2d=uv,
                         visible=np.ones(21, bool), K=K, is_left=False, index=7)
    return sample, uv


def test_mirror_sample_keeps_projection_and_moves_pixels_with_joints():
    sample, uv = _sample()
    mirrored = mirror_sample(sample)
    projected = project(mirrored["joints3d"].numpy(), mirrored["K"].numpy())
    np.testing.assert_allclose(projected, mirrored["joints2d"].numpy(), atol=1e-4)
    width = sample["rgb"].shape[-1]
    np.testing.assert_allclose(mirrored["joints2d"][:, 0].numpy(), width - 1 - uv[:, 0], atol=1e-4)
    for u, v in np.round(mirrored["joints2d"].numpy()).astype(int):  # the markers moved with the joints
        assert mirrored["rgb"][0, v, u] == 1.0 and mirrored["mask"][0, v, u] == 1.0
    assert mirrored["depth"][0, 0, 0] == width - 1  # depth column 0 now holds the old last column
    assert bool(mirrored["is_left"]) and not bool(sample["is_left"])


def test_mirror_sample_swaps_chirality_and_is_an_involution():
    sample, _ = _sample()
    mirrored = mirror_sample(sample)
    assert handedness(sample["joints3d"].numpy()) == 1.0
    assert handedness(mirrored["joints3d"].numpy()) == -1.0
    twice = mirror_sample(mirrored)
    for key in ("rgb", "depth", "mask", "joints3d", "joints2d", "K", "is_left"):
        assert torch.equal(twice[key], sample[key]), key
    assert mirrored["index"] == 7


def test_make_sample_follows_the_sample_api():
    sample, _ = _sample()
    assert sample["rgb"].shape == (3, 64, 96) and sample["rgb"].dtype == torch.float32
    assert float(sample["rgb"].max()) == 1.0 and float(sample["rgb"].min()) == 0.0
    assert sample["depth"].shape == (1, 64, 96) and sample["mask"].shape == (1, 64, 96)
    assert set(sample["mask"].unique().tolist()) == {0.0, 1.0}
    assert sample["joints3d"].dtype == torch.float32 and sample["joints2d"].shape == (21, 2)
    assert sample["visible"].dtype == torch.bool and sample["is_left"].shape == ()
    assert sample["K"].dtype == torch.float32


def test_fixture_hand_is_anatomically_ordered():
    """Distance from the wrist grows along every finger, and the MCPs run index → pinky across the palm."""
    hand = hand_skeleton(np.random.default_rng(4))
    for finger in FINGERS:
        d = [np.linalg.norm(hand[index(f"{finger}_{j}")] - hand[0]) for j in FINGER_JOINTS]
        assert d == sorted(d), finger
    mcp = {f: hand[index(f"{f}_mcp")] for f in FINGERS}
    spread = [np.linalg.norm(mcp[f] - mcp["index"]) for f in ("index", "middle", "ring", "pinky")]
    assert spread == sorted(spread)
    assert np.linalg.norm(mcp["thumb"] - mcp["index"]) < np.linalg.norm(mcp["thumb"] - mcp["pinky"])
