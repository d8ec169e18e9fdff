"""Batched input pipeline: workers deliver compact arrays and a plan, the training device does the arithmetic.

The per-sample chain (:func:`datasets.transforms.training_transform`) turns every sample
into five float32 images in the worker (≈ 2.4 MB at 256², most of a worker's time and of
what it passes to the main process). Here the same chain is split in two:

- in the worker, :class:`datasets.compact_samples.CompactSamples` reads the stored arrays
  (uint8 RGB, uint16 depth in mm, float32 joints and ``K``), *plans* the geometric
  transforms (one composed warp per sample) and, with ``warp_in_worker``, resamples the
  images once with OpenCV, staying uint8/uint16, straight into the shared batch;
- in the main process, :class:`BatchTransform` takes the collated batch on the training
  device and finishes the chain for all samples at once: the warp (``grid_sample``, when
  the worker did not warp), the depth correction under rotation, colour jitter,
  ``rgb_input``/``depth_input`` and the regression target, and the joints, ``K`` and
  visibility of the plan. On a CPU, a batch the workers warped is finished by one
  compiled pass per image (:mod:`datasets.cpu_kernels`) instead of the torch operations.

The result has the keys and meaning of the per-sample chain's collated batch (``rgb``,
``rgb_input``, ``depth_input``, ``target``, ``root``, ``scale``, ``joints3d``,
``joints2d``, ``visible``, ``K``, ``index``); ``tests/test_batch_transform.py`` checks it
against the per-sample path and the projection invariant ``joints2d = project(joints3d, K)``.
Warping on the worker pays on a CPU-only machine (OpenCV on uint8 is several times faster
than ``grid_sample`` on floats); on a GPU the device warp takes that work off the CPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from datasets.compact_samples import FREE
from datasets.joints import SCALE_BONE, index as joint_index
from datasets.transforms import DEPTH_BACKGROUND, RGB_MEAN, RGB_STD

_ROOT = joint_index("wrist")
_SCALE_FROM, _SCALE_TO = (joint_index(name) for name in SCALE_BONE)
#: Luma weights of the colour jitter's grey (:func:`datasets.warp.jitter_colour`).
_LUMA = (0.299, 0.587, 0.114)
#: Keys the batch transform passes through unchanged: the index and where each sample is stored.
_PASSED_KEYS = ("index", "shard", "shard_sample")


class BatchTransform:
    """Finish the planned transforms of a collated compact batch, on whatever device it is on.

    Per sample, with ``M`` the planned warp (source → output pixels), ``R`` its scene
    rotation and ``K_s`` the stored intrinsics (see :func:`datasets.warp.apply_warp`):

    - images: resampled by ``M`` unless ``warped`` (bilinear RGB, nearest depth); depth
      ``z`` at output pixel ``p`` becomes ``z·(R·K_s⁻¹·p_s)_z`` with ``p_s = M⁻¹·p``;
    - colour: each (brightness b, contrast c, saturation s) set is the affine map
      ``x ↦ c·b·(s·x + (1−s)·(w·x)·1) + (1−c)·b·mean(w·x)`` (``w`` the luma weights,
      ``1 = (1,1,1)``), then a clip to [0, 1] — :func:`datasets.warp.jitter_colour`
      written as one 3×3 matrix and offset per sample;
    - inputs: ``rgb_input = (rgb − RGB_MEAN) / RGB_STD``; ``depth_input = clip((z − z_root)
      / cube, −1, 1)``, ``DEPTH_BACKGROUND`` where there is no depth;
    - geometry: ``joints2d ← M·uv``, ``joints3d ← R·J``, ``K ← K_plan``, joints outside
      the output become invisible; target ``(J − J_root) / ‖J_pip − J_mcp‖`` (middle finger).
    """

    def __init__(self, target: bool = True, cube_half_size: float | None = None, warped: bool = True,
                 keep_rgb: bool = True):
        self.target, self.cube_half_size, self.warped = bool(target), cube_half_size, bool(warped)
        self.keep_rgb = bool(keep_rgb) or cube_half_size is None  # without inputs, rgb is the image delivered

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        height, width = (int(v) for v in batch["plan_size"][0].tolist())
        M = batch["plan_M"].to(torch.float64)
        M_inverse = torch.linalg.inv(M)
        out = self._geometry(batch, M, height, width)
        if self._one_pass_on_cpu(batch):
            out["rgb_input"] = self._rgb_one_pass(batch)
            if "depth16" in batch:
                out["depth_input"] = self._depth_one_pass(batch, M_inverse, out["joints3d"])
            return out
        grid = None if self.warped else _sampling_grid(M_inverse, height, width, *batch["rgb8"].shape[2:4])
        out.update(self._rgb(batch, grid))
        if self.cube_half_size is not None and "depth16" in batch:
            out["depth_input"] = self._depth(batch, grid, M_inverse, out["joints3d"], height, width)
        return out

    def _one_pass_on_cpu(self, batch) -> bool:
        """Training batches the workers warped, on a CPU, with at most one colour set: :mod:`datasets.cpu_kernels`."""
        return (self.warped and not self.keep_rgb and self.cube_half_size is not None
                and batch["rgb8"].device.type == "cpu" and batch["plan_colour"].shape[1] <= 1)

    def _rgb_one_pass(self, batch) -> torch.Tensor:
        """``rgb_input`` of :meth:`_rgb` (one colour set or none, normalisation folded) by :func:`finish_rgb`."""
        from datasets.cpu_kernels import channel_sums, finish_rgb

        rgb8 = batch["rgb8"].contiguous().numpy()
        count = rgb8.shape[0]
        mean, std, luma = (np.asarray(v, np.float64) for v in (RGB_MEAN, RGB_STD, _LUMA))
        alpha, beta, offset = np.full((count, 3), 1.0 / 255.0), np.zeros((count, 3)), np.zeros((count, 3))
        colour = batch["plan_colour"].numpy().astype(np.float64)
        if colour.shape[1] == 1:  # α = c·b·s, β = c·b·(1 − s), d = (1 − c)·b·mean(g), mean(g) = w·mean(x)
            b, c, s = (colour[:, 0, i, None] for i in range(3))
            grey_mean = (channel_sums(rgb8).astype(np.float64) @ luma)[:, None] / (255.0 * rgb8[0, 0].size)
            alpha = np.repeat(c * b * s / 255.0, 3, axis=1)
            beta = np.repeat(c * b * (1 - s) / 255.0, 3, axis=1)
            offset = np.repeat((1 - c) * b * grey_mean, 3, axis=1)
        out = np.empty(rgb8.shape, np.float32)
        finish_rgb(rgb8, (alpha / std).astype(np.float32), (beta / std).astype(np.float32),
                   ((offset - mean) / std).astype(np.float32), (-mean / std).astype(np.float32),
                   ((1.0 - mean) / std).astype(np.float32), luma.astype(np.float32), out)
        return torch.from_numpy(out)

    def _depth_one_pass(self, batch, M_inverse, joints3d) -> torch.Tensor:
        """``depth_input`` of :meth:`_depth` by :func:`finish_depth`: the depth factor ``f = row·[p_s, 1]``
        as ``(row·M⁻¹)·p / (M⁻¹)_z·p`` per output pixel ``p``, with ``k = 1/(1000·cube)`` folded into the numerator."""
        from datasets.cpu_kernels import finish_depth

        depth16 = batch["depth16"].contiguous().numpy()
        k = 1.0 / (1000.0 * self.cube_half_size)
        row = (batch["plan_R"].to(torch.float64) @ torch.linalg.inv(batch["K"].to(torch.float64)))[:, 2]
        numerator = ((row[:, None, :] @ M_inverse)[:, 0] * k).numpy().astype(np.float32)
        denominator = M_inverse[:, 2].numpy().astype(np.float32)
        root = (joints3d[:, _ROOT, 2].to(torch.float32) / self.cube_half_size).numpy()
        out = np.empty((depth16.shape[0], 1) + depth16.shape[1:], np.float32)
        finish_depth(depth16, numerator, denominator, root, np.float32(DEPTH_BACKGROUND), out)
        return torch.from_numpy(out)

    def _geometry(self, batch, M, height, width) -> dict[str, torch.Tensor]:
        uv = batch["joints2d"].to(torch.float64)
        mapped = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1) @ M.transpose(1, 2)
        uv = mapped[..., :2] / mapped[..., 2:3]
        joints = (batch["joints3d"].to(torch.float64) @ batch["plan_R"].to(torch.float64).transpose(1, 2)).float()
        inside = ((uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5)
                  & (uv[..., 1] <= height - 0.5))
        out = {"joints3d": joints, "joints2d": uv.float(), "visible": batch["visible"].bool() & inside,
               "K": batch["plan_K"].float()}
        # copies: the compact batch may be a recycled buffer of its worker (datasets.compact_samples)
        out.update({k: batch[k].clone() if isinstance(batch[k], torch.Tensor) else batch[k]
                    for k in _PASSED_KEYS if k in batch})
        if self.target:
            joints64 = joints.to(torch.float64)
            root = joints64[:, _ROOT]
            scale = torch.linalg.vector_norm(joints64[:, _SCALE_TO] - joints64[:, _SCALE_FROM], dim=-1)
            bad = ~(scale > 0)
            if bool(bad.any()):
                first = int(batch["index"][bad.nonzero()[0, 0]])
                raise ValueError(f"sample {first}: scale bone middle_mcp–middle_pip has length "
                                 f"{float(scale[bad][0])}")
            out["target"] = ((joints64 - root[:, None]) / scale[:, None, None]).float()
            out["root"], out["scale"] = root.float(), scale.float()
        return out

    def _rgb(self, batch, grid) -> dict[str, torch.Tensor]:
        """``rgb`` (B, 3, H, W) in [0, 1] (warped unless done, colour-jittered) and/or ``rgb_input``.

        Each colour set is ``y_c = α·x_c + β·g + d`` with ``g = w·x`` the grey of each pixel
        (``α = c·b·s``, ``β = c·b·(1−s)``, ``d = (1−c)·b·mean(g)``), then a clip: two fused
        multiply-adds and a clamp per pixel after one uint8 → float conversion (the 1/255
        folded into α and β). When only ``rgb_input`` is kept, the normalisation
        is folded into the last set and its clip to [0, 1] becomes a clip to
        [(0 − mean)/std, (1 − mean)/std].
        """
        rgb8 = batch["rgb8"]
        count, device = rgb8.shape[0], rgb8.device
        if grid is None:
            x = rgb8.flatten(2).float()  # one contiguous conversion (mixed-dtype arithmetic would copy more)
        else:
            x = F.grid_sample(rgb8.float(), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False).flatten(2)  # bilinear weights sum to ≤ 1: stays in [0, 255]
        shape = (count, 3) + tuple(rgb8.shape[2:]) if grid is None else (count, 3) + tuple(grid.shape[1:3])
        mean = torch.tensor(RGB_MEAN, dtype=torch.float64, device=device)
        std = torch.tensor(RGB_STD, dtype=torch.float64, device=device)
        colour = batch["plan_colour"].to(device=device, dtype=torch.float64)
        sets = colour.shape[1]
        fold_inputs = self.cube_half_size is not None and not self.keep_rgb
        scale, ones = 1.0 / 255.0, torch.ones((count, 1), dtype=torch.float64, device=device)
        for k in range(max(sets, 1)):
            grey = None
            if k < sets:
                b, c, s = (colour[:, k, i, None] for i in range(3))
                grey = _grey(x)
                grey_mean = grey.mean(dim=1, keepdim=True).to(torch.float64) * scale
                alpha, beta, offset = c * b * s * scale * ones, c * b * (1 - s) * scale, (1 - c) * b * grey_mean
            else:
                alpha, beta, offset = scale * ones, None, 0.0 * ones
            alpha, offset = alpha.expand(count, 3), offset.expand(count, 3)
            bounds = [(0.0, 1.0)] * 3  # python floats: no device → host copies on a GPU
            if fold_inputs and k == max(sets, 1) - 1:  # (clip(y, 0, 1) − m)/σ = clip((y − m)/σ, −m/σ, (1 − m)/σ)
                alpha, offset = alpha / std, (offset - mean) / std
                bounds = [(-m / sd, (1.0 - m) / sd) for m, sd in zip(RGB_MEAN, RGB_STD)]
                beta = None if beta is None else beta / std
            # in place on our own float copy; broadcast addcmul and tensor-bound clamps are several times slower
            x.mul_(alpha.to(torch.float32)[..., None]).add_(offset.to(torch.float32)[..., None])
            if beta is not None:
                x.addcmul_(grey[:, None], beta.expand(count, 3).to(torch.float32)[..., None])
            for channel, (low, high) in enumerate(bounds):
                x[:, channel].clamp_(low, high)
            scale = 1.0
        if fold_inputs:
            return {"rgb_input": x.view(shape)}
        rgb = x.view(shape)
        if self.cube_half_size is None:
            return {"rgb": rgb}
        return {"rgb": rgb, "rgb_input": _normalise_rgb(rgb)}

    def _depth(self, batch, grid, M_inverse, joints3d, height, width) -> torch.Tensor:
        """``depth_input`` (B, 1, H, W): metric depth of the warped (rotated) scene, normalised about the root.

        ``(z·f/1000 − z_root)/cube`` with ``z`` in mm and ``f`` the rotation's depth factor,
        written as ``(k·f)·z − z_root/cube`` with ``k = 1/(1000·cube)`` folded into ``f``.
        """
        depth16 = batch["depth16"][:, None]
        count, device = depth16.shape[0], depth16.device
        if grid is None:
            z = torch.empty(depth16.shape, dtype=torch.float32, device=device).copy_(depth16)
        else:
            z = F.grid_sample(depth16.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        k = 1.0 / (1000.0 * self.cube_half_size)
        root = (joints3d[:, _ROOT, 2].to(torch.float32) / self.cube_half_size)[:, None, None, None]
        rotation = batch["plan_R"].to(torch.float64)
        if bool((rotation == torch.eye(3, dtype=torch.float64, device=device)).all()):
            relative = torch.mul(z, k).sub_(root)
        else:
            # f = row·[p_s, 1], row = (R·K_s⁻¹)_z, p_s = dehomogenised M⁻¹·p, i.e. (row·M⁻¹)·p / (M⁻¹)_z·p
            row = (rotation @ torch.linalg.inv(batch["K"].to(torch.float64)))[:, 2]
            numerator = _plane((row[:, None, :] @ M_inverse)[:, 0] * k, height, width)[:, None]
            relative = torch.addcdiv(-root, numerator.mul_(z), _plane(M_inverse[:, 2], height, width)[:, None])
        relative = relative.clamp_(-1.0, 1.0)
        no_depth = (depth16 == 0) if grid is None else (z == 0)
        return relative.masked_fill_(no_depth, DEPTH_BACKGROUND)

    def __repr__(self) -> str:
        return (f"BatchTransform(target={self.target}, cube_half_size={self.cube_half_size}, warped={self.warped}, "
                f"keep_rgb={self.keep_rgb})")


def _grey(x: torch.Tensor) -> torch.Tensor:
    """``w·x`` per pixel (B, N) of a float image (B, 3, N)."""
    grey = torch.mul(x[:, 0], _LUMA[0])
    grey.add_(x[:, 1], alpha=_LUMA[1])
    return grey.add_(x[:, 2], alpha=_LUMA[2])


def _plane(coefficients: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``a·u + b·v + c`` over the output pixels (B, H, W) for coefficients (B, 3), in float32 (one full pass)."""
    coefficients = coefficients.to(torch.float32)
    u = torch.arange(width, dtype=torch.float32, device=coefficients.device)
    v = torch.arange(height, dtype=torch.float32, device=coefficients.device)
    return (coefficients[:, 0, None] * u)[:, None, :] + (coefficients[:, 1, None] * v
                                                               + coefficients[:, 2, None])[:, :, None]


