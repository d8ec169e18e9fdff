"""The batched loader path (compact worker samples + BatchTransform) equals the per-sample chain."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.batch_transform import BatchTransform, DeviceBatches
from datasets.compact_samples import CompactSamples, collate_compact, compact_sample, split_compose
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


def _reference_path(transform: BatchTransform, batch: dict, monkeypatch) -> dict:
    """The torch operations of the batch transform, with the CPU one-pass kernels switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(BatchTransform, "_one_pass_on_cpu", lambda self, batch: False)
        return transform(batch)


@pytest.mark.parametrize("color_jitter", [0.0, 0.3], ids=["no-jitter", "jitter"])
@pytest.mark.parametrize("rotation_deg", [0.0, 40.0], ids=["upright", "rotated"])
def test_one_pass_cpu_kernels_equal_the_torch_operations(color_jitter, rotation_deg, monkeypatch):
    raws = raw_samples(5, 48, seed=11)
    transform = training_transform(size=40, seed=3, color_jitter=color_jitter, rotation_deg=rotation_deg)
    geometric, target, cube = split_compose(transform)
    batch = collate_compact([compact_sample(raw, i, geometric, True) for i, raw in enumerate(raws)])
    finishing = BatchTransform(target, cube, warped=True, keep_rgb=False)
    assert finishing._one_pass_on_cpu(batch)
    got, expected = finishing(batch), _reference_path(finishing, batch, monkeypatch)
    assert set(got) == set(expected)
    torch.testing.assert_close(got["rgb_input"], expected["rgb_input"], atol=2e-5, rtol=0)
    torch.testing.assert_close(got["depth_input"], expected["depth_input"], atol=2e-5, rtol=0)
    assert float((got["depth_input"] != -1).float().mean()) > 0.05  # the hand is in the crop, not only background
    for key in ("joints3d", "joints2d", "K", "target", "visible", "index"):
        assert torch.equal(got[key], expected[key]), key


def test_paired_remap_samples_as_warp_perspective():
    from datasets.warp import warp_stored_image, warp_stored_pair

    raw = raw_samples(1, 64, seed=4)[0]
    M = np.array([[1.2, 0.25, -9.0], [-0.2, 1.15, 4.0], [4e-4, -2e-4, 1.0]])
    rgb, depth = np.empty((50, 50, 3), np.uint8), np.empty((50, 50), np.uint16)
    warp_stored_pair(raw["rgb"], raw["depth"], M, rgb, depth,
                     (np.empty((50, 50), np.float32), np.empty((50, 50), np.float32)))
    rgb_reference = warp_stored_image(raw["rgb"], M, (50, 50)).astype(int)
    assert np.abs(rgb.astype(int) - rgb_reference).max() <= 1 and (rgb == rgb_reference).mean() > 0.99
    assert (depth == warp_stored_image(raw["depth"], M, (50, 50), nearest=True)).mean() > 0.99
    with pytest.raises(ValueError, match="C-contiguous uint8 array of shape"):
        warp_stored_pair(raw["rgb"], None, M, np.empty((50, 50, 4), np.uint8), None,
                         (np.empty((50, 50), np.float32), np.empty((50, 50), np.float32)))


def test_a_fetched_batch_equals_the_collated_items(tmp_path):
    write_synthetic_shards(tmp_path / "shards", shard_sizes=[5, 4], size=40)
    dataset = CompactSamples(ShardDataset(tmp_path / "shards", transform=training_transform(size=32, seed=2)),
                             keep_rgb=False)
    indices = [7, 0, 4, 5, 2]
    fetched, items = dataset.__getitems__(indices), collate_compact([dataset[i] for i in indices])
    assert fetched["shard"] == items["shard"] and "mask" not in dataset.read_keys
    assert set(fetched) == set(items)
    for key in set(items) - {"shard"}:
        assert torch.equal(fetched[key], items[key]), key


def test_recycled_worker_buffers_are_reused_only_when_released():
    from datasets.compact_samples import FREE, SharedBatchBuffers, layout_batch

    buffers = SharedBatchBuffers(limit=2)
    arrays = {"rgb8": ((2, 3, 4, 4), np.dtype(np.uint8)), "index": ((2,), np.dtype(np.int64))}
    first = layout_batch(arrays, buffers)
    first["index"][:] = torch.tensor([3, 4])
    second = layout_batch(arrays, buffers)  # the first is still in use: another buffer
    assert first["rgb8"].untyped_storage().data_ptr() != second["rgb8"].untyped_storage().data_ptr()
    assert first["index"].tolist() == [3, 4] and first["index"].data_ptr() % 8 == 0
    first["_release"].fill_(FREE)
    third = layout_batch(arrays, buffers)
    assert third["rgb8"].untyped_storage().data_ptr() == first["rgb8"].untyped_storage().data_ptr()
    unpooled = [layout_batch(arrays, buffers) for _ in range(2)]  # beyond the limit: fresh, never kept
    assert len(buffers._buffers) == 2 and all(int(b["_release"][0]) == 1 for b in unpooled)


def test_worker_batches_stay_intact_when_the_caller_keeps_them(tmp_path):
    """Iterating the DataLoader itself never releases a buffer, so no kept batch may be overwritten."""
    write_synthetic_shards(tmp_path / "shards", shard_sizes=[8, 8], size=32)
    dataset = CompactSamples(ShardDataset(tmp_path / "shards", transform=training_transform(size=24, seed=1)),
                             keep_rgb=False)
    kept = list(DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate_compact))
    for number, batch in enumerate(kept):
        expected = collate_compact([dataset[i] for i in range(2 * number, 2 * number + 2)])
        assert torch.equal(batch["rgb8"], expected["rgb8"]) and torch.equal(batch["index"], expected["index"])
    finished = list(DeviceBatches(DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate_compact),
                                  dataset.batch_transform))  # released and reused, while the outputs are kept
    for number, batch in enumerate(finished):
        assert torch.equal(batch["index"], torch.arange(2 * number, 2 * number + 2))
        reference = dataset.batch_transform(collate_compact([dataset[i] for i in batch["index"].tolist()]))
        assert torch.equal(batch["rgb_input"], reference["rgb_input"])
