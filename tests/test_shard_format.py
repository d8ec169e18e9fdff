"""The shard format: atomic writes, schema validation, manifest bookkeeping."""
import json
import os

import h5py
import numpy as np
import pytest

from datasets import shard_format as sf


def _arrays(n=3, size=8):
    rng = np.random.default_rng(0)
    return {
        "rgb": rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        "depth": rng.integers(0, 2000, (n, size, size), dtype=np.uint16),
        "mask": rng.integers(0, 2, (n, size, size), dtype=np.uint8),
        "joints3d": rng.normal(size=(n, 21, 3)).astype(np.float32),
        "joints2d": rng.normal(size=(n, 21, 2)).astype(np.float32),
        "visible": np.ones((n, 21), bool),
        "K": np.repeat(np.eye(3, dtype=np.float32)[None], n, 0),
    }


def test_written_shard_reads_back_equal_with_schema_attributes(tmp_path):
    arrays = _arrays()
    entry = sf.write_shard(tmp_path, 4, arrays, {"source": "test", "config": {"a": 1}})
    assert entry["name"] == "shard-000004.h5" and entry["num_samples"] == 3
    assert entry["sha256"] == sf.file_sha256(tmp_path / entry["name"])
    with sf.open_shard(tmp_path / entry["name"], expected_samples=3) as f:
        for key, value in arrays.items():
            np.testing.assert_array_equal(f[key][:], value)
        assert f.attrs["joint_layout"] == "mano21"
        assert json.loads(f.attrs["joint_names"])[4] == "thumb_tip"
        assert json.loads(f.attrs["config"]) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["shard-000004.h5"]  # no temporary left behind


def test_write_refuses_wrong_dtype_and_leaves_nothing(tmp_path):
    arrays = _arrays()
    arrays["depth"] = arrays["depth"].astype(np.float32)
    with pytest.raises(sf.ShardError, match="'depth' should be uint16"):
        sf.write_shard(tmp_path, 0, arrays, {"source": "test"})
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_file_under_final_name(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        sf.write_shard(tmp_path, 0, _arrays(), {"source": "test"})
    assert list(tmp_path.iterdir()) == []


def test_open_rejects_truncated_unknown_version_and_missing_array(tmp_path):
    entry = sf.write_shard(tmp_path, 0, _arrays(), {"source": "test"})
    path = tmp_path / entry["name"]
    truncated = tmp_path / "shard-000001.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(sf.ShardError, match="shard-000001.h5"):
        sf.open_shard(truncated)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(sf.ShardError, match="schema_version 99 is unknown"):
        sf.open_shard(path)
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = sf.SCHEMA_VERSION
        del f["K"]
    with pytest.raises(sf.ShardError, match="missing required array 'K'"):
        sf.open_shard(path)


def test_manifest_accumulates_entries_from_separate_writers(tmp_path):
    first = sf.write_shard(tmp_path, 0, _arrays(2), {"source": "test"})
    second = sf.write_shard(tmp_path, 1, _arrays(5), {"source": "test"})
    sf.record_shards(tmp_path, [second], command="job 2")
    manifest = sf.record_shards(tmp_path, [first], command="job 1")
    assert list(manifest["shards"]) == ["shard-000000.h5", "shard-000001.h5"]
    assert manifest["num_samples"] == 7
    assert sf.read_manifest(tmp_path) == manifest
    assert [p.name for p in sf.list_shards(tmp_path)] == ["shard-000000.h5", "shard-000001.h5"]


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / sf.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(sf.ShardError, match="manifest.json: manifest is not valid JSON"):
        sf.read_manifest(tmp_path)
