"""ResNet family: shapes, parameter counts of the standard architectures, checkpoint loading."""
import pytest
import torch

from models import CheckpointError, build_model, known_models


@pytest.mark.parametrize("name,expansion", [("resnet18", 1), ("resnet34", 1), ("resnet50", 4)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_and_stage_shapes(name, expansion, in_channels):
    width = 4
    model = build_model(name, in_channels, width=width)
    out = model(torch.randn(2, in_channels, 64, 64))
    assert out["pred"].shape == (2, 63)
    for stage, (channels, size) in enumerate([(1, 16), (2, 8), (4, 4), (8, 2)], start=1):
        assert out["features"][f"layer{stage}"].shape == (2, channels * width * expansion, size, size)


def test_parameter_counts_match_the_standard_resnets():
    # Backbones of the torchvision ImageNet models (11,689,512 / 21,797,672 / 25,557,032 parameters
    # including their 1000-way classifier) plus our 63-output head.
    backbone = {"resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032}
    for name, count in backbone.items():
        model = build_model(name, 3)
        head = model.num_features * 63 + 63
        assert sum(p.numel() for p in model.parameters()) == count + head


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError) as err:
        build_model("resnet101", 3)
    for name in known_models():
        assert name in str(err.value)


def test_wrong_input_channels_is_a_clear_error():
    model = build_model("resnet18", 1, width=4)
    with pytest.raises(ValueError, match=r"expects input \(B, 1, H, W\)"):
        model(torch.zeros(1, 3, 32, 32))


def test_head_of_features_equals_forward_and_channels_last_agrees():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, width=4).eval()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert torch.equal(model.forward_head(model.forward_features(x)), out["pred"])
    model_cl = model.to(memory_format=torch.channels_last)
    pred_cl = model_cl(x.to(memory_format=torch.channels_last))["pred"]
    torch.testing.assert_close(pred_cl, out["pred"], rtol=1e-4, atol=1e-5)


def test_arch_description():
    model = build_model("resnet50", 1, width=8, num_outputs=63)
    assert model.arch == {"name": "resnet50", "in_channels": 1, "width": 8, "num_outputs": 63}


def _imagenet_like_state(name, width):
    """A state dict in torchvision's key layout, with a 1000-way classifier."""
    donor = build_model(name, 3, width=width, num_outputs=1000)
    return {k: v.clone() for k, v in donor.state_dict().items()}


def test_torchvision_key_names():
    keys18 = build_model("resnet18", 3, width=4).state_dict().keys()
    keys50 = build_model("resnet50", 3, width=4).state_dict().keys()
    assert {"conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.num_batches_tracked", "layer4.1.bn2.bias", "fc.weight"} <= set(keys18)
    assert "layer1.0.downsample.0.weight" not in keys18  # same shape, identity shortcut
    assert {"layer1.0.downsample.0.weight", "layer3.5.conv3.weight", "layer4.2.bn3.weight"} <= set(keys50)


def test_load_imagenet_checkpoint_rgb_and_depth(tmp_path):
    state = _imagenet_like_state("resnet18", 8)
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    rgb = build_model("resnet18", 3, width=8)
    fc_before = rgb.fc.weight.detach().clone()
    rgb.load_imagenet_checkpoint(path)
    for key, value in rgb.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, state[key]), key
    assert torch.equal(rgb.fc.weight, fc_before)  # the regression head is kept

    depth = build_model("resnet18", 1, width=8)
    depth.load_imagenet_checkpoint(path)
    # conv1 of a 1-channel net: the sum of the RGB filters (same response to a grey image)
    torch.testing.assert_close(depth.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))


def test_load_imagenet_checkpoint_errors(tmp_path):
    model = build_model("resnet18", 3, width=8)
    state = _imagenet_like_state("resnet18", 8)
    del state["layer3.1.bn2.running_mean"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing.pth.*layer3\.1\.bn2\.running_mean"):
        model.load_imagenet_checkpoint(tmp_path / "missing.pth")

    torch.save(_imagenet_like_state("resnet18", 4), tmp_path / "narrow.pth")
    with pytest.raises(CheckpointError, match=r"narrow.pth: .* has shape"):
        model.load_imagenet_checkpoint(tmp_path / "narrow.pth")

    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="corrupt.pth: expected a torch state dict"):
        model.load_imagenet_checkpoint(tmp_path / "corrupt.pth")