def _sampling_grid(M_inverse: torch.Tensor, height: int, width: int, source_height: int,
                   source_width: int) -> torch.Tensor:
    """``grid_sample`` grid (B, H, W, 2): source pixel ``M⁻¹·p`` of each output pixel, pixel centre i → (2i+1)/W − 1."""
    x = _plane(M_inverse[:, 0], height, width)
    y = _plane(M_inverse[:, 1], height, width)
    w = _plane(M_inverse[:, 2], height, width)
    return torch.stack([(2.0 * x / w + 1.0) / source_width - 1.0, (2.0 * y / w + 1.0) / source_height - 1.0], dim=-1)


def _normalise_rgb(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(RGB_MEAN, dtype=rgb.dtype, device=rgb.device)[None, :, None, None]
    std = torch.tensor(RGB_STD, dtype=rgb.dtype, device=rgb.device)[None, :, None, None]
    return (rgb - mean) / std


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Move a collated batch to ``device``; non-blocking (from pinned memory, on CUDA)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class DeviceBatches:
    """Iterate a DataLoader of compact batches, delivering finished batches on ``device``.

    Each batch is copied to ``device`` (non-blocking: the DataLoader pins it when it runs
    with ``pin_memory``) and finished there by ``transform``. ``dataset``, ``sampler`` and
    ``len()`` are the DataLoader's, so a training loop uses this as it would the loader.
    """

    def __init__(self, loader, transform: BatchTransform, device: torch.device | str = "cpu"):
        self.loader, self.transform, self.device = loader, transform, torch.device(device)

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def sampler(self):
        return self.loader.sampler

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            flag = batch.pop("_release", None)  # a recycled shared buffer: back to its worker once consumed
            finished = self.transform(to_device(batch, self.device))
            if flag is not None:
                flag.fill_(FREE)
            del batch
            yield finished


__all__ = ["BatchTransform", "DeviceBatches", "to_device"]
