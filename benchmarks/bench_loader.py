"""Samples/s the training loader delivers from shards, against reading the raw arrays, in one run.

Builds a small synthetic shard directory (random hands drawn at ``--size``, written with
``write_shard`` and the default compression) unless ``--data`` names one, then measures

- **raw read**: every sample's stored arrays read with h5py (one compressed chunk per image;
  no conversion to float, no transform) — the ceiling of the storage layer;
- **training loader, num_workers = 0, 1, 2**: :func:`training.data.training_loader` as the
  trainer builds it on this machine's CPU — workers read, plan the crop + augmentation and
  warp the uint8/uint16 images once with OpenCV; the main process finishes each batch with
  the :class:`datasets.batch_transform.BatchTransform` (colour jitter, normalisation,
  depth under rotation, targets). The delivered rate counts the finished batches, so it
  includes the batch transform. One full pass each, worker start-up included;
- **per-sample chain, num_workers = 2** (reference, the previous loader): ``ShardDataset``
  + ``training_transform`` in the workers, five float32 images per sample.

Also: CPU milliseconds per sample of each stage, and OpenCV against the PIL / torch code
paths (decode, warp). Each rate is measured ``--repeats`` times, interleaved, and the median
is reported (the machine may be shared). Example::

    python benchmarks/bench_loader.py --samples 512 --size 256 --out docs/loader_benchmark.md \\
        --json docs/loader_benchmark.json
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from datasets.atomic import write_text_atomic  # noqa: E402
from datasets.compact_samples import FREE, CompactSamples, SharedBatchBuffers, collate_compact, layout_batch  # noqa: E402
from datasets.shard_format import DEFAULT_COMPRESSION  # noqa: E402
from datasets.shards import ShardDataset  # noqa: E402
from datasets.transforms import training_transform  # noqa: E402
from tests.shard_fixtures import write_synthetic_shards  # noqa: E402
from training.data import training_loader  # noqa: E402

RAW = "raw read (h5py, no transform)"
#: The committed runs of this benchmark (the ratio depends on how cheap the codec makes the raw read).
SEE_ALSO = ("Committed runs: `docs/loader_benchmark.md` (synthetic set, the default Blosc codec), "
            "`docs/loader_benchmark_lzf.md` (the same set written with lzf, `--compression lzf`), "
            "`docs/loader_benchmark_rendered.md` (2000 rendered samples, `--data`). The loader delivers about "
            "the same with either codec; Blosc makes the raw read several times cheaper, hence the lower ratio.")
PER_SAMPLE = "per-sample chain (previous loader), num_workers=2"


def loader_row(workers: int) -> str:
    return f"training loader, num_workers={workers}"


def with_start_up(workers: int) -> str:
    return f"the same, whole epoch with worker start-up, num_workers={workers}"


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="existing shard directory (default: build one)")
    parser.add_argument("--samples", type=int, default=2048, help="samples of the synthetic directory")
    parser.add_argument("--shard-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=256, help="stored image size and crop size")
    parser.add_argument("--compression", choices=("default", "lzf"), default="default",
                        help="codec of the synthetic directory: the toolkit's default (Blosc lz4) or lzf")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (0: torch default); workers always use 1")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write (default: print only)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def time_raw_read(dataset: ShardDataset) -> float:
    """Samples/s of one h5py read of every stored array of each sample (files opened before the clock starts),
    independent of how the toolkit's reader caches small arrays: the storage layer's ceiling."""
    import h5py

    files = [h5py.File(path, "r") for path, _ in dataset.shards]
    try:
        arrays = [(count, [f[key] for key in f.keys()]) for f, (_, count) in zip(files, dataset.shards)]
        start = time.perf_counter()
        for count, stored in arrays:
            for i in range(count):
                for array in stored:
                    array[i]
        return len(dataset) / (time.perf_counter() - start)
    finally:
        for f in files:
            f.close()


def time_training_loader(directory: Path, workers: int, args) -> tuple[float, float]:
    """Finished samples per second (batch transform included) of the trainer's own loader over one epoch:
    (steady state, from the first finished batch to the last; the whole epoch, worker start-up included)."""
    start = time.perf_counter()
    loader, _ = training_loader([directory], image_size=args.size, augment=True, batch_size=args.batch, seed=0,
                                workers=workers)
    seen, first = 0, None
    for batch in loader:
        seen += len(batch["index"])
        if first is None:
            first, after_first = time.perf_counter(), seen
    end = time.perf_counter()
    return (seen - after_first) / (end - first), seen / (end - start)


def time_per_sample_chain(dataset: ShardDataset, workers: int, batch: int) -> float:
    start = time.perf_counter()
    seen = 0
    for item in DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=True, drop_last=True):
        seen += len(item["index"])
    return seen / (time.perf_counter() - start)


def measure_rates(directory: Path, args) -> dict[str, list[float]]:
    raw = ShardDataset(directory)
    per_sample = ShardDataset(directory, transform=training_transform(args.size, seed=0))
    results: dict[str, list[float]] = {RAW: []}
    results.update({loader_row(w): [] for w in args.workers})
    results.update({with_start_up(w): [] for w in args.workers})
    results[PER_SAMPLE] = []
    for _ in range(args.repeats):
        results[RAW].append(time_raw_read(raw))
        for w in args.workers:
            steady, whole = time_training_loader(directory, w, args)
            results[loader_row(w)].append(steady)
            results[with_start_up(w)].append(whole)
        results[PER_SAMPLE].append(time_per_sample_chain(per_sample, 2, args.batch))
    return results


def _ms_per_call(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def measure_stages(directory: Path, args) -> dict[str, float]:
    """CPU ms per sample of the loader's stages, measured one after the other in this process."""
    import cv2

    from datasets.compact_samples import _channels_first, plan_stored_sample
    from datasets.warp import warp_stored_pair

    cv2.setNumThreads(1)
    compact = CompactSamples(ShardDataset(directory, transform=training_transform(args.size, seed=0)), keep_rgb=False)
    shards, count, keys = compact.shards, min(64, len(compact)), compact.read_keys
    stages = {f"read what the loader uses ({', '.join(keys)}; small arrays cached per shard)":
              _ms_per_call(lambda: [shards.read_raw(i, keys) for i in range(count)], 3) / count}
    raws = [shards.read_raw(i, keys) for i in range(count)]
    stages["plan (crop + augmentation draws, composed warp)"] = _ms_per_call(
        lambda: [plan_stored_sample(r, i, compact.geometric) for i, r in enumerate(raws)], 3) / count
    plans = [plan_stored_sample(r, i, compact.geometric) for i, r in enumerate(raws)]
    rgb = np.empty((args.size, args.size, 3), np.uint8)
    depth = np.empty((args.size, args.size), np.uint16)
    maps = (np.empty((args.size, args.size), np.float32), np.empty((args.size, args.size), np.float32))
    planes = np.empty((3, args.size, args.size), np.uint8)
    stages["warp uint8 RGB + uint16 depth (one source map, two cv2.remap)"] = _ms_per_call(
        lambda: [warp_stored_pair(r["rgb"], r.get("depth"), p.M, rgb, depth, maps) for r, p in zip(raws, plans)],
        3) / count
    stages["RGB to channel planes (cv2.split)"] = _ms_per_call(
        lambda: [_channels_first(rgb, list(planes)) for _ in range(count)], 3) / count
    batch = compact.__getitems__(list(range(args.batch)))
    stages["batch transform (main process, CPU: one pass per image)"] = _ms_per_call(
        lambda: compact.batch_transform(batch), 5) / args.batch
    images = {"rgb8": ((args.batch, 3, args.size, args.size), np.dtype(np.uint8)),
              "depth16": ((args.batch, args.size, args.size), np.dtype(np.uint16))}

    def write_batch(buffers: SharedBatchBuffers) -> None:
        tensors = layout_batch(images, buffers)
        tensors["rgb8"].fill_(1)
        tensors["depth16"].fill_(1)
        tensors["_release"].fill_(FREE)  # what the main process does once the batch is finished

    for label, buffers in (("fresh shared pages", SharedBatchBuffers(limit=0)),
                            ("recycled shared pages", SharedBatchBuffers())):
        stages[f"write a batch's images into {label} (worker)"] = _ms_per_call(
            lambda: write_batch(buffers), 5) / args.batch
    return stages


