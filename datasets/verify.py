"""Check a shard directory (synthetic or converted) and report every problem found.

:func:`verify_directory` checks the manifest (present, valid, totals), every shard it
lists (present, checksum, schema and sample count via ``open_shard``, array shapes), every
sample (finite joints and intrinsics, joints in front of the camera, the projection
invariant ``project(joints3d, K) ≈ joints2d`` within a tolerance), shards on disk the
manifest does not list, and stray temporary files left by interrupted writes. It never
stops at the first problem.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.geometry import project
from datasets.shard_format import (MANIFEST_NAME, ShardError, file_sha256, list_shards, open_shard, shard_index)

#: Default tolerance of the projection invariant, in pixels of the stored image.
DEFAULT_TOLERANCE_PX = 0.5
_LOCK_FILE = f".{MANIFEST_NAME}.lock"
_SHOWN = 5  # sample indices listed per problem


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _listing(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:_SHOWN])
    return f"{len(indices)} sample(s) [{shown}{', …' if len(indices) > _SHOWN else ''}]"


def _load_manifest(directory: Path, problems: list[Problem]) -> dict | None:
    path = directory / MANIFEST_NAME
    if not path.exists():
        problems.append(Problem(str(path), "manifest missing (expected shard names, counts and checksums)"))
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        problems.append(Problem(str(path), f"not valid JSON ({exc})"))
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), dict):
        problems.append(Problem(str(path), "should be an object with a 'shards' object"))
        return None
    total = sum(int(e.get("num_samples", 0)) for e in manifest["shards"].values())
    if "num_samples" in manifest and manifest["num_samples"] != total:
        problems.append(Problem(str(path), f"num_samples is {manifest['num_samples']}, "
                                           f"but its shards add up to {total}"))
    return manifest


def check_samples(path: Path, f, tolerance_px: float) -> list[Problem]:
    """Per-sample checks of one open shard: shapes, finiteness, positive depth, projection invariant."""
    problems: list[Problem] = []
    where = str(path)
    rgb_shape = f["rgb"].shape
    if len(rgb_shape) != 4 or rgb_shape[3] != 3:
        problems.append(Problem(where, f"'rgb' should be (N, H, W, 3), found {rgb_shape}"))
    for key in ("depth", "mask"):
        if key in f and f[key].shape != rgb_shape[:3]:
            problems.append(Problem(where, f"'{key}' should be {rgb_shape[:3]} like 'rgb', found {f[key].shape}"))
    shapes = {"joints3d": (21, 3), "joints2d": (21, 2), "visible": (21,), "K": (3, 3)}
    for key, shape in shapes.items():
        if f[key].shape[1:] != shape:
            expected = ", ".join(map(str, shape))
            problems.append(Problem(where, f"'{key}' should be (N, {expected}), found {f[key].shape}"))
    if problems:
        return problems
    joints3d, joints2d, K = (np.asarray(f[k][()], np.float64) for k in ("joints3d", "joints2d", "K"))
    finite = np.all([np.isfinite(a).all(axis=(1, 2)) for a in (joints3d, joints2d, K)], axis=0)
    if not finite.all():
        problems.append(Problem(where, f"NaN or inf in joints3d/joints2d/K of {_listing(np.flatnonzero(~finite))}"))
    behind = finite & (joints3d[..., 2] <= 0).any(axis=1)
    if behind.any():
        problems.append(Problem(where, f"joints with z <= 0 (behind the camera) in {_listing(np.flatnonzero(behind))}"))
    usable = finite & ~behind
    if usable.any():
        error = np.full(len(joints3d), 0.0)
        error[usable] = np.abs(project(joints3d[usable], K[usable]) - joints2d[usable]).max(axis=(1, 2))
        broken = np.flatnonzero(error > tolerance_px)
        if len(broken):
            problems.append(Problem(where, f"projection of joints3d with K is off joints2d by up to "
                                           f"{error.max():.3g} px (tolerance {tolerance_px} px) in {_listing(broken)}"))
    return problems


def _read_every_image(path: Path, f) -> list[Problem]:
    problems = []
    for key in ("rgb", "depth", "mask"):
        if key not in f:
            continue
        for i in range(f[key].shape[0]):
            try:
                f[key][i]
            except Exception as exc:  # h5py raises assorted errors on damaged chunks
                problems.append(Problem(str(path), f"cannot read '{key}' of sample {i} ({type(exc).__name__}: {exc})"))
                break
    return problems


@dataclass
class VerifyReport:
    """What :func:`verify_report` checked, and every problem it found."""

    directory: Path
    problems: list[Problem]
    shards: int = 0  # shard files opened and checked
    samples: int = 0  # samples whose labels were checked
    checksums: int = 0  # shards whose SHA-256 was compared with the manifest
    deep: bool = False

    def summary(self) -> str:
        """``DIR: OK — 12 shards, 12000 samples checked (…)`` or ``DIR: 3 problem(s) in …``."""
        checked = (f"{self.shards} shard(s) ({self.checksums} checksum(s) against the manifest, schema, counts), "
                   f"{self.samples} sample(s) (finite labels, z > 0, projection invariant"
                   f"{', every image chunk decoded' if self.deep else ''})")
        verdict = "OK" if not self.problems else f"{len(self.problems)} problem(s)"
        return f"{self.directory}: {verdict}; checked {checked}"


def verify_directory(directory: str | Path, tolerance_px: float = DEFAULT_TOLERANCE_PX,
                     deep: bool = False) -> list[Problem]:
    """Every problem of the shard directory ``directory`` (empty list: all good)."""
    return verify_report(directory, tolerance_px, deep).problems


def verify_report(directory: str | Path, tolerance_px: float = DEFAULT_TOLERANCE_PX,
                  deep: bool = False) -> VerifyReport:
    """Check the shard directory ``directory``; the report lists every problem and what was checked.

    ``deep=True`` also decodes every image chunk (slow; checksums already catch damaged bytes).
    """
    directory = Path(directory)
    report = VerifyReport(directory, [], deep=deep)
    if not directory.is_dir():
        report.problems.append(Problem(str(directory), "shard directory not found"))
        return report
    problems = report.problems
    manifest = _load_manifest(directory, problems)
    listed = manifest["shards"] if manifest is not None else {}
    on_disk = {path.name: path for path in list_shards(directory)}
    for name in sorted(set(listed) - set(on_disk)):
        problems.append(Problem(str(directory / name), "listed in the manifest but missing"))
    for name in sorted(set(on_disk) - set(listed)):
        if manifest is not None:
            problems.append(Problem(str(on_disk[name]), "shard not recorded in the manifest"))
    for name, path in sorted(on_disk.items()):
        entry = listed.get(name)
        if entry is not None and "sha256" in entry:
            report.checksums += 1
            actual = file_sha256(path)
            if actual != entry["sha256"]:
                problems.append(Problem(str(path), f"checksum mismatch: the manifest records "
                                                   f"{entry['sha256'][:12]}…, the file hashes to {actual[:12]}…"))
        expected = int(entry["num_samples"]) if entry is not None and "num_samples" in entry else None
        try:
            f = open_shard(path, expected_samples=expected)
        except ShardError as exc:
            problems.append(Problem(str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        with f:
            report.shards += 1
            report.samples += int(f["rgb"].shape[0])
            problems += check_samples(path, f, tolerance_px)
            if deep:
                problems += _read_every_image(path, f)
    for path in sorted(directory.iterdir()):
        stray = path.name.startswith(".") and ".tmp" in path.name or path.name.endswith(".tmp")
        partial = shard_index(path.name) is None and path.name.startswith("shard-")
        if (stray or partial) and path.name != _LOCK_FILE:
            problems.append(Problem(str(path), "stray temporary or partial file (left by an interrupted write?)"))
    return report
