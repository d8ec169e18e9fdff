"""Raw RHD reader (`datasets/rhd.py`) against the fixture of `tests/raw_fixtures.py`."""
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.errors import DatasetError
from datasets.geometry import project
from datasets.images import read_rhd_depth
from datasets.joints import FINGER_JOINTS, FINGERS, index
from datasets.rhd import RHDDataset
from tests.raw_fixtures import handedness, write_rhd

DEPTH_STEP_M = 5.0 / 65535


@pytest.fixture(scope="module")
def rhd(tmp_path_factory):
    return write_rhd(tmp_path_factory.mktemp("rhd") / "RHD_published_v2")


@pytest.fixture
def rhd_copy(rhd, tmp_path):
    """A writable copy for tests that break files."""
    root = tmp_path / "RHD_published_v2"
    shutil.copytree(rhd.root, root)
    return root


SIDE = {"left": 0, "right": 1}


def test_sample_keys_dtypes_and_shapes(rhd):
    sample = RHDDataset(rhd.root)[0]
    expected = {"rgb": (3, 320, 320), "depth": (1, 320, 320), "mask": (1, 320, 320), "joints3d": (21, 3),
                "joints2d": (21, 2), "visible": (21,), "K": (3, 3), "is_left": ()}
    for key, shape in expected.items():
        assert tuple(sample[key].shape) == shape, key
    for key in ("rgb", "depth", "mask", "joints3d", "joints2d", "K"):
        assert sample[key].dtype == torch.float32, key
    assert sample["visible"].dtype == torch.bool and sample["is_left"].dtype == torch.bool
    assert sample["index"] == 0
    np.testing.assert_array_equal((sample["rgb"].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0),
                                  rhd.rgb[0])


def test_hand_chosen_by_mask_pixels_with_ties_to_the_right(rhd):
    data = RHDDataset(rhd.root, hand="mask")
    assert len(data) == len(rhd.choice_mask)
    for i, side in enumerate(rhd.choice_mask):
        sample = data[i]
        assert bool(sample["is_left"]) == (side == "left")
        np.testing.assert_allclose(sample["joints3d"].numpy(), rhd.joints[i, SIDE[side]], atol=1e-6)
        np.testing.assert_array_equal(sample["visible"].numpy(), rhd.visible[i, SIDE[side]])
        lo, hi = (2, 17) if side == "left" else (18, 33)
        expected_mask = (rhd.mask[i] >= lo) & (rhd.mask[i] <= hi)
        np.testing.assert_array_equal(sample["mask"][0].numpy() == 1, expected_mask)
    assert rhd.choice_mask == ["right", "left", "right"]  # the fixture covers both wins and a tie


def test_hand_chosen_by_visible_keypoints(rhd):
    data = RHDDataset(rhd.root, hand="visible")
    chosen = ["left" if bool(data[i]["is_left"]) else "right" for i in range(len(data))]
    assert chosen == rhd.choice_visible == ["left", "right", "right"]


def test_both_hands_are_separate_samples(rhd):
    data = RHDDataset(rhd.root, hand="both")
    assert len(data) == 2 * len(rhd.choice_mask)
    for i in range(len(data)):
        sample = data[i]
        frame, side = divmod(i, 2)
        assert bool(sample["is_left"]) == (side == 0) and sample["index"] == i
        np.testing.assert_allclose(sample["joints3d"].numpy(), rhd.joints[frame, side], atol=1e-6)
        np.testing.assert_allclose(sample["joints2d"].numpy(), rhd.uv[frame, side], atol=1e-3)


def test_projection_invariant_and_anatomy_on_every_hand(rhd):
    data = RHDDataset(rhd.root, hand="both")
    for i in range(len(data)):
        sample = data[i]
        joints = sample["joints3d"].numpy()
        projected = project(joints, sample["K"].numpy())
        np.testing.assert_allclose(projected, sample["joints2d"].numpy(), atol=1e-3)
        for finger in FINGERS:  # mano21 runs MCP → tip: the distance from the wrist grows
            d = [np.linalg.norm(joints[index(f"{finger}_{j}")] - joints[0]) for j in FINGER_JOINTS]
            assert d == sorted(d), (i, finger)
        assert handedness(joints) == (-1.0 if bool(sample["is_left"]) else 1.0)


def test_mirror_left_turns_left_hands_into_right_hands(rhd):
    plain, mirrored = RHDDataset(rhd.root, hand="both"), RHDDataset(rhd.root, hand="both", mirror_left=True)
    for i in range(len(plain)):
        a, b = plain[i], mirrored[i]
        assert not bool(b["is_left"])
        assert handedness(b["joints3d"].numpy()) == 1.0
        np.testing.assert_allclose(project(b["joints3d"].numpy(), b["K"].numpy()), b["joints2d"].numpy(), atol=1e-3)
        if bool(a["is_left"]):
            assert torch.equal(b["rgb"], torch.flip(a["rgb"], dims=[-1]))
        else:
            assert torch.equal(b["joints3d"], a["joints3d"])


def test_depth_decodes_to_metres_within_quantisation(rhd):
    sample = RHDDataset(rhd.root)[1]
    error = np.abs(sample["depth"][0].numpy() - rhd.depth[1])
    assert error.max() <= DEPTH_STEP_M / 2 + 1e-6
    hand_pixels = sample["mask"][0].numpy() == 1
    assert np.allclose(sample["depth"][0].numpy()[hand_pixels], rhd.joints[1, 0, :, 2].mean(), atol=DEPTH_STEP_M)


