"""A depth-sensor model: the renderer's exact depth → real-like sensor depth.

The synthetic renders carry perfect depth; real structured-light and time-of-flight cameras do
not. LSPS (Abdi et al., BMVC 2018) learns from synthetic depth *and* real depth, so the toolkit's
synthetic analogue needs a real-like depth domain: :func:`apply_depth_sensor` corrupts an exact
depth map with the artefacts the depth-camera literature describes, in this order:

1. **lateral misalignment** (optional): the whole depth map shifted by an integer pixel offset,
   as between the IR camera and the projector / colour camera of an imperfectly registered sensor
   (the labels are not moved: the misregistration of real depth and annotations);
2. **axial noise** growing with the square of the distance, ``σ(z) = noise_coeff · z²`` — the
   random error of the Kinect v1 derived and measured by Khoshelham & Elberink, *Accuracy and
   resolution of Kinect depth data for indoor mapping applications*, Sensors 12(2), 2012, Eq. (9)
   and Fig. 9: ``σ_Z = (m / f) · Z² · σ_d`` with a fitted ``1.425e-3 · Z²`` (Z in metres, σ in
   metres: ~1.5 mm at 1 m, ~3.6 cm at 5 m); spatially correlated noise is out of scope;
3. **disparity quantisation**: a structured-light camera measures disparity ``d = f·b / z`` in
   steps of ``disparity_step`` pixels (Kinect v1: 1/8 px, f ≈ 580 px, b ≈ 7.5 cm,
   Khoshelham & Elberink §2.3; the depth resolution is ``Δz = z² Δd / (f b)``);
4. **dropout at silhouettes**: pixels within ``edge_width`` pixels of a depth discontinuity
   (hand/background or a jump over ``edge_jump_m``) are lost with probability ``edge_dropout``
   — the "shadow" and mixed-pixel artefacts at object boundaries (Khoshelham & Elberink §4; Sweeney
   et al., *Improved depth sensing for Kinect*, 2012);
5. **dropout at grazing angles**: a surface seen at an angle θ to its normal returns less of the
   projected pattern; pixels are lost with probability ``grazing_dropout · clip((cos_lo − cos θ) /
   cos_lo, 0, 1)``, i.e. growing from 0 at ``θ = arccos(cos_lo)`` to ``grazing_dropout`` at 90°;
6. **holes**: ``Poisson(holes)`` discs of radius ``hole_radius`` pixels (uniform in
   ``[1, hole_radius]``) centred on valid pixels, set to no data (specular spots, absorbing skin).

Invariants (``tests/test_depth_sensor.py``): no-data pixels (depth 0) stay 0 (with a lateral shift,
the pixels shifted in from outside are 0), a pixel either keeps a positive depth or is dropped to 0,
the noise grows with distance as ``noise_coeff · z²``, and the output is a pure function of the
input and the generator's seed (:func:`sensor_rng` of the sample's seed and index).

Where it is applied: when rendering (``SynthConfig.depth_sensor``, a preset name of :data:`PRESETS`),
so a rendered "real-like" set stores its sensor depth as its ``depth`` array and every reader —
training, ``tools/evaluate.py`` — sees it without a further option; joint visibility is still
computed from the exact depth.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

#: stream id of the sensor's generator, next to the sample's (seed, index) (independent of its draws)
SENSOR_STREAM = 0x5E45


@dataclass(frozen=True)
class DepthSensorConfig:
    """Parameters of :func:`apply_depth_sensor` (defaults: a Kinect-v1-like structured-light camera)."""

    noise_coeff: float = 1.425e-3  # σ(z) = noise_coeff · z² (metres), Khoshelham & Elberink 2012
    focal_ref_px: float = 580.0  # reference focal length of the disparity quantisation (Kinect v1 IR camera)
    baseline_m: float = 0.075  # projector-camera baseline
    disparity_step: float = 0.125  # disparity quantisation step in pixels (0 = no quantisation)
    edge_width: int = 1  # silhouette band width in pixels
    edge_jump_m: float = 0.02  # a depth jump larger than this between neighbours is an edge
    edge_dropout: float = 0.5  # probability that an edge pixel is lost
    grazing_cos: float = 0.3  # below this cos θ pixels start to drop
    grazing_dropout: float = 0.8  # dropout probability at θ = 90°
    holes: float = 0.5  # mean number of holes per image
    hole_radius: int = 2  # largest hole radius in pixels
    max_shift_px: int = 0  # lateral misalignment: uniform integer shift in [-max, max] per axis

    def replace(self, **changes) -> "DepthSensorConfig":
        return dataclasses.replace(self, **changes)


#: Named sensor models (``SynthConfig.depth_sensor``). ``kinect_v1`` follows the literature's numbers;
#: at hand distances (0.3-1 m) its noise is ~1 mm, small next to the 15 cm cube the networks see, so
#: ``strong`` exaggerates noise and quantisation tenfold and drops more — the domain gap of the
#: synthetic LSPS experiment (a crop of 32-64 px has few pixels, each artefact must count).
PRESETS: dict[str, DepthSensorConfig] = {
    "kinect_v1": DepthSensorConfig(),
    "strong": DepthSensorConfig(noise_coeff=1.425e-2, disparity_step=1.25, edge_dropout=0.7, grazing_cos=0.4,
                                 grazing_dropout=0.9, holes=1.5, hole_radius=3, max_shift_px=1),
}


def sensor_config(name: str) -> DepthSensorConfig:
    """The preset ``name`` of :data:`PRESETS` (an unknown name lists the known ones)."""
    if name not in PRESETS:
        raise ValueError(f"unknown depth sensor {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def sensor_rng(seed: int, index: int) -> np.random.Generator:
    """The sensor's generator for sample ``index`` of a dataset of global ``seed``."""
    return np.random.default_rng([int(seed), int(index), SENSOR_STREAM])


