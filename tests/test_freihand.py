"""Raw FreiHAND reader (`datasets/freihand.py`) against the fixture of `tests/raw_fixtures.py`."""
import json
import shutil

import numpy as np
import pytest
import torch

from datasets.errors import DatasetError
from datasets.freihand import FREIHAND_VERSIONS, FreiHANDDataset
from datasets.geometry import project
from tests.raw_fixtures import handedness, write_freihand

NUM_UNIQUE = 4


@pytest.fixture(scope="module")
def fh(tmp_path_factory):
    return write_freihand(tmp_path_factory.mktemp("freihand"), num_unique=NUM_UNIQUE, num_eval=2)


def _decoded_version_and_idx(sample):
    """Invert ``tests.raw_fixtures.freihand_image_code`` from the image's mean colour (JPEG-tolerant)."""
    r, g, _ = (sample["rgb"].mean(dim=(1, 2)) * 255).tolist()
    return round((r - 10) / 60), round((g - 10) / 30)


def test_image_id_maps_version_and_unique_index_to_the_shared_annotation(fh):
    data = FreiHANDDataset(fh.root, domain="all")
    assert len(data) == 4 * NUM_UNIQUE
    for i in range(len(data)):
        sample = data[i]
        version, idx = _decoded_version_and_idx(sample)
        assert data.image_id(i) == idx + NUM_UNIQUE * version  # the file that was read
        np.testing.assert_allclose(sample["joints3d"].numpy(), fh.xyz[idx], atol=1e-6)
        np.testing.assert_allclose(sample["K"].numpy(), fh.K[idx], atol=1e-4)
        assert sample["index"] == i


@pytest.mark.parametrize("domain", FREIHAND_VERSIONS)
def test_each_domain_reads_its_own_version(fh, domain):
    data = FreiHANDDataset(fh.root, domain=domain)
    assert len(data) == NUM_UNIQUE
    decoded = [_decoded_version_and_idx(data[i]) for i in range(len(data))]
    assert decoded == [(FREIHAND_VERSIONS.index(domain), idx) for idx in range(NUM_UNIQUE)]


def test_paper_split_first_unique_samples_train_the_rest_evaluate(fh):
    train = FreiHANDDataset(fh.root, split="paper_train", domain="all", paper_train_size=3)
    test = FreiHANDDataset(fh.root, split="paper_eval", domain="all", paper_train_size=3)
    assert sorted(train.items) == [(v, idx) for v in range(4) for idx in range(3)]
    assert sorted(test.items) == [(v, 3) for v in range(4)]
    assert _decoded_version_and_idx(test[2]) == (2, 3)
    with pytest.raises(ValueError, match="paper_eval is empty"):
        FreiHANDDataset(fh.root, split="paper_eval")  # default 30,000 > 4 unique samples


def test_samples_follow_the_api_with_invariant_mask_and_right_hands(fh):
    data = FreiHANDDataset(fh.root, domain="hom")
    for i in range(len(data)):
        sample = data[i]
        assert sample["rgb"].shape == (3, 224, 224) and sample["mask"].shape == (1, 224, 224)
        np.testing.assert_allclose(project(sample["joints3d"].numpy(), sample["K"].numpy()),
                                   sample["joints2d"].numpy(), atol=1e-3)
        assert not bool(sample["is_left"]) and handedness(sample["joints3d"].numpy()) == 1.0
        assert sample["visible"].dtype == torch.bool and bool(sample["visible"].all())
        top, left, bottom, right = fh.mask_boxes[i]
        expected = np.zeros((224, 224), bool)
        expected[top:bottom, left:right] = True
        np.testing.assert_array_equal(sample["mask"][0].numpy() == 1, expected)


def test_evaluation_split(fh):
    data = FreiHANDDataset(fh.root, split="evaluation")
    assert len(data) == 2
    sample = data[1]
    np.testing.assert_allclose(sample["joints3d"].numpy(), fh.eval_xyz[1], atol=1e-6)
    assert "mask" not in sample
    assert abs(float(sample["rgb"][1].mean()) * 255 - 40) < 3  # evaluation/rgb/00000001.jpg
    with pytest.raises(ValueError, match="only in version 'gs'"):
        FreiHANDDataset(fh.root, split="evaluation", domain="hom")


def test_visible_marks_joints_outside_the_image(fh, tmp_path):
    root = tmp_path / "fh"
    shutil.copytree(fh.root, root)
    K = json.loads((root / "training_K.json").read_text())
    K[0][0][2] = 400.0  # principal point far right: the hand projects out of the 224 px image
    (root / "training_K.json").write_text(json.dumps(K))
    sample = FreiHANDDataset(root)[0]
    outside = sample["joints2d"][:, 0] > 223
    assert outside.any() and torch.equal(sample["visible"], ~outside)


# ---------------------------------------------------------------- bad input
@pytest.fixture
def fh_copy(fh, tmp_path):
    root = tmp_path / "FreiHAND_pub_v2"
    shutil.copytree(fh.root, root)
    return root


def test_missing_directory_and_annotation_files(fh_copy, tmp_path):
    with pytest.raises(DatasetError, match="nowhere: FreiHAND root directory not found"):
        FreiHANDDataset(tmp_path / "nowhere")
    (fh_copy / "evaluation_xyz.json").unlink()
    with pytest.raises(DatasetError, match="evaluation_xyz.json: FreiHAND annotation file not found"):
        FreiHANDDataset(fh_copy, split="evaluation")
    shutil.rmtree(fh_copy / "training" / "rgb")
    with pytest.raises(DatasetError, match="training/rgb: FreiHAND image directory not found"):
        FreiHANDDataset(fh_copy)


def _edit_json(path, change):
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.mark.parametrize("name, change, message", [
    ("training_xyz.json", lambda x: x[:-1], "3 entries, but training_K.json has 4"),
    ("training_xyz.json", lambda x: x[:2] + [x[2][:20]] + x[3:], r"entry 2: expected shape \(21, 3\), found \(20, 3\)"),
    ("training_K.json", lambda k: k[:1] + [[[float("nan")] * 3] * 3] + k[2:], "entry 1: contains NaN or inf"),
    ("training_K.json", lambda k: {"K": k}, "expected a non-empty JSON list"),
])
def test_malformed_json_names_file_and_entry(fh_copy, name, change, message):
    _edit_json(fh_copy / name, change)
    with pytest.raises(DatasetError, match=f"{name}.*{message}"):
        FreiHANDDataset(fh_copy)


def test_invalid_json_and_broken_images(fh_copy):
    (fh_copy / "training_K.json").write_text("[[[1, 0, 0], ")
    with pytest.raises(DatasetError, match="training_K.json: not valid JSON"):
        FreiHANDDataset(fh_copy)
    shutil.copy(fh_copy / "evaluation_K.json", fh_copy / "training_K.json")
    _edit_json(fh_copy / "training_K.json", lambda k: k + k)  # 4 entries again
    data = FreiHANDDataset(fh_copy, domain="sample")
    broken = fh_copy / "training" / "rgb" / f"{1 + 2 * NUM_UNIQUE:08d}.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    with pytest.raises(DatasetError, match=f"{broken.name}: unreadable image"):
        data[1]
    (fh_copy / "training" / "mask" / "00000002.jpg").unlink()
    with pytest.raises(DatasetError, match="mask/00000002.jpg: image file not found"):
        data[2]
