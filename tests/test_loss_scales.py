"""Loss scales and the application of the prior: L_REG reduction, resolution-independent L_ATT,
the L_ACT weight, decoupled decay, α following the schedule and the β rule (issue: experiments)."""
from __future__ import annotations

import math

import pytest
import torch

from models import build_model
from training import regularizers
from training.config import config_from_dict
from training.losses import LossTerms, attention_loss, distillation_loss, regression_loss
from training.phases import meta_beta


def test_sum_reduction_is_the_per_sample_squared_norm():
    pred = torch.zeros(2, 63)
    target = torch.zeros(2, 63)
    target[0, :3] = torch.tensor([1.0, 2.0, 2.0])  # ||.||^2 = 9
    target[1, 5] = 4.0  # 16
    assert regression_loss(pred, target, "sum").item() == pytest.approx((9 + 16) / 2)
    assert regression_loss(pred, target, "sum").item() == pytest.approx(63 * regression_loss(pred, target).item())
    with pytest.raises(ValueError, match="reduction"):
        regression_loss(pred, target, "max")


def _maps(size: int, seed: int = 0) -> tuple[dict, dict]:
    """layer1..layer4 maps of a ResNet at a crop of ``size`` pixels (strides 4, 8, 16, 32)."""
    g = torch.Generator().manual_seed(seed)
    make = lambda: {f"layer{k}": torch.rand(2, 3, size // 2 ** (k + 1), size // 2 ** (k + 1), generator=g)
                    for k in range(1, 5)}
    return make(), make()


def test_resolution_normalisation_equals_the_literal_one_at_256_px():
    s, t = _maps(256)
    torch.testing.assert_close(attention_loss(s, t, normalization="resolution"), attention_loss(s, t))


def test_resolution_normalisation_weighs_a_map_difference_as_at_256_px():
    # one sample whose layer4 attention maps are orthogonal one-hots: ||Ā_s − Ā_t||² = 2,
    # whatever the map size. At 256 px layer4 has 8x8 positions, so the term is 2 / 64
    # at every crop size; the literal term is 2 / (H·W) and grows 16x from 256 to 64 px.
    for size in (64, 128, 256):
        side = size // 32
        s, t = torch.zeros(1, 1, side, side), torch.zeros(1, 1, side, side)
        s[0, 0, 0, 0], t[0, 0, -1, -1] = 1.0, 1.0
        value = attention_loss({"layer4": s}, {"layer4": t}, ("layer4",), normalization="resolution")
        assert value.item() == pytest.approx(2 / 64)
        literal = attention_loss({"layer4": s}, {"layer4": t}, ("layer4",))
        assert literal.item() == pytest.approx(2 / side ** 2)


def test_activation_weight_and_attention_weight_select_the_terms():
    s, t = _maps(64, seed=1)
    att = attention_loss(s, t, normalization="resolution")
    act = torch.nn.functional.mse_loss(s["layer4"], t["layer4"])
    terms = LossTerms(activation_weight=0.0, attention_weight=1e3, attention_normalization="resolution")
    torch.testing.assert_close(terms.distillation(s, t), 1e3 * att)
    torch.testing.assert_close(LossTerms(activation_weight=2.0, attention_weight=0.0).distillation(s, t), 2 * act)
    torch.testing.assert_close(distillation_loss(s, t, 10.0, activation_weight=0.5, attention_normalization="resolution"),
                               0.5 * act + 10.0 * att)


def test_config_builds_the_terms_and_rejects_unknown_choices():
    cfg = config_from_dict({"data": {"train": ["x"]}}, ["loss.reg_reduction=sum", "distill.weight_act=0",
                                                          "distill.att_normalization=literal"])
    assert LossTerms.from_config(cfg) == LossTerms("sum", 0.0, 1e3, "literal")
    assert LossTerms.from_config(config_from_dict({"data": {"train": ["x"]}})).attention_normalization == "resolution"
    for bad in ("loss.reg_reduction=max", "distill.att_normalization=area", "regularizer.apply=later",
                "distill.weight_act=-1", "prior.beta_rule=auto"):
        with pytest.raises(ValueError, match=bad.split("=")[0]):
            config_from_dict({"data": {"train": ["x"]}}, [bad])


def test_decoupled_l2_decay_is_algorithm_3s_inner_step():
    theta = {"w": torch.tensor([1.0, -2.0, 0.5])}
    phi = {"w": torch.tensor([10.0, -5.0, 0.0])}
    regularizers.decoupled_decay_(theta, phi, "l2", lr=0.01)
    torch.testing.assert_close(theta["w"], torch.tensor([1.0 * (1 - 0.2), -2.0 * (1 + 0.1), 0.5]))
    # the decay equals an SGD step on Σφθ² of size lr
    theta2 = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    regularizers.weighted_l2_prior({"w": theta2}, phi).backward()
    torch.testing.assert_close(theta["w"], (theta2 - 0.01 * theta2.grad).detach())


def test_decoupled_l1_decay_is_the_soft_threshold():
    theta = {"w": torch.tensor([1.0, -0.001, 0.002, -1.0])}
    regularizers.decoupled_decay_(theta, {"w": 0.5}, "l1", lr=0.01)  # step 0.005
    torch.testing.assert_close(theta["w"], torch.tensor([0.995, 0.0, 0.0, -0.995]))
    theta = {"w": torch.tensor([1.0, -1.0])}
    regularizers.decoupled_decay_(theta, {"w": torch.tensor([-1.0, -1.0])}, "l1", lr=0.1)  # negative: grows
    torch.testing.assert_close(theta["w"], torch.tensor([1.1, -1.1]))


def test_weighted_penalty_with_a_float_is_the_baseline():
    net = build_model("resnet18", in_channels=3, width=4)
    params = dict(net.named_parameters())
    sigma = {n: 1e-3 for n in params}
    torch.testing.assert_close(regularizers.weighted_penalty(params, sigma, "l2"), regularizers.l2_penalty(params, 1e-3))
    torch.testing.assert_close(regularizers.weighted_penalty(params, sigma, "l1"), regularizers.l1_penalty(params, 1e-3))


def test_beta_rule_matches_the_papers_alpha_beta_n():
    base = {"phase": "distill", "data": {"train": ["x"]}, "distill": {"teacher": "t.pt"}}
    fixed = config_from_dict(base, ["prior.learn=true"])
    assert meta_beta(fixed, 1000) == fixed.prior.beta
    rule = config_from_dict(base, ["prior.learn=true", "prior.beta_rule=paper_product"])
    beta = meta_beta(rule, 1000)
    assert 2.5e-4 * beta * 1000 == pytest.approx(0.0713)
    # the paper's own schedule gives back the paper's β: 100 epochs of 41,258 + 50,000 samples, batch 32
    steps = 100 * math.ceil((41258 + 50000) / 32)
    assert meta_beta(rule, steps) == pytest.approx(1e-3, rel=0.03)
    cosine = config_from_dict(base, ["prior.learn=true", "prior.beta_rule=paper_product", "optim.schedule=cosine"])
    assert meta_beta(cosine, 1000) == pytest.approx(2 * beta)  # Σ α_t is halved by a cosine schedule


def test_a_decoupled_target_step_is_the_adam_step_then_the_decay(tmp_path):
    from tests.training_fixtures import tiny_config, tiny_shards, weights
    from training.trainer import train

    data = tiny_shards(tmp_path / "target", samples=4, seed=5)
    runs = {}
    for name, extra in [("none", []), ("decoupled", ["regularizer.kind=l2", "regularizer.sigma=20.0",
                                                     "regularizer.apply=decoupled"])]:
        runs[name] = weights(train(tiny_config("target", tmp_path / name, [data], ["optim.epochs=1", *extra])).checkpoint)
    lr, sigma = 1e-3, 20.0  # tiny_config's optim.lr
    for key, value in runs["none"].items():
        expected = value if key.endswith(("running_mean", "running_var", "num_batches_tracked")) \
            else value * (1 - 2 * lr * sigma)
        torch.testing.assert_close(runs["decoupled"][key], expected, rtol=1e-5, atol=1e-7, msg=key)
