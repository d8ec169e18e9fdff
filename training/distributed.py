"""Single-process and multi-process (``torchrun``) execution.

``torchrun --nproc_per_node N tools/train.py ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` reads them, joins the process group (``nccl`` on CUDA,
``gloo`` on CPU) and picks the device. Without those variables it is a plain
single-process run. :func:`wrap_model` adds ``DistributedDataParallel`` (gradients are
averaged over processes, so with equal per-process batches one step equals a
single-process step on the concatenated batch).

BatchNorm: DDP normalises with per-process batch statistics. On CUDA the model's
BatchNorm layers are converted to ``SyncBatchNorm`` (``model.sync_bn``, default on), which
makes a multi-GPU step equal to a single-GPU step on the whole batch. PyTorch's
``SyncBatchNorm`` does not run on CPU, so CPU/gloo runs keep per-process statistics; the
equivalence test therefore uses ``model.freeze_bn`` (running statistics), see
``tests/test_ddp.py``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but no CUDA device is available (use device=cpu or auto)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def setup(device_preference: str = "auto") -> DistContext:
    """Join the ``torchrun`` process group if the environment asks for one; return the context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def wrap_model(model: torch.nn.Module, ctx: DistContext, sync_bn: bool = True) -> torch.nn.Module:
    """DDP-wrap ``model`` (already on ``ctx.device``) in a multi-process run; unchanged otherwise."""
    if not ctx.distributed:
        return model
    if sync_bn and ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average ``tensor`` over processes in place (no-op in a single process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= ctx.world_size
    return tensor


def any_true(flag: bool, ctx: DistContext) -> bool:
    """True on every process when ``flag`` is true on at least one (used to stop all ranks together)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