def axial_sigma(z: np.ndarray, cfg: DepthSensorConfig) -> np.ndarray:
    """σ(z) = noise_coeff · z² (metres; Khoshelham & Elberink 2012, Eq. 9 with their fitted constant)."""
    return cfg.noise_coeff * np.square(z)


def quantise(z: np.ndarray, cfg: DepthSensorConfig) -> np.ndarray:
    """Depth through disparity quantisation: ``d = f b / z`` rounded to ``disparity_step`` px, back to depth."""
    if cfg.disparity_step <= 0:
        return z
    fb = cfg.focal_ref_px * cfg.baseline_m
    d = np.round(fb / z / cfg.disparity_step) * cfg.disparity_step
    return fb / np.maximum(d, cfg.disparity_step)


def _shift(depth: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(depth)
    h, w = depth.shape
    src = depth[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out


def edge_band(depth: np.ndarray, width: int, jump_m: float) -> np.ndarray:
    """Valid pixels within ``width`` px (8-neighbourhood) of a silhouette or a depth jump > ``jump_m``."""
    valid = depth > 0
    edge = np.zeros_like(valid)
    padded = np.pad(depth, 1)
    h, w = depth.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            n = padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            edge |= valid & ((n <= 0) | (np.abs(n - depth) > jump_m))
    band = edge
    for _ in range(max(0, width - 1)):  # grow the band inside the valid region
        grown = np.pad(band, 1)
        band = valid & (grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:] | band)
    return band


def incidence_cos(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """cos θ between the surface normal (from depth gradients, metric) and the viewing ray; 1 where undefined."""
    h, w = depth.shape
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)
    du = np.zeros_like(points)
    dv = np.zeros_like(points)
    du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dv[1:-1] = points[2:] - points[:-2]
    normal = np.cross(du, dv)
    norm = np.linalg.norm(normal, axis=-1)
    ray = points / np.maximum(np.linalg.norm(points, axis=-1, keepdims=True), 1e-12)
    cos = np.abs(np.sum(normal * ray, axis=-1)) / np.maximum(norm, 1e-12)
    # only where the 4 neighbours are valid surface of the same object (edges are handled by edge dropout)
    valid = z > 0
    inner = np.zeros_like(valid)
    inner[1:-1, 1:-1] = valid[1:-1, 1:-1] & valid[:-2, 1:-1] & valid[2:, 1:-1] & valid[1:-1, :-2] & valid[1:-1, 2:]
    return np.where(inner & (norm > 0), cos, 1.0)


def apply_depth_sensor(depth: np.ndarray, K: np.ndarray, cfg: DepthSensorConfig,
                       rng: np.random.Generator) -> np.ndarray:
    """Exact depth (H,W) float metres, 0 = no data → sensor depth (H,W) float32 metres, 0 = no data.

    ``K`` (3,3) the intrinsics of the image (for the surface normals); ``rng`` the sample's sensor
    generator (:func:`sensor_rng`). The draws happen in a fixed order whatever the parameters, so
    switching one artefact off does not change the others.
    """
    z = np.asarray(depth, np.float64)
    h, w = z.shape
    # 1. lateral misalignment
    dy, dx = rng.integers(-cfg.max_shift_px, cfg.max_shift_px + 1, size=2) if cfg.max_shift_px else (0, 0)
    z = _shift(z, int(dy), int(dx))
    valid = z > 0
    # 2. axial noise σ(z) ∝ z², 3. disparity quantisation
    noise = rng.standard_normal((h, w))
    noisy = np.where(valid, z + axial_sigma(z, cfg) * noise, 0.0)
    noisy = np.where(valid, quantise(np.where(valid, np.maximum(noisy, 1e-3), 1.0), cfg), 0.0)
    # 4. silhouette dropout, 5. grazing-angle dropout (both from the exact, shifted geometry)
    u_edge, u_graze = rng.random((h, w)), rng.random((h, w))
    drop = edge_band(z, cfg.edge_width, cfg.edge_jump_m) & (u_edge < cfg.edge_dropout)
    cos = incidence_cos(z, K)
    p_graze = cfg.grazing_dropout * np.clip((cfg.grazing_cos - cos) / max(cfg.grazing_cos, 1e-6), 0.0, 1.0)
    drop |= valid & (u_graze < p_graze)
    # 6. holes
    count = int(rng.poisson(cfg.holes)) if cfg.holes > 0 else 0
    rows, cols = np.nonzero(valid)
    if count and len(rows):
        picks = rng.integers(0, len(rows), size=count)
        radii = rng.integers(1, max(1, cfg.hole_radius) + 1, size=count)
        v, u = np.mgrid[0:h, 0:w]
        for p, r in zip(picks, radii):
            drop |= (v - rows[p]) ** 2 + (u - cols[p]) ** 2 <= r * r
    return np.where(valid & ~drop, noisy, 0.0).astype(np.float32)


__all__ = ["DepthSensorConfig", "PRESETS", "sensor_config", "sensor_rng", "apply_depth_sensor", "axial_sigma",
           "quantise", "edge_band", "incidence_cos"]
