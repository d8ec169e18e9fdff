"""Transforms keep image, K and joints consistent; normalisations match hand-computed values."""
import math

import numpy as np
import pytest
import torch

from datasets.geometry import project
from datasets.shards import to_sample
from datasets.transforms import (DEPTH_BACKGROUND, DEPTH_CUBE_HALF_SIZE, RGB_MEAN, RGB_STD, Augment, Compose,
                                 HandCrop, NormalizeInputs, NormalizeTarget, denormalize_target,
                                 evaluation_transform, input_normalization_config, training_transform)
from tests.shard_fixtures import synthetic_sample


def make_sample(seed=0, size=48, index=0):
    sample = to_sample(synthetic_sample(np.random.default_rng(seed), size))
    sample["index"] = index
    return sample


def projection_error(sample):
    return np.abs(project(sample["joints3d"].numpy(), sample["K"].numpy()) - sample["joints2d"].numpy()).max()


def pixel(image, uv):
    u, v = np.round(uv).astype(int)
    return image[..., v, u]


@pytest.mark.parametrize("seed", range(4))
def test_crop_keeps_projection_and_centres_the_hand(seed):
    sample = make_sample(seed)
    out = HandCrop(size=64, margin=0.25)(sample)
    assert out["rgb"].shape == (3, 64, 64) and out["depth"].shape == (1, 64, 64) and out["mask"].shape == (1, 64, 64)
    assert projection_error(out) < 1e-3
    assert torch.equal(out["joints3d"], sample["joints3d"])
    uv = out["joints2d"].numpy()
    low, high = uv.min(0), uv.max(0)
    np.testing.assert_allclose((low + high) / 2, [31.5, 31.5], atol=1e-3)  # centre of a 64-pixel image
    assert (high - low).max() == pytest.approx(64 / 1.5, rel=1e-4)  # extent / side = 1 / (1 + 2·margin)
    assert out["visible"].all()


@pytest.mark.parametrize("seed", range(4))
def test_crop_moves_pixels_with_the_joints(seed):
    sample = make_sample(seed, size=64)
    out = HandCrop(size=96, margin=0.3, jitter=0.1, seed=seed)(sample)
    assert projection_error(out) < 1e-3
    for j in range(21):  # every joint lies on the hand in the crop, at the joint's depth (mm quantised)
        assert pixel(out["mask"][0], out["joints2d"][j].numpy()) == 1
    source_depths = set(np.unique(sample["depth"].numpy()).tolist())
    assert set(np.unique(out["depth"].numpy()).tolist()) <= source_depths  # nearest neighbour: no mixed depths
    assert set(np.unique(out["mask"].numpy()).tolist()) <= {0.0, 1.0}


def test_crop_from_mask_marks_joints_outside_as_invisible():
    sample = make_sample(1, size=64)
    uv = sample["joints2d"].numpy()
    keep = np.zeros((64, 64), np.float32)
    wrist = np.round(uv[0]).astype(int)
    keep[wrist[1] - 2 : wrist[1] + 3, wrist[0] - 2 : wrist[0] + 3] = 1  # a mask around the wrist only
    sample["mask"] = torch.from_numpy(keep)[None]
    out = HandCrop(size=32, margin=0.0, source="mask")(sample)
    inside = ((out["joints2d"] >= -0.5) & (out["joints2d"] <= 31.5)).all(dim=1)
    assert out["visible"][0] and not inside.all()
    assert torch.equal(out["visible"], inside)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("about", ["centre", "principal_point"])
def test_augment_keeps_projection_and_depth_consistent(seed, about):
    sample = HandCrop(size=64, margin=0.4)(make_sample(seed, size=64, index=seed))
    out = Augment(rotation_deg=45, scale=0.2, color_jitter=0.3, seed=seed, about=about)(sample)
    assert projection_error(out) < 2e-3
    assert float(out["rgb"].min()) >= 0 and float(out["rgb"].max()) <= 1
    bones_before = np.linalg.norm(np.diff(sample["joints3d"].numpy(), axis=0), axis=1)
    bones_after = np.linalg.norm(np.diff(out["joints3d"].numpy(), axis=0), axis=1)
    np.testing.assert_allclose(bones_after, bones_before, atol=1e-6)  # a rigid motion
    for j in np.flatnonzero(out["visible"].numpy()):  # the drawn hand moved with the joints
        assert pixel(out["mask"][0], out["joints2d"][j].numpy()) == 1
    assert out["visible"].sum() >= 15


