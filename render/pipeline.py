"""One worker's sample pipeline: draw → hand model → render → composite → labels.

:class:`SamplePipeline` is built once per worker process (hand model, GL renderer and
background source are kept for all its samples) and turns a range of sample indices into
the arrays of a shard (`interfaces.md`, "Synthetic and converted shards").

Per chunk of samples the hand model runs once, batched; then each sample's draws (placement,
light, skin, background) are made, the joints projected, and only then the samples rendered and
finished one by one.
Procedural backgrounds come from a per-worker :class:`render.backgrounds.BackgroundBank`
built from the global seed (``SynthConfig.background_bank``), the same in every worker.
Each sample's random choices come from its own generator (:func:`render.sampling.sample_rng`),
consumed in a fixed order, so they never depend on other samples. Chunks start at the
shard's first sample, so the batches — and with them the last bit of the hand model's
float arithmetic — are the same in every run with the same shard and chunk size.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from render.backgrounds import BackgroundError, background_source
from render.depth_sensor import apply_depth_sensor, sensor_config, sensor_rng
from render.postprocess import finish_sample, joint_visibility
from render.sampling import (SynthConfig, draw_hand, draw_lighting, draw_skin, place_hand, sample_rng,
                             texture_colours)

#: Hand-parameter arrays stored next to the images (names and per-sample shapes).
PARAMETER_ARRAYS = {"pose_pca": (10,), "hand_pose": (45,), "global_orient": (3,), "betas": (10,)}


def allocate(count: int, size: int) -> dict[str, np.ndarray]:
    """Empty shard arrays for ``count`` samples of ``size``×``size`` pixels."""
    arrays = {
        "rgb": np.zeros((count, size, size, 3), np.uint8),
        "depth": np.zeros((count, size, size), np.uint16),
        "mask": np.zeros((count, size, size), np.uint8),
        "joints3d": np.zeros((count, 21, 3), np.float32),
        "joints2d": np.zeros((count, 21, 2), np.float32),
        "visible": np.zeros((count, 21), bool),
        "K": np.zeros((count, 3, 3), np.float32),
        "seed": np.zeros(count, np.int64),
        "sample_index": np.zeros(count, np.int64),
    }
    arrays.update({name: np.zeros((count,) + shape, np.float32) for name, shape in PARAMETER_ARRAYS.items()})
    return arrays


class SamplePipeline:
    """Renders samples of one dataset (config + seed) in one process."""

    def __init__(self, cfg: SynthConfig, seed: int, mano_path: str | None = None, chunk_size: int = 50):
        import cv2

        from render.hand_model import HandModel  # heavy imports stay inside the worker
        from render.renderer import HandRenderer

        cv2.setNumThreads(1)  # backgrounds and compositing: one thread per worker (the workers are the parallelism)

        self.cfg, self.seed, self.chunk_size = cfg, int(seed), int(chunk_size)
        self.hand_model = HandModel(model_path=mano_path, num_pca_comps=cfg.num_pca_comps)
        zeros = np.zeros((1, cfg.num_pca_comps), np.float32)
        self.template = self.hand_model(zeros, np.zeros((1, 10), np.float32), None).vertices[0]
        self.base_colours = None
        if cfg.skin_texture is not None:
            self.base_colours = texture_colours(_read_texture(cfg.skin_texture), self.template)
        self.backgrounds = background_source(cfg.backgrounds, cfg.background_crop_range, cfg.background_bank,
                                             self.seed, cfg.image_size, cfg.background_families)
        self.K = cfg.intrinsics()
        self.renderer = HandRenderer(cfg.image_size, cfg.image_size, self.hand_model.faces,
                                     self.hand_model.num_vertices)
        self._buffers: dict[str, np.ndarray] | None = None

    @property
    def identity(self) -> str:
        return self.hand_model.identity

    def render(self, start: int, count: int, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """Arrays for samples ``start … start+count−1``; ``progress(n)`` is called after each chunk.

        The arrays are reused (every element overwritten) by the next call with the same
        ``count``: a worker writes each shard before rendering the next, and fresh arrays
        would cost page faults on every image (~0.3 ms per sample). Copy them to keep them.
        """
        if self._buffers is None or len(self._buffers["seed"]) != count:
            self._buffers = allocate(count, self.cfg.image_size)
        arrays = self._buffers
        for chunk_start in range(0, count, self.chunk_size):
            chunk = range(chunk_start, min(count, chunk_start + self.chunk_size))
            self._render_chunk(arrays, start, chunk)
            if progress is not None:
                progress(len(chunk))
        return arrays

    def _render_chunk(self, arrays: dict[str, np.ndarray], start: int, rows: range) -> None:
        cfg = self.cfg
        rngs = [sample_rng(self.seed, start + row) for row in rows]
        hands = [draw_hand(rng, cfg) for rng in rngs]
        pose = np.stack([h.pose_pca for h in hands])
        betas = np.stack([h.betas for h in hands])
        orient = np.stack([h.global_orient for h in hands])
        with _single_torch_thread():
            posed = self.hand_model(pose, betas, orient)
        # Every draw of a sample happens before any render (its generator's order is unchanged), so the
        # chunk's small per-sample steps run back to back, not each after a render that evicted the caches.
        translations, lightings, skins = [], [], []
        for b, (row, rng) in enumerate(zip(rows, rngs)):
            translations.append(place_hand(rng, posed.joints[b], cfg).astype(np.float32))
            lightings.append(draw_lighting(rng, cfg))
            skins.append(draw_skin(rng, cfg, self.template, self.base_colours))
            self.backgrounds.sample(rng, cfg.image_size, out=arrays["rgb"][row])  # the hand goes over it
        offsets = np.stack(translations)[:, None, :]
        vertices = posed.vertices + offsets
        joints = (posed.joints + offsets).astype(np.float32)
        joints2d = project_elementwise(joints.reshape(-1, 3), self.K).reshape(joints.shape[0], -1, 2)
        chunk = slice(rows.start, rows.stop)
        arrays["joints3d"][chunk], arrays["joints2d"][chunk], arrays["K"][chunk] = joints, joints2d, self.K
        arrays["seed"][chunk] = self.seed
        arrays["sample_index"][chunk] = np.arange(start + rows.start, start + rows.stop)
        for b, row in enumerate(rows):
            frame = self.renderer.render(vertices[b], skins[b], self.K, lightings[b])
            stored = frame.depth
            if cfg.depth_sensor:  # real-like sensor depth (render.depth_sensor), its own seeded generator
                stored = apply_depth_sensor(frame.depth, self.K, sensor_config(cfg.depth_sensor),
                                            sensor_rng(self.seed, start + row))
            finish_sample(frame.rgb, frame.depth, stored, arrays["rgb"][row], arrays["rgb"][row],
                          arrays["depth"][row], arrays["mask"][row])
            arrays["visible"][row] = joint_visibility(joints[b], joints2d[b], frame.depth, cfg.visibility_tolerance_m)
        arrays["pose_pca"][chunk], arrays["betas"][chunk] = pose, betas
        arrays["global_orient"][chunk], arrays["hand_pose"][chunk] = orient, posed.hand_pose

    def close(self) -> None:
        self.renderer.close()


def project_elementwise(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection (N,3) → (N,2) pixels with zero skew, written elementwise so the
    result is bitwise the same whatever BLAS threading the process uses (a matrix product
    may sum in a different order in a multi-threaded process)."""
    points = points.astype(np.float64)
    u = K[0, 0].astype(np.float64) * points[:, 0] / points[:, 2] + K[0, 2]
    v = K[1, 1].astype(np.float64) * points[:, 1] / points[:, 2] + K[1, 2]
    return np.stack([u, v], axis=-1).astype(np.float32)


@contextlib.contextmanager
def _single_torch_thread():
    """Run the (torch) hand model on one thread: spawned workers do anyway, and results
    must not depend on the thread count (summation order), so in-process runs match them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _read_texture(path: str) -> np.ndarray:
    try:
        with Image.open(Path(path)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise BackgroundError(f"{path}: skin texture is not a readable image ({exc})") from exc
