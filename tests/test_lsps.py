"""LSPS (training.methods.lsps, models.vae_gan): shapes, losses against hand values, shared layers,
the labelled fraction, exact resume, configs and the quick synth-lsps experiment (CPU, tiny)."""
import collections
import json
import math
from pathlib import Path

import pytest
import torch

from models import build_from_info
from models.vae_gan import LSPSNet
from tests.training_fixtures import tiny_config, tiny_shards, weights
from training import trainer
from training.checkpoint import load_checkpoint
from training.config import ConfigError, load_config
from training.distributed import DistContext
from training.methods import lsps_config
from training.methods import lsps_losses as L
from training.methods.lsps import DepthPhase, PosteriorPhase

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("size,width", [(32, 4), (64, 4)])
def test_shapes_of_every_network(size, width):
    net = LSPSNet(size, width)
    x, c, s4 = torch.zeros(2, 1, size, size), net.latent_channels, size // 4
    assert net.pose.encode(torch.zeros(2, 63))[0].shape == (2, 20)
    assert net.pose.decode(torch.zeros(2, 20)).shape == (2, 63)
    for d in ("s", "r"):
        assert net.encode(x, d).shape == (2, c, s4, s4)
        assert net.generate(torch.zeros(2, c, s4, s4), d).shape == (2, 1, size, size)
        logit, features = net.discriminate(x, d)
        assert logit.shape == (2,) and features.shape[-2:] == (2, 2)
        assert net.posterior(x, d).shape == (2, 20)
    assert net.map(torch.zeros(2, 20)).shape == (2, c, s4, s4)
    assert net(x)["pred"].shape == (2, 63)
    assert c == 256 * width // 64  # the paper's 256-channel latent, scaled


def test_paper_size_latent_is_256x32x32():
    info = {"family": "lsps", "image_size": 128, "width": 64}
    net = build_from_info(info)
    assert net.map(torch.zeros(1, 20)).shape == (1, 256, 32, 32)
    assert [m.out_channels for m in net.mapping if isinstance(m, torch.nn.ConvTranspose2d)] == [1024, 1024, 512, 256]


def test_kl_and_reparameterisation_against_hand_values():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # KL(N(1,1)‖N(0,1)) = 0.5; KL(N(0,e)‖N(0,1)) = ½(e − 1 − 1); averaged over the two elements
    assert L.kl_gaussian(mu, logvar).item() == pytest.approx((0.5 + 0.5 * (math.e - 2)) / 2)
    assert L.kl_gaussian(torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.5 * 4 / 2)  # unit variance
    z = L.reparameterise(torch.tensor([1.0]), torch.log(torch.tensor([4.0])), noise=torch.tensor([0.5]))
    assert z.item() == pytest.approx(2.0)
    assert L.reparameterise(torch.tensor([1.0]), noise=torch.tensor([0.5])).item() == pytest.approx(1.5)
    torch.manual_seed(0)
    draws = L.reparameterise(torch.full((20000,), 3.0), torch.full((20000,), math.log(0.25)))
    assert draws.mean().item() == pytest.approx(3.0, abs=0.02) and draws.std().item() == pytest.approx(0.5, abs=0.02)
    assert L.masked_mean(torch.tensor([1.0, 5.0, 9.0]), torch.tensor([True, False, True])).item() == 5.0
    assert L.masked_mean(torch.tensor([1.0]), torch.tensor([False])).item() == 0.0


