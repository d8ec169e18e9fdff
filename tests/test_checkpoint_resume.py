"""Checkpoints: resume equals an uninterrupted run; atomic writes; clear errors; non-finite loss stops."""
import collections

import pytest
import torch

from tests.training_fixtures import random_checkpoint, tiny_config, tiny_shards, weights
from training import checkpoint as ckpt
from training import losses, phases
from training.checkpoint import CheckpointError, load_checkpoint
from training.logging import read_log
from training.trainer import NonFiniteLossError, train


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return {"shards": tiny_shards(root / "source", samples=8, seed=1),
            "teacher": random_checkpoint(root / "teacher.pt", "depth", seed=4)}


def _distill_config(source, out, overrides=()):
    # 8 samples, batch 4: 2 steps per epoch; augmentation on, so data order *and* random
    # crops/rotations must be reproduced after the restart; φ is learned and must be restored too.
    return tiny_config("distill", out, [source["shards"]],
                       ["optim.epochs=3", f"distill.teacher={source['teacher']}", "prior.learn=true",
                        "prior.beta=5.0", "data.augment=true", "checkpoint_every=3", *overrides])


class SimulatedKill(Exception):
    pass


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(source, tmp_path, monkeypatch):
    reference = train(_distill_config(source, tmp_path / "uninterrupted"))

    # Kill during step 5's update: checkpoints exist after steps 2 (epoch end) and 3 (checkpoint_every),
    # so the restart resumes in the middle of epoch 1 and repeats step 4 from scratch.
    original = phases.DistillPhase.update
    calls = collections.Counter()

    def update_then_die(self, batch, loss):
        calls["n"] += 1
        if calls["n"] == 4:
            raise SimulatedKill()
        return original(self, batch, loss)

    monkeypatch.setattr(phases.DistillPhase, "update", update_then_die)
    with pytest.raises(SimulatedKill):
        train(_distill_config(source, tmp_path / "resumed"))
    last = tmp_path / "resumed" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 3
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(phases.DistillPhase, "update", original)

    resumed = train(_distill_config(source, tmp_path / "resumed"))
    assert resumed.steps == reference.steps == 6
    expected, found = weights(reference.checkpoint), weights(resumed.checkpoint)
    assert expected.keys() == found.keys()
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    phi_expected = load_checkpoint(reference.checkpoint)["phi"]
    phi_found = load_checkpoint(resumed.checkpoint)["phi"]
    for name in phi_expected:
        torch.testing.assert_close(phi_found[name], phi_expected[name], rtol=1e-5, atol=1e-8, msg=name)
    # the log of the resumed run has each step once and the same losses
    ref_log, res_log = read_log(reference.run_dir / "log.csv"), read_log(resumed.run_dir / "log.csv")
    assert [s for s, _ in res_log["loss/G"]] == list(range(1, 7))
    assert [v for _, v in res_log["loss/G"]] == pytest.approx([v for _, v in ref_log["loss/G"]], rel=1e-5)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = random_checkpoint(tmp_path / "last.pt", "rgb", seed=0)
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        random_checkpoint(path, "rgb", seed=1)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_corrupt_foreign_and_mismatched_checkpoints_give_clear_errors(source, tmp_path):
    good = random_checkpoint(tmp_path / "good.pt", "rgb")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")

    # arbitrary pickled objects are refused (weights_only=True), not executed
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": ckpt.FORMAT, "payload": collections.OrderedDict, "obj": SimulatedKill()}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not a readable checkpoint"):
        load_checkpoint(foreign)
    other_format = tmp_path / "state_dict.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, other_format)
    with pytest.raises(CheckpointError, match="state_dict.pt: expected a training checkpoint"):
        load_checkpoint(other_format)

    # a checkpoint of a wider network cannot initialise this run
    wide = random_checkpoint(tmp_path / "wide.pt", "rgb", width=16)
    with pytest.raises(CheckpointError, match="wide.pt: weights do not fit the model.*shape mismatches"):
        train(tiny_config("student", tmp_path / "run", [source["shards"]], [f"model.init={wide}"]))

    # resuming from a damaged last.pt stops with the file named instead of silently restarting
    run = tmp_path / "damaged"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="last.pt: not a readable checkpoint"):
        train(tiny_config("student", run, [source["shards"]]))


def test_train_tool_reports_a_bad_checkpoint(source, tmp_path, capsys):
    from tools.train import main

    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    code = main(["--config", "configs/student.yaml", f"data.train=[{source['shards']}]", f"out={tmp_path / 'r'}",
                 f"model.init={bad}", "device=cpu", "progress=false", "data.workers=0", "optim.batch_size=4",
                 "model.width=8", "data.image_size=32", "threads=1"])
    assert code == 1
    assert "bad.pt: not a readable checkpoint" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(source, tmp_path, monkeypatch):
    original = losses.regression_loss
    calls = collections.Counter()

    def nan_on_fourth_call(pred, target, reduction="mean"):
        calls["n"] += 1
        value = original(pred, target, reduction)
        return value * float("nan") if calls["n"] == 4 else value

    monkeypatch.setattr(losses, "regression_loss", nan_on_fourth_call)
    cfg = tiny_config("student", tmp_path / "run", [source["shards"]], ["optim.epochs=4", "checkpoint_every=1"])
    with pytest.raises(NonFiniteLossError, match=r"non-finite \(nan\) at epoch 1, step 3.*last good checkpoint is .*last.pt"):
        train(cfg)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "model.pt").exists()
