"""Preview grids of shard samples: RGB with the projected skeleton, colour-mapped depth, mask."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from datasets.joints import BONES, FINGERS, MANO21
from datasets.shard_format import list_shards, open_shard

#: One colour per finger (thumb → pinky); the wrist is white.
FINGER_COLOURS = {"thumb": (230, 40, 40), "index": (245, 160, 20), "middle": (40, 200, 60),
                  "ring": (40, 120, 240), "pinky": (200, 60, 220)}


def _finger(name: str) -> str | None:
    return next((f for f in FINGERS if name.startswith(f + "_")), None)


def draw_skeleton(rgb: np.ndarray, joints2d: np.ndarray, visible: np.ndarray) -> Image.Image:
    """RGB image with bones coloured by finger; visible joints filled, occluded ones hollow."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    radius = max(1.5, rgb.shape[0] / 100)
    for parent, child in BONES:
        a, b = joints2d[MANO21.index(parent)], joints2d[MANO21.index(child)]
        draw.line([tuple(a), tuple(b)], fill=FINGER_COLOURS[_finger(child)], width=max(1, rgb.shape[0] // 128))
    for j, name in enumerate(MANO21):
        colour = FINGER_COLOURS.get(_finger(name), (255, 255, 255))
        u, v = joints2d[j]
        box = [u - radius, v - radius, u + radius, v + radius]
        draw.ellipse(box, fill=colour if visible[j] else None, outline=colour)
    return image


def colour_depth(depth_mm: np.ndarray) -> Image.Image:
    """Depth (H,W) uint16 mm → RGB with a perceptual colour map over the hand's depth range; background black."""
    from matplotlib import colormaps

    hand = depth_mm > 0
    out = np.zeros(depth_mm.shape + (3,), np.uint8)
    if hand.any():
        near, far = depth_mm[hand].min(), depth_mm[hand].max()
        scaled = (depth_mm[hand].astype(np.float32) - near) / max(float(far - near), 1.0)
        out[hand] = (colormaps["viridis"](scaled)[:, :3] * 255).astype(np.uint8)
    return Image.fromarray(out)


def sample_grid(directory: str | Path, count: int = 8, columns: int = 2) -> Image.Image:
    """A grid of the first ``count`` samples of a shard directory, each as [RGB+skeleton | depth | mask]."""
    shards = list_shards(directory)
    if not shards:
        raise FileNotFoundError(f"{directory}: no shard-*.h5 files found")
    tiles = []
    for path in shards:
        with open_shard(path) as shard:
            for i in range(min(count - len(tiles), shard["rgb"].shape[0])):
                parts = [draw_skeleton(shard["rgb"][i], shard["joints2d"][i], shard["visible"][i])]
                if "depth" in shard:
                    parts.append(colour_depth(shard["depth"][i]))
                if "mask" in shard:
                    parts.append(Image.fromarray(shard["mask"][i] * 255).convert("RGB"))
                tiles.append(np.concatenate([np.asarray(p) for p in parts], axis=1))
        if len(tiles) >= count:
            break
    rows = -(-len(tiles) // columns)
    height, width = tiles[0].shape[:2]
    gap = 4
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * (height + gap):r * (height + gap) + height, c * (width + gap):c * (width + gap) + width] = tile
    return Image.fromarray(grid)