def test_shared_layers_are_the_same_parameters():
    net = LSPSNet(32, 4)
    ids = lambda params: {id(p) for p in params}
    assert net.enc_front["s"] is not net.enc_front["r"] and net.gen_back["s"] is not net.gen_back["r"]
    shared_enc, shared_gen = ids(net.enc_shared.parameters()), ids(net.gen_shared.parameters())
    shared_disc = ids(net.disc_shared.parameters()) | ids(net.disc_head.parameters())
    assert shared_disc <= ids(net.discriminator_parameters())
    assert ids(net.disc_shared.parameters()) <= ids(net.posterior_parameters())  # P shares the trunk with D_s, D_r
    # a loss through the synthetic branch only reaches the shared layers and the synthetic private ones
    x = torch.randn(2, 1, 32, 32)
    (net.generate(net.encode(x, "s"), "s").sum() + net.discriminate(x, "s")[0].sum()).backward()
    grads = {id(p) for p in net.parameters() if p.grad is not None}
    assert shared_enc <= grads and shared_gen <= grads and shared_disc <= grads
    assert not grads & ids(net.enc_front["r"].parameters()) and not grads & ids(net.gen_back["r"].parameters())
    assert not grads & ids(net.disc_front["r"].parameters())
    net2 = LSPSNet(32, 4)
    assert sum(p.numel() for p in net2.parameters()) == sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsps")
    return tiny_shards(root / "synth", 8, seed=0), tiny_shards(root / "real", 8, seed=1)


def _phase(cls, cfg):
    net = build_from_info(cls.model_info(cfg))
    optimizer = torch.optim.Adam(cls.trainable_parameters(cfg, net), lr=1e-3)
    return cls(cfg, net, optimizer, DistContext(0, 1, 0, torch.device("cpu")), torch.contiguous_format,
               {"device_type": "cpu", "enabled": False, "dtype": torch.bfloat16})


@pytest.mark.parametrize("cls,phase", [(DepthPhase, "lsps_depth"), (PosteriorPhase, "lsps_posterior")])
def test_no_unlabelled_pose_reaches_a_loss(cls, phase, domains, tmp_path):
    synth, real = domains
    cfg = tiny_config(phase, tmp_path / "run", [synth], [f"data.adapt=[{real}]", "model.init=unused.pt",
                                                       "model.width=4"])
    p = _phase(cls, cfg)
    torch.manual_seed(0)
    batch = {"depth_input": torch.rand(4, 1, 32, 32) * 2 - 1, "target": torch.randn(4, 21, 3) * 0.3}
    labelled = torch.tensor([True, False, True, False])
    def adapt(unlabelled_value):
        target = torch.randn(4, 21, 3, generator=torch.Generator().manual_seed(1)) * 0.3
        target[~labelled] = unlabelled_value
        return {"depth_input": torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1,
                "target": target.requires_grad_(), "labelled": labelled}
    losses = []
    for value in (0.0, 7.0):  # whatever an unlabelled row holds, the loss and its gradient ignore it
        real_batch = adapt(value)
        p.noise_generator.manual_seed(5)
        loss, scalars = p.loss({**batch, "adapt": real_batch})
        losses.append(loss.item())
        assert ("loss/map_r" in scalars) or ("loss/pos_r" in scalars)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert set(p.state_dict()["generators"]) == {"noise"}  # the ε generator is checkpointed
    # with no labelled row no real pose term is computed at all
    none = dict(adapt(0.0), labelled=torch.zeros(4, dtype=torch.bool))
    _, scalars = p.loss({**batch, "adapt": none})
    assert "loss/map_r" not in scalars and "loss/pos_r" not in scalars


def _run(phase, out, synth, overrides=()):
    return tiny_config(phase, out, [synth], ["model.width=4", "optim.max_steps=6", "checkpoint_every=2",
                                             *overrides])


class Kill(Exception):
    pass


