#!/usr/bin/env python
"""Measure shard storage options (compression × chunking) on freshly rendered samples.

For each option: write time (MB/s of raw image data and ms/sample), file size (bytes per
sample, ratio to raw), and read time of random single samples (what a training loader
does) and of the whole shard sequentially. Writes ``docs/shard_storage.md``.

Example:
    python benchmarks/bench_shard_storage.py --num 200 --size 256 --out docs/shard_storage.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render.pipeline import SamplePipeline  # noqa: E402
from render.sampling import SynthConfig  # noqa: E402

IMAGES = ("rgb", "depth", "mask")
OPTIONS = {
    "none, chunk per sample": dict(compression=None, chunk="sample"),
    "lzf, chunk per sample": dict(compression="lzf", chunk="sample"),
    "lzf + shuffle, chunk per sample": dict(compression="lzf", shuffle=True, chunk="sample"),
    "gzip 1, chunk per sample": dict(compression="gzip", compression_opts=1, chunk="sample"),
    "gzip 1 + shuffle, chunk per sample": dict(compression="gzip", compression_opts=1, shuffle=True, chunk="sample"),
    "gzip 4 + shuffle, chunk per sample": dict(compression="gzip", compression_opts=4, shuffle=True, chunk="sample"),
    "gzip 1 + shuffle, chunk per 16 samples": dict(compression="gzip", compression_opts=1, shuffle=True, chunk=16),
    "blosc lz4 5 + byte shuffle, chunk per sample": dict(**hdf5plugin.Blosc("lz4", 5, hdf5plugin.Blosc.SHUFFLE),
                                                         chunk="sample"),
    "blosc lz4 9 + byte shuffle, chunk per sample": dict(**hdf5plugin.Blosc("lz4", 9, hdf5plugin.Blosc.SHUFFLE),
                                                         chunk="sample"),
    "blosc zstd 1 + byte shuffle, chunk per sample": dict(**hdf5plugin.Blosc("zstd", 1, hdf5plugin.Blosc.SHUFFLE),
                                                          chunk="sample"),
}
#: The option ``datasets.shard_format.DEFAULT_COMPRESSION`` is (compared with lzf in the text).
DEFAULT = "blosc lz4 9 + byte shuffle, chunk per sample"


def write(path: Path, arrays: dict, option: dict) -> None:
    option = dict(option)
    chunk = option.pop("chunk")
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key in IMAGES:
                rows = 1 if chunk == "sample" else min(chunk, len(value))
                f.create_dataset(key, data=value, chunks=(rows,) + value.shape[1:], **option)
            else:
                f.create_dataset(key, data=value)


def measure(arrays: dict, option: dict, directory: Path, repeats: int = 3) -> dict:
    raw = sum(arrays[k].nbytes for k in IMAGES)
    n = len(arrays["rgb"])
    path = directory / "probe.h5"
    write_times, write_cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        write(path, arrays, option)
        write_times.append(time.perf_counter() - start)
        write_cpu.append(time.process_time() - start_cpu)
    size = path.stat().st_size
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    start, start_cpu = time.perf_counter(), time.process_time()
    with h5py.File(path, "r") as f:
        for i in order:
            for key in IMAGES:
                f[key][i]
    random_read = (time.perf_counter() - start) / n
    random_read_cpu = (time.process_time() - start_cpu) / n
    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        for key in IMAGES:
            f[key][:]
    sequential = (time.perf_counter() - start) / n
    best = min(write_times)
    return {"write_ms": 1e3 * best / n, "write_cpu_ms": 1e3 * min(write_cpu) / n, "read_cpu_ms": 1e3 * random_read_cpu, "write_mbs": raw / best / 1e6, "bytes": size / n, "ratio": raw / size,
            "read_ms": 1e3 * random_read, "seq_ms": 1e3 * sequential}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("docs/shard_storage.md"))
    args = parser.parse_args(argv)
    pipeline = SamplePipeline(SynthConfig(image_size=args.size), seed=123)
    arrays = pipeline.render(0, args.num)
    pipeline.close()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, option in OPTIONS.items():
            result = measure(arrays, option, Path(tmp))
            rows.append((name, result))
            print(name, {k: round(v, 2) for k, v in result.items()}, flush=True)
    lines = [
        "# Shard storage: compression and chunking",
        "",
        f"Measured by `python benchmarks/bench_shard_storage.py --num {args.num} --size {args.size}` on "
        f"{args.num} rendered {args.size}×{args.size} samples (procedural backgrounds), {platform.processor() or platform.machine()}, "
        f"one process, page cache warm, 1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        "wall-clock times with CPU times in brackets. Raw image bytes per sample "
        f"(rgb + depth + mask): {sum(arrays[k][0].nbytes for k in IMAGES)}.",
        "",
        "| option | write ms/sample (CPU) | write MB/s (raw) | bytes/sample | ratio | random read ms/sample (CPU) | sequential read ms/sample |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['write_ms']:.2f} ({r['write_cpu_ms']:.2f}) | {r['write_mbs']:.0f} | {r['bytes']:.0f} | "
                     f"{r['ratio']:.2f} | {r['read_ms']:.2f} ({r['read_cpu_ms']:.2f}) | {r['seq_ms']:.2f} |")
    by_name = dict(rows)
    lzf, chosen, gzip = by_name["lzf, chunk per sample"], by_name[DEFAULT], by_name["gzip 1 + shuffle, chunk per sample"]
    lines += [
        "",
        "## Choice",
        "",
        f"`datasets.shard_format.DEFAULT_COMPRESSION` is **{DEFAULT}** (Blosc from `hdf5plugin`, which",
        "`datasets.shard_format` imports to register the filter). Writing is on the rendering hot path and reading",
        f"on the loader's: it costs {chosen['write_cpu_ms']:.2f} CPU ms per sample to write against "
        f"{lzf['write_cpu_ms']:.2f} for lzf (the previous default)",
        f"and {gzip['write_cpu_ms']:.2f} for gzip 1 + shuffle, and a random read costs {chosen['read_cpu_ms']:.2f} "
        f"against {lzf['read_cpu_ms']:.2f} (lzf) and {gzip['read_cpu_ms']:.2f} ms (gzip),",
        f"for {chosen['bytes'] / lzf['bytes'] - 1:+.0%} bytes against lzf (≈ {chosen['bytes'] * 50000 / 1e9:.1f} GB "
        f"per 50k {args.size}² samples; gzip 1 + shuffle ≈ {gzip['bytes'] * 50000 / 1e9:.1f} GB).",
        "Level 9 of lz4 stores less than level 5 at nearly the same cost; zstd stores less again but costs more to",
        "write and read. One sample per chunk keeps random access cheap: a 16-sample chunk makes a random read",
        "decompress 16 samples. Shards written with lzf (before this choice) stay readable.",
        "",
        "Caveat: Blosc is a registered HDF5 filter (id 32001). Python readers need `hdf5plugin` imported (the",
        "toolkit's readers do it); other HDF5 tools (C, MATLAB, HDFView) need the Blosc plugin, or the shards can be",
        "rewritten with `compression={'compression': 'gzip'}`.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