def measure_libraries(size: int) -> list[tuple[str, float, float]]:
    """(operation, ms with the current/alternative library, ms with OpenCV) on a photo-like image."""
    import cv2
    from PIL import Image

    from datasets.warp import _resample, _sampling_grid, _source_pixels, warp_stored_image, warp_stored_pair

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:size, 0:size]
    image = np.stack([u, v, u + v], -1).astype(np.float64) * (200.0 / (2 * size))
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)  # gradients plus sensor noise
    depth = rng.integers(300, 900, (size, size)).astype(np.uint16)
    M = np.array([[0.9, 0.15, -10.0], [-0.15, 0.9, 12.0], [1e-4, 0.0, 1.0]])
    rows = []
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, fmt)
        data = buffer.getvalue()
        encoded = np.frombuffer(data, np.uint8)

        def with_pil():
            picture = Image.open(io.BytesIO(data))
            picture.load()
            np.asarray(picture)

        def with_cv2():
            cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

        rows.append((f"decode {size}² RGB {fmt} (PIL vs cv2.imdecode)", _ms_per_call(with_pil, 30),
                     _ms_per_call(with_cv2, 30)))
    rgb = torch.from_numpy(image.transpose(2, 0, 1).copy()).float().div_(255.0)
    depth_float = torch.from_numpy(depth.astype(np.float32))[None]

    def with_torch():
        grid = _sampling_grid(_source_pixels(M, size, size), size, size)
        _resample(rgb, grid, "bilinear")
        _resample(depth_float, grid, "nearest")

    def with_opencv():
        warp_stored_image(image, M, (size, size))
        warp_stored_image(depth, M, (size, size), nearest=True)

    rows.append((f"warp {size}² RGB + depth (torch grid_sample on float vs cv2.warpPerspective on uint8/uint16)",
                 _ms_per_call(with_torch, 30), _ms_per_call(with_opencv, 30)))
    rgb_out, depth_out = np.empty_like(image), np.empty_like(depth)
    maps = (np.empty((size, size), np.float32), np.empty((size, size), np.float32))
    rows.append((f"warp {size}² RGB + depth (two cv2.warpPerspective vs one source map + two cv2.remap)",
                 _ms_per_call(with_opencv, 30),
                 _ms_per_call(lambda: warp_stored_pair(image, depth, M, rgb_out, depth_out, maps), 30)))
    return rows