def test_depth_channels_are_not_swapped(tmp_path):
    """R is the high byte, G the low byte: (R=1, G=2) is 258 steps, (R=2, G=1) is 513 steps."""
    image = np.zeros((320, 320, 3), np.uint8)
    image[0, 0] = (1, 2, 0)
    image[0, 1] = (2, 1, 0)
    image[0, 2] = (0, 0, 255)  # B is unused
    Image.fromarray(image).save(tmp_path / "d.png")
    depth = read_rhd_depth(tmp_path / "d.png")
    assert depth[0, 0] == pytest.approx(258 * DEPTH_STEP_M, abs=1e-7)
    assert depth[0, 1] == pytest.approx(513 * DEPTH_STEP_M, abs=1e-7)
    assert depth[0, 2] == 0.0 and depth.dtype == np.float32


def test_evaluation_split_reads_its_own_annotation(tmp_path):
    fixture = write_rhd(tmp_path / "RHD", split="evaluation", num=2, seed=5)
    data = RHDDataset(fixture.root, split="evaluation")
    assert len(data) == 2
    np.testing.assert_allclose(data[1]["K"].numpy(), fixture.K[1], atol=1e-6)


# ---------------------------------------------------------------- bad input
def _rewrite_annotation(root, change):
    path = root / "training" / "anno_training.pickle"
    with open(path, "rb") as fh:
        anno = pickle.load(fh)
    with open(path, "wb") as fh:
        pickle.dump(change(anno), fh)
    return path


def test_missing_root_directory_and_annotation(tmp_path, rhd_copy):
    with pytest.raises(DatasetError, match="nowhere.*not found"):
        RHDDataset(tmp_path / "nowhere")
    (rhd_copy / "training" / "anno_training.pickle").unlink()
    with pytest.raises(DatasetError, match="anno_training.pickle.*not found"):
        RHDDataset(rhd_copy)
    with pytest.raises(DatasetError, match="evaluation.*not found"):
        RHDDataset(rhd_copy, split="evaluation")
    with pytest.raises(ValueError, match="validation"):
        RHDDataset(rhd_copy, split="validation")


@pytest.mark.parametrize("change, message", [
    (lambda a: list(a.values()), "expected a non-empty dict.*found list"),
    (lambda a: {str(k): v for k, v in a.items()}, "integer sample ids"),
    (lambda a: {**a, 1: {"xyz": a[1]["xyz"], "K": a[1]["K"]}}, "sample 1: missing key 'uv_vis'"),
    (lambda a: {**a, 2: {**a[2], "xyz": a[2]["xyz"][:21]}}, r"sample 2 'xyz'.*\(42, 3\).*\(21, 3\)"),
    (lambda a: {**a, 0: {**a[0], "K": np.eye(4)}}, r"sample 0 'K'.*\(3, 3\)"),
    (lambda a: {**a, 0: "not a dict"}, "sample 0: expected a dict"),
])
def test_malformed_annotation_names_file_and_sample(rhd_copy, change, message):
    _rewrite_annotation(rhd_copy, change)
    with pytest.raises(DatasetError, match=f"anno_training.pickle.*{message}"):
        RHDDataset(rhd_copy)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_joints_are_refused(rhd_copy, bad):
    def poison(anno):
        anno[1]["xyz"] = anno[1]["xyz"].copy()
        anno[1]["xyz"][5, 2] = bad
        return anno
    _rewrite_annotation(rhd_copy, poison)
    with pytest.raises(DatasetError, match="anno_training.pickle: sample 1 'xyz'.*NaN or inf"):
        RHDDataset(rhd_copy)


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_pickle_that_runs_code_is_refused_without_running_it(rhd_copy):
    witness = rhd_copy / "pwned.txt"
    with open(rhd_copy / "training" / "anno_training.pickle", "wb") as fh:
        pickle.dump({0: {"xyz": _Exploit(witness)}}, fh)
    with pytest.raises(DatasetError, match=r"anno_training.pickle: refusing to load global '\w+\.open'"):
        RHDDataset(rhd_copy)
    assert not witness.exists()


def test_truncated_pickle_is_a_clear_error(rhd_copy):
    path = rhd_copy / "training" / "anno_training.pickle"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetError, match="anno_training.pickle"):
        RHDDataset(rhd_copy)


def test_unreadable_or_wrongly_sized_images_name_the_file(rhd_copy):
    data = RHDDataset(rhd_copy)
    (rhd_copy / "training" / "color" / "00000.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"color/00000.png: unreadable image"):
        data[0]
    Image.fromarray(np.zeros((200, 320, 3), np.uint8)).save(rhd_copy / "training" / "depth" / "00001.png")
    with pytest.raises(DatasetError, match=r"depth/00001.png: expected an image of 320×320.*found 320×200"):
        data[1]
    Image.fromarray(np.zeros((320, 320, 3), np.uint8)).save(rhd_copy / "training" / "mask" / "00002.png")
    with pytest.raises(DatasetError, match=r"mask/00002.png: expected a single-channel image.*RGB"):
        data[2]
    (rhd_copy / "training" / "mask" / "00001.png").unlink()
    with pytest.raises(DatasetError, match=r"mask/00001.png: image file not found"):
        data[1]
