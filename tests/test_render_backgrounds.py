"""Background sources: procedural families are varied and seeded; folders are cropped and checked."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from render.backgrounds import (FAMILIES, BackgroundBank, BackgroundError, FolderBackgrounds, ProceduralBackgrounds,
                                background_source)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_procedural_family_is_textured_not_flat(family):
    source = ProceduralBackgrounds(families=(family,))
    for index in range(4):
        image = source.sample(np.random.default_rng([0, index]), 96)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        # Varied: colour spread over the image and structure along rows and columns.
        assert image.astype(float).std() > 8, (family, index)
        assert np.abs(np.diff(image.astype(float), axis=0)).mean() + np.abs(np.diff(image.astype(float), axis=1)).mean() > 0.5


def test_procedural_backgrounds_depend_only_on_the_generator():
    source = ProceduralBackgrounds()
    first = source.sample(np.random.default_rng([3, 9]), 256)
    second = ProceduralBackgrounds().sample(np.random.default_rng([3, 9]), 256)
    other = source.sample(np.random.default_rng([3, 10]), 256)
    assert np.array_equal(first, second) and not np.array_equal(first, other)
    families = {ProceduralBackgrounds().families[np.random.default_rng([0, i]).integers(len(FAMILIES))]
                for i in range(40)}
    assert families == set(FAMILIES)  # every family is used


def test_folder_backgrounds_crop_user_images(tmp_path):
    gradient = np.zeros((120, 200, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 200)[None, :]
    Image.fromarray(gradient).save(tmp_path / "a.png")
    Image.fromarray(np.full((50, 60, 3), 77, np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "readme.txt").write_text("ignored")
    source = FolderBackgrounds(tmp_path)
    assert [p.name for p in source.paths] == ["a.png", "b.jpg"]
    crops = [source.sample(np.random.default_rng([1, i]), 32) for i in range(12)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    assert np.array_equal(crops[0], source.sample(np.random.default_rng([1, 0]), 32))
    red_means = {round(float(c[..., 0].mean())) for c in crops if c[..., 1].max() == 0}
    assert len(red_means) > 2  # different crops of the gradient image


def test_folder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(BackgroundError, match="not found"):
        FolderBackgrounds(tmp_path / "missing")
    with pytest.raises(BackgroundError, match=f"{tmp_path}.*holds no images"):
        FolderBackgrounds(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source = FolderBackgrounds(tmp_path)
    with pytest.raises(BackgroundError, match="broken.png: not a readable image"):
        source.sample(np.random.default_rng(0), 16)


def test_background_bank_is_the_same_in_every_worker_and_varies_per_sample():
    # Two banks built from the same seed (two workers) give identical samples for one generator.
    bank, other_worker = BackgroundBank(seed=5, size=64, per_family=3), BackgroundBank(seed=5, size=64, per_family=3)
    for index in range(6):
        image = bank.sample(np.random.default_rng([5, index]), 64)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert np.array_equal(image, other_worker.sample(np.random.default_rng([5, index]), 64))
        assert image.astype(float).std() > 8  # textured, not flat
    # Another seed gives another bank; the bank is built from the seed alone.
    reseeded = BackgroundBank(seed=6, size=64, per_family=3)
    assert any(not np.array_equal(a, b) for a, b in zip(bank.textures["noise"], reseeded.textures["noise"]))
    # Per sample: one texture under different crops/flips/rotations/colours gives different images.
    single = BackgroundBank(seed=5, size=64, per_family=1, families=("stripes",))
    images = [single.sample(np.random.default_rng([0, i]), 64) for i in range(8)]
    assert len({image.tobytes() for image in images}) == 8
    means = np.array([image.reshape(-1, 3).mean(0) for image in images])
    assert means.std(0).min() > 5  # the colour change moves every channel's mean


def test_background_source_picks_the_bank_only_for_procedural_backgrounds(tmp_path):
    assert isinstance(background_source(None, bank=2, seed=1, size=32), BackgroundBank)
    assert isinstance(background_source(None, bank=0), ProceduralBackgrounds)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert isinstance(background_source(tmp_path, bank=2), FolderBackgrounds)


def test_config_selects_background_families_for_a_domain_shift():
    from render.sampling import SynthConfig

    cfg = SynthConfig.from_dict({"background_families": ["stripes", "shapes"]})
    bank = background_source(None, bank=2, seed=0, size=32, families=cfg.background_families)
    assert bank.families == ("stripes", "shapes")
    assert set(bank.textures) == {"stripes", "shapes"}
    assert background_source(None, families=("noise",)).families == ("noise",)
    with pytest.raises(ValueError, match="background_families should be a non-empty subset"):
        SynthConfig.from_dict({"background_families": ["plaid"]})


def test_recolour_is_the_documented_affine_colour_map():
    """Hue rotation × gain about grey 128 plus an offset, rounded and clipped to uint8 (OpenCV pass)."""
    from render.backgrounds import _recolour

    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    out = _recolour(image, np.random.default_rng(5))
    rng = np.random.default_rng(5)  # the same draws, in the same order, as _recolour
    angle = rng.uniform(0.0, 2.0 * np.pi)
    axis = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * np.outer(axis, axis)
    gain = rng.uniform(0.8, 1.2, size=3) * rng.uniform(0.7, 1.3)
    offset = 128.0 + rng.uniform(-35.0, 35.0)
    expected = np.clip(np.rint((image - 128.0) @ (rotation * gain[:, None]).T + offset), 0, 255)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - expected).max() <= 1  # float32 matrix rounding


def test_composite_takes_hand_pixels_where_the_mask_is_set():
    from render.postprocess import composite

    rng = np.random.default_rng(1)
    rgb, background = (rng.integers(0, 256, (12, 10, 3)).astype(np.uint8) for _ in range(2))
    mask = (rng.uniform(size=(12, 10)) < 0.3).astype(np.uint8)
    expected = np.where(mask[..., None] == 1, rgb, background)
    assert np.array_equal(composite(rgb, mask, background), expected)
    out = np.zeros_like(rgb)
    assert composite(rgb, mask, background, out=out) is out and np.array_equal(out, expected)
    in_place = background.copy()
    composite(rgb, mask, in_place, out=in_place)
    assert np.array_equal(in_place, expected)


def test_bank_background_into_a_given_array_and_recolour_commutes_with_mirror_and_turns():
    """BackgroundBank recolours the crop before mirroring and turning it: the same pixels as after (per-pixel map)."""
    from render.backgrounds import BackgroundBank, _recolour

    bank = BackgroundBank(seed=2, size=64, per_family=2)
    out = np.zeros((64, 64, 3), np.uint8)
    for index in range(10):
        image = bank.sample(np.random.default_rng([4, index]), 64)
        assert bank.sample(np.random.default_rng([4, index]), 64, out=out) is out and np.array_equal(out, image)
    patch = bank.textures["shapes"][0][5:40, 3:31]
    for turns in range(4):
        first = _recolour(np.ascontiguousarray(np.rot90(patch[:, ::-1], turns)), np.random.default_rng(9))
        after = np.rot90(_recolour(patch, np.random.default_rng(9))[:, ::-1], turns)
        assert np.array_equal(first, after)