def compression_name(args) -> str:
    return "lzf" if args.compression == "lzf" else f"Blosc lz4, the default {DEFAULT_COMPRESSION}"


def report(results, stages, libraries, args, directory: Path, num: int, load: tuple) -> tuple[str, dict]:
    raw = statistics.median(results[RAW])
    medians = {name: statistics.median(values) for name, values in results.items()}
    figures = {"raw_per_s": round(raw, 1),
               "loader_per_s": {str(w): round(medians[loader_row(w)], 1) for w in args.workers},
               "ratio_to_raw": {str(w): round(medians[loader_row(w)] / raw, 3) for w in args.workers},
               "loader_with_start_up_per_s": {str(w): round(medians[with_start_up(w)], 1) for w in args.workers},
               "per_sample_chain_per_s": {"2": round(medians[PER_SAMPLE], 1)},
               "stage_cpu_ms_per_sample": {k: round(v, 3) for k, v in stages.items()},
               "load_average_1min": {"before": load[0], "after": load[1]},
               "samples": num, "size": args.size, "batch": args.batch, "cpus": os.cpu_count()}
    rows = ["| pipeline | samples/s (median) | runs | ratio to raw read |", "|---|---|---|---|"]
    for name, values in results.items():
        rows.append(f"| {name} | {medians[name]:.0f} | {', '.join(f'{v:.0f}' for v in values)} | "
                    f"{medians[name] / raw:.2f} |")
    stage_rows = ["| stage | CPU ms / sample |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in stages.items()]
    library_rows = ["| operation | first path, CPU ms | second path, CPU ms | adopted |", "|---|---|---|---|"]
    for name, current, opencv in libraries:
        adopted = ("source map + cv2.remap (compact loader path)" if "remap" in name
                   else "OpenCV" if "warp" in name else "PIL (kept, see below)")
        library_rows.append(f"| {name} | {current:.2f} | {opencv:.2f} | {adopted} |")
    goal = figures["ratio_to_raw"].get("2")
    text = "\n".join([
        "# Loader benchmark",
        "",
        f"Generated by `python benchmarks/bench_loader.py {' '.join(sys.argv[1:])}` on "
        f"{datetime.date.today().isoformat()}: {num} samples of {args.size}×{args.size} "
        f"({f'synthetic, compression {compression_name(args)}' if args.data is None else directory}), batch {args.batch}, "
        f"crop {args.size}, {args.repeats} interleaved repeats; {platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads in the main "
        "process, `--threads`; DataLoader workers use 1 each). **1-minute load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after the runs** (other jobs shared the machine when it exceeds "
        f"{os.cpu_count()}).",
        "",
        *rows,
        "",
        (f"Goal: ≥ 0.5× the raw read rate with 2 workers — measured {goal:.2f}× "
         f"({'met' if goal >= 0.5 else 'not met'} in this run)." if goal is not None else
         "Goal: ≥ 0.5× the raw read rate with 2 workers — not measured in this run (no `--workers 2`)."),
        "",
        SEE_ALSO,
        "",
        "The raw read is one h5py read of every stored array of a sample (its compressed chunk decoded), the ceiling",
        "of the storage layer, in one process. The training-loader rows are `training.data.training_loader` as the",
        "trainer uses it on a CPU, over one epoch, in steady state (from the first finished batch to the last; the",
        "whole-epoch rows include forking the workers and their first batch). Each worker fetches a whole batch",
        "(`CompactSamples.__getitems__`): it reads the arrays the loader uses (small per-sample arrays are read once",
        "per shard), plans the crop and augmentation, computes one source map per sample and resamples RGB",
        "(bilinear) and depth (nearest) from it with `cv2.remap`, straight into the batch's shared-memory tensors",
        "(uint8 RGB planes, uint16 depth). The main process runs the batch transform (colour jitter, normalisation,",
        "depth of the rotated scene, targets; on a CPU one compiled pass per image, `datasets/cpu_kernels.py`)",
        "before a batch counts as delivered. On a GPU the loader leaves the warp to the device (`grid_sample` on",
        "the batch), so its workers only read and plan.",
        "",
        "CPU time per sample of each stage (one process, one stage after the other):",
        "",
        *stage_rows,
        "",
        "OpenCV against the code paths it could replace (median CPU ms per call, single-threaded):",
        "",
        *library_rows,
        "",
        "PIL stays the decoder of the raw datasets (`datasets/images.py`) although `cv2.imdecode` costs less CPU:",
        "OpenCV decodes a truncated JPEG without an error (a partly grey image and a warning on stderr), so a",
        "damaged file would enter a converted dataset silently, and it expands palette PNGs (label masks) to",
        "colours; the decode runs once per image at conversion time, not in the training loader. The per-sample",
        "warp (`datasets/warp.py:apply_warp`, float images, used by the per-sample transforms) stays on",
        "`grid_sample`, the reference the batched path is tested against (`tests/test_batch_transform.py`).",
        "",
        "Where the time goes: per delivered sample the workers spend read + plan + warp + split and the main",
        "process the batch transform (table above); on 2 cores the delivered rate cannot exceed 2000 / (their",
        "sum) samples/s, less the cost of passing the batch through shared memory, while the raw read needs only its",
        "read. Each worker recycles its shared batch buffers (`SharedBatchBuffers`: the main process marks one free",
        "once the batch transform has consumed it); the two shared-buffer rows of the stage table are what a batch's",
        "images cost written into fresh shared pages and into recycled ones. The float32 outputs the phases consume (`rgb_input`,",
        "`depth_input`: about 1 MB per sample at 256²) are written once, by the batch transform.",
        "",
    ])
    return text, figures


def main(argv=None) -> None:
    args = _parse(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.data
        if directory is None:
            directory = Path(scratch) / "shards"
            sizes = [args.shard_size] * (args.samples // args.shard_size)
            sizes += [args.samples % args.shard_size] if args.samples % args.shard_size else []
            write_synthetic_shards(directory, shard_sizes=sizes, size=args.size,
                                   compression=None if args.compression == "default" else {"compression": "lzf"})
        load_before = os.getloadavg()[0]
        results = measure_rates(directory, args)
        stages = measure_stages(directory, args)
        libraries = measure_libraries(args.size)
        load = (load_before, os.getloadavg()[0])
        text, figures = report(results, stages, libraries, args, directory, len(ShardDataset(directory)), load)
    print(text)
    if args.out is not None:
        write_text_atomic(args.out, text)
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
