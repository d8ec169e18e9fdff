"""The contract every method relies on (training.phases.Phase + training.adapt + the trainer):
further networks and optimisers resume exactly, the second domain shows only the declared keys,
labelled fractions are exact and nested, and the registry finds every declared phase."""
import collections

import numpy as np
import pytest
import torch

from tests.training_fixtures import tiny_config, tiny_shards, weights
from training import trainer
from training.adapt import hide_labels
from training.checkpoint import load_checkpoint
from training.config import PHASES
from training.data import labelled_subset
from training.methods import phase_class
from training.phases import Phase

SEEN: list[dict] = []  # what the toy phase received of the second domain, per step


class ToyAdaptationPhase(Phase):
    """L_REG on data.train plus a small critic on data.adapt, with its own optimiser (two per step)."""

    uses_adapt = True
    adapt_keys = ("rgb_input", "index")
    adapt_label_keys = ("target",)

    def __init__(self, cfg, model, optimizer, ctx, memory_format, autocast, total_steps=0):
        super().__init__(cfg, model, optimizer, ctx, memory_format, autocast, total_steps)
        torch.manual_seed(11)
        self.networks["critic"] = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
        self.networks["critic"](torch.zeros(1, 3, cfg.data.image_size, cfg.data.image_size))
        self.optimizers["critic"] = torch.optim.Adam(self.networks["critic"].parameters(), lr=1e-2)

    def loss(self, batch):
        adapt = batch["adapt"]
        SEEN.append({"keys": set(adapt), "labelled": adapt["labelled"].clone(), "target": adapt["target"].clone(),
                     "index": adapt["index"].clone()})
        l_reg, scalars = super().loss(batch)
        self._critic_loss = self.networks["critic"](adapt["rgb_input"]).pow(2).mean()
        return l_reg, scalars

    def update(self, batch, loss):
        self.optimizers["critic"].zero_grad()
        self._critic_loss.backward()
        self.optimizers["critic"].step()
        return super().update(batch, loss)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    return {"source": tiny_shards(root / "source", samples=8, seed=1),
            "adapt": tiny_shards(root / "adapt", samples=12, seed=2)}


def _config(domains, out, fraction=0.25, overrides=()):
    return tiny_config("student", out, [domains["source"]],
                       [f"data.adapt=[{domains['adapt']}]", f"data.adapt_label_fraction={fraction}",
                        "optim.epochs=3", "checkpoint_every=3", "data.augment=true", *overrides])


@pytest.fixture
def toy_phase(monkeypatch):
    monkeypatch.setattr(trainer, "phase_class", lambda name: ToyAdaptationPhase)
    SEEN.clear()
    return ToyAdaptationPhase


class SimulatedKill(Exception):
    pass


def test_second_domain_shows_only_declared_keys_and_exactly_the_labelled_fraction(domains, tmp_path, toy_phase):
    trainer.train(_config(domains, tmp_path / "run", fraction=0.25))
    assert len(SEEN) == 6  # 8 source samples, batch 4, 3 epochs; the adaptation set (12) cycles alongside
    labelled_indices = set(labelled_subset(12, 0.25, 0).tolist())
    assert len(labelled_indices) == 3
    seen_indices = set()
    for step in SEEN:
        assert step["keys"] == {"rgb_input", "index", "target", "labelled"}  # no joints3d, root, scale, K, depth
        for row, index in enumerate(step["index"].tolist()):
            seen_indices.add(index)
            assert bool(step["labelled"][row]) == (index in labelled_indices)
            if index not in labelled_indices:
                assert torch.count_nonzero(step["target"][row]) == 0
            else:
                assert torch.count_nonzero(step["target"][row]) > 0
    assert seen_indices == set(range(12))  # 6 steps × 4 = 24 draws cycle the 12 adaptation samples twice


def test_no_label_reaches_the_phase_at_fraction_zero(domains, tmp_path, toy_phase):
    trainer.train(_config(domains, tmp_path / "run", fraction=0.0, overrides=["optim.epochs=1"]))
    assert SEEN and all(not step["labelled"].any() and torch.count_nonzero(step["target"]) == 0 for step in SEEN)


def test_further_networks_and_optimisers_resume_exactly(domains, tmp_path, toy_phase, monkeypatch):
    reference = trainer.train(_config(domains, tmp_path / "uninterrupted"))
    original, calls = ToyAdaptationPhase.update, collections.Counter()

    def update_then_die(self, batch, loss):
        calls["n"] += 1
        if calls["n"] == 5:
            raise SimulatedKill()
        return original(self, batch, loss)

    monkeypatch.setattr(ToyAdaptationPhase, "update", update_then_die)
    with pytest.raises(SimulatedKill):
        trainer.train(_config(domains, tmp_path / "resumed"))
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["step"] == 4
    monkeypatch.setattr(ToyAdaptationPhase, "update", original)
    resumed = trainer.train(_config(domains, tmp_path / "resumed"))
    for name, value in weights(reference.checkpoint).items():
        torch.testing.assert_close(weights(resumed.checkpoint)[name], value, rtol=1e-5, atol=1e-6, msg=name)
    expected, found = (load_checkpoint(r.checkpoint)["extra"] for r in (reference, resumed))
    assert set(found["networks"]) == {"critic"} and set(found["optimizers"]) == {"critic"}
    for name, value in expected["networks"]["critic"].items():
        torch.testing.assert_close(found["networks"]["critic"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert found["optimizers"]["critic"]["state"][0]["step"] == expected["optimizers"]["critic"]["state"][0]["step"]


def test_hide_labels_drops_undeclared_keys_and_zeroes_unlabelled_rows():
    batch = {"rgb_input": torch.ones(3, 1), "joints3d": torch.ones(3, 21, 3), "target": torch.ones(3, 21, 3)}
    out = hide_labels(batch, ("rgb_input",), ("target",), torch.tensor([True, False, True]))
    assert set(out) == {"rgb_input", "target", "labelled"}
    assert out["target"][1].abs().sum() == 0 and out["target"][[0, 2]].min() == 1
    with pytest.raises(ValueError, match="data.adapt: batches have no \\['depth_input'\\]"):
        hide_labels(batch, ("depth_input",), (), torch.tensor([True, False, True]))


def test_labelled_subsets_are_exact_and_nested():
    one, ten, all_ = (labelled_subset(1000, f, seed=4) for f in (0.01, 0.1, 1.0))
    assert (len(one), len(ten), len(all_)) == (10, 100, 1000)
    assert set(one) <= set(ten) <= set(all_)
    assert len(labelled_subset(1000, 0.0)) == 0 and len(labelled_subset(10, 0.01)) == 1
    assert not np.array_equal(labelled_subset(1000, 0.1, seed=4), labelled_subset(1000, 0.1, seed=5))


def test_train_fraction_trains_on_the_subset_only(domains, tmp_path, monkeypatch):
    drawn = []
    original = Phase.loss

    def recording_loss(self, batch):
        drawn.extend(batch["index"].tolist())
        return original(self, batch)

    monkeypatch.setattr(Phase, "loss", recording_loss)
    trainer.train(tiny_config("student", tmp_path / "run", [domains["adapt"]],
                              ["data.train_fraction=0.5", "data.subset_seed=2", "optim.epochs=2", "optim.batch_size=3"]))
    assert set(drawn) == set(labelled_subset(12, 0.5, 2).tolist()) and len(drawn) == 12


def test_every_declared_phase_has_a_class():
    for name in PHASES:
        assert issubclass(phase_class(name), Phase), name
    with pytest.raises(ValueError, match="unknown phase 'teachr'; known phases: teacher"):
        phase_class("teachr")