@pytest.mark.parametrize("seed", range(3))
def test_augment_gives_depth_of_the_rotated_scene(seed):
    """A fronto-parallel wall at z0, rotated by R, is the plane R·e_z · X = z0 seen through the new K."""
    sample = HandCrop(size=48, margin=0.4)(make_sample(seed, size=48, index=seed))
    z0 = 0.6
    sample["depth"] = torch.full((1, 48, 48), z0)
    augment = Augment(rotation_deg=45, scale=0.2, color_jitter=0.0, seed=seed)
    out = augment(sample)
    J, J_rotated = sample["joints3d"].numpy().astype(np.float64), out["joints3d"].numpy().astype(np.float64)
    R = np.linalg.lstsq(J - J.mean(0), J_rotated - J_rotated.mean(0), rcond=None)[0].T  # J' = R·J
    assert abs(np.degrees(np.arccos((np.trace(R) - 1) / 2))) > 1.0
    v, u = np.mgrid[0:48, 0:48]
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(out["K"].numpy().astype(np.float64)).T
    expected = (z0 / (rays @ R[:, 2])).reshape(48, 48)
    depth = out["depth"][0].numpy()
    covered = depth > 0  # the rotated wall leaves the corners empty
    assert covered[12:36, 12:36].all()
    np.testing.assert_allclose(depth[covered], expected[covered], rtol=1e-4)


def test_rotation_about_principal_point_is_in_plane():
    sample = make_sample(3, size=64, index=7)
    K = sample["K"].numpy().astype(np.float64)
    K[1, 1] = K[0, 0]  # fx = fy: the image rotation is a plain 2D rotation about (cx, cy)
    sample["K"] = torch.from_numpy(K.astype(np.float32))
    sample["joints2d"] = torch.from_numpy(project(sample["joints3d"].numpy(), K))
    augment = Augment(rotation_deg=40, scale=0.0, color_jitter=0.0, seed=5, about="principal_point")
    out = augment(sample)
    angle = math.radians(np.random.default_rng([5, 0, 7, 1]).uniform(-40, 40))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = K[:2, 2]
    expected = (sample["joints2d"].numpy() - centre) @ rot.T + centre
    np.testing.assert_allclose(out["joints2d"].numpy(), expected, atol=1e-3)
    np.testing.assert_allclose(out["joints3d"][:, 2].numpy(), sample["joints3d"][:, 2].numpy(), atol=1e-6)
    np.testing.assert_allclose(out["K"].numpy(), K, atol=1e-4)


def test_random_transforms_are_reproducible_per_seed_epoch_and_index():
    transform = training_transform(size=32, seed=11)
    a = transform(make_sample(2, index=5))
    b = transform(make_sample(2, index=5))
    assert torch.equal(a["rgb_input"], b["rgb_input"]) and torch.equal(a["joints2d"], b["joints2d"])
    other_index = transform(make_sample(2, index=6))
    transform.set_epoch(1)
    other_epoch = transform(make_sample(2, index=5))
    assert not torch.equal(a["joints2d"], other_index["joints2d"])
    assert not torch.equal(a["joints2d"], other_epoch["joints2d"])
    with pytest.raises(KeyError, match="index"):
        HandCrop(jitter=0.1, seed=1)({k: v for k, v in make_sample(2).items() if k != "index"})


def test_normalize_target_round_trip():
    sample = make_sample(4)
    out = NormalizeTarget()(sample)
    target = out["target"]
    assert target.shape == (21, 3) and target.dtype == torch.float32
    assert torch.allclose(target[0], torch.zeros(3))
    assert float(torch.linalg.norm(target[10] - target[9])) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(target * out["scale"] + out["root"], sample["joints3d"], atol=1e-6, rtol=0)
    batched = denormalize_target(target[None].repeat(2, 1, 1), out["root"][None].repeat(2, 1),
                                 out["scale"][None].repeat(2))
    torch.testing.assert_close(batched[1], sample["joints3d"], atol=1e-6, rtol=0)


