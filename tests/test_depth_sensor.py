"""The depth-sensor model (render.depth_sensor): deterministic, changes only what it should."""
import numpy as np
import pytest

from render.depth_sensor import (PRESETS, DepthSensorConfig, apply_depth_sensor, axial_sigma, edge_band,
                                 quantise, sensor_config, sensor_rng)
from render.sampling import SynthConfig

K = np.array([[40.0, 0, 15.5], [0, 40.0, 15.5], [0, 0, 1]], np.float32)


def _hand(z: float = 0.5, size: int = 32) -> np.ndarray:
    depth = np.zeros((size, size), np.float32)
    v, u = np.mgrid[0:size, 0:size]
    disc = (v - 16) ** 2 + (u - 16) ** 2 <= 100
    depth[disc] = z + 0.0005 * (u[disc] - 16)  # a slightly slanted disc on an empty background
    return depth


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_deterministic_and_zero_stays_zero(name):
    cfg = sensor_config(name).replace(max_shift_px=0)
    depth = _hand()
    a = apply_depth_sensor(depth, K, cfg, sensor_rng(7, 3))
    b = apply_depth_sensor(depth, K, cfg, sensor_rng(7, 3))
    c = apply_depth_sensor(depth, K, cfg, sensor_rng(7, 4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == depth.shape
    assert np.all(a[depth == 0] == 0)  # no data stays no data
    assert np.all(a >= 0) and np.all((a > 0) <= (depth > 0))  # kept pixels are positive, nothing appears
    kept = a > 0
    assert kept.sum() > 0.5 * (depth > 0).sum()  # most of the hand survives
    assert np.abs(a[kept] - depth[kept]).max() < 0.1


def test_lateral_shift_moves_the_silhouette_only_by_the_offset():
    cfg = DepthSensorConfig(noise_coeff=0, disparity_step=0, edge_dropout=0, grazing_dropout=0, holes=0,
                            max_shift_px=2)
    depth = _hand()
    out = apply_depth_sensor(depth, K, cfg, sensor_rng(0, 0))
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
              if np.array_equal(out, np.roll(np.roll(depth, dy, 0), dx, 1))]
    assert shifts  # the whole map moved by one integer offset, values unchanged


def test_noise_grows_with_distance_as_z_squared():
    cfg = DepthSensorConfig(disparity_step=0, edge_dropout=0, grazing_dropout=0, holes=0)
    stds = []
    for z in (0.5, 1.0, 2.0):
        depth = np.full((64, 64), z, np.float32)
        out = apply_depth_sensor(depth, K, cfg, sensor_rng(1, 0))
        stds.append(float((out - depth).std()))
        assert stds[-1] == pytest.approx(float(axial_sigma(np.float64(z), cfg)), rel=0.1)
    assert stds[0] < stds[1] < stds[2]
    assert stds[2] / stds[1] == pytest.approx(4.0, rel=0.15)  # σ ∝ z²
    assert float(axial_sigma(np.float64(1.0), DepthSensorConfig())) == pytest.approx(1.425e-3)  # Khoshelham & Elberink


def test_quantisation_steps_grow_with_distance():
    cfg = DepthSensorConfig()
    near, far = np.linspace(0.5, 0.52, 400), np.linspace(2.0, 2.02, 400)
    step_near, step_far = (np.diff(np.unique(quantise(z, cfg))).mean() for z in (near, far))
    fb = cfg.focal_ref_px * cfg.baseline_m
    assert step_near == pytest.approx(0.5 ** 2 * cfg.disparity_step / fb, rel=0.1)  # Δz = z² Δd / (f b)
    assert step_far > 10 * step_near


def test_edges_and_holes_drop_only_valid_pixels():
    depth = _hand()
    band = edge_band(depth, 1, 0.02)
    assert band.any() and not band[16, 16] and np.all(depth[band] > 0)
    cfg = DepthSensorConfig(noise_coeff=0, disparity_step=0, edge_dropout=1.0, grazing_dropout=0, holes=0)
    out = apply_depth_sensor(depth, K, cfg, sensor_rng(0, 0))
    assert np.all(out[band] == 0) and np.array_equal(out[~band], depth[~band])


def test_synth_config_names_a_sensor():
    assert "depth_sensor" not in SynthConfig(image_size=32).to_json()  # exact depth: the JSON as before
    assert '"depth_sensor": "strong"' in SynthConfig(image_size=32, depth_sensor="strong").to_json()
    with pytest.raises(ValueError, match="known: "):
        SynthConfig(image_size=32, depth_sensor="kinect_v9")
