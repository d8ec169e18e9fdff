"""What checking every shard against its manifest SHA-256 costs, against one epoch of a small run.

Training and evaluation verify each shard once per run, in the main process, before use
(:func:`training.data.verify_shard_checksums`). This script builds a synthetic shard directory
(random hands drawn at ``--size``, stored uncompressed: more bytes per sample than real lzf
shards, so the share of an epoch is an upper bound) and measures, in one run:

- **verify, warm**: the check right after the files were written (pages in the OS cache);
- **verify, cold**: the same after asking the kernel to drop each file's cached pages
  (``posix_fadvise(DONTNEED)``), so the files are read from the disk;
- **SHA-256 of memory**: hashlib over an in-memory buffer of the same size (the CPU ceiling);
- **one training epoch**: ``training.trainer.train`` of a student (ResNet-18, ``--width``) for
  one epoch over the same shards on the CPU, verification included, wall clock.

Each figure is the median of ``--repeats``. Example::

    python benchmarks/bench_integrity.py --samples 512 --size 128 --out docs/integrity.md \\
        --json docs/integrity.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.atomic import write_text_atomic  # noqa: E402
from datasets.shard_format import list_shards  # noqa: E402
from tests.shard_fixtures import write_synthetic_shards  # noqa: E402
from training.data import verify_shard_checksums  # noqa: E402

GB = 1e9
DOCUMENT = """# Shard integrity: what the checksum check costs

Training (`tools/train.py`, every phase) and evaluation (`tools/evaluate.py`, and the end-of-run
validation) check every shard of every data directory against the SHA-256 its `manifest.json`
records, once per run, before the first batch: in the main process, and under `torchrun` on
rank 0 only (the other ranks wait for its verdict, then all stop together). A mismatch stops the
run with one line naming the shard and the manifest, e.g.

    error: data/synth/shard-000003.h5: SHA-256 5e0f…  does not match 91ab… recorded in data/synth/manifest.json; …

so a flipped byte is never trained on (`tests/test_tool_errors.py`). The end-of-run validation
does not check its shards again (they were checked with the training data at the start). A
directory without a `manifest.json` (hand-made shards, indexed from their own attributes) has
nothing to check against: it is read with one warning line saying so.

## Cost

Produced by `benchmarks/bench_integrity.py` ({cpu}); the figures are also in `docs/integrity.json`.

{table}

The check reads every byte once and hashes it: about {per_gb:.1f} s per GB here, bounded by
SHA-256 on one core (the "memory" row), not by the disk. The fixture's shards are stored
uncompressed, more bytes per sample than real lzf shards (about 2.1-2.3 bytes per pixel for
rendered 256×256 samples, `docs/shard_storage.md`), so the share of an epoch is an upper bound
for this image size and network. At paper scale (50,000 rendered 256×256 samples, about 7.2 GB)
the check takes about {paper_s:.0f} s once per run at this rate, against epochs of the same data that each
read those bytes again and run a network on them.
"""


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512, help="samples in the shard directory")
    parser.add_argument("--shard-size", type=int, default=128, help="samples per shard")
    parser.add_argument("--size", type=int, default=128, help="stored image size in pixels")
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 base width of the training epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="markdown file to write (default: print)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


def _drop_cache(paths) -> bool:
    """Ask the kernel to forget the files' cached pages; False if it cannot be asked."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _epoch_seconds(data: Path, run: Path, args) -> float:
    from training.config import config_from_dict
    from training.trainer import train

    cfg = config_from_dict({
        "phase": "student", "out": str(run), "seed": 0, "device": "cpu", "progress": False, "log_every": 1000,
        "checkpoint_every": 100000, "data": {"train": [str(data)], "image_size": args.size, "augment": True,
                                             "workers": 0},
        "model": {"arch": "resnet18", "width": args.width},
        "optim": {"lr": 1e-3, "batch_size": args.batch_size, "epochs": 1}})
    return _timed(lambda: train(cfg))


