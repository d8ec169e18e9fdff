"""Image readers of the raw datasets (`datasets/images.py`): decoding and clear errors."""
import numpy as np
import pytest
from PIL import Image

from datasets.errors import DatasetError
from datasets.images import (encode_rhd_depth, encode_stb_depth, read_gray, read_rgb, read_rhd_depth,
                             read_stb_depth)


def test_read_rgb_returns_the_stored_pixels_in_rgb_order(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "c.png", expected_size=(8, 6)), pixels)
    rgba = np.concatenate([pixels, np.full((6, 8, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), pixels)  # alpha dropped


def test_read_gray_labels_and_channel_choice(tmp_path):
    labels = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(labels, mode="L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "m.png", (8, 6)), labels)
    colour = np.stack([labels, labels * 0, labels * 0 + 9], axis=-1)
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_gray(tmp_path / "rgb.png", channel=0), labels)
    np.testing.assert_array_equal(read_gray(tmp_path / "rgb.png", channel=2), labels * 0 + 9)
    with pytest.raises(DatasetError, match="rgb.png: expected a single-channel image.*mode RGB with 3 channels"):
        read_gray(tmp_path / "rgb.png")


def test_depth_encodings_round_trip_within_one_quantisation_step():
    depth = np.linspace(0.0, 4.99, 64 * 64).reshape(64, 64)
    rgb = encode_rhd_depth(depth)
    assert (rgb[..., 0] > 0).any() and (rgb[..., 1] > 0).any()
    decoded = ((rgb[..., 0].astype(int) * 256 + rgb[..., 1]) / 65535 * 5.0)
    np.testing.assert_allclose(decoded, depth, atol=2.5 / 65535 + 1e-12)
    mm = encode_stb_depth(np.array([[0.513, 1.0]]))
    np.testing.assert_array_equal(mm[0, 0], [1, 2, 0])  # 513 = 1 + 256·2
    np.testing.assert_array_equal(mm[0, 1], [1000 % 256, 1000 // 256, 0])


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="missing.png: image file not found"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match="junk.png: unreadable image"):
        read_rgb(tmp_path / "junk.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DatasetError, match=r"small.png: expected an image of 320×320 \(width×height\), found 12×10"):
        read_rhd_depth(tmp_path / "small.png")
    Image.fromarray(np.zeros((480, 640), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(DatasetError, match="gray.png: expected a 3-channel STB depth PNG.*mode L with 1 channel"):
        read_stb_depth(tmp_path / "gray.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "g.png")
    with pytest.raises(DatasetError, match="g.png: expected a 3-channel colour image"):
        read_rgb(tmp_path / "g.png")
