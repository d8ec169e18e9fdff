"""The AUC range follows the dataset (STB 20-50 mm, others 0-50 mm) unless overridden; metrics.json says which and why."""
import json

import pytest
import torch

from datasets.shard_format import record_shards
from datasets.splits import check_shard_directory, check_training_directory, directory_identity
from datasets.errors import DatasetError
from tests.shard_fixtures import write_synthetic_shards
from training.protocols import choose_pck_range


def _dataset(path, source, split=None, evaluation=None):
    directory = write_synthetic_shards(path, shard_sizes=(2,), size=32, splits=None if split is None else [split])
    fields = {"source": source, **({"split": split} if split else {}),
              **({"evaluation_split": evaluation} if evaluation is not None else {})}
    record_shards(directory, [], **fields)  # what convert_dataset writes into the manifest
    return directory


def test_range_is_chosen_from_the_source(tmp_path):
    stb = _dataset(tmp_path / "stb", "stb", "test", True)
    rhd = _dataset(tmp_path / "rhd", "rhd", "evaluation", True)
    synthetic = write_synthetic_shards(tmp_path / "synth", shard_sizes=(2,))
    assert choose_pck_range([stb])["pck_range_mm"] == [20.0, 50.0]
    assert choose_pck_range([stb])["protocol"] == "stb" and "source stb" in choose_pck_range([stb])["reason"]
    assert choose_pck_range([rhd])["pck_range_mm"] == [0.0, 50.0]
    assert choose_pck_range([synthetic, rhd])["pck_range_mm"] == [0.0, 50.0]  # other sources: the RHD range
    with pytest.raises(ValueError, match=r"mixes datasets of different AUC ranges.*stb.*choose one protocol"):
        choose_pck_range([stb, rhd])
    forced = choose_pck_range([rhd], protocol="stb")
    assert forced["pck_range_mm"] == [20.0, 50.0] and "requested" in forced["reason"]
    assert choose_pck_range([stb, rhd], t_min=10, t_max=40) == {
        "protocol": "custom", "pck_range_mm": [10.0, 40.0], "reason": "thresholds given explicitly (10-40 mm)"}
    one_bound = choose_pck_range([stb], t_max=45)
    assert one_bound["pck_range_mm"] == [20.0, 45.0] and one_bound["protocol"] == "custom"
    with pytest.raises(ValueError, match="unknown evaluation protocol 'mpii'"):
        choose_pck_range([stb], protocol="mpii")


def test_metrics_json_records_the_range_and_why(tmp_path):
    from training.evaluation import evaluate_model

    class Zero(torch.nn.Module):
        def forward(self, x):
            return {"pred": torch.zeros(len(x), 63)}

    info = {"arch": "none", "modality": "rgb", "image_size": 32}
    stb = _dataset(tmp_path / "stb", "stb", "test", True)
    metrics = evaluate_model(Zero(), info, [stb], tmp_path / "eval", steps=4)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["pck_range_mm"] == [20.0, 50.0] and saved["pck_protocol"] == "stb" == metrics["pck_protocol"]
    assert saved["pck_thresholds_mm"][0] == 20.0 and saved["pck_thresholds_mm"][-1] == 50.0
    assert "source stb" in saved["pck_range_reason"]


def test_split_identity_and_refusals(tmp_path):
    train = _dataset(tmp_path / "stb_256" / "train", "stb", "train", False)
    test = _dataset(tmp_path / "stb_256" / "test", "stb", "test", True)
    assert directory_identity(train) == {"source": "stb", "splits": ["train"], "evaluation": False}
    assert directory_identity(test)["evaluation"] is True
    check_training_directory(train)
    with pytest.raises(DatasetError, match=r"stb_256/val: shard directory not found \(tools/convert_dataset.py"):
        check_training_directory(tmp_path / "stb_256" / "val")
    check_training_directory(test, allow_evaluation_split=True)
    with pytest.raises(DatasetError, match=r"stb_256/test: holds stb's evaluation/test split \(test\).*"
                                           r"data.allow_eval_split=true"):
        check_training_directory(test)
    with pytest.raises(DatasetError, match=r"stb_256: holds one directory per split \(test, train\)"):
        check_shard_directory(tmp_path / "stb_256")
    # a directory from before splits were explicit: several splits in one manifest, no flag
    mixed = write_synthetic_shards(tmp_path / "old", shard_sizes=(1, 1), splits=["training", "evaluation"])
    record_shards(mixed, [], source="rhd")
    assert directory_identity(mixed) == {"source": "rhd", "splits": ["training", "evaluation"], "evaluation": True}
    with pytest.raises(DatasetError, match=r"old: holds rhd's evaluation/test split \(evaluation\)"):
        check_training_directory(mixed)
