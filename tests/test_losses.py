"""Distillation losses (paper Eqs. 1-4, 8) against values computed by hand on small tensors."""
import math

import pytest
import torch

from models import build_model
from training.losses import (activation_loss, attention_loss, attention_map, distillation_loss,
                             regression_loss, student_objective, teacher_features)


def test_regression_loss_is_the_mean_squared_error_of_the_63_vector():
    pred = torch.zeros(2, 63)
    target = torch.zeros(2, 21, 3)
    target[0, 0, 0] = 3.0   # one error of 3 and one of 4 among 126 numbers
    target[1, 20, 2] = -4.0
    assert regression_loss(pred, target).item() == pytest.approx((9 + 16) / 126)
    with pytest.raises(ValueError, match="same number of values"):
        regression_loss(pred, torch.zeros(2, 20, 3))


def test_activation_loss_hand_value_and_shape_check():
    s = torch.zeros(1, 2, 2, 2)
    t = torch.zeros(1, 2, 2, 2)
    s[0, 1, 0, 1] = 2.0
    t[0, 0, 1, 1] = -1.0
    assert activation_loss(s, t).item() == pytest.approx((4 + 1) / 8)
    with pytest.raises(ValueError, match="L_ACT needs identical shapes"):
        activation_loss(s, torch.zeros(1, 3, 2, 2))


def test_attention_map_sums_squared_channels_and_normalises():
    feat = torch.zeros(1, 2, 1, 2)
    feat[0, 0, 0] = torch.tensor([math.sqrt(3.0), 1.0])
    feat[0, 1, 0] = torch.tensor([0.0, math.sqrt(3.0)])
    # A = [3, 1 + 3] = [3, 4], |A| = 5
    torch.testing.assert_close(attention_map(feat), torch.tensor([[0.6, 0.8]]))
    # invariant to the scale of the features and to the order of channels
    torch.testing.assert_close(attention_map(7.0 * feat.flip(1)), torch.tensor([[0.6, 0.8]]))
    assert attention_map(torch.zeros(1, 3, 2, 2)).abs().sum() == 0


def test_attention_loss_averages_over_batch_and_positions_and_sums_layers():
    one_hot_first = torch.zeros(2, 1, 1, 2)
    one_hot_first[..., 0] = 1.0            # A = [1, 0]
    one_hot_second = torch.zeros(2, 5, 1, 2)
    one_hot_second[..., 1] = 2.0           # A = [0, 20] -> [0, 1]; channels may differ
    student = {"layer1": one_hot_first, "layer2": one_hot_first}
    teacher = {"layer1": one_hot_second, "layer2": one_hot_first}
    # layer1: squared differences [1, 1] per sample -> mean 1; layer2: 0
    assert attention_loss(student, teacher, ("layer1", "layer2")).item() == pytest.approx(1.0)
    assert attention_loss(student, teacher, ("layer1",)).item() == pytest.approx(1.0)
    assert attention_loss(student, teacher, ("layer2",)).item() == 0.0
    with pytest.raises(ValueError, match="same batch size and spatial size"):
        attention_loss({"layer1": torch.ones(2, 1, 2, 2)}, {"layer1": torch.ones(2, 1, 1, 4)}, ("layer1",))


def test_distillation_loss_and_student_objective():
    torch.manual_seed(0)
    shapes = {"layer1": (2, 3, 4, 4), "layer2": (2, 3, 2, 2), "layer3": (2, 3, 2, 1), "layer4": (2, 4, 1, 2)}
    s = {k: torch.randn(v) for k, v in shapes.items()}
    t = {k: torch.randn(v) for k, v in shapes.items()}
    att = sum(((attention_map(s[k]) - attention_map(t[k])) ** 2).mean() for k in shapes)
    act = ((s["layer4"] - t["layer4"]) ** 2).mean()
    expected = act + 1000.0 * att
    torch.testing.assert_close(distillation_loss(s, t), expected)
    torch.testing.assert_close(distillation_loss(s, t, attention_weight=0.0), act)
    pred, target = torch.randn(2, 63), torch.randn(2, 21, 3)
    torch.testing.assert_close(student_objective(pred, target, s, t),
                               ((pred - target.reshape(2, 63)) ** 2).mean() + expected)


def test_distillation_loss_is_zero_for_identical_networks_and_has_gradients():
    torch.manual_seed(0)
    net = build_model("resnet18", 3, width=4)
    x = torch.randn(2, 3, 64, 64)
    feats = net(x)["features"]
    frozen = {k: v.detach() for k, v in feats.items()}
    assert distillation_loss(feats, frozen).item() == 0.0
    loss = distillation_loss(net(torch.randn(2, 3, 64, 64))["features"], frozen)
    loss.backward()
    assert net.conv1.weight.grad.abs().sum() > 0
    assert net.fc.weight.grad is None  # the head does not take part in L_DIST


def test_teacher_features_are_frozen():
    teacher = build_model("resnet18", 1, width=4).train()
    feats = teacher_features(teacher, torch.randn(2, 1, 64, 64))
    assert not teacher.training
    assert set(feats) == {"layer1", "layer2", "layer3", "layer4"}
    assert all(not f.requires_grad for f in feats.values())