def test_three_stages_train_and_resume_exactly(domains, tmp_path, monkeypatch):
    synth, real = domains
    pose = trainer.train(_run("lsps_pose", tmp_path / "pose", synth)).checkpoint
    depth_args = [f"model.init={pose}", f"data.adapt=[{real}]", "data.adapt_label_fraction=0.5"]
    reference = trainer.train(_run("lsps_depth", tmp_path / "ref", synth, depth_args))
    original, calls = DepthPhase.update, collections.Counter()

    def update_then_die(self, batch, loss):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Kill()
        return original(self, batch, loss)

    monkeypatch.setattr(DepthPhase, "update", update_then_die)
    with pytest.raises(Kill):
        trainer.train(_run("lsps_depth", tmp_path / "resumed", synth, depth_args))
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["step"] == 2
    monkeypatch.setattr(DepthPhase, "update", original)
    resumed = trainer.train(_run("lsps_depth", tmp_path / "resumed", synth, depth_args))
    for name, value in weights(reference.checkpoint).items():
        torch.testing.assert_close(weights(resumed.checkpoint)[name], value, rtol=1e-5, atol=1e-6, msg=name)
    extra = load_checkpoint(resumed.checkpoint)["extra"]
    assert set(extra["optimizers"]) == {"disc"}
    # the pose VAE is frozen in stage 2; stage 3 from stage 2 gives a real-branch predictor
    for name, value in weights(pose).items():
        if name.startswith("pose."):
            torch.testing.assert_close(weights(resumed.checkpoint)[name], value)
    post = trainer.train(_run("lsps_posterior", tmp_path / "post", synth,
                              [f"model.init={resumed.checkpoint}", f"data.adapt=[{real}]", f"data.val=[{real}]"]))
    assert math.isfinite(post.metrics["epe_mean_mm"])
    assert load_checkpoint(post.checkpoint)["model_info"]["branch"] == "real"


def test_configs_load_and_presets_resolve():
    for stage in ("pose", "depth", "posterior", "regressor"):
        cfg = load_config(CONFIGS / f"lsps_{stage}.yaml")
        assert cfg.phase == f"lsps_{stage}" and cfg.data.image_size == 128 and cfg.optim.lr == 1e-4
    paper = lsps_config.resolved(lsps_config.LSPSConfig())
    assert (paper["lambda0"], paper["lambda1"], paper["lambda6"], paper["lambda8"], paper["lambda8_depth"]) == \
        (0.1, 100.0, 1e4, 1.0, 1e-4)
    code = lsps_config.resolved(lsps_config.LSPSConfig(preset="code", lambda7=3.0))
    assert (code["lambda5"], code["lambda6"], code["lambda7"], code["pose_hidden"], code["betas"]) == \
        (1000.0, 1000.0, 3.0, 50, (0.5, 0.999))
    with pytest.raises(ConfigError, match="data.adapt"):
        load_config(CONFIGS / "lsps_depth.yaml", ["data.adapt=[]"])
    with pytest.raises(ConfigError, match="power of two"):
        load_config(CONFIGS / "lsps_pose.yaml", ["data.image_size=48"])
    with pytest.raises(ConfigError, match="lsps.preset"):
        load_config(CONFIGS / "lsps_pose.yaml", ["lsps.preset=nature"])


def test_quick_synth_lsps_runs(tmp_path, monkeypatch):
    from tools.experiment import main

    monkeypatch.setattr("training.evaluation.plot_pck", lambda curves, path, title="": path)
    monkeypatch.setattr("training.evaluation.plot_predictions", lambda predictions, path, count=8: path)
    assert main(["synth-lsps", "--quick", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    results = json.loads((tmp_path / "q" / "results.json").read_text())
    names = [a["name"] for a in results["arms"]]
    assert {"synthetic_only", "lsps_m0", "lsps_m10", "real_supervised"} <= set(names)
    assert all(len(a["epe_mean_mm"]) == 2 and all(math.isfinite(v) for v in a["epe_mean_mm"])
               for a in results["arms"])
    manifest = json.loads((tmp_path / "q" / "data" / "real_test" / "manifest.json").read_text())
    assert manifest["config"]["depth_sensor"] == "strong"


def test_synth_methods_arms_carry_the_name():
    from training.experiments.lsps import synth_methods_arms

    arms = synth_methods_arms("source_train", "target_train", "target_test", quick=True)
    assert all("lsps" in a.name for a in arms) and arms[-1].name == "lsps_m0"


def test_real_data_protocol_names_the_missing_dataset(tmp_path, capsys):
    from tools.experiment import main

    assert main(["lsps", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err.strip()
    assert str(tmp_path / "data" / "stb_256_depth" / "train") in message and "tools/convert_dataset.py stb" in message
