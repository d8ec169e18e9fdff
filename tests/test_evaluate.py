"""Evaluation: the paper's protocol (ground-truth root and scale), files written, the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import build_dataset
from tests.training_fixtures import IMAGE, random_checkpoint, tiny_shards
from training.evaluation import evaluate_model


class ConstantNet(torch.nn.Module):
    """Predicts the same normalised 63-vector for every image."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value.reshape(63)

    def forward(self, x):
        return {"pred": self.value.expand(x.shape[0], 63)}


INFO = {"arch": "resnet18", "width": 8, "in_channels": 3, "modality": "rgb", "image_size": IMAGE}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("eval") / "test", samples=6, seed=7)


def _ground_truth(shards):
    dataset = build_dataset("shards", shards)
    return np.stack([dataset[i]["joints3d"].numpy() for i in range(len(dataset))]).astype(np.float64)


def test_zero_prediction_puts_every_joint_on_the_true_wrist(shards, tmp_path):
    # ŷ = 0 de-normalises to the ground-truth root for every joint, so each joint's error is its
    # true distance from the wrist: EPE = mean over joints of the mean wrist distance (wrist: 0).
    metrics = evaluate_model(ConstantNet(torch.zeros(63)), INFO, [shards], tmp_path, steps=5)
    joints = _ground_truth(shards)
    distance_mm = np.linalg.norm(joints - joints[:, :1], axis=-1) * 1000
    assert metrics["epe_mean_mm"] == pytest.approx(distance_mm.mean(axis=0).mean(), rel=1e-5)
    assert metrics["per_joint_epe_mm"]["wrist"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["per_joint_epe_mm"]["middle_pip"] == pytest.approx(distance_mm[:, 10].mean(), rel=1e-5)
    assert metrics["num_samples"] == 6


def test_scale_is_the_ground_truth_bone(shards, tmp_path):
    # predicting "middle PIP one scale unit from the root along x" and zero elsewhere: the middle
    # PIP error is ‖(J_pip − J_root) − scale·e_x‖, with scale = ‖J_pip − J_mcp‖ of each sample
    value = torch.zeros(21, 3)
    value[10, 0] = 1.0
    evaluate_model(ConstantNet(value), INFO, [shards], tmp_path, steps=5)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    joints = _ground_truth(shards)
    scale = np.linalg.norm(joints[:, 10] - joints[:, 9], axis=-1)
    predicted = joints[:, 0] + scale[:, None] * np.array([1.0, 0.0, 0.0])
    expected = np.linalg.norm(predicted - joints[:, 10], axis=-1).mean() * 1000
    assert metrics["per_joint_epe_mm"]["middle_pip"] == pytest.approx(expected, rel=1e-5)


def test_outputs_and_cli(shards, tmp_path, capsys):
    from tools.evaluate import main

    checkpoint = random_checkpoint(tmp_path / "model.pt", "rgb")
    assert main(["--checkpoint", str(checkpoint), "--data", str(shards), "--out", str(tmp_path / "eval"),
                 "--protocol", "stb", "--pck-steps", "7"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["pck_range_mm"] == [20.0, 50.0] and len(metrics["pck"]) == 7
    assert metrics["pck_thresholds_mm"][0] == 20.0 and 0.0 <= metrics["auc"] <= 1.0
    assert len(metrics["per_joint_epe_mm"]) == 21
    for name in ("pck.png", "predictions.png"):
        with Image.open(tmp_path / "eval" / name) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    assert '"epe_mean_mm"' in capsys.readouterr().out

    # a missing checkpoint is named in a one-line error
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(shards)]) == 1
    assert "missing.pt: checkpoint file not found" in capsys.readouterr().err


def test_help_has_an_example(capsys):
    from tools.evaluate import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "Example:" in capsys.readouterr().out
