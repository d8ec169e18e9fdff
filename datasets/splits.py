"""Which dataset and split a shard directory holds; evaluation/test splits are kept out of training.

A converted directory holds exactly one split of one source (``tools/convert_dataset.py``
writes ``OUT/<split>``, e.g. ``data/rhd_256/training`` and ``data/rhd_256/evaluation``); its
manifest and every shard record ``source``, ``split`` and ``evaluation_split``.

- :func:`check_training_directory` refuses a directory holding an evaluation/test split
  (:data:`SPLITS`) unless the caller allows it explicitly (``data.allow_eval_split=true``);
- :func:`check_shard_directory` turns "no shards here" on a parent of split directories
  into an error that lists them;
- :func:`directory_identity` tells the evaluation which protocol applies (``source``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py

from datasets.errors import DatasetError
from datasets.shard_format import MANIFEST_NAME, list_shards, read_manifest

#: Every split of each raw source's reader → whether it is an evaluation/test split.
#: STB ``all`` contains the test sequences B1*. FreiHAND ``training`` contains
#: ``paper_eval`` (the paper's held-out part of it): evaluate on ``evaluation`` then.
SPLITS: dict[str, dict[str, bool]] = {
    "rhd": {"training": False, "evaluation": True},
    "stb": {"train": False, "test": True, "all": True},
    "freihand": {"paper_train": False, "paper_eval": True, "training": False, "evaluation": True},
}


def is_evaluation_split(source: str, split: str) -> bool:
    """Whether ``split`` of ``source`` is an evaluation/test split (unknown splits are not)."""
    return SPLITS.get(source, {}).get(split, False)


def split_subdirectories(root: str | Path) -> list[str]:
    """Names of the subdirectories of ``root`` that are shard directories (one split each)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and ((p / MANIFEST_NAME).is_file() or list_shards(p)))


def check_shard_directory(root: str | Path) -> None:
    """Fail clearly when ``root`` holds split directories instead of shards."""
    root = Path(root)
    if root.is_dir() and not (root / MANIFEST_NAME).exists() and not list_shards(root):
        splits = split_subdirectories(root)
        if splits:
            raise DatasetError(f"{root}: holds one directory per split ({', '.join(splits)}), not shards; "
                               f"name one of them, e.g. {root / splits[0]}")


def directory_identity(root: str | Path) -> dict[str, Any]:
    """``{"source", "splits", "evaluation"}`` of a shard directory, from its manifest or first shard.

    ``splits`` lists every split found (older conversions mixed several in one directory);
    ``evaluation`` is true when any of them is an evaluation/test split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: shard directory not found (tools/convert_dataset.py and tools/render_synth.py "
                           f"create shard directories)")
    check_shard_directory(root)
    manifest = read_manifest(root)
    source, splits = manifest.get("source"), [manifest["split"]] if "split" in manifest else []
    splits += [e["split"] for e in manifest["shards"].values() if "split" in e and e["split"] not in splits]
    flagged = bool(manifest.get("evaluation_split", False))
    shards = list_shards(root)
    if (source is None or not splits) and shards:
        with h5py.File(shards[0], "r") as f:
            source = source or (str(f.attrs["source"]) if "source" in f.attrs else None)
            splits = splits or ([str(f.attrs["split"])] if "split" in f.attrs else [])
            flagged = flagged or bool(f.attrs.get("evaluation_split", False))
    evaluation = flagged or any(is_evaluation_split(str(source), s) for s in splits)
    return {"source": source, "splits": splits, "evaluation": evaluation}


def check_training_directory(root: str | Path, allow_evaluation_split: bool = False,
                             key: str = "data.allow_eval_split") -> None:
    """Refuse to train on a directory holding an evaluation/test split unless explicitly allowed."""
    check_shard_directory(root)
    identity = directory_identity(root)
    if identity["evaluation"] and not allow_evaluation_split:
        held = [s for s in identity["splits"] if is_evaluation_split(str(identity["source"]), s)] or identity["splits"]
        raise DatasetError(f"{root}: holds {identity['source']}'s evaluation/test split ({', '.join(held)}); "
                           f"training on it is refused; train on a training split, or set {key}=true "
                           f"if you really mean to")


__all__ = ["SPLITS", "is_evaluation_split", "split_subdirectories", "check_shard_directory", "directory_identity",
           "check_training_directory"]
