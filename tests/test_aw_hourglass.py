"""Adaptive Wasserstein Hourglass (issue 10): 2.5D geometry, Eq. 4-5 by hand, the label firewall of the
second domain, training, exact resume, configs and the quick experiment (CPU, tiny sizes)."""
import collections
import json
import math

import pytest
import torch

from models import build_from_info
from models.hourglass import heatmap_to_image, image_to_heatmap, reconstruct_normalized, soft_argmax
from tests.training_fixtures import tiny_config, tiny_shards, weights
from training.checkpoint import load_checkpoint
from training.config import ConfigError, load_config
from training.logging import read_log
from training.methods import aw_hourglass as awh
from training.trainer import train

HIDDEN = {"joints3d", "target", "root", "scale", "K", "visible"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("awh")
    source, target = tiny_shards(root / "source", samples=8, seed=1), tiny_shards(root / "target", samples=8, seed=2)
    pretrain = train(tiny_config("aw_pretrain", root / "pretrain", [source], ["optim.epochs=1"]))
    return {"source": source, "target": target, "pretrain": pretrain.checkpoint}


def _adapt(data, out, overrides=()):
    return tiny_config("aw_adapt", out, [data["source"]],
                       [f"data.adapt=[{data['target']}]", f"model.init={data['pretrain']}",
                        "aw_hourglass.critic_steps=2", *overrides])


def test_soft_argmax_recovers_a_peak_to_sub_pixel_accuracy():
    h, w, (u, v), sigma = 16, 20, (7.3, 5.6), 0.8
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    logits = -((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma ** 2)
    prob, uv = soft_argmax(logits[None, None])
    assert prob.sum().item() == pytest.approx(1.0)
    assert uv[0, 0].tolist() == pytest.approx([u, v], abs=1e-3)


def test_25d_reconstruction_inverts_the_normalisation_exactly():
    torch.manual_seed(0)
    b = 3
    joints = torch.randn(b, 21, 3, dtype=torch.float64) * 0.05 + torch.tensor([0.02, -0.01, 0.6], dtype=torch.float64)
    K = torch.tensor([[[300.0, 0, 31.5], [0, 310.0, 30.0], [0, 0, 1]]], dtype=torch.float64).repeat(b, 1, 1)
    root, scale = joints[:, 0], (joints[:, 10] - joints[:, 9]).norm(dim=-1)
    uvw = joints @ K.transpose(1, 2)
    uv = uvw[..., :2] / uvw[..., 2:]
    zn = (joints[..., 2] - root[:, None, 2]) / scale[:, None]  # Eq. 7, C = 1
    target = (joints - root[:, None]) / scale[:, None, None]
    found = reconstruct_normalized(uv, zn, K, root, scale).double()
    torch.testing.assert_close(found, target, rtol=0, atol=1e-5)
    # its projection is the 2D it was built from (projection invariant), and heatmap ↔ crop pixels round-trip
    back = found * scale[:, None, None] + root[:, None]
    proj = back @ K.transpose(1, 2)
    torch.testing.assert_close(proj[..., :2] / proj[..., 2:], uv, rtol=0, atol=1e-4)
    torch.testing.assert_close(heatmap_to_image(image_to_heatmap(uv, 64, 16), 64, 16), uv)


def test_alpha_is_the_hand_computed_channel_cosine():
    zs = torch.tensor([[[[1.0, 0.0]], [[3.0, 4.0]]]])  # (1, 2 channels, 1, 2)
    zt = torch.tensor([[[[1.0, 1.0]], [[4.0, 3.0]]]], requires_grad=True)
    alpha = awh.feature_similarity(zs, zt)
    assert alpha[0].tolist() == pytest.approx([1 / math.sqrt(2), 24 / 25])
    assert not alpha.requires_grad  # detached
    assert awh.feature_similarity(zs, -zt.detach())[0].tolist() == [0.0, 0.0]  # clamped to [0, 1]


def test_gradient_penalty_and_critic_objective_on_a_linear_critic():
    w, b = torch.tensor([0.5, -1.0, 2.0, 0.25]), 0.3
    critic = lambda x: x.flatten(1) @ w + b  # noqa: E731  ∇f = w everywhere
    fs, ft = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    expected_gp = (w.norm() - 1) ** 2
    assert awh.gradient_penalty(critic, fs, ft).item() == pytest.approx(expected_gp.item(), rel=1e-6)
    loss, wd, gp = awh.critic_objective(critic, fs, ft, lambda_gp=10.0, t=torch.full((5,), 0.3))
    expected_wd = (fs.flatten(1) @ w).mean() - (ft.flatten(1) @ w).mean()
    assert wd.item() == pytest.approx(expected_wd.item(), rel=1e-5, abs=1e-6)
    assert loss.item() == pytest.approx(-(expected_wd - 10.0 * expected_gp).item(), rel=1e-5, abs=1e-5)


def test_no_3d_label_of_the_target_reaches_training(data, tmp_path, monkeypatch):
    seen = []
    original = awh.AWAdaptPhase.loss

    def inspect(self, batch):
        seen.append(set(batch["adapt"]))
        return original(self, batch)

    monkeypatch.setattr(awh.AWAdaptPhase, "loss", inspect)
    train(_adapt(data, tmp_path / "run", ["optim.epochs=1"]))
    assert seen and all(keys == {"rgb_input", "depth_input", "joints2d", "labelled"} for keys in seen)
    assert not (HIDDEN & set().union(*seen))
    # ... although the target shards hold them
    from training.data import training_loader
    loader, _ = training_loader([data["target"]], image_size=32, augment=False, batch_size=4, seed=0, workers=0)
    assert HIDDEN <= set(next(iter(loader)))


@pytest.mark.parametrize("critic", ["none", "adaptive"])
def test_losses_decrease(data, tmp_path, critic):
    run = train(_adapt(data, tmp_path / critic, ["optim.epochs=12", "optim.lr=3e-3", f"aw_hourglass.critic={critic}"]))
    log = read_log(run.run_dir / "log.csv")
    for key in ("loss/2.5d_source", "loss/2d_target"):
        values = [v for _, v in log[key]]
        assert sum(values[-4:]) / 4 < 0.8 * sum(values[:4]) / 4, key
    if critic != "none":
        assert {"loss/wd", "critic/gp", "alpha/mean"} <= set(log)


def test_killed_and_resumed_adaptation_ends_like_an_uninterrupted_one(data, tmp_path, monkeypatch):
    overrides = ["optim.epochs=3", "data.augment=true", "checkpoint_every=3"]
    reference = train(_adapt(data, tmp_path / "uninterrupted", overrides))
    original, calls = awh.AWAdaptPhase.update, collections.Counter()

    def update_then_die(self, batch, loss):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, batch, loss)

    monkeypatch.setattr(awh.AWAdaptPhase, "update", update_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_adapt(data, tmp_path / "resumed", overrides))
    monkeypatch.setattr(awh.AWAdaptPhase, "update", original)
    resumed = train(_adapt(data, tmp_path / "resumed", overrides))
    assert resumed.steps == reference.steps == 6
    for expected, found in ((weights(reference.checkpoint), weights(resumed.checkpoint)),
                            (load_checkpoint(reference.checkpoint)["extra"]["networks"]["critic"],
                             load_checkpoint(resumed.checkpoint)["extra"]["networks"]["critic"])):
        for name in expected:
            torch.testing.assert_close(found[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_the_evaluated_network_predicts_the_normalised_target_and_rebuilds_from_its_info(data):
    state = load_checkpoint(data["pretrain"])
    assert state["model_info"]["family"] == "hourglass"
    model = build_from_info(state["model_info"]).eval()
    x, K = torch.zeros(2, 3, 32, 32), torch.tensor([[80.0, 0, 16], [0, 80.0, 16], [0, 0, 1]]).repeat(2, 1, 1)
    out = model(x, K=K, root=torch.tensor([[0.0, 0.0, 0.5]] * 2), scale=torch.tensor([0.03, 0.03]))
    assert out["pred"].shape == (2, 63) and torch.isfinite(out["pred"]).all()
    assert out["z"].shape[1] == model.bottleneck_channels and "pred" not in model(x)


def test_configs_load_and_rules_reject_nonsense(data, tmp_path):
    for name in ("aw_hourglass_pretrain", "aw_hourglass"):
        cfg = load_config(f"configs/{name}.yaml")
        assert cfg.phase.startswith("aw_") and cfg.optim.batch_size == 16 and cfg.aw_hourglass.lambda_gp == 10.0
    with pytest.raises(ConfigError, match="aw_hourglass.critic should be one of"):
        load_config("configs/aw_hourglass.yaml", ["aw_hourglass.critic=gan"])
    with pytest.raises(ConfigError, match="phase aw_adapt needs data.adapt"):
        load_config("configs/aw_hourglass.yaml", ["data.adapt=[]"])
    with pytest.raises(ConfigError, match="divisible by 16"):
        load_config("configs/aw_hourglass.yaml", ["data.image_size=40"])


def test_quick_experiment_runs(tmp_path, monkeypatch):
    from tools.experiment import main
    from training.experiments import build

    monkeypatch.setattr("training.evaluation.plot_pck", lambda curves, path, title="": path)
    monkeypatch.setattr("training.evaluation.plot_predictions", lambda predictions, path, count=8: path)
    assert main(["synth-aw-hourglass", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    names = [arm["name"] for arm in results["arms"]]
    assert names == ["aw_hourglass_pretrain", "aw_hourglass_none", "aw_hourglass_wasserstein", "aw_hourglass_adaptive",
                     "aw_hourglass_adaptive_wd1e-01"]
    assert all(arm["auc_range_mm"] == [0.0, 30.0] and len(arm["epe_mean_mm"]) == 2 for arm in results["arms"])
    real = build("aw-hourglass", quick=True)
    assert [a.name for a in real.arms] == names[:4] and real.paper["aw_hourglass_adaptive"] == 12.8
