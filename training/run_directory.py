"""One config per run directory: a rerun resumes a run only with the same resolved config.

``tools/train.py ... out=DIR`` into a directory that already holds a run compares the new
resolved config with ``DIR/config.yaml``:

- equal (up to :data:`training.config.RESULT_NEUTRAL_KEYS`, which cannot change the
  weights: progress, workers, device, threads, logging and checkpoint intervals) → the run
  resumes from ``DIR/checkpoints/last.pt`` (or, when finished, does nothing);
- different → :class:`ConfigError`, one line naming each differing key (old → new) and the
  ways out: the original settings, a new ``out=``, or ``overwrite=true``;
- different with ``overwrite=true`` → the previous run's outputs (:data:`RUN_OUTPUTS`) are
  deleted, a line on stderr says which, and the run starts from scratch. Nothing else in
  the directory is touched and nothing is moved.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

from training.config import RESULT_NEUTRAL_KEYS, ConfigError, TrainConfig, read_yaml_mapping

#: What a run writes into its directory (config, checkpoints, final model, prior, logs, validation).
RUN_OUTPUTS = ("config.yaml", "checkpoints", "model.pt", "prior.pt", "log.csv", "tensorboard", "eval")


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` → ``{"optim.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(previous: dict[str, Any], cfg: TrainConfig) -> list[tuple[str, Any, Any]]:
    """``(key, previous value, new value)`` for every result-changing key that differs.

    ``previous`` is a saved ``config.yaml`` (its ``_provenance`` section is ignored); a key
    it lacks (a field added since) counts as its default.
    """
    defaults = flatten(dataclasses.asdict(TrainConfig()))
    old = flatten({k: v for k, v in previous.items() if k != "_provenance"})
    new = flatten(dataclasses.asdict(cfg))
    keys = [k for k in dict.fromkeys([*new, *old]) if k not in RESULT_NEUTRAL_KEYS]
    return [(k, old.get(k, defaults.get(k)), new.get(k, defaults.get(k))) for k in keys
            if old.get(k, defaults.get(k)) != new.get(k, defaults.get(k))]


def describe(differences: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{key}: {old!r} → {new!r}" for key, old, new in differences)


def prepare_run_directory(cfg: TrainConfig, is_main: bool = True) -> None:
    """Refuse (or, with ``overwrite=true``, clear) a run directory that holds a run with another config.

    Call on every process before the config is saved; only the main process deletes.
    """
    run_dir = Path(cfg.out)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    differences = config_differences(read_yaml_mapping(saved, "run config"), cfg)
    if not differences:
        return
    if not cfg.overwrite:
        raise ConfigError(f"{run_dir}: holds a run with another config ({describe(differences)}); rerun with its "
                          f"settings to resume it, choose a new out=DIR, or add overwrite=true to delete that run "
                          f"and start afresh")
    if is_main:
        removed = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
        for name in removed:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        print(f"overwrite=true: {run_dir} held a run with another config ({describe(differences)}); deleted its "
              f"{', '.join(removed)}", file=sys.stderr)


__all__ = ["prepare_run_directory", "config_differences", "flatten", "RUN_OUTPUTS"]
