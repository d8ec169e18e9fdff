"""Supervision transfer (training.methods.supervision_transfer): adapter, Eq. (2), frozen teacher, zero-shot
composition, fine-tune modes, resume, configs and the quick experiment (CPU, tiny sizes)."""
import collections
import json
from pathlib import Path

import pytest
import torch

from tests.training_fixtures import IMAGE, WIDTH, random_checkpoint, tiny_config, tiny_shards, weights
from training.checkpoint import CheckpointError, load_checkpoint
from training.config import ConfigError, load_config
from training.logging import read_log
from models import transfer_network
from training.methods import supervision_transfer as st
from training.phases import build_network
from training.trainer import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("supervision_transfer")
    return {"root": root, "shards": tiny_shards(root / "paired", samples=8, seed=1),
            "teacher": random_checkpoint(root / "rgb_teacher.pt", "rgb", seed=4)}


def _transfer_config(source, out, overrides=()):
    return tiny_config("supervision_transfer", out, [source["shards"]],
                       [f"transfer.teacher={source['teacher']}", "optim.epochs=3", "checkpoint_every=3", *overrides])


@pytest.fixture(scope="module")
def transferred(source):
    return train(_transfer_config(source, source["root"] / "transfer"))


def test_adapter_maps_student_channels_to_teacher_channels_and_sizes():
    student = {"arch": "resnet18", "width": 8, "in_channels": 1}
    teacher = {"arch": "resnet18", "width": 16, "in_channels": 3}
    net = transfer_network.TransferNetwork(student, "normalised", teacher, ("layer4", "layer3"))
    assert net.points == ("layer3", "layer4")
    conv = net.adapters["layer4"][0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (64, 128, (1, 1))
    assert isinstance(net.adapters["layer3"][1], torch.nn.ReLU)
    features = net.student.forward_features(torch.randn(2, 1, 64, 64))
    assert net.adapted(features, "layer3").shape == (2, 64, 4, 4)
    assert net.adapted(features, "layer4", (3, 3)).shape == (2, 128, 3, 3)  # resized to Φ's spatial size
    assert float(net.feature_scale.sum()) == 0.0  # widths differ: c_p is measured on the first batch
    assert net(torch.randn(2, 1, 64, 64))["pred"].shape == (2, 63)


def test_transfer_loss_by_hand():
    teacher = {"layer4": torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), "layer3": torch.tensor([[[[2.0]]]])}
    adapted = {"layer4": torch.tensor([[[[0.0, 2.0], [3.0, 6.0]]]]), "layer3": torch.tensor([[[[0.5]]]])}
    total, terms = st.transfer_loss(teacher, adapted, {"layer4": 1.0, "layer3": 2.0})
    assert terms["layer4"].item() == pytest.approx((1 + 0 + 0 + 4) / 4)  # mean per element
    assert terms["layer3"].item() == pytest.approx((2.0 / 2.0 - 0.5) ** 2)  # Φ / c_p
    assert total.item() == pytest.approx(1.25 + 0.25)


def test_hha_like_encoding_of_a_flat_depth_map():
    depth = torch.full((1, 1, 8, 8), -0.25)
    encoded = transfer_network.hha_like(depth)
    assert encoded.shape == (1, 3, 8, 8)
    torch.testing.assert_close(encoded[:, 0], torch.full((1, 8, 8), 0.25))  # nearness
    torch.testing.assert_close(encoded[:, 1:], torch.cat([torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)], 1))
    with pytest.raises(ValueError, match="expects depth"):
        transfer_network.hha_like(torch.zeros(1, 3, 8, 8))


def test_teacher_stays_frozen_and_zero_shot_composes_teacher_head_on_student_trunk(source, transferred):
    state = load_checkpoint(transferred.checkpoint)
    info, found, teacher = state["model_info"], state["model"], weights(source["teacher"])
    assert info["family"] == "supervision_transfer" and info["modality"] == "depth" and info["teacher"]["modality"] == "rgb"
    for name, value in teacher.items():  # weights and BatchNorm running statistics unchanged
        torch.testing.assert_close(found[f"teacher.{name}"], value, rtol=0, atol=0, msg=name)
    net = build_network(info).eval()
    net.load_state_dict(found)
    x = torch.randn(2, 1, IMAGE, IMAGE)
    with torch.no_grad():
        psi = net.student.forward_features(x)["layer4"]
        adapted = net.adapters["layer4"](psi) * net.feature_scale[-1]
        expected = torch.nn.functional.linear(adapted.mean(dim=(2, 3)), teacher["fc.weight"], teacher["fc.bias"])
        torch.testing.assert_close(net(x)["pred"], expected)


