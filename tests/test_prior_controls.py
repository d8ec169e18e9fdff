"""Shuffled and magnitude-matched controls of a learned prior, and its per-layer statistics."""
import pytest
import torch

from models import build_model
from training.prior import prior_info, read_prior, save_prior
from training.prior_controls import matched_prior, phi_statistics, prior_file_statistics, shuffled_prior


@pytest.fixture
def learned(tmp_path):
    net = build_model("resnet18", in_channels=3, width=4)
    g = torch.Generator().manual_seed(0)
    phi = {n: torch.randn(p.shape, generator=g) * (i + 1) for i, (n, p) in enumerate(net.named_parameters())}
    path = tmp_path / "prior.pt"
    save_prior(path, phi, net.arch, form="l1", init_seed=7)
    return path, phi


def test_shuffled_prior_permutes_within_each_tensor(learned, tmp_path):
    path, phi = learned
    shuffled_prior(path, tmp_path / "shuffled.pt", seed=1)
    out, _ = read_prior(tmp_path / "shuffled.pt")
    moved = 0
    for name, value in phi.items():
        torch.testing.assert_close(out[name].flatten().sort().values, value.flatten().sort().values)
        moved += int((out[name] != value).sum())
    assert moved > 0.9 * sum(v.numel() for v in phi.values())
    assert prior_info(tmp_path / "shuffled.pt") == prior_info(path)  # form, arch, init seed kept
    shuffled_prior(path, tmp_path / "again.pt", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(read_prior(tmp_path / "again.pt")[0].values(), out.values()))


def test_matched_prior_is_each_tensors_mean(learned, tmp_path):
    path, phi = learned
    matched_prior(path, tmp_path / "matched.pt")
    out, _ = read_prior(tmp_path / "matched.pt")
    for name, value in phi.items():
        torch.testing.assert_close(out[name], torch.full_like(value, value.mean().item()))
    assert prior_info(tmp_path / "matched.pt")["init_seed"] == 7


def test_phi_statistics_by_layer_type():
    phi = {"conv1.weight": torch.tensor([-1.0, 1.0, 3.0]).reshape(1, 3, 1, 1), "bn1.weight": torch.tensor([2.0]),
           "bn1.bias": torch.tensor([-4.0]), "fc.weight": torch.zeros(2, 2), "fc.bias": torch.tensor([1.0, -1.0])}
    stats = phi_statistics(phi)
    assert stats["conv"] == pytest.approx({"count": 3, "mean": 1.0, "std": (8 / 3) ** 0.5, "min": -1.0, "max": 3.0,
                                           "fraction_negative": 1 / 3, "mean_abs": 5 / 3, "sum": 3.0})
    assert stats["bn_weight"]["mean"] == 2.0 and stats["bn_bias"]["fraction_negative"] == 1.0
    assert stats["fc_weight"]["count"] == 4 and stats["fc_bias"]["sum"] == 0.0
    assert stats["all"]["count"] == 11 and stats["all"]["sum"] == pytest.approx(3 + 2 - 4 + 0 + 0)


def test_statistics_of_a_file(learned):
    path, phi = learned
    stats = prior_file_statistics(path)
    assert stats["all"]["count"] == sum(v.numel() for v in phi.values())
    assert set(stats) == {"all", "conv", "bn_weight", "bn_bias", "fc_weight", "fc_bias"}



def test_scaled_prior_multiplies_phi_and_keeps_its_record(learned, tmp_path):
    from training.prior_controls import scaled_prior

    path, phi = learned
    scaled_prior(path, tmp_path / "scaled.pt", 1000.0)
    out, _ = read_prior(tmp_path / "scaled.pt")
    for name, value in phi.items():
        torch.testing.assert_close(out[name], 1000.0 * value)
    assert prior_info(tmp_path / "scaled.pt") == prior_info(path)


def test_positive_prior_keeps_only_the_decay(learned, tmp_path):
    from training.prior_controls import positive_prior

    path, phi = learned
    positive_prior(path, tmp_path / "positive.pt")
    out, _ = read_prior(tmp_path / "positive.pt")
    for name, value in phi.items():
        torch.testing.assert_close(out[name], value.clamp(min=0.0))
