"""Background images for synthetic renders (paper Sect. 5.1: "randomly sampled and cropped").

Two sources with one method, ``sample(rng, size) -> uint8 (size, size, 3)``:

- :class:`FolderBackgrounds`: random crops (random scale, position, mirror) of the
  user's images, resized to the render size.
- :class:`ProceduralBackgrounds` (the embedded default): several families of varied,
  non-flat images — multi-scale value noise, gradients, shapes, stripes/plaids and
  turbulence textures — built with vectorised numpy and PIL's C resizing/drawing so one
  image costs about a millisecond.

Both draw every random choice from the per-sample generator they are given.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class BackgroundError(ValueError):
    """The background folder is missing, empty or holds an unreadable image."""


def _random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(0, 255, size=(count, 3)).astype(np.float32)


def _coordinates(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return axis[None, :], axis[:, None]


def _value_noise(rng: np.random.Generator, size: int, channels: int, octaves: int,
                 persistence: float) -> np.ndarray:
    """Multi-scale value noise (size, size, channels) in about [−1, 1]: random grids of
    growing resolution, bicubically upsampled and summed with decaying weights.

    The octaves are summed at a working resolution of at most 64 px and the sum is
    upsampled once (PIL, uint8) — the cost of one full-size resize instead of one per octave.
    """
    work = min(size, 64)
    total = np.zeros((work, work, channels), np.float32)
    weight, norm = 1.0, 0.0
    base = int(rng.integers(2, 5))
    for octave in range(octaves):
        cells = min(base * 2**octave, work)
        grid = rng.integers(0, 256, size=(cells, cells, channels), dtype=np.uint8)
        image = Image.fromarray(grid if channels == 3 else grid[..., 0])
        up = np.asarray(image.resize((work, work), Image.BICUBIC), np.float32)
        total += weight * up.reshape(work, work, channels)
        norm += weight
        weight *= persistence
    if work != size:
        small = np.clip(total / norm, 0, 255).astype(np.uint8)
        image = Image.fromarray(small if channels == 3 else small[..., 0])
        total = np.asarray(image.resize((size, size), Image.BICUBIC), np.float32).reshape(size, size, channels)
        norm = 1.0
    return total * np.float32(1.0 / (127.5 * norm)) - np.float32(1.0)


def _palette_map(values: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map scalars in [0,1] (H,W) onto a piecewise-linear palette of colours (k,3) via a 256-entry table."""
    levels = np.linspace(0.0, 1.0, 256)
    positions = np.linspace(0.0, 1.0, len(colours))
    table = np.stack([np.interp(levels, positions, colours[:, c]) for c in range(3)], -1).astype(np.float32)
    indices = (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return table[indices]


def noise_background(rng: np.random.Generator, size: int) -> np.ndarray:
    octaves = int(rng.integers(3, 7))
    noise = _value_noise(rng, size, 3, octaves, rng.uniform(0.4, 0.8))
    base = _random_colours(rng, 1)[0]
    contrast = np.float32(rng.uniform(40, 120))
    return base + contrast * noise


def gradient_background(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _coordinates(size)
    if rng.uniform() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * x + np.sin(angle) * y) * 0.5 + 0.5
    else:
        cx, cy = rng.uniform(-1, 1, size=2)
        t = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(1.0, 2.5)
    colours = _random_colours(rng, int(rng.integers(2, 5)))
    image = _palette_map(t, colours)
    return image + 20.0 * _value_noise(rng, size, 1, 4, 0.6)


def shapes_background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = gradient_background(rng, size) if rng.uniform() < 0.5 else noise_background(rng, size)
    canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(4, 30))):
        x0, y0 = rng.uniform(-0.2, 1.0, size=2) * size
        w, h = rng.uniform(0.05, 0.6, size=2) * size
        colour = tuple(int(c) for c in _random_colours(rng, 1)[0])
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            points = rng.uniform(0, 1, size=(int(rng.integers(3, 7)), 2)) * [w, h] + [x0, y0]
            draw.polygon([tuple(p) for p in points], fill=colour)
    return np.asarray(canvas, np.float32)