def test_transfer_reads_no_labels(source, tmp_path):
    from training import distributed
    cfg = _transfer_config(source, tmp_path / "x")
    model = build_network(st.TransferPhase.model_info(cfg))
    phase = st.TransferPhase(cfg, model, torch.optim.Adam(st.TransferPhase.trainable_parameters(cfg, model)),
                             distributed.setup("cpu"), torch.contiguous_format, {"device_type": "cpu", "enabled": False})
    assert "target" not in phase.needs
    batch = {"rgb_input": torch.randn(2, 3, IMAGE, IMAGE), "depth_input": torch.randn(2, 1, IMAGE, IMAGE)}
    loss, scalars = phase.loss(batch)  # no "target" key in the batch
    assert loss.item() > 0 and set(scalars) == {"loss/transfer", "loss/transfer_layer4"}


def test_transfer_loss_decreases(source, tmp_path):
    run = train(_transfer_config(source, tmp_path / "long", ["optim.epochs=8", "optim.lr=3e-3", "data.augment=false"]))
    losses = [v for _, v in read_log(run.run_dir / "log.csv")["loss/transfer"]]
    assert len(losses) == 16 and sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3


class SimulatedKill(Exception):
    pass


def test_killed_and_resumed_transfer_ends_like_an_uninterrupted_one(source, transferred, tmp_path, monkeypatch):
    original, calls = st.TransferPhase.update, collections.Counter()

    def update_then_die(self, batch, loss):
        calls["n"] += 1
        if calls["n"] == 4:
            raise SimulatedKill()
        return original(self, batch, loss)

    monkeypatch.setattr(st.TransferPhase, "update", update_then_die)
    with pytest.raises(SimulatedKill):
        train(_transfer_config(source, tmp_path / "resumed"))
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.setattr(st.TransferPhase, "update", original)
    resumed = train(_transfer_config(source, tmp_path / "resumed"))
    expected, found = weights(transferred.checkpoint), weights(resumed.checkpoint)
    assert resumed.steps == transferred.steps == 6 and expected.keys() == found.keys()
    for name in expected:
        torch.testing.assert_close(found[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def _finetune(source, out, transferred, mode, fraction=1.0):
    init = f"model.init={transferred.checkpoint}" if transferred else "model.init="
    return train(tiny_config("supervision_transfer_finetune", out, [source["shards"]],
                             [init, f"transfer.finetune={mode}", f"data.train_fraction={fraction}", "optim.epochs=1"]))


def test_finetune_modes_freeze_what_they_say(source, transferred, tmp_path):
    start = weights(transferred.checkpoint)
    trunk = {k[len("student."):]: v for k, v in start.items() if k.startswith("student.") and ".fc." not in f".{k}"}
    trunk = {k: v for k, v in trunk.items() if not k.startswith("fc.")}
    head = weights(_finetune(source, tmp_path / "head", transferred, "head").checkpoint)
    whole = weights(_finetune(source, tmp_path / "whole", transferred, "whole").checkpoint)
    assert not any(k.startswith(("teacher.", "adapters.")) for k in head)  # Ψ + its own head only
    for name, value in trunk.items():  # head only: trunk weights and BN statistics untouched
        torch.testing.assert_close(head[f"student.{name}"], value, rtol=0, atol=0, msg=name)
    assert not torch.equal(head["student.fc.weight"], start["student.fc.weight"])
    assert not torch.equal(whole["student.layer1.0.conv1.weight"], trunk["layer1.0.conv1.weight"])
    assert not torch.equal(whole["student.bn1.running_mean"], trunk["bn1.running_mean"])


def test_finetune_starts_from_the_transferred_trunk_with_a_fresh_head(source, transferred, tmp_path):
    cfg = tiny_config("supervision_transfer_finetune", tmp_path / "f", [source["shards"]],
                      [f"model.init={transferred.checkpoint}"])
    model = build_network(st.FinetunePhase.model_info(cfg))
    fresh_fc = model.student.fc.weight.clone()
    st.FinetunePhase.initialise(cfg, model, load_checkpoint(transferred.checkpoint), "init")
    start = weights(transferred.checkpoint)
    torch.testing.assert_close(model.student.layer4[1].conv2.weight, start["student.layer4.1.conv2.weight"])
    torch.testing.assert_close(model.student.fc.weight, fresh_fc)
    with pytest.raises(CheckpointError, match="supervision_transfer run"):
        st.FinetunePhase.initialise(cfg, model, load_checkpoint(source["teacher"]), "rgb.pt")


def test_scratch_baseline_trains_on_the_labelled_fraction(source, tmp_path):
    run = _finetune(source, tmp_path / "scratch", None, "whole", fraction=0.5)
    assert run.steps == 1  # 4 of 8 samples, batch 4
    assert load_checkpoint(run.checkpoint)["model_info"]["encoding"] == "normalised"


def test_configs_load_and_bad_combinations_are_refused(source, tmp_path):
    names = sorted(p.stem for p in CONFIGS.glob("supervision_transfer*.yaml"))
    assert names == ["supervision_transfer", "supervision_transfer_finetune", "supervision_transfer_finetune_reverse",
                     "supervision_transfer_reverse"]
    for name in names:
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.phase.startswith("supervision_transfer") and cfg.data.image_size == 256
    assert load_config(CONFIGS / "supervision_transfer_reverse.yaml").transfer.modality == "rgb"
    with pytest.raises(ConfigError, match="needs transfer.teacher"):
        load_config(CONFIGS / "supervision_transfer.yaml", ["transfer.teacher="])
    with pytest.raises(ConfigError, match="transfer.points"):
        load_config(CONFIGS / "supervision_transfer.yaml", ["transfer.points=[pool5]"])
    with pytest.raises(ConfigError, match="hha applies to a depth student"):
        load_config(CONFIGS / "supervision_transfer_reverse.yaml", ["transfer.depth_encoding=hha"])
    with pytest.raises(CheckpointError, match="same modality"):
        st.TransferPhase.model_info(_transfer_config(source, tmp_path / "y", ["transfer.modality=rgb"]))


def test_hha_student_at_two_transfer_points(source, tmp_path):
    run = train(_transfer_config(source, tmp_path / "hha", ["transfer.depth_encoding=hha", "transfer.points=[layer3,layer4]",
                                                            "optim.epochs=1", "model.width=4"]))
    info = load_checkpoint(run.checkpoint)["model_info"]
    assert info["in_channels"] == 3 and info["points"] == ["layer3", "layer4"]
    log = read_log(run.run_dir / "log.csv")
    assert {"loss/transfer_layer3", "loss/transfer_layer4"} <= set(log)
    assert float(load_checkpoint(run.checkpoint)["model"]["feature_scale"].min()) > 0  # widths 4 vs 8: c_p measured


def test_quick_experiment_writes_the_results_contract(tmp_path, monkeypatch):
    from tools.experiment import main
    from training.experiments.supervision_transfer import SYNTH_SUPERVISION_TRANSFER, synth_methods_arms

    monkeypatch.setattr("training.evaluation.plot_pck", lambda curves, path, title="": path)
    monkeypatch.setattr("training.evaluation.plot_predictions", lambda predictions, path, count=8: path)
    assert main(["synth-supervision-transfer", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == "synth-supervision-transfer" and results["quick"] is True
    names = {arm["name"] for arm in results["arms"]}
    assert {"supervision_transfer_zero_shot", "supervision_transfer_ft_10pct", "scratch_10pct",
            "supervision_transfer_ft_head_10pct"} <= names
    for arm in results["arms"]:
        assert len(arm["epe_mean_mm"]) == len(arm["seeds"]) == 2 and arm["auc_range_mm"] == [0.0, 50.0]
    arms = synth_methods_arms(SYNTH_SUPERVISION_TRANSFER["quick"], "source_train", "target_train", "target_test", 64)
    assert arms and all(a.name.startswith("supervision_transfer") for a in arms)
