"""The learned prior phi as an artifact (paper Sect. 4.2: phi_META, the deliverable of meta-training).

phi is a name -> tensor mapping parallel to ``model.named_parameters()``: one weight per
parameter element (method.md §5). A saved prior records the architecture it belongs to
(``name``, ``in_channels``, ``width``, ``num_outputs``) and every tensor's shape, so loading
it onto a different network fails with an error naming the first mismatching parameter.

File format (``torch.save`` of plain containers, read back with ``weights_only=True``)::

    {"format": "cmkg-prior", "version": 1, "arch": {...},
     "shapes": {name: [d0, d1, ...]}, "phi": {name: tensor}}
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from datasets.atomic import atomic_write

FORMAT = "cmkg-prior"
VERSION = 1


class PriorError(ValueError):
    """A prior file is unreadable, malformed, or belongs to another architecture."""


def init_phi(model: nn.Module, value: float = 0.0) -> dict[str, torch.Tensor]:
    """phi_0: a tensor filled with ``value`` for every parameter (paper: phi_0 = 0), same device and dtype."""
    return {name: torch.full_like(p, value).detach() for name, p in model.named_parameters()}


def save_prior(path: str | os.PathLike, phi: Mapping[str, torch.Tensor], model_arch: Mapping) -> None:
    """Write phi atomically (temporary file in the same folder, then rename) with its architecture.

    Args:
        path: destination file, e.g. ``run/prior.pt``.
        phi: name -> tensor (saved on CPU).
        model_arch: ``{"name", "in_channels", "width", "num_outputs"}`` (``ResNet.arch``).
    """
    path = os.fspath(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": dict(model_arch),
        "shapes": {n: list(t.shape) for n, t in phi.items()},
        "phi": {n: t.detach().cpu().clone() for n, t in phi.items()},
    }
    with atomic_write(path) as temporary, open(temporary, "wb") as handle:
        torch.save(payload, handle)


def read_prior(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and validate a prior file without a model: returns ``(phi, arch)``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PriorError(f"{path}: prior file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, bad tensor storage
        raise PriorError(f"{path}: expected a prior saved by save_prior (torch zip file), "
                         f"could not read it: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise PriorError(f"{path}: expected format {FORMAT!r}, found {found!r}")
    if payload.get("version") != VERSION:
        raise PriorError(f"{path}: expected prior version {VERSION}, found {payload.get('version')!r}")
    phi, shapes = payload.get("phi"), payload.get("shapes")
    if not isinstance(phi, dict) or not isinstance(shapes, dict) or phi.keys() != shapes.keys():
        raise PriorError(f"{path}: 'phi' and 'shapes' must be dicts with the same parameter names")
    for name, t in phi.items():
        if not isinstance(t, torch.Tensor) or list(t.shape) != list(shapes[name]):
            raise PriorError(f"{path}: phi[{name!r}] should be a tensor of shape {shapes[name]}, "
                             f"found {getattr(t, 'shape', type(t).__name__)}")
    return phi, dict(payload.get("arch", {}))


def load_prior(path: str | os.PathLike, model: nn.Module) -> dict[str, torch.Tensor]:
    """Load phi for ``model``; every parameter name and shape must match.

    Returns name -> tensor on the model's device and in each parameter's dtype.
    Raises :class:`PriorError` naming the file, the parameter, and both architectures.
    """
    path = os.fspath(path)
    phi, arch = read_prior(path)
    model_arch = getattr(model, "arch", None)
    where = f"prior for {arch or 'an unknown architecture'}, model is {model_arch or type(model).__name__}"
    params = dict(model.named_parameters())
    for name, p in params.items():
        if name not in phi:
            raise PriorError(f"{path}: no phi for parameter {name!r} {tuple(p.shape)} ({where})")
        if tuple(phi[name].shape) != tuple(p.shape):
            raise PriorError(f"{path}: phi[{name!r}] has shape {tuple(phi[name].shape)}, "
                             f"the model's parameter has {tuple(p.shape)} ({where})")
    extra = sorted(set(phi) - set(params))
    if extra:
        raise PriorError(f"{path}: phi for parameters the model lacks: {extra[:5]} ({where})")
    return {name: phi[name].to(device=p.device, dtype=p.dtype) for name, p in params.items()}
