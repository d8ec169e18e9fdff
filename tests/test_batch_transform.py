"""The batched loader path (compact worker samples + BatchTransform) equals the per-sample chain."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.batch_transform import (BatchTransform, CompactSamples, DeviceBatches, collate_compact, compact_sample,
                                      split_compose)
from datasets.geometry import project
from datasets.shards import ShardDataset, to_sample
from datasets.transforms import Compose, HandCrop, NormalizeInputs, RGB_STD, evaluation_transform, training_transform
from tests.shard_fixtures import synthetic_sample, write_synthetic_shards

#: cv2 samples uint8 images at 1/32-pixel positions and rounds to uint8: a few grey levels at sharp edges
RGB_INPUT_TOLERANCE_WORKER = 8 / 255 / min(RGB_STD)


def per_sample(raws, transform):
    out = []
    for index, raw in enumerate(raws):
        sample = to_sample(raw)
        sample["index"] = index
        out.append(transform(sample))
    return out


def batched(raws, transform, warped, keep_rgb=True):
    geometric, target, cube = split_compose(transform)
    compact = [compact_sample(raw, index, geometric, warped) for index, raw in enumerate(raws)]
    return BatchTransform(target, cube, warped, keep_rgb)(collate_compact(compact))


def stacked(samples, key):
    return torch.stack([s[key] for s in samples])


def raw_samples(count, size, seed=0):
    return [synthetic_sample(np.random.default_rng([seed, i]), size) for i in range(count)]


@pytest.mark.parametrize("warped", [True, False], ids=["warp-in-worker", "warp-on-device"])
@pytest.mark.parametrize("make", [lambda: training_transform(size=40, seed=5), lambda: evaluation_transform(40)],
                         ids=["train", "eval"])
def test_batched_path_equals_the_per_sample_path(warped, make):
    raws = raw_samples(6, 56)
    transform = make()
    expected, got = per_sample(raws, transform), batched(raws, transform, warped)
    for key in ("joints3d", "joints2d", "K", "target", "root", "scale"):
        torch.testing.assert_close(got[key], stacked(expected, key), atol=1e-5, rtol=1e-6, msg=key)
    assert torch.equal(got["visible"], stacked(expected, "visible"))
    assert torch.equal(got["index"], torch.arange(6))
    depth_difference = (got["depth_input"] - stacked(expected, "depth_input")).abs()
    assert float((depth_difference < 1e-5).float().mean()) > 0.995  # nearest neighbour may round a rare tie apart
    rgb_difference = (got["rgb_input"] - stacked(expected, "rgb_input")).abs()
    if warped:  # OpenCV on uint8
        assert float(rgb_difference.max()) < RGB_INPUT_TOLERANCE_WORKER and float(rgb_difference.mean()) < 0.01
    else:  # grid_sample on floats, as the per-sample warp
        assert float(rgb_difference.max()) < 1e-4
    torch.testing.assert_close(got["rgb"], stacked(expected, "rgb"), atol=8 / 255 if warped else 1e-5, rtol=0)


@pytest.mark.parametrize("warped", [True, False])
def test_projection_invariant_after_the_batch_transform(warped):
    got = batched(raw_samples(8, 48, seed=3), training_transform(size=32, seed=2, rotation_deg=45), warped)
    error = np.abs(project(got["joints3d"].numpy(), got["K"].numpy()) - got["joints2d"].numpy()).max()
    assert error < 2e-3


def test_only_rgb_input_when_rgb_is_not_kept():
    raws, transform = raw_samples(4, 48, seed=1), training_transform(size=32, seed=1, color_jitter=0.3)
    kept, folded = batched(raws, transform, True), batched(raws, transform, True, keep_rgb=False)
    assert "rgb" not in folded
    torch.testing.assert_close(folded["rgb_input"], kept["rgb_input"], atol=1e-5, rtol=0)


def test_sources_of_different_sizes_are_padded_for_the_device_warp():
    raws = raw_samples(2, 48) + raw_samples(2, 64, seed=9)
    transform = training_transform(size=32, seed=4)
    expected, got = per_sample(raws, transform), batched(raws, transform, warped=False)
    assert float((got["rgb_input"] - stacked(expected, "rgb_input")).abs().max()) < 1e-4
    torch.testing.assert_close(got["joints2d"], stacked(expected, "joints2d"), atol=1e-5, rtol=0)


def test_unsupported_chains_are_refused_by_name():
    with pytest.raises(ValueError, match="HandCrop"):
        split_compose(Compose([NormalizeInputs(), HandCrop(32)]))
    with pytest.raises(ValueError, match="reads the warped images"):
        split_compose(Compose([HandCrop(32), HandCrop(16, source="mask")]))
    with pytest.raises(ValueError, match="function"):
        split_compose(Compose([HandCrop(32), lambda sample: sample]))


def test_loader_batches_do_not_depend_on_workers_and_follow_the_epoch(tmp_path):
    write_synthetic_shards(tmp_path / "shards", shard_sizes=[6, 6], size=32)
    dataset = CompactSamples(ShardDataset(tmp_path / "shards", transform=training_transform(size=24, seed=7)),
                             keep_rgb=False)

    def batches(workers):
        loader = DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=collate_compact)
        return list(DeviceBatches(loader, dataset.batch_transform))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        assert a["shard"] == b["shard"] and torch.equal(a["shard_sample"], b["shard_sample"])
        for key in ("rgb_input", "depth_input", "joints2d", "target", "K", "index"):
            assert torch.equal(a[key], b[key]), key
    assert serial[1]["shard"][2].endswith("shard-000001.h5") and int(serial[1]["shard_sample"][2]) == 0
    dataset.transform.set_epoch(1)
    assert not torch.equal(batches(0)[0]["joints2d"], serial[0]["joints2d"])
    preview = dataset.preview(0)
    assert set(preview) >= {"rgb_input", "depth_input", "target"} and preview["rgb_input"].shape == (1, 3, 24, 24)