def main(argv=None) -> int:
    args = _parse(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_integrity_") as tmp:
        data = Path(tmp) / "shards"
        sizes = [args.shard_size] * (args.samples // args.shard_size) + (
            [args.samples % args.shard_size] if args.samples % args.shard_size else [])
        # Uncompressed: the fixture's drawn images compress far better than renders or photos, and the
        # check's cost is per byte, so this stores more bytes per sample than real lzf shards do.
        write_synthetic_shards(data, shard_sizes=sizes, size=args.size, seed=1, compression={})
        shards = list_shards(data)
        nbytes = sum(p.stat().st_size for p in shards)
        buffer = os.urandom(nbytes)
        warm, cold, memory, epochs = [], [], [], []
        cold_possible = True
        for repeat in range(args.repeats):  # interleaved, since the machine may be shared
            warm.append(_timed(lambda: verify_shard_checksums([data])))
            cold_possible = _drop_cache(shards) and cold_possible
            cold.append(_timed(lambda: verify_shard_checksums([data])))
            memory.append(_timed(lambda: hashlib.sha256(buffer).digest()))
            epochs.append(_epoch_seconds(data, Path(tmp) / f"run{repeat}", args))
    figures = {
        "bytes": nbytes, "shards": len(shards), "samples": args.samples,
        "verify_warm_s": statistics.median(warm), "verify_cold_s": statistics.median(cold),
        "sha256_memory_s": statistics.median(memory), "epoch_s": statistics.median(epochs),
    }
    for key in ("verify_warm", "verify_cold", "sha256_memory"):
        figures[f"{key}_s_per_gb"] = figures[f"{key}_s"] / (nbytes / GB)
    figures["verify_cold_fraction_of_epoch"] = figures["verify_cold_s"] / figures["epoch_s"]
    figures["verify_warm_fraction_of_epoch"] = figures["verify_warm_s"] / figures["epoch_s"]
    environment = {"python": platform.python_version(), "cpu": _cpu_model(),
                   "cpu_count": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                   "cold_cache_dropped": cold_possible,
                   "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    command = "python benchmarks/bench_integrity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = "\n".join([
        f"`{command}` — {len(shards)} shards, {args.samples} samples of {args.size}×{args.size}, "
        f"{nbytes / 1e6:.1f} MB; median of {args.repeats}; load average {load_before[0]:.1f} → "
        f"{environment['load_after'][0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| measurement | seconds | seconds per GB | share of one epoch |",
        "|---|---:|---:|---:|",
        f"| verify, warm cache | {figures['verify_warm_s']:.3f} | {figures['verify_warm_s_per_gb']:.2f} | "
        f"{100 * figures['verify_warm_fraction_of_epoch']:.2f} % |",
        f"| verify, cold cache{'' if cold_possible else ' (cache not dropped)'} | {figures['verify_cold_s']:.3f} | "
        f"{figures['verify_cold_s_per_gb']:.2f} | {100 * figures['verify_cold_fraction_of_epoch']:.2f} % |",
        f"| SHA-256 of memory (CPU ceiling) | {figures['sha256_memory_s']:.3f} | "
        f"{figures['sha256_memory_s_per_gb']:.2f} | |",
        f"| one training epoch (student, ResNet-18 width {args.width}, batch {args.batch_size}, CPU) | "
        f"{figures['epoch_s']:.1f} | | 100 % |",
    ])
    if args.out:
        write_text_atomic(args.out, DOCUMENT.format(table=table, cpu=environment["cpu"],
                                                    per_gb=figures["verify_cold_s_per_gb"],
                                                    paper_s=7.2 * figures["verify_cold_s_per_gb"]))
    print(table)
    if args.json:
        write_text_atomic(args.json, json.dumps({"figures": figures, "settings": {k: str(v) for k, v in
                                                                                  vars(args).items()},
                                                 "environment": environment}, indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
