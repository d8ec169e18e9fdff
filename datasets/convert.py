"""Convert a raw dataset (RHD, STB, FreiHAND) into shards of hand-centred crops.

Each raw sample is read with its reader (``datasets.build_dataset``), cropped around the
hand with :class:`datasets.transforms.HandCrop` (deterministic, no jitter) and stored in
the shard format of :mod:`datasets.shard_format`: rgb uint8, depth uint16 mm (where the
source has depth), mask (where it has one), joints, visible, K — plus ``is_left`` and
``source_index`` (the sample's index in its reader). Reading the shards back gives the
reader's output after the crop, up to the uint8 / millimetre quantisation.

Splits are explicit: each split is converted into its own shard directory ``OUT/<split>``
(``data/rhd_256/training``, ``data/rhd_256/evaluation``) whose manifest and shards record
``source``, ``split`` and ``evaluation_split`` (:mod:`datasets.splits`; training refuses
an evaluation/test split unless told otherwise).

The work is planned as fixed shards: samples ``[k·shard_size, (k+1)·shard_size)`` of a
split form its shard k. The plan depends only on the config, so a rerun (resume) skips
every shard that is already complete and valid and writes only the rest; workers convert
whole shards.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from common.progress import Progress
from datasets.errors import DatasetError
from datasets.shard_format import (MANIFEST_NAME, ShardError, file_sha256, open_shard, read_manifest,
                                   record_invocation, record_shards, shard_name, write_shard)
from datasets.splits import is_evaluation_split

#: The splits converted when none are given (`method.md` §7).
DEFAULT_SPLITS = {
    "rhd": ("training", "evaluation"),
    "stb": ("train", "test"),
    "freihand": ("paper_train", "paper_eval"),
}
DEFAULT_SHARD_SIZE = 1000


@dataclass(frozen=True)
class ConvertConfig:
    """Everything that determines the converted samples (saved, with one split, as each shard's ``config``)."""

    source: str
    splits: tuple = ()
    size: int = 256
    margin: float = 0.25
    crop_source: str = "joints"
    limit: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    reader_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.source not in DEFAULT_SPLITS:
            raise ValueError(f"unknown source {self.source!r}; converters exist for {sorted(DEFAULT_SPLITS)}")
        object.__setattr__(self, "splits", tuple(self.splits) or DEFAULT_SPLITS[self.source])
        if self.size <= 0 or self.shard_size <= 0 or (self.limit is not None and self.limit <= 0):
            raise ValueError(f"size, shard_size and limit must be positive; found {self.size}, "
                             f"{self.shard_size}, {self.limit}")

    def as_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class ShardJob:
    index: int  # shard number in the output directory
    split: str
    start: int  # first reader index
    stop: int  # one past the last reader index


def _reader(raw_root: str | Path, config: ConvertConfig, split: str, cache: dict | None = None):
    from datasets import build_dataset
    from datasets.transforms import HandCrop

    key = (str(raw_root), split, json.dumps(config.as_json(), sort_keys=True))
    if cache is not None and key in cache:
        return cache[key]
    crop = HandCrop(size=config.size, margin=config.margin, source=config.crop_source)
    reader = build_dataset(config.source, raw_root, split=split, transform=crop, **config.reader_options)
    if cache is not None:
        cache[key] = reader
    return reader


def plan_shards(raw_root: str | Path, config: ConvertConfig) -> list[ShardJob]:
    """The fixed list of shards a conversion writes (deterministic for a given config and raw data)."""
    jobs: list[ShardJob] = []
    for split in config.splits:
        count = len(_reader(raw_root, config, split))
        if config.limit is not None:
            count = min(count, config.limit)
        for start in range(0, count, config.shard_size):
            jobs.append(ShardJob(len(jobs), split, start, min(start + config.shard_size, count)))
    return jobs


def samples_to_arrays(samples: list[dict], where: str) -> dict[str, np.ndarray]:
    """Sample dicts (float tensors) → shard arrays (uint8 images, uint16 mm depth, …)."""
    keys = set(samples[0])
    for sample in samples:
        if set(sample) != keys:
            raise DatasetError(f"{where}: sample {sample.get('index')} has keys {sorted(sample)}, "
                               f"but sample {samples[0].get('index')} has {sorted(keys)}")

    def stack(key):
        return np.stack([sample[key].numpy() for sample in samples])

    arrays = {
        "rgb": np.clip(np.round(stack("rgb").transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8),
        "joints3d": stack("joints3d").astype(np.float32),
        "joints2d": stack("joints2d").astype(np.float32),
        "visible": stack("visible").astype(bool),
        "K": stack("K").astype(np.float32),
        "is_left": np.array([bool(s.get("is_left", False)) for s in samples]),
        "source_index": np.array([int(s["index"]) for s in samples], dtype=np.int64),
    }
    if "depth" in keys:
        arrays["depth"] = np.clip(np.round(stack("depth")[:, 0] * 1000.0), 0, 65535).astype(np.uint16)
    if "mask" in keys:
        arrays["mask"] = (stack("mask")[:, 0] > 0.5).astype(np.uint8)
    return arrays


_WORKER_READERS: dict = {}


def convert_shard(raw_root: str, out: str, config: ConvertConfig, job: ShardJob) -> dict[str, Any]:
    """Read, crop and write one shard; returns its manifest entry (runs in a worker process)."""
    reader = _reader(raw_root, config, job.split, _WORKER_READERS)
    samples = [reader[i] for i in range(job.start, job.stop)]
    arrays = samples_to_arrays(samples, f"{config.source} {job.split} at {raw_root}")
    # Only what determines the samples (the raw root's path and the command line are in the manifest).
    attrs = {"source": config.source, "split": job.split, "config": json.dumps(config.as_json()),
             "evaluation_split": is_evaluation_split(config.source, job.split), "first_source_index": job.start}
    entry = write_shard(out, job.index, arrays, attrs)
    entry["split"] = job.split
    return entry


def _existing_entry(out: Path, job: ShardJob, config: ConvertConfig, manifest: dict) -> dict[str, Any] | None:
    """The manifest entry of shard ``job`` if it is already complete and valid, else ``None``."""
    path = out / shard_name(job.index)
    if not path.exists():
        return None
    recorded = manifest["shards"].get(path.name)
    sha = file_sha256(path)
    if recorded is not None and recorded.get("sha256") != sha:
        return None
    try:
        with open_shard(path, expected_samples=job.stop - job.start) as f:
            if json.loads(f.attrs["config"]) != config.as_json() or f.attrs.get("split") != job.split:
                return None
    except (ShardError, KeyError, ValueError):
        return None
    return {"name": path.name, "num_samples": job.stop - job.start, "sha256": sha,
            "bytes": path.stat().st_size, "split": job.split}


def _check_compatible(out: Path, manifest: dict, config: ConvertConfig) -> None:
    previous = manifest.get("config")
    if previous is not None and previous != config.as_json():
        changed = sorted(k for k in set(previous) | set(config.as_json())
                         if previous.get(k) != config.as_json().get(k))
        raise DatasetError(f"{out}: holds a conversion with different settings ({', '.join(changed)}: "
                           f"{ {k: previous.get(k) for k in changed} } there, "
                           f"{ {k: config.as_json().get(k) for k in changed} } now); use a new --out directory")


def _remove_stale_temporaries(out: Path) -> None:
    for path in out.glob(".shard-*.h5.tmp-*"):
        path.unlink(missing_ok=True)


def convert(raw_root: str | Path, out: str | Path, config: ConvertConfig, workers: int = 1,
            progress: bool = True, command: str = "") -> dict[str, Any]:
    """Convert (or finish converting) each split of ``config`` into its own directory ``out/<split>``.

    Every split is planned first (so bad raw data or options fail before anything is
    written); returns ``{"splits": {split: summary of convert_split}, "samples", "out"}``.
    """
    raw_root, out = Path(raw_root), Path(out)
    if (out / MANIFEST_NAME).exists():
        raise DatasetError(f"{out}: holds shards directly (a conversion from before splits got one directory each); "
                           f"use a new --out directory")
    configs = [dataclasses.replace(config, splits=(split,)) for split in config.splits]
    plans = [plan_shards(raw_root, c) for c in configs]
    summaries = {c.splits[0]: convert_split(raw_root, out / c.splits[0], c, workers, progress, command, jobs)
                 for c, jobs in zip(configs, plans)}
    return {"splits": summaries, "samples": sum(s["samples"] for s in summaries.values()), "out": str(out)}


def convert_split(raw_root: str | Path, out: str | Path, config: ConvertConfig, workers: int = 1,
                  progress: bool = True, command: str = "", jobs: list[ShardJob] | None = None) -> dict[str, Any]:
    """Convert (or finish converting) the one split of ``config`` into shards under ``out``; returns a summary.

    One conversion per output directory: an interrupted run is resumed by rerunning the
    same command; a different config in the same directory is refused.
    """
    raw_root, out = Path(raw_root), Path(out)
    if len(config.splits) != 1:
        raise ValueError(f"{out}: a shard directory holds one split, found {config.splits}")
    (split,) = config.splits
    jobs = plan_shards(raw_root, config) if jobs is None else jobs  # checks the raw data and reader options
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    _check_compatible(out, manifest, config)
    _remove_stale_temporaries(out)
    done = {job.index: entry for job in jobs if (entry := _existing_entry(out, job, config, manifest)) is not None}
    fields = {"source": config.source, "split": split, "evaluation_split": is_evaluation_split(config.source, split),
              "config": config.as_json(), "raw_root": str(raw_root)}
    record_shards(out, list(done.values()), **fields)
    todo = [job for job in jobs if job.index not in done]
    if todo:
        record_invocation(out, command, workers=workers, shards_to_convert=len(todo))
    total = sum(job.stop - job.start for job in jobs)
    with Progress(total, f"convert {config.source} {split}", unit="sample", enabled=progress,
                  initial=total - sum(j.stop - j.start for j in todo)) as bar:
        for entry in _run(todo, str(raw_root), str(out), config, workers):
            record_shards(out, [entry], **fields)
            bar.update(entry["num_samples"])
    return {"shards": len(jobs), "skipped": len(done), "written": len(todo), "samples": total, "out": str(out)}


def _worker_init() -> None:
    import torch

    from common.cli import quiet_worker_signals

    quiet_worker_signals()  # Ctrl-C is the parent's to handle; it stops the workers
    torch.set_num_threads(1)


def _run(jobs: list[ShardJob], raw_root: str, out: str, config: ConvertConfig, workers: int) -> Iterable[dict]:
    """Convert ``jobs``, yielding manifest entries as shards complete."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield convert_shard(raw_root, out, config, job)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs), os.cpu_count() or 1), mp_context=context,
                               initializer=_worker_init)
    try:
        pending = {pool.submit(convert_shard, raw_root, out, config, job) for job in jobs}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
    except BaseException:  # an error or Ctrl-C: stop now; shards in progress are redone on resume
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()  # workers exit cleanly on SIGTERM, removing their temporary files
        for process in processes:
            process.join(timeout=10)
        raise
    pool.shutdown(wait=True)