def stripes_background(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _coordinates(size)
    values = np.zeros((size, size), np.float32)
    layers = int(rng.integers(1, 3))  # two layers give plaids and checkerboards
    for _ in range(layers):
        angle = rng.uniform(0, np.pi)
        frequency = rng.uniform(2, 25)
        wave = np.sin(np.pi * frequency * (np.cos(angle) * x + np.sin(angle) * y) + rng.uniform(0, 2 * np.pi))
        if rng.uniform() < 0.5:
            wave = np.sign(wave)
        values = values + wave / layers
    colours = _random_colours(rng, 2)
    return _palette_map(values * 0.5 + 0.5, colours) + 15.0 * _value_noise(rng, size, 3, 3, 0.5)


def texture_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Turbulence textures: a sine pattern warped by noise (wood/marble-like)."""
    x, y = _coordinates(size)
    turbulence = _value_noise(rng, size, 1, int(rng.integers(3, 6)), 0.6)[..., 0]
    if rng.uniform() < 0.5:
        angle = rng.uniform(0, np.pi)
        phase = (np.cos(angle) * x + np.sin(angle) * y) * rng.uniform(3, 15)
    else:
        phase = np.sqrt(x**2 + y**2) * rng.uniform(5, 20)
    values = 0.5 + 0.5 * np.sin(np.pi * (phase + rng.uniform(2, 8) * turbulence))
    return _palette_map(values, _random_colours(rng, 3))


FAMILIES = {
    "noise": noise_background,
    "gradient": gradient_background,
    "shapes": shapes_background,
    "stripes": stripes_background,
    "texture": texture_background,
}


class ProceduralBackgrounds:
    """The embedded background generator: one of :data:`FAMILIES` per sample."""

    def __init__(self, families: tuple[str, ...] = tuple(FAMILIES)):
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise BackgroundError(f"unknown procedural background families {unknown}; known: {list(FAMILIES)}")
        self.families = tuple(families)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A (size, size, 3) uint8 image; above 128 px it is drawn at half size and upsampled
        (backgrounds need no finer detail; this makes the per-pixel numpy work 4× cheaper)."""
        family = self.families[int(rng.integers(len(self.families)))]
        work = size if size <= 128 else (size + 1) // 2
        image = np.clip(FAMILIES[family](rng, work), 0, 255).astype(np.uint8)
        if work != size:
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
        return image

    def describe(self) -> str:
        return f"procedural:{','.join(self.families)}"


class FolderBackgrounds:
    """Random crops of the images in a folder (searched recursively), resized to the render size."""

    def __init__(self, folder: str | Path, crop_range: tuple[float, float] = (0.3, 1.0), cache_size: int = 32):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BackgroundError(f"{self.folder}: background folder not found (expected a directory of images)")
        self.paths = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise BackgroundError(
                f"{self.folder}: background folder holds no images (expected files ending in "
                f"{', '.join(IMAGE_SUFFIXES)}); omit --backgrounds to use procedural backgrounds"
            )
        self.crop_range = crop_range
        self._cache: OrderedDict[Path, Image.Image] = OrderedDict()
        self._cache_size = cache_size

    def _load(self, path: Path) -> Image.Image:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        try:
            with Image.open(path) as handle:
                image = handle.convert("RGB")
        except (OSError, ValueError) as exc:
            raise BackgroundError(f"{path}: not a readable image ({exc})") from exc
        self._cache[path] = image
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return image

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        path = self.paths[int(rng.integers(len(self.paths)))]
        fraction, fx, fy, mirror = rng.uniform(*self.crop_range), rng.uniform(), rng.uniform(), rng.uniform()
        image = self._load(path)
        side = max(1, int(round(fraction * min(image.size))))
        left = int(fx * (image.size[0] - side))
        top = int(fy * (image.size[1] - side))
        crop = image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
        if mirror < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(crop, np.uint8)

    def describe(self) -> str:
        return f"folder:{self.folder} ({len(self.paths)} images)"


def background_source(folder: str | Path | None, crop_range: tuple[float, float] = (0.3, 1.0)):
    """The user's image folder if given, else the procedural generator."""
    return ProceduralBackgrounds() if folder is None else FolderBackgrounds(folder, crop_range)
