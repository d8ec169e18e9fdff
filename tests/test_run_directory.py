"""One config per run directory: same config resumes, another is refused (or, asked, starts afresh); config.yaml round-trips."""
import pytest
import torch
import yaml

from tests.training_fixtures import tiny_config, tiny_shards, weights
from training.config import ConfigError
from training.run_directory import config_differences
from training.trainer import train


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("rundir") / "source", samples=8, seed=2)


def _same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_changed_config_is_refused_and_overwrite_starts_afresh(shards, tmp_path, capsys):
    run = tmp_path / "run"
    first = train(tiny_config("student", run, [shards]))
    saved_config, saved_model = (run / "config.yaml").read_bytes(), weights(run / "model.pt")

    # keys that cannot change the weights: the finished run is simply resumed (nothing to do)
    again = train(tiny_config("student", run, [shards], ["threads=2", "log_every=3", "checkpoint_every=7"]))
    assert again.steps == first.steps and _same_weights(weights(run / "model.pt"), saved_model)
    saved_config = (run / "config.yaml").read_bytes()

    # another learning rate: refused in one line naming the key, old → new, and the ways out
    with pytest.raises(ConfigError) as refused:
        train(tiny_config("student", run, [shards], ["optim.lr=5e-4", "optim.epochs=3"]))
    message = str(refused.value)
    assert "\n" not in message and str(run) in message
    assert "optim.lr: 0.001 → 0.0005" in message and "optim.epochs: 2 → 3" in message
    assert "overwrite=true" in message and "out=" in message
    assert (run / "config.yaml").read_bytes() == saved_config  # nothing relabelled
    assert _same_weights(weights(run / "model.pt"), saved_model)

    # overwrite=true: the old run is deleted (and said so); the new run equals a run in a fresh directory
    changed = ["optim.lr=5e-4", "optim.epochs=3"]
    replaced = train(tiny_config("student", run, [shards], changed + ["overwrite=true"]))
    assert "overwrite=true" in capsys.readouterr().err
    fresh = train(tiny_config("student", tmp_path / "fresh", [shards], changed))
    assert replaced.steps == fresh.steps == 6
    assert _same_weights(weights(replaced.checkpoint), weights(fresh.checkpoint))
    assert not _same_weights(weights(replaced.checkpoint), saved_model)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 5e-4 and saved["overwrite"] is False


def test_saved_config_reproduces_the_run_through_the_train_tool(shards, tmp_path):
    from tools.train import main

    original = train(tiny_config("student", tmp_path / "run", [shards], ["optim.schedule=cosine", "seed=5"]))
    copy = tmp_path / "copy"
    assert main(["--config", str(tmp_path / "run" / "config.yaml"), f"out={copy}"]) == 0
    assert _same_weights(weights(original.checkpoint), weights(copy / "model.pt"))
    assert config_differences(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()),
                              tiny_config("student", copy, [shards], ["optim.schedule=cosine", "seed=5"])) == []


def test_differences_ignore_result_neutral_keys_and_count_missing_keys_as_defaults(shards, tmp_path):
    cfg = tiny_config("student", tmp_path / "a", [shards])
    previous = yaml.safe_load(yaml.safe_dump({"phase": "student", "out": "elsewhere", "seed": 3, "device": "cuda",
                                              "progress": True, "data": {"workers": 9}}))
    keys = [key for key, _, _ in config_differences(previous, cfg)]
    assert not {"out", "device", "progress", "data.workers", "threads", "log_every"} & set(keys)
    assert "phase" not in keys and "seed" not in keys
    assert {"data.train", "data.image_size", "model.width", "optim.lr"} <= set(keys)  # defaults differ from tiny ones


def test_render_refusal_names_the_differing_keys(tmp_path, monkeypatch):
    import render.synth as synth

    existing = {"generator": "render_synth", "config": {"image_size": 128, "pose_range": 2.0, "focal": 500.0},
                "seed": 0, "num": 10}
    requested = dict(existing, config=dict(existing["config"], image_size=64), seed=1, shard_size=5,
                     chunk_size=1, hand_model={"name": "open"})
    monkeypatch.setattr(synth, "read_manifest", lambda out: existing)
    with pytest.raises(synth.SynthError) as refused:
        synth.check_same_dataset(tmp_path, requested)
    message = str(refused.value)
    assert "config.image_size: existing 128 vs requested 64" in message and "seed: existing 0 vs requested 1" in message
    assert "pose_range" not in message and "focal" not in message  # equal settings are not printed
    synth.check_same_dataset(tmp_path, dict(existing, shard_size=5, chunk_size=1, hand_model={}))  # same: accepted