def test_normalize_inputs_on_hand_computed_pixels():
    sample = make_sample(5, size=8)
    root_z = float(sample["joints3d"][0, 2])
    depth = torch.zeros(1, 8, 8)
    depth[0, 0, 1] = root_z
    depth[0, 0, 2] = root_z + 0.075
    depth[0, 0, 3] = root_z - 0.03
    depth[0, 0, 4] = root_z + 0.5
    depth[0, 0, 5] = root_z - 0.25
    sample["depth"] = depth
    rgb = torch.zeros(3, 8, 8)
    rgb[:, 1, 1] = torch.tensor([1.0, 0.5, 0.0])
    sample["rgb"] = rgb
    out = NormalizeInputs()(sample)
    assert DEPTH_CUBE_HALF_SIZE == 0.15 and DEPTH_BACKGROUND == 1.0
    np.testing.assert_allclose(out["depth_input"][0, 0, :6].numpy(), [1.0, 0.0, 0.5, -0.2, 1.0, -1.0], atol=1e-5)
    assert float(out["depth_input"][0, 5, 5]) == 1.0  # no data → background
    expected = [(1.0 - RGB_MEAN[0]) / RGB_STD[0], (0.5 - RGB_MEAN[1]) / RGB_STD[1], (0.0 - RGB_MEAN[2]) / RGB_STD[2]]
    np.testing.assert_allclose(out["rgb_input"][:, 1, 1].numpy(), expected, atol=1e-5)
    no_depth = NormalizeInputs()({k: v for k, v in sample.items() if k != "depth"})
    assert "depth_input" not in no_depth
    config = input_normalization_config()
    assert config["rgb_mean"] == list(RGB_MEAN) and config["depth_cube_half_size_m"] == DEPTH_CUBE_HALF_SIZE


def test_standard_chains_produce_the_training_inputs():
    sample = make_sample(6, size=48, index=3)
    for transform in (training_transform(size=32, seed=0), evaluation_transform(size=32)):
        out = transform(dict(sample))
        assert out["rgb_input"].shape == (3, 32, 32) and out["depth_input"].shape == (1, 32, 32)
        assert out["target"].shape == (21, 3) and out["rgb_input"].dtype == torch.float32
        assert projection_error(out) < 2e-3
    assert torch.equal(evaluation_transform(32)(dict(sample))["rgb"], evaluation_transform(32)(dict(sample))["rgb"])
    assert isinstance(training_transform(augment=False), Compose)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="source"):
        HandCrop(source="box")
    with pytest.raises(ValueError, match="about"):
        Augment(about="corner")
    with pytest.raises(KeyError, match="mask"):
        HandCrop(source="mask")({k: v for k, v in make_sample(0).items() if k != "mask"})


@pytest.mark.parametrize("seed", range(3))
def test_composed_warps_equal_the_transforms_applied_one_by_one(seed):
    """Compose resamples once; geometry equals the step-by-step result and the images agree closely."""
    sample = make_sample(seed, size=64, index=seed)
    crop, augment = HandCrop(size=48, margin=0.3, jitter=0.1, seed=seed), Augment(seed=seed, color_jitter=0.0)
    fused = Compose([crop, augment])(sample)
    stepwise = augment(crop(sample))
    for key in ("K", "joints2d", "joints3d"):
        torch.testing.assert_close(fused[key], stepwise[key], atol=1e-4, rtol=1e-5)
    assert torch.equal(fused["visible"], stepwise["visible"])
    a, b = fused["mask"] > 0, stepwise["mask"] > 0  # nearest neighbour once vs twice: same silhouette but edges
    assert (a & b).sum() / (a | b).sum() > 0.8
    inside = stepwise["depth"] > 0
    assert float((fused["depth"] - stepwise["depth"])[inside & (fused["depth"] > 0)].abs().median()) < 1e-3
    assert projection_error(fused) < 2e-3


def test_inverse3_and_rodrigues():
    from datasets.warp import inverse3, rotation_about_axis
    for seed in range(5):
        M = np.random.default_rng(seed).normal(size=(3, 3))
        np.testing.assert_allclose(inverse3(M) @ M, np.eye(3), atol=1e-10)
    R = rotation_about_axis(np.array([0.0, 0.0, 2.0]), math.pi / 2)  # x → y about +z
    np.testing.assert_allclose(R @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="singular"):
        inverse3(np.ones((3, 3)))


def test_mask_crop_after_a_warp_uses_the_warped_mask():
    """A crop that reads the mask sees the images after the earlier warps (Compose applies them first)."""
    sample = make_sample(2, size=64, index=1)
    augment, crop = Augment(rotation_deg=40, seed=4, color_jitter=0.0), HandCrop(size=32, margin=0.1, source="mask")
    fused = Compose([augment, crop])(sample)
    stepwise = crop(augment(sample))
    for key in ("K", "joints2d", "joints3d", "visible", "mask"):
        assert torch.equal(fused[key], stepwise[key]), key
