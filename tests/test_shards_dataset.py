"""The shard reader returns the documented sample dict, lazily, and fails clearly on bad shards."""
import json
import os

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import datasets.shards as shards_module
from datasets.geometry import project
from datasets.shard_format import ShardError, shard_name
from datasets.shards import ShardDataset
from datasets.transforms import training_transform
from tests.shard_fixtures import synthetic_arrays, write_synthetic_shards


@pytest.fixture
def shard_dir(tmp_path):
    return write_synthetic_shards(tmp_path / "data", shard_sizes=(3, 2), size=24, splits=["train", "test"])


def test_items_have_the_documented_keys_types_and_values(shard_dir):
    dataset = ShardDataset(shard_dir)
    assert len(dataset) == 5
    stored = synthetic_arrays(2, size=24, seed=1)  # shard 1 holds samples 3 and 4
    item = dataset[4]
    expected = {"rgb": ((3, 24, 24), torch.float32), "depth": ((1, 24, 24), torch.float32),
                "mask": ((1, 24, 24), torch.float32), "joints3d": ((21, 3), torch.float32),
                "joints2d": ((21, 2), torch.float32), "visible": ((21,), torch.bool), "K": ((3, 3), torch.float32),
                "is_left": ((), torch.bool)}
    for key, (shape, dtype) in expected.items():
        assert item[key].shape == shape and item[key].dtype == dtype, key
    assert item["index"] == 4 and not item["is_left"]
    torch.testing.assert_close(item["rgb"], torch.from_numpy(stored["rgb"][1]).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(item["depth"][0], torch.from_numpy(stored["depth"][1].astype(np.float32)) / 1000)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert 0.3 < float(item["depth"].max()) < 1.0  # metres, not millimetres
    error = np.abs(project(item["joints3d"].numpy(), item["K"].numpy()) - item["joints2d"].numpy()).max()
    assert error < 1e-3
    assert dataset[-1]["index"] == 4
    with pytest.raises(IndexError):
        dataset[5]


def test_split_selects_shards_with_and_without_a_manifest(shard_dir):
    assert len(ShardDataset(shard_dir, split="train")) == 3
    assert len(ShardDataset(shard_dir, split="test")) == 2
    (shard_dir / "manifest.json").unlink()  # the index then comes from the shards' attributes
    assert len(ShardDataset(shard_dir)) == 5
    test = ShardDataset(shard_dir, split="test")
    assert len(test) == 2 and torch.equal(test[0]["joints3d"], ShardDataset(shard_dir)[3]["joints3d"])
    with pytest.raises(ShardError, match=r"splits found: \['test', 'train'\]"):
        ShardDataset(shard_dir, split="validation")


def test_keys_restrict_what_is_read(shard_dir):
    item = ShardDataset(shard_dir, keys=["joints3d", "K"])[0]
    assert set(item) == {"joints3d", "K", "is_left", "index"}
    with pytest.raises(ShardError, match="pose_pca"):
        ShardDataset(shard_dir, keys=["joints3d", "pose_pca"])


def test_each_shard_is_validated_once_per_process(shard_dir, monkeypatch):
    dataset = ShardDataset(shard_dir)
    calls = []
    original = shards_module.open_shard
    monkeypatch.setattr(shards_module, "open_shard", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    for _ in range(3):
        for i in range(len(dataset)):
            dataset[i]
    assert len(calls) == 2


def test_two_workers_read_the_same_items_as_the_main_process(shard_dir):
    dataset = ShardDataset(shard_dir, transform=training_transform(size=16, seed=3))
    dataset[0]  # open a file in the parent first: forked workers must not reuse its handle
    def read(workers):
        loader = DataLoader(dataset, batch_size=2, num_workers=workers, shuffle=False)
        return [batch for batch in loader]
    serial, parallel = read(0), read(2)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        for key in ("rgb_input", "depth_input", "joints2d", "target", "K", "index"):
            assert torch.equal(a[key], b[key]), key


def test_truncated_shard_gives_an_error_naming_it(shard_dir):
    path = shard_dir / shard_name(1)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    dataset = ShardDataset(shard_dir)  # the manifest index does not open shard 1 yet
    dataset[0]
    with pytest.raises(ShardError, match="shard-000001.h5"):
        dataset[3]


def test_corrupt_first_shard_fails_at_construction(shard_dir):
    (shard_dir / shard_name(0)).write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(ShardError, match="shard-000000.h5.*truncated or corrupt"):
        ShardDataset(shard_dir)


def test_unknown_schema_version_gives_an_error_naming_the_shard(shard_dir):
    with h5py.File(shard_dir / shard_name(1), "a") as f:
        f.attrs["schema_version"] = 99
    dataset = ShardDataset(shard_dir)
    with pytest.raises(ShardError, match=r"shard-000001.h5: schema_version 99 is unknown"):
        dataset[4]


def test_missing_directory_manifest_entries_and_counts(tmp_path, shard_dir):
    with pytest.raises(ShardError, match="not found"):
        ShardDataset(tmp_path / "nowhere")
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    manifest["shards"]["shard-000001.h5"]["num_samples"] = 7
    (shard_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="expected 7 samples"):
        ShardDataset(shard_dir)[3]
    os.remove(shard_dir / shard_name(1))
    with pytest.raises(ShardError, match=r"lists shards that are not in .*shard-000001.h5"):
        ShardDataset(shard_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="no shards"):
        ShardDataset(tmp_path / "empty")


def test_a_parent_of_split_directories_is_named_with_its_splits(tmp_path):
    from datasets import build_dataset
    from datasets.errors import DatasetError
    from tests.shard_fixtures import write_synthetic_shards

    for split in ("training", "evaluation"):
        write_synthetic_shards(tmp_path / "rhd_256" / split, shard_sizes=(2,), size=32, seed=0)
    with pytest.raises(DatasetError, match=r"rhd_256: holds one directory per split \(evaluation, training\)"):
        build_dataset("shards", tmp_path / "rhd_256")
    assert len(build_dataset("shards", tmp_path / "rhd_256" / "training")) == 2


def test_raw_reads_of_some_keys_return_private_copies_of_the_cached_small_arrays(shard_dir):
    dataset = ShardDataset(shard_dir)
    first = dataset.read_raw(1, ("rgb", "joints3d", "K"))
    assert set(first) == {"rgb", "joints3d", "K"} and dataset.stored_shape(1, "rgb") == first["rgb"].shape
    expected = first["joints3d"].copy()
    first["joints3d"][:] = 0  # a caller's in-place change must not reach the next read
    again = dataset.read_raw(1)
    assert np.array_equal(again["joints3d"], expected) and set(again) >= {"rgb", "depth", "mask", "visible"}
    with h5py.File(dataset.shards[0][0], "r") as f:
        assert np.array_equal(again["K"], f["K"][1]) and np.array_equal(again["rgb"], f["rgb"][1])
