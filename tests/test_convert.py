"""Converters write the readers' cropped samples as shards and resume; verify finds every planted problem."""
import json

import h5py
import numpy as np
import pytest
import torch

import datasets.convert as convert_module
from datasets import build_dataset
from datasets.convert import ConvertConfig, convert
from datasets.errors import DatasetError
from datasets.shard_format import read_manifest, record_shards, shard_name, write_shard
from datasets.transforms import HandCrop
from datasets.verify import verify_directory
from tests.raw_fixtures import write_freihand, write_rhd, write_stb
from tests.shard_fixtures import write_synthetic_shards
from tools.convert_dataset import main as convert_tool

SIZE = 48


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    write_rhd(root / "rhd", "training", num=3, seed=0)
    write_rhd(root / "rhd", "evaluation", num=2, seed=1)
    write_stb(root / "stb", frames=1)
    write_freihand(root / "freihand", num_unique=3, num_eval=2)
    return root


CASES = {  # source → (splits, reader options, expected keys besides the always-present ones)
    "rhd": (("training", "evaluation"), {}, {"depth", "mask"}),
    "stb": (("train", "test"), {}, set()),
    "freihand": (("paper_train", "paper_eval"), {"paper_train_size": 2, "domain": "all"}, {"mask"}),
}


@pytest.mark.parametrize("source", sorted(CASES))
def test_converted_shards_equal_the_cropped_reader_output(raw, tmp_path, source):
    splits, options, image_keys = CASES[source]
    config = ConvertConfig(source=source, splits=splits, size=SIZE, shard_size=2, reader_options=options)
    summary = convert(raw / source, tmp_path / "out", config, progress=False)
    assert sorted(summary["splits"]) == sorted(splits)  # one directory per split, nothing else
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(splits)
    for split in splits:
        done = summary["splits"][split]
        assert done["written"] == done["shards"] and done["skipped"] == 0 and done["out"] == str(tmp_path / "out" / split)
        assert verify_directory(tmp_path / "out" / split, tolerance_px=0.01) == []
        reader = build_dataset(source, raw / source, split=split, transform=HandCrop(SIZE), **options)
        shards = build_dataset("shards", tmp_path / "out" / split)
        assert len(shards) == len(reader) > 0
        for i in range(len(reader)):
            expected, got = reader[i], shards[i]
            assert {"rgb", "joints3d", "joints2d", "visible", "K", "is_left", "index"} <= set(got)
            assert set(got) & {"depth", "mask"} == image_keys
            assert float((got["rgb"] - expected["rgb"]).abs().max()) <= 0.5 / 255 + 1e-6
            if "depth" in image_keys:
                assert float((got["depth"] - expected["depth"]).abs().max()) <= 0.0005 + 1e-6
            if "mask" in image_keys:
                assert torch.equal(got["mask"], expected["mask"])
            for key in ("joints3d", "joints2d", "visible", "K", "is_left"):
                assert torch.equal(got[key], expected[key]), key
            assert got["rgb"].shape == (3, SIZE, SIZE)
    for split, evaluation in zip(splits, (False, True)):  # the second split of each case is its evaluation split
        manifest = read_manifest(tmp_path / "out" / split)
        assert manifest["config"]["reader_options"] == options and manifest["source"] == source
        assert manifest["split"] == split and manifest["evaluation_split"] is evaluation
        assert manifest["config"]["splits"] == [split]
        with h5py.File(tmp_path / "out" / split / shard_name(0), "r") as f:
            assert f.attrs["source"] == source and f.attrs["split"] == split
            assert bool(f.attrs["evaluation_split"]) is evaluation
            assert json.loads(f.attrs["config"])["size"] == SIZE


def test_limit_workers_and_determinism(raw, tmp_path):
    config = ConvertConfig(source="rhd", splits=("training",), size=SIZE, limit=2, shard_size=1)
    convert(raw / "rhd", tmp_path / "one", config, progress=False)
    convert(raw / "rhd", tmp_path / "two", config, workers=2, progress=False)
    assert not (tmp_path / "one" / "evaluation").exists()  # --split training converts just that split
    one, two = read_manifest(tmp_path / "one" / "training"), read_manifest(tmp_path / "two" / "training")
    assert one["num_samples"] == 2
    assert {k: v["sha256"] for k, v in one["shards"].items()} == {k: v["sha256"] for k, v in two["shards"].items()}


