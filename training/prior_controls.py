"""Controls and statistics of a learned prior φ: what separates its structure from "some decay".

The target phase regularises with ``R(θ; φ) = Σ_i φ_i θ_i²`` (Eq. 10). Whether the *learned
pattern* of φ matters, or only its amount, is tested by two derived priors of the same file:

- :func:`shuffled_prior` — each tensor's φ values permuted at random within that tensor: the
  same values per layer (same per-layer amount and distribution), the per-weight placement
  destroyed;
- :func:`matched_prior` — each tensor's φ replaced by its mean: ℓ2 weight decay with a
  per-tensor σ equal to that tensor's mean φ (the magnitude-matched control);
- :func:`scaled_prior` — φ times a factor: the prior a β that many times larger would have
  learned. During distillation θ is updated from ∇G alone, so its trajectory does not depend on
  φ, and the efficient φ-gradient depends on φ only through the virtual step's ``θ(1 − 2αφ)``, a
  relative change of ``2αφ`` (≈ 1e-8 here): to that order φ is linear in β;
- :func:`positive_prior` — ``max(φ, 0)``: the paper's φ has both signs, and a net-negative R rewards
  larger weights; this keeps only the decay.

:func:`phi_statistics` summarises φ per layer type (convolution weights, BatchNorm γ and β,
head weight and bias): mean, spread and sign — the paper's unconstrained SGD on φ gives both
signs, and a net-negative R rewards larger weights.

Derived files keep the source's architecture, form and initialisation seed, so the target
phase applies and checks them exactly like the learned prior.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch

from training.prior import prior_info, read_prior, save_prior


def _save_like(source: str | os.PathLike, destination: str | os.PathLike, phi: Mapping[str, torch.Tensor]) -> None:
    info = prior_info(source)
    save_prior(destination, phi, info["arch"], form=info["form"], init_seed=info["init_seed"])


def shuffled_prior(source: str | os.PathLike, destination: str | os.PathLike, seed: int = 0) -> None:
    """Write ``destination``: φ of ``source`` with each tensor's entries randomly permuted (seeded)."""
    phi, _ = read_prior(source)
    generator = torch.Generator().manual_seed(int(seed))
    shuffled = {}
    for name, value in phi.items():
        flat = value.flatten()
        shuffled[name] = flat[torch.randperm(flat.numel(), generator=generator)].reshape(value.shape)
    _save_like(source, destination, shuffled)


def matched_prior(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Write ``destination``: φ of ``source`` with each tensor replaced by its mean (per-tensor ℓ2 σ)."""
    phi, _ = read_prior(source)
    _save_like(source, destination, {name: torch.full_like(value, float(value.mean())) for name, value in phi.items()})


def scaled_prior(source: str | os.PathLike, destination: str | os.PathLike, factor: float) -> None:
    """Write ``destination``: φ of ``source`` multiplied by ``factor`` (the β ablation, see the module docstring)."""
    phi, _ = read_prior(source)
    _save_like(source, destination, {name: value * float(factor) for name, value in phi.items()})


def positive_prior(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Write ``destination``: ``max(φ, 0)`` of ``source`` — R restricted to a proper prior that only pulls
    weights towards zero (an after-the-fact stand-in for ``prior.nonnegative``'s projection at every step)."""
    phi, _ = read_prior(source)
    _save_like(source, destination, {name: value.clamp(min=0.0) for name, value in phi.items()})


def layer_type(name: str, ndim: int) -> str:
    """The kind of a parameter of ``models.ResNet``: ``conv``, ``bn_weight``, ``bn_bias``, ``fc_weight``, ``fc_bias``."""
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith(("fc.", "head.")):
        return f"fc_{leaf}"
    if ndim == 4:
        return "conv"
    return f"bn_{leaf}"


def phi_statistics(phi: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per layer type and over all parameters: count, mean, std, min, max, fraction negative,
    mean |φ| and ``Σφ`` (the sign and amount of the decay R applies)."""
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for name, value in phi.items():
        flat = value.detach().double().flatten().cpu().numpy()
        groups[layer_type(name, value.dim())].append(flat)
        groups["all"].append(flat)
    stats = {}
    for kind, parts in sorted(groups.items()):
        values = np.concatenate(parts)
        stats[kind] = {"count": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
                       "min": float(values.min()), "max": float(values.max()),
                       "fraction_negative": float((values < 0).mean()), "mean_abs": float(np.abs(values).mean()),
                       "sum": float(values.sum())}
    return stats


def prior_file_statistics(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """:func:`phi_statistics` of a prior file."""
    return phi_statistics(read_prior(path)[0])
