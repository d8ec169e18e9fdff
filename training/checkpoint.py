"""Atomic training checkpoints and resume.

A checkpoint is one ``torch.save`` file holding everything a run needs to continue as if
it had never stopped: model weights, optimiser state, the prior φ (and its optimiser) when
one is learned, scheduler state, the RNG states (torch CPU/CUDA, numpy, Python), the
epoch and step, and the run's model description (so ``tools/evaluate.py`` can rebuild the
network from the file alone).

- Saving writes ``<name>.tmp-<pid>``, flushes it to disk and renames it over the final
  name, so a kill at any moment leaves either the previous or the new checkpoint, never a
  half-written one.
- Loading uses ``torch.load(..., weights_only=True)``: only tensors and plain containers
  are accepted, so a checkpoint from an untrusted source cannot run code. Everything
  stored is therefore a tensor, number, string, list or dict.
- A missing, truncated or foreign file, or weights that do not fit the model, raise
  :class:`CheckpointError` naming the file, what was expected and what was found.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from datasets.atomic import atomic_write

FORMAT = "hand-kap-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, of another format, or does not match the model."""


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a ``DistributedDataParallel`` wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


# --------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy's global generator and Python's ``random``, as tensors/lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- save / load


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    with atomic_write(path) as temporary, open(temporary, "wb") as handle:
        torch.save(obj, handle)
    return path


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    model_info: Mapping[str, Any],
    epoch: int,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    phi: Mapping[str, torch.Tensor] | None = None,
    phi_optimizer: torch.optim.Optimizer | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint atomically.

    ``model_info`` describes the network (``arch``, ``width``, ``in_channels``,
    ``modality``, ``phase``); ``epoch`` is the epoch in progress and ``step`` the number of
    optimiser steps taken so far (a resumed run continues with step ``step``).
    """
    state = {
        "format": FORMAT,
        "version": VERSION,
        "model_info": dict(model_info),
        "model": unwrap(model).state_dict(),
        "epoch": int(epoch),
        "step": int(step),
        "rng": rng_state(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "phi": {k: v.detach().cpu() for k, v in phi.items()} if phi is not None else None,
        "phi_optimizer": phi_optimizer.state_dict() if phi_optimizer is not None else None,
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and sanity-check a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` if bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, corrupt, or containing objects other than tensors): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: expected a training checkpoint of format '{FORMAT}', found {found!r}")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is unknown; this toolkit reads {VERSION}")
    for key in ("model", "model_info", "epoch", "step"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    return state


def load_model_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not match."""
    target = unwrap(model).state_dict()
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    wrong = [f"{k}: model {tuple(target[k].shape)} vs file {tuple(state_dict[k].shape)}"
             for k in target if k in state_dict and target[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (first: {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} parameters missing from the file (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected parameters (first: {unexpected[0]})")
        raise CheckpointError(f"{source}: weights do not fit the model ({'; '.join(parts)}); "
                              "was it trained with another arch, width or input modality?")
    unwrap(model).load_state_dict(state_dict, strict=True)


def check_phi(phi: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str | Path) -> None:
    """φ must have exactly one weight per parameter element of the model (`method.md` §5)."""
    params = dict(unwrap(model).named_parameters())
    missing = [n for n in params if n not in phi]
    unexpected = [n for n in phi if n not in params]
    wrong = [f"{n}: model {tuple(p.shape)} vs prior {tuple(phi[n].shape)}"
             for n, p in params.items() if n in phi and phi[n].shape != p.shape]
    if missing or unexpected or wrong:
        first = (wrong or [f"missing {m}" for m in missing] or [f"unexpected {u}" for u in unexpected])[0]
        raise CheckpointError(f"{source}: prior φ does not match the model's parameters "
                              f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of the wrong shape; "
                              f"first: {first})")


def restore_training_state(
    state: Mapping[str, Any],
    source: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    phi: Mapping[str, torch.Tensor] | None = None,
    phi_optimizer: torch.optim.Optimizer | None = None,
) -> tuple[int, int]:
    """Put a checkpoint's state back into live objects; returns ``(epoch, step)``."""
    load_model_weights(model, state["model"], source)
    try:
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if phi is not None:
            if state.get("phi") is None:
                raise CheckpointError(f"{source}: the run learns φ but the checkpoint holds none")
            check_phi(state["phi"], model, source)
            with torch.no_grad():
                for name, value in phi.items():
                    value.copy_(state["phi"][name].to(value.device))
            if phi_optimizer is not None and state.get("phi_optimizer") is not None:
                phi_optimizer.load_state_dict(state["phi_optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: optimiser or scheduler state does not match this run: {exc}") from exc
    set_rng_state(state["rng"])
    return int(state["epoch"]), int(state["step"])