def test_resume_after_interruption_and_damage(raw, tmp_path, monkeypatch):
    config = ConvertConfig(source="rhd", splits=("training",), size=SIZE, shard_size=1)
    reference = convert(raw / "rhd", tmp_path / "reference", config, progress=False)["splits"]["training"]
    out = tmp_path / "out" / "training"
    real_convert_shard, calls = convert_module.convert_shard, []

    def crash_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        calls.append(args[-1].index)
        return real_convert_shard(*args)

    monkeypatch.setattr(convert_module, "convert_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        convert(raw / "rhd", out.parent, config, progress=False)
    monkeypatch.setattr(convert_module, "convert_shard", real_convert_shard)
    assert len(read_manifest(out)["shards"]) == 2
    (out / ".shard-000002.h5.tmp-999").write_bytes(b"partial")  # left by a killed writer
    with open(out / shard_name(1), "r+b") as f:  # a damaged shard is redone
        f.truncate(100)
    summary = convert(raw / "rhd", out.parent, config, progress=False)["splits"]["training"]
    assert summary == dict(reference, skipped=1, written=reference["shards"] - 1, out=str(out))
    expected = {k: v["sha256"] for k, v in read_manifest(tmp_path / "reference" / "training")["shards"].items()}
    assert {k: v["sha256"] for k, v in read_manifest(out)["shards"].items()} == expected
    assert verify_directory(out) == []
    again = convert(raw / "rhd", out.parent, config, progress=False)["splits"]["training"]
    assert again["written"] == 0 and again["skipped"] == reference["shards"]


def test_conflicting_settings_and_bad_options_are_refused(raw, tmp_path, capsys):
    convert(raw / "rhd", tmp_path / "out", ConvertConfig(source="rhd", size=SIZE, limit=1), progress=False)
    with pytest.raises(DatasetError, match=r"different settings \(size"):
        convert(raw / "rhd", tmp_path / "out", ConvertConfig(source="rhd", size=32, limit=1), progress=False)
    code = convert_tool(["rhd", "--root", str(raw / "rhd"), "--out", str(tmp_path / "o2"), "--option", "hnd=both"])
    assert code == 2 and "did you mean 'hand'" in capsys.readouterr().err
    code = convert_tool(["stb", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")])
    assert code == 2 and "missing" in capsys.readouterr().err
    old_layout = write_synthetic_shards(tmp_path / "old", shard_sizes=(1,), size=16)  # shards directly in --out
    with pytest.raises(DatasetError, match="holds shards directly"):
        convert(raw / "rhd", old_layout, ConvertConfig(source="rhd", size=SIZE, limit=1), progress=False)


def test_tool_writes_one_directory_per_split_and_says_which_is_for_evaluation(raw, tmp_path, capsys):
    out = tmp_path / "rhd_48"
    assert convert_tool(["rhd", "--root", str(raw / "rhd"), "--out", str(out), "--size", str(SIZE),
                         "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'training'}: training (training split), 3 samples" in printed
    assert f"{out / 'evaluation'}: evaluation (evaluation/test split), 2 samples" in printed
    assert convert_tool(["stb", "--root", str(raw / "stb"), "--out", str(tmp_path / "stb"), "--split", "test",
                         "--size", str(SIZE), "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "stb").iterdir()] == ["test"]
    with pytest.raises(SystemExit):  # a split the reader does not have
        convert_tool(["stb", "--root", str(raw / "stb"), "--out", str(tmp_path / "x"), "--split", "evaluation"])
    assert "invalid choice: 'evaluation'" in capsys.readouterr().err


def _rewrite(directory, index, change):
    """Rewrite shard ``index`` with ``change(arrays)`` applied and record it (a valid checksum)."""
    with h5py.File(directory / shard_name(index), "r") as f:
        arrays = {k: f[k][()] for k in f}
        attrs = {"source": f.attrs["source"], "config": f.attrs["config"]}
    change(arrays)
    record_shards(directory, [write_shard(directory, index, arrays, attrs)])


def test_verify_reports_every_planted_problem(tmp_path, capsys):
    directory = write_synthetic_shards(tmp_path / "data", shard_sizes=(2, 2, 2, 2, 2, 2, 2), size=16)
    assert verify_directory(directory) == [] and verify_directory(directory, deep=True) == []
    assert convert_tool(["verify", str(directory)]) == 0

    def break_projection(arrays):
        arrays["joints2d"][1, 3] += 2.0

    def plant_nan(arrays):
        arrays["joints3d"][0, 5, 1] = np.nan

    _rewrite(directory, 0, break_projection)
    _rewrite(directory, 6, plant_nan)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["shards"][shard_name(1)]["sha256"] = "0" * 64  # bad checksum
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with open(directory / shard_name(2), "r+b") as f:  # truncated
        f.truncate(1000)
    with h5py.File(directory / shard_name(3), "a") as f:  # unknown schema version
        f.attrs["schema_version"] = 7
    (directory / shard_name(4)).unlink()  # missing
    (directory / ".shard-000009.h5.tmp-1234").write_bytes(b"x")  # stray temporary file
    write_shard(directory, 8, _arrays_of(directory / shard_name(5)), {"source": "x", "config": "{}"})  # unrecorded

    problems = [str(p) for p in verify_directory(directory)]

    def reported(name, text):
        return any(name in p and text in p for p in problems)

    assert reported(shard_name(0), "projection of joints3d with K is off joints2d by up to 2")
    assert reported(shard_name(0), "1 sample(s) [1]")
    assert reported(shard_name(1), "checksum mismatch")
    assert reported(shard_name(2), "truncated or corrupt")
    assert reported(shard_name(3), "schema_version 7 is unknown")
    assert reported(shard_name(4), "listed in the manifest but missing")
    assert reported(shard_name(6), "NaN or inf")
    assert reported(".shard-000009.h5.tmp-1234", "stray temporary")
    assert reported(shard_name(8), "not recorded in the manifest")
    assert not any(shard_name(5) in p for p in problems)  # the intact shard has no problem
    assert convert_tool(["verify", str(directory)]) == 1
    assert f"{len(problems)} problem(s)" in capsys.readouterr().out


def _arrays_of(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}
