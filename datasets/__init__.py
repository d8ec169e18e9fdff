"""Datasets: shard and raw-dataset readers returning one sample dict in the mano21 layout.

``build_dataset(name, root, split=None, **options)`` is the one entry point. The name →
builder table :data:`KNOWN_DATASETS` is explicit; each builder imports its reader module
only when called, so ``import datasets`` stays cheap.
"""
from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported by the readers themselves, when a dataset is built
    from torch.utils.data import Dataset


def _shards(root, split=None, transform=None, **options):
    from datasets.shards import ShardDataset
    return _construct(ShardDataset, "shards", root, split, transform, options)


def _rhd(root, split=None, transform=None, **options):
    from datasets.rhd import RHDDataset
    return _construct(RHDDataset, "rhd", root, split, transform, options)


def _stb(root, split=None, transform=None, **options):
    from datasets.stb import STBDataset
    return _construct(STBDataset, "stb", root, split, transform, options)


def _freihand(root, split=None, transform=None, **options):
    from datasets.freihand import FreiHANDDataset
    return _construct(FreiHANDDataset, "freihand", root, split, transform, options)


#: Dataset name → builder ``(root, split=None, transform=None, **options) -> Dataset``.
KNOWN_DATASETS: dict[str, Callable[..., Dataset]] = {
    "shards": _shards,
    "rhd": _rhd,
    "stb": _stb,
    "freihand": _freihand,
}


def _construct(cls, name: str, root, split, transform, options: dict[str, Any]) -> Dataset:
    """Call a reader class, turning an unknown option into an error that lists the valid ones."""
    parameters = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    valid = [p for p in parameters if p not in ("root", "split", "transform")]
    unknown = [key for key in options if key not in valid]
    if unknown and not accepts_any:
        hints = {key: difflib.get_close_matches(key, valid, n=1) for key in unknown}
        described = ", ".join(f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              for key, hint in hints.items())
        raise TypeError(f"dataset {name!r} does not accept option(s) {described}; its options are {valid}")
    arguments = dict(options, transform=transform)
    if split is not None:
        arguments["split"] = split
    return cls(Path(root), **arguments)


def build_dataset(name: str, root: str | Path, split: str | None = None, **options: Any) -> Dataset:
    """Build the dataset ``name`` reading ``root``.

    ``split=None`` means the reader's default (all shards for ``"shards"``).
    ``transform=callable`` is applied to every item; other options go to the reader
    (e.g. ``build_dataset("stb", root, split="test", palm_to_wrist="ring")``).
    """
    if name not in KNOWN_DATASETS:
        close = difflib.get_close_matches(str(name), list(KNOWN_DATASETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(sorted(KNOWN_DATASETS))}")
    return KNOWN_DATASETS[name](root, split=split, **options)


__all__ = ["build_dataset", "KNOWN_DATASETS"]
