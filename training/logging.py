"""Run logs: TensorBoard scalars plus a plain CSV file (``log.csv``) that needs no viewer.

Only the main process writes (``enabled=False`` elsewhere). A resumed run first drops the
CSV rows written after the checkpoint it resumes from (:meth:`RunLogger.truncate_after`),
so the log of a killed-and-resumed run reads like that of an uninterrupted one.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping

from datasets.atomic import atomic_write

CSV_FIELDS = ("step", "epoch", "name", "value")


class RunLogger:
    """Scalar logger writing ``<run_dir>/log.csv`` and ``<run_dir>/tensorboard/``."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.csv_path = self.run_dir / "log.csv"
        self._writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop CSV rows with ``step`` greater than ``step`` (used when resuming)."""
        if not self.enabled or not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with atomic_write(self.csv_path) as temporary, open(temporary, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        new_file = not self.csv_path.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new_file:
                writer.writeheader()
            for name, value in scalars.items():
                value = float(value)
                writer.writerow({"step": step, "epoch": epoch, "name": name, "value": repr(value)})
                if self._writer is not None and math.isfinite(value):
                    self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``log.csv`` → ``{name: [(step, value), …]}``."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            series.setdefault(row["name"], []).append((int(row["step"]), float(row["value"])))
    return series
