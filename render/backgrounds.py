"""Background images for synthetic renders (paper Sect. 5.1: "randomly sampled and cropped").

Sources with one method, ``sample(rng, size) -> uint8 (size, size, 3)``:

- :class:`FolderBackgrounds`: random crops (random scale, position, mirror) of the
  user's images, resized to the render size.
- :class:`ProceduralBackgrounds` (the embedded default): several families of varied,
  non-flat images — multi-scale value noise, gradients, shapes, stripes/plaids and
  turbulence textures — built with vectorised numpy and PIL's C resizing/drawing so one
  image costs about a millisecond.
- :class:`BackgroundBank` (what the pipeline uses by default): a per-worker bank of
  procedural textures built from the global seed, randomly cropped, mirrored, rotated
  and recoloured per sample.

Both draw every random choice from the per-sample generator they are given.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from pathlib import Path

import cv2
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


@functools.lru_cache(maxsize=64)
def _smooth_upsampling(cells: int, size: int) -> np.ndarray:
    """Matrix W (size, cells): ``W @ grid @ W.T`` resamples a cells×cells grid to size×size
    with smoothstep-weighted interpolation between neighbouring grid values (value noise)."""
    position = np.linspace(0.0, cells - 1.0, size)
    left = np.minimum(np.floor(position).astype(int), max(cells - 2, 0))
    t = position - left
    weight = t * t * (3.0 - 2.0 * t)
    matrix = np.zeros((size, cells), np.float32)
    matrix[np.arange(size), left] += 1.0 - weight
    matrix[np.arange(size), np.minimum(left + 1, cells - 1)] += weight
    return matrix


def _value_noise(rng: np.random.Generator, size: int, channels: int, octaves: int,
                 persistence: float) -> np.ndarray:
    """Multi-scale value noise (size, size, channels), zero mean and standard deviation 0.5:
    random grids of doubling resolution, smoothly interpolated (two small matrix products
    per octave and channel) and summed with weights decaying by ``persistence``."""
    total = np.zeros((channels, size, size), np.float32)
    weight, norm = 1.0, 0.0
    cells = int(rng.integers(2, 5))
    for _ in range(octaves):
        grid = rng.uniform(-1.0, 1.0, size=(channels, cells, cells)).astype(np.float32)
        upsample = _smooth_upsampling(cells, size)
        total += np.float32(weight) * (upsample @ grid @ upsample.T)
        norm += weight
        weight *= persistence
        cells = min(2 * cells, size)
    total -= total.mean()
    total *= np.float32(0.5) / max(float(total.std()), 1e-6)
    return np.moveaxis(total, 0, -1)


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
    base = rng.uniform(40, 215, size=3).astype(np.float32)
    contrast = np.float32(rng.uniform(40, 100))
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
#: Smooth families are drawn at a quarter of the image size and upsampled, the others at half.
_SMOOTH = ("noise", "gradient", "texture")


class ProceduralBackgrounds:
    """The embedded background generator: one of :data:`FAMILIES` per sample."""

    def __init__(self, families: tuple[str, ...] = tuple(FAMILIES)):
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise BackgroundError(f"unknown procedural background families {unknown}; known: {list(FAMILIES)}")
        self.families = tuple(families)

    def sample(self, rng: np.random.Generator, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """A (size, size, 3) uint8 image of a family chosen by ``rng`` (copied into ``out`` if given)."""
        family = self.families[int(rng.integers(len(self.families)))]
        return _into(self.draw(family, rng, size), out)

    @staticmethod
    def draw(family: str, rng: np.random.Generator, size: int, upsample: bool = True) -> np.ndarray:
        """One image of ``family``. Above 64 px it is drawn at a quarter (smooth families) or
        half the size and (if ``upsample``) resized to ``size``: backgrounds need no finer
        detail, and the per-pixel numpy work shrinks 4–16×."""
        work = size if size <= 64 else max(64, -(-size // (4 if family in _SMOOTH else 2)))
        image = np.clip(FAMILIES[family](rng, work), 0, 255).astype(np.uint8)
        if upsample and work != size:
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        return image

    def describe(self) -> str:
        return f"procedural:{','.join(self.families)}"


#: First entropy word of the bank generators, so they never coincide with a sample's
#: ``[seed, index]`` generator (:func:`render.sampling.sample_rng`).
_BANK_STREAM = 0x6B61_6E6B


class BackgroundBank:
    """Procedural backgrounds drawn from a bank of base textures, varied per sample.

    The bank holds ``per_family`` textures of each family, drawn with
    :class:`ProceduralBackgrounds` at its working resolution from generators that depend
    only on (``seed``, family, texture number): every worker builds the same bank at
    start-up (about 1 ms per texture). Per sample, the sample's own generator picks a
    family and a texture and varies it: a random square crop (``crop_range`` of the
    texture's side, random position), a mirror, a 90° rotation, and a colour change —
    hue rotation about the grey axis, per-channel gain, contrast and brightness — then
    the crop is upsampled to the render size. That keeps backgrounds varied (5 families ×
    ``per_family`` textures × continuous crops and colours) at a fraction of drawing
    each one afresh (``docs/rendering_benchmark.md``).
    """

    def __init__(self, seed: int, size: int, per_family: int = 128, families: tuple[str, ...] = tuple(FAMILIES),
                 crop_range: tuple[float, float] = (0.55, 1.0)):
        if per_family < 1:
            raise BackgroundError(f"background bank: per_family should be at least 1, found {per_family}")
        self.generator = ProceduralBackgrounds(families)
        self.families, self.size, self.crop_range = self.generator.families, int(size), crop_range
        self.textures = {
            family: [self.generator.draw(family, np.random.default_rng([_BANK_STREAM, int(seed), f, k]), self.size,
                                         upsample=False)
                     for k in range(per_family)]
            for f, family in enumerate(self.families)
        }

    def sample(self, rng: np.random.Generator, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """A (size, size, 3) uint8 background, into ``out`` if given; all choices come from ``rng``.

        The colour change runs on the crop itself (a view of the texture), then OpenCV mirrors,
        rotates and upsamples it: per pixel the same values as mirroring and rotating first
        (the colour change is per pixel), with fewer copies.
        """
        family = self.families[int(rng.integers(len(self.families)))]
        bank = self.textures[family]
        texture = bank[int(rng.integers(len(bank)))]
        side = texture.shape[0]
        crop = max(2, int(round(rng.uniform(*self.crop_range) * side)))
        top, left = (int(v) for v in rng.integers(0, side - crop + 1, size=2))
        mirror = rng.uniform() < 0.5
        quarter_turns = int(rng.integers(4))
        patch = _recolour(texture[top:top + crop, left:left + crop], rng)
        if mirror:
            patch = cv2.flip(patch, 1)
        if quarter_turns:
            patch = cv2.rotate(patch, _COUNTERCLOCKWISE[quarter_turns])
        return _resized(patch, size, out)

    def describe(self) -> str:
        per_family = len(next(iter(self.textures.values())))
        return f"procedural bank:{','.join(self.families)}x{per_family}"


#: ``cv2.rotate`` codes of ``np.rot90(image, k)`` (k quarter turns counter-clockwise).
_COUNTERCLOCKWISE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


def _into(image: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return image
    out[...] = image
    return out


def _resized(image: np.ndarray, size: int, out: np.ndarray | None) -> np.ndarray:
    """``image`` resized to (size, size) bilinearly (pixel-centre aligned), into ``out`` if given."""
    if out is None:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    written = cv2.resize(image, (size, size), dst=out, interpolation=cv2.INTER_LINEAR)
    if written.ctypes.data != out.ctypes.data:  # OpenCV silently reallocates a dst it cannot use
        out[...] = written
    return out


def _recolour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random hue rotation (about the grey axis), per-channel gain, contrast and brightness of a uint8 image."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    axis = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    rotation = np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * np.outer(axis, axis)
    gain = rng.uniform(0.8, 1.2, size=3) * rng.uniform(0.7, 1.3)  # colour balance × contrast
    matrix = (rotation * gain[:, None]).astype(np.float32)
    offset = np.float32(128.0 + rng.uniform(-35.0, 35.0))
    # x ↦ M·(x − 128) + offset = M·x + (offset − 128·M·1), rounded and clipped to uint8 in one OpenCV pass
    affine = np.concatenate([matrix, (offset - 128.0 * matrix.sum(axis=1, dtype=np.float64))[:, None]], axis=1)
    return cv2.transform(np.ascontiguousarray(image), affine.astype(np.float64))


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

    def sample(self, rng: np.random.Generator, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """A (size, size, 3) uint8 random crop of a random image (copied into ``out`` if given)."""
        path = self.paths[int(rng.integers(len(self.paths)))]
        fraction, fx, fy, mirror = rng.uniform(*self.crop_range), rng.uniform(), rng.uniform(), rng.uniform()
        image = self._load(path)
        side = max(1, int(round(fraction * min(image.size))))
        left = int(fx * (image.size[0] - side))
        top = int(fy * (image.size[1] - side))
        crop = image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
        if mirror < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return _into(np.asarray(crop, np.uint8), out)

    def describe(self) -> str:
        return f"folder:{self.folder} ({len(self.paths)} images)"


def background_source(folder: str | Path | None, crop_range: tuple[float, float] = (0.3, 1.0),
                      bank: int = 0, seed: int = 0, size: int = 256, families: tuple[str, ...] = tuple(FAMILIES)):
    """The user's image folder if given; else a :class:`BackgroundBank` of ``bank`` textures
    per family of ``families`` (built from ``seed`` for images of ``size``), or with
    ``bank=0`` the procedural generator drawing every image afresh."""
    if folder is not None:
        return FolderBackgrounds(folder, crop_range)
    if bank > 0:
        return BackgroundBank(seed, size, bank, families=tuple(families))
    return ProceduralBackgrounds(tuple(families))
