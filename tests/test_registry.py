"""build_dataset: explicit names, helpful errors, uniform transform, cheap import."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets import KNOWN_DATASETS, build_dataset
from datasets.shards import ShardDataset
from tests.raw_fixtures import write_freihand
from tests.shard_fixtures import write_synthetic_shards


def test_known_names():
    assert set(KNOWN_DATASETS) == {"shards", "rhd", "stb", "freihand"}


def test_unknown_name_lists_the_known_ones_and_the_closest():
    with pytest.raises(ValueError, match=r"unknown dataset 'frei_hand'\. Did you mean 'freihand'\? "
                                         r"Known datasets: freihand, rhd, shards, stb"):
        build_dataset("frei_hand", "/nowhere")
    with pytest.raises(ValueError, match="Known datasets: freihand, rhd, shards, stb"):
        build_dataset("coco", "/nowhere")


def test_unknown_option_names_the_valid_ones(tmp_path):
    directory = write_synthetic_shards(tmp_path / "data", shard_sizes=(1,), size=8)
    with pytest.raises(TypeError, match=r"'shards' does not accept option\(s\) 'key' \(did you mean 'keys'\?\)"):
        build_dataset("shards", directory, key=["rgb"])
    with pytest.raises(TypeError, match=r"'stb' does not accept option\(s\) 'palm2wrist'.*palm_to_wrist"):
        build_dataset("stb", tmp_path, palm2wrist="ring")


def test_transform_is_applied_to_every_item_of_every_source(tmp_path):
    def tag(sample):
        return dict(sample, tagged=torch.tensor(sample["index"] * 10))

    shards = build_dataset("shards", write_synthetic_shards(tmp_path / "data", shard_sizes=(2,), size=8),
                           transform=tag)
    write_freihand(tmp_path / "fh", num_unique=2, num_eval=1)
    freihand = build_dataset("freihand", tmp_path / "fh", split="training", transform=tag)
    assert isinstance(shards, ShardDataset)
    for dataset in (shards, freihand):
        assert [int(dataset[i]["tagged"]) for i in range(len(dataset))] == [10 * i for i in range(len(dataset))]
    assert len(build_dataset("freihand", tmp_path / "fh", split="evaluation")) == 1


def test_importing_datasets_loads_no_reader_or_torch():
    code = ("import sys, datasets; "
            "print(sorted(m for m in ('torch', 'h5py', 'datasets.rhd', 'datasets.stb', 'datasets.freihand', "
            "'datasets.shards') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
