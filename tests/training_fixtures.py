"""Tiny shard directories, configs and checkpoints shared by the training tests (CPU, seconds)."""
from __future__ import annotations

from pathlib import Path

import torch

from tests.shard_fixtures import write_synthetic_shards
from training.checkpoint import save_checkpoint
from training.config import config_from_dict
from training.phases import build_network

IMAGE = 32  # crop size of the tests
WIDTH = 8  # ResNet-18 with 8 base channels


def tiny_shards(directory: Path, samples: int = 8, seed: int = 0) -> Path:
    """A shard directory of ``samples`` 48×48 synthetic hands (two shards) with depth and mask."""
    half = samples // 2
    return write_synthetic_shards(directory, shard_sizes=(half, samples - half), size=48, seed=seed)


def tiny_config(phase: str, out: Path, train: list[Path], overrides: list[str] = (), **sections):
    """A valid config of ``phase`` for tiny CPU runs; ``overrides`` are ``key=value`` strings."""
    values = {
        "phase": phase, "out": str(out), "seed": 3, "device": "cpu", "threads": 1, "progress": False, "log_every": 1,
        "checkpoint_every": 100,
        "data": {"train": [str(t) for t in train], "image_size": IMAGE, "augment": False, "workers": 0},
        "model": {"arch": "resnet18", "width": WIDTH},
        "optim": {"lr": 1e-3, "batch_size": 4, "epochs": 2},
    }
    for name, section in sections.items():
        values.setdefault(name, {}).update(section)
    return config_from_dict(values, list(overrides))


def random_checkpoint(path: Path, modality: str, width: int = WIDTH, seed: int = 0) -> Path:
    """A checkpoint of an untrained network (enough to act as a frozen teacher or an init)."""
    torch.manual_seed(seed)
    info = {"arch": "resnet18", "width": width, "in_channels": 1 if modality == "depth" else 3, "num_outputs": 63,
            "modality": modality, "phase": "teacher" if modality == "depth" else "student", "image_size": IMAGE}
    return save_checkpoint(path, model=build_network(info), model_info=info, epoch=0, step=0)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]
