"""Random scene description for synthetic MANO renders (`method.md` §6; paper Sect. 5.1).

Pure Python/numpy, independent of the renderer: this module decides *what* is drawn
(hand pose and shape, global rotation, placement in front of the camera, lights, skin
colours); :mod:`render.renderer` only draws what it is given.

Determinism: every random choice of sample ``i`` comes from ONE generator,
:func:`sample_rng` ``(seed, i)``, consumed in a fixed order (hand → placement →
lighting → skin → background). A sample therefore does not depend on which worker
renders it, in which order, or after which interruption.

Camera convention: OpenCV (x right, y down, z forward), metres; pixel ``(col, row)`` has
its centre at ``u = col, v = row``; the principal point is the image centre.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.spatial.transform import Rotation

from render.backgrounds import FAMILIES

#: Weights of the skin gradient per channel (R, G, B): it darkens green and blue more than red.
SKIN_GRADIENT_CHANNELS = np.array([0.6, 1.0, 1.0])

#: Skin base colours (linear-ish RGB in [0, 1]) from very light to very dark, chosen for this toolkit.
SKIN_TONES: tuple[tuple[float, float, float], ...] = (
    (0.96, 0.80, 0.69),
    (0.92, 0.72, 0.60),
    (0.87, 0.66, 0.52),
    (0.78, 0.57, 0.44),
    (0.68, 0.47, 0.34),
    (0.56, 0.38, 0.27),
    (0.44, 0.29, 0.20),
    (0.33, 0.22, 0.15),
)


@dataclass
class SynthConfig:
    """All settings of the synthetic generator; saved as JSON with every dataset.

    Ranges are ``(low, high)`` of uniform draws. Defaults follow the paper (pose PCA in
    [−2, 2]^10, betas in [−0.03, 0.03]^10, rotation uniform over SO(3)).
    """

    image_size: int = 256
    #: focal length in pixels; ``None`` derives it from ``fov_deg``.
    focal_px: float | None = None
    fov_deg: float = 45.0
    num_pca_comps: int = 10
    pose_range: tuple[float, float] = (-2.0, 2.0)
    shape_range: tuple[float, float] = (-0.03, 0.03)
    #: ``"uniform"`` (uniform over SO(3)) or ``"none"`` (model frame as is).
    rotation: str = "uniform"
    #: every joint projects at least ``margin · image_size`` pixels inside the image border.
    margin: float = 0.06
    #: "scale": the larger side of the joints' 2D box as a fraction of the image span inside the margins.
    hand_size_range: tuple[float, float] = (0.45, 0.95)
    min_depth_m: float = 0.15
    light_intensity_range: tuple[float, float] = (1.5, 4.5)
    #: per-channel multiplicative jitter of the light colour around white.
    light_colour_jitter: float = 0.15
    ambient_range: tuple[float, float] = (0.15, 0.45)
    skin_tones: tuple[tuple[float, float, float], ...] = SKIN_TONES
    #: standard deviation of per-vertex multiplicative colour noise.
    skin_vertex_noise: float = 0.05
    #: amplitude of a smooth colour gradient across the hand (redder/darker regions).
    skin_gradient: float = 0.12
    #: optional image whose colours replace the skin palette (sampled by a planar projection).
    skin_texture: str | None = None
    #: folder of background images; ``None`` uses the embedded procedural generator.
    backgrounds: str | None = None
    #: procedural backgrounds: textures per family in each worker's bank (built from the global
    #: seed only, so identical in every worker; per sample a random crop, mirror, 90° rotation
    #: and colour change of one of them, see ``render.backgrounds.BackgroundBank``); 0 draws
    #: every background afresh (slower).
    background_bank: int = 128
    #: procedural background families to draw from (``render.backgrounds.FAMILIES``); a subset
    #: gives a domain-shifted set (e.g. source ``["noise", "gradient"]``, target ``["stripes"]``).
    background_families: tuple[str, ...] = tuple(FAMILIES)
    #: background crops cover this fraction range of the source image's shorter side.
    background_crop_range: tuple[float, float] = (0.3, 1.0)
    #: a joint is visible if the rendered surface at its pixel is at most this far in front of it.
    visibility_tolerance_m: float = 0.015
    #: stored depth through a sensor model (a preset of render.depth_sensor.PRESETS); "" = exact depth
    depth_sensor: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.background_families, str):  # "noise" or "noise,stripes": names, not letters
            self.background_families = tuple(f.strip() for f in self.background_families.split(",") if f.strip())
        for spec in dataclasses.fields(self):
            setattr(self, spec.name, _checked_value(spec.name, spec.type, getattr(self, spec.name)))
        for name in ("pose_range", "shape_range", "hand_size_range", "light_intensity_range",
                     "ambient_range", "background_crop_range"):
            value = getattr(self, name)
            if value[0] > value[1]:
                raise ValueError(f"SynthConfig.{name} should be [low, high] with low <= high, found {list(value)}")
        unknown = [f for f in self.background_families if f not in FAMILIES]
        if unknown or not self.background_families:
            raise ValueError(f"SynthConfig.background_families should be a non-empty subset of {list(FAMILIES)}, "
                             f"found {list(self.background_families)}")
        if self.background_bank < 0:
            raise ValueError(f"SynthConfig.background_bank should be >= 0 (0 = no bank), found {self.background_bank}")
        if self.image_size < 16:
            raise ValueError(f"SynthConfig.image_size should be at least 16 pixels, found {self.image_size}")
        if not 0 <= self.margin < 0.4:
            raise ValueError(f"SynthConfig.margin should be in [0, 0.4) of the image size, found {self.margin}")
        if self.depth_sensor:
            from render.depth_sensor import sensor_config

            sensor_config(self.depth_sensor)  # an unknown sensor model lists the known ones
        if self.rotation not in ("uniform", "none"):
            raise ValueError(f"SynthConfig.rotation should be 'uniform' or 'none', found {self.rotation!r}")
        if not (0 < self.hand_size_range[0] and self.hand_size_range[1] <= 1):
            raise ValueError(f"SynthConfig.hand_size_range should lie in (0, 1], found {self.hand_size_range}")

    @property
    def focal(self) -> float:
        if self.focal_px is not None:
            return float(self.focal_px)
        return 0.5 * self.image_size / np.tan(np.radians(self.fov_deg) / 2)

    def intrinsics(self) -> np.ndarray:
        """K (3,3) float32 of the rendered image (OpenCV; principal point at the image centre)."""
        c = (self.image_size - 1) / 2.0
        return np.array([[self.focal, 0, c], [0, self.focal, c], [0, 0, 1]], dtype=np.float32)

    def to_json(self) -> str:
        values = dataclasses.asdict(self)
        if not values["depth_sensor"]:  # exact depth: the JSON of datasets rendered before the option existed
            del values["depth_sensor"]
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SynthConfig":
        """Build from a mapping; unknown keys are rejected with the closest valid names."""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=3)
                raise ValueError(f"unknown SynthConfig key {key!r}; did you mean {close or known}?")
        return cls(**values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _numbers(name: str, value: Any, count: int | None, what: str) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or (count is not None and len(value) != count) \
            or not all(_is_number(v) for v in value):
        raise ValueError(f"SynthConfig.{name} should be {what}, found {value!r}")
    return tuple(float(v) for v in value)


def _checked_value(name: str, annotation: str, value: Any) -> Any:
    """``value`` of field ``name`` converted to the field's type, or a ValueError naming key, expectation and value."""
    optional = annotation.endswith("| None")
    kind = annotation.removesuffix("| None").strip()
    if value is None and optional:
        return None
    if kind == "int":
        if not _is_number(value) or float(value) != int(value):
            raise ValueError(f"SynthConfig.{name} should be an integer, found {value!r}")
        return int(value)
    if kind == "float":
        if not _is_number(value):
            raise ValueError(f"SynthConfig.{name} should be a number{' or null' if optional else ''}, found {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"SynthConfig.{name} should be a string{' or null' if optional else ''}, found {value!r}")
        return value
    if kind == "tuple[float, float]":
        return _numbers(name, value, 2, "[low, high] (two numbers)")
    if kind == "tuple[str, ...]":
        if isinstance(value, str) or not hasattr(value, "__iter__") or not all(isinstance(v, str) for v in value):
            raise ValueError(f"SynthConfig.{name} should be a list of names, found {value!r}")
        return tuple(value)
    if kind == "tuple[tuple[float, float, float], ...]":
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise ValueError(f"SynthConfig.{name} should be a list of [r, g, b] colours, found {value!r}")
        return tuple(_numbers(name, tone, 3, "a list of [r, g, b] colours") for tone in value)
    raise TypeError(f"SynthConfig.{name}: no check for the field type {annotation!r}")  # a new field needs one


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The one generator of sample ``index`` in a dataset of global ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


@dataclass
class HandDraw:
    """Hand parameters of one sample (inputs of the hand model)."""

    pose_pca: np.ndarray  # (num_pca_comps,)
    betas: np.ndarray  # (10,)
    global_orient: np.ndarray  # (3,) axis-angle of the rotation applied about the wrist


@dataclass
class Lighting:
    """One directional light plus ambient light, in the camera frame (OpenCV axes)."""

    direction: np.ndarray  # (3,) unit vector the light travels along
    colour: np.ndarray  # (3,) in [0, 1]
    intensity: float
    ambient: float


def draw_hand(rng: np.random.Generator, cfg: SynthConfig) -> HandDraw:
    """Pose PCA coefficients and betas uniform in their ranges; rotation uniform over SO(3)."""
    pose = rng.uniform(*cfg.pose_range, size=cfg.num_pca_comps)
    betas = rng.uniform(*cfg.shape_range, size=10)
    if cfg.rotation == "uniform":
        # A normalised 4-D Gaussian is a uniform unit quaternion, i.e. a uniform rotation.
        quaternion = rng.standard_normal(4)
        orient = Rotation.from_quat(quaternion / np.linalg.norm(quaternion)).as_rotvec()
    else:
        orient = np.zeros(3)
    return HandDraw(pose.astype(np.float32), betas.astype(np.float32), orient.astype(np.float32))


def _feasible_shift(coords: np.ndarray, depths: np.ndarray, centre: float, low_px: float,
                    high_px: float, focal: float) -> tuple[float, float]:
    """Interval of shifts t with ``low ≤ f·(x + t)/z + c ≤ high`` for every point (x, z)."""
    lower = (low_px - centre) * depths / focal - coords
    upper = (high_px - centre) * depths / focal - coords
    return float(lower.max()), float(upper.min())


def place_hand(rng: np.random.Generator, joints: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """Translation (3,) that puts the posed joints in front of the camera, all inside the image.

    The apparent size ("scale") is drawn from ``hand_size_range``; the depth follows from
    it, and x/y shifts are uniform over the exact interval that keeps every joint at
    least ``margin`` pixels inside the border (the depth grows until such a shift exists).
    """
    size = cfg.image_size
    focal = cfg.focal
    centre = (size - 1) / 2.0
    low_px, high_px = cfg.margin * size, size - 1 - cfg.margin * size
    fraction = rng.uniform(*cfg.hand_size_range)
    unit_x, unit_y = rng.uniform(size=2)
    extent = max(np.ptp(joints[:, 0]), np.ptp(joints[:, 1]), 1e-3)
    depth = focal * extent / (fraction * (high_px - low_px))
    tz = max(depth - joints[:, 2].mean(), cfg.min_depth_m - joints[:, 2].min())
    for _ in range(100):
        z = joints[:, 2] + tz
        x_lo, x_hi = _feasible_shift(joints[:, 0], z, centre, low_px, high_px, focal)
        y_lo, y_hi = _feasible_shift(joints[:, 1], z, centre, low_px, high_px, focal)
        if x_lo <= x_hi and y_lo <= y_hi:
            return np.array([x_lo + unit_x * (x_hi - x_lo), y_lo + unit_y * (y_hi - y_lo), tz])
        tz *= 1.1
    raise RuntimeError(f"could not place a hand of extent {extent:.3f} m inside a {size}px image")


def draw_lighting(rng: np.random.Generator, cfg: SynthConfig) -> Lighting:
    """A directional light from a random direction on the camera's side of the hand, plus ambient."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    direction[2] = abs(direction[2])  # travel away from the camera, i.e. light the visible side
    colour = np.clip(1.0 + cfg.light_colour_jitter * rng.uniform(-1, 1, size=3), 0, None)
    colour /= colour.max()
    intensity = rng.uniform(*cfg.light_intensity_range)
    ambient = rng.uniform(*cfg.ambient_range)
    return Lighting(direction, colour, float(intensity), float(ambient))


def draw_skin(rng: np.random.Generator, cfg: SynthConfig, template: np.ndarray,
              base_colours: np.ndarray | None = None) -> np.ndarray:
    """Per-vertex skin colour (V,3) float32 in [0,1].

    A palette tone (or ``base_colours`` (V,3) from a user texture), jittered per sample,
    times a smooth gradient along a random direction over the ``template`` vertices
    (V,3), times small per-vertex noise (:func:`render.kernels.skin_colours`, one pass).
    """
    from render.kernels import skin_colours  # numba: imported where the renderer runs, not with the config

    if base_colours is None:
        tone = np.asarray(cfg.skin_tones[rng.integers(len(cfg.skin_tones))], dtype=np.float64)
        base = np.broadcast_to(tone, template.shape)
    else:
        base = np.asarray(base_colours, dtype=np.float64)
    jitter = 1.0 + 0.05 * rng.standard_normal(3)
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    noise = rng.standard_normal(template.shape[0])  # per-vertex noise 1 + s·n (same draws as a (V, 1) array)
    colours = np.empty(template.shape, np.float32)
    skin_colours(base, jitter, axis, template, float(cfg.skin_gradient), SKIN_GRADIENT_CHANNELS,
                 float(cfg.skin_vertex_noise), noise, colours)
    return colours


def texture_colours(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Per-vertex colours (V,3) in [0,1] sampled from an RGB ``image`` by projecting the
    ``template`` vertices (V,3) onto their two main axes (a planar UV map)."""
    centred = template - template.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    uv = centred @ axes[:2].T
    uv = (uv - uv.min(axis=0)) / np.maximum(np.ptp(uv, axis=0), 1e-9)
    height, width = image.shape[:2]
    cols = np.clip(np.round(uv[:, 0] * (width - 1)).astype(int), 0, width - 1)
    rows = np.clip(np.round(uv[:, 1] * (height - 1)).astype(int), 0, height - 1)
    return image[rows, cols, :3].astype(np.float32) / 255.0
