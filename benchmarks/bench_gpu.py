#!/usr/bin/env python
"""GPU benchmark in one short run (about 5 minutes on one H200): training, loader and rendering throughput.

1. **Rendering (EGL).** The toolkit's renderer, ``render.renderer.HandRenderer``, in a bare loop
   (one hand mesh uploaded and drawn again and again) in a fresh process, with the OpenGL
   renderer string it ran on (``NVIDIA ...`` on the driver, ``llvmpipe`` in software); then the
   full pipeline (``render.synth.generate``: sampling, render, composite, shard writing) renders
   ``--render-samples`` samples with ``--render-workers`` processes, the set the loader reads.
2. **Loader.** ``training.data.training_loader`` on that set (training transform with
   augmentation, pinned memory, batches finished on the device) with each ``--loader-workers``
   count: images/s delivered, steady (after each epoch's first batch) and overall.
3. **Training steps.** ``benchmarks.bench_steps.make_steps`` at ``--size``² for each ``--archs``:
   teacher (depth, L_REG), student (RGB, L_REG), distillation (G, Eq. 8) and the meta steps
   ``exact``, ``efficient`` and ``first_order`` (``training.meta``), each with its Adam step, in
   bf16 autocast and in float32, channels_last; repetitions interleaved, medians, images/s.
   The loader's rate is reported against each training rate (≥ 1: the loader keeps up).

Every section that fails is recorded with its error and the others still run (the exit status
is then 1). ``--dry-run`` runs every code path on the CPU at a tiny size in seconds
(tests/test_bench_gpu.py).

Example::

    python benchmarks/bench_gpu.py --out docs/gpu_benchmark.md --json docs/gpu_benchmark.json
    python benchmarks/bench_gpu.py --dry-run --json /tmp/gpu_dry.json
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.results_json import JSON_HELP, environment, write_json  # noqa: E402
from datasets.atomic import write_text_atomic  # noqa: E402

PRECISIONS = {"bf16": "bfloat16", "fp32": None}
FULL = {"device": "cuda", "size": 256, "width": 64, "batch": 64, "warmup": 3, "repeats": 10,
        "render_size": 256, "render_samples": 1024, "render_workers": 8, "bare_frames": 300,
        "loader_workers": "4,8,15", "loader_epochs": 3, "threads": 0}
# Width 8, not 2-4: torch 2.13's CPU convolutions in channels_last with 2-4 channels on one
# thread corrupt the heap (segfault / "corrupted size vs. prev_size"); from 8 channels they run.
DRY = {"device": "cpu", "size": 32, "width": 8, "batch": 2, "warmup": 1, "repeats": 1,
       "render_size": 32, "render_samples": 8, "render_workers": 1, "bare_frames": 2,
       "loader_workers": "1", "loader_epochs": 1, "threads": 1}
HEADER = """# GPU benchmark: training steps, loader and EGL rendering

Produced by `benchmarks/bench_gpu.py` (one run, about 5 minutes on one H200): throughput of
every training step (teacher, student, distillation and the three meta steps of
`training/meta.py`) at 256² for ResNet-18 and ResNet-50 (width 64), bf16 autocast and float32,
channels_last, Adam step included; the training loader's delivered rate against those steps;
and the toolkit's renderer on EGL (bare loop and full pipeline). Images/s are batch / median
step time over interleaved repetitions.
"""


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every code path on the CPU at a tiny size")
    parser.add_argument("--archs", default="resnet18,resnet50")
    parser.add_argument("--precisions", default="bf16,fp32", help=f"of {sorted(PRECISIONS)}")
    for key, value in FULL.items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=None,
                            help=f"default {value} ({DRY[key]} with --dry-run)")
    parser.add_argument("--work-dir", default=None, help="where the rendered set goes (default: a temporary dir)")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument("--json", default=None, metavar="PATH", help=JSON_HELP)
    args = parser.parse_args(argv)
    for key, value in (DRY if args.dry_run else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = [p for p in args.precisions.split(",") if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions: unknown {unknown}; known: {sorted(PRECISIONS)}")
    return args


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _error(exc: BaseException) -> dict:
    traceback.print_exc()
    return {"error": f"{type(exc).__name__}: {exc}"}


# ----------------------------------------------------------------- 1. rendering
def _bare_render_process(size: int, frames: int, results) -> None:
    """In a fresh (spawned) process: frames/s of HandRenderer on one typical mesh, and the GL strings."""
    try:
        import numpy as np
        from OpenGL import GL

        from benchmarks.bench_render import typical_mesh
        from render.renderer import HandRenderer
        from render.sampling import Lighting

        vertices, faces, K, _, _ = typical_mesh(size)
        renderer = HandRenderer(size, size, faces, len(vertices))
        lighting = Lighting(np.array([0.3, 0.4, 0.87]), np.ones(3), 3.0, 0.3)
        colours = np.full(vertices.shape, 0.75, np.float32)
        for _ in range(5):
            renderer.render(vertices, colours, K, lighting)
        strings = {name: GL.glGetString(getattr(GL, "GL_" + name.upper())).decode()
                   for name in ("renderer", "vendor", "version")}
        start = time.perf_counter()
        for _ in range(frames):
            renderer.render(vertices, colours, K, lighting)
        results.put({"bare_frames_per_s": frames / (time.perf_counter() - start), "bare_frames": frames,
                     **{f"gl_{k}": v for k, v in strings.items()}})
    except Exception as exc:  # reported by the parent
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def bare_render(size: int, frames: int, timeout_s: float = 300.0) -> dict:
    context = multiprocessing.get_context("spawn")  # a GL context of its own, nothing inherited
    results = context.Queue()
    process = context.Process(target=_bare_render_process, args=(size, frames, results))
    process.start()
    try:
        return results.get(timeout=timeout_s)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


def pipeline_render(out: Path, samples: int, size: int, workers: int) -> dict:
    """Samples/s of the full pipeline (worker start-up included) rendering ``samples`` into ``out``."""
    from render.sampling import SynthConfig
    from render.synth import GenerationJob, generate

    job = GenerationJob(out=out, num=samples, seed=0, shard_size=max(1, samples // 4), workers=workers,
                        config=SynthConfig(image_size=size), command="benchmarks/bench_gpu.py")
    start = time.perf_counter()
    generate(job, progress_bar=False, log=lambda *_: None)
    seconds = time.perf_counter() - start
    return {"pipeline_samples_per_s": samples / seconds, "pipeline_seconds": seconds, "samples": samples,
            "workers": workers, "size": size}


# ----------------------------------------------------------------- 2. loader
def loader_rate(directory: Path, size: int, batch: int, workers: int, epochs: int, device: str) -> dict:
    """Images/s that training_loader delivers on ``device``: overall and after each epoch's first batch."""
    import torch

    from training.data import set_transform_epoch, training_loader

    cuda = torch.device(device).type == "cuda"
    loader, sampler = training_loader([directory], image_size=size, augment=True, batch_size=batch, seed=0,
                                      workers=workers, pin_memory=cuda, device=device)
    images = steady_images = 0
    total_s = steady_s = 0.0
    first_batch_s = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        set_transform_epoch(loader.dataset, epoch)
        start = time.perf_counter()
        first = last = None
        for delivered in loader:
            _sync(device)
            last = time.perf_counter()
            count = len(delivered["target"])
            images += count
            if first is None:
                first = last
                first_batch_s.append(first - start)
            else:
                steady_images += count
        if last is None:
            raise ValueError(f"{directory}: no complete batch of {batch} samples")
        total_s += last - start
        steady_s += last - first
    return {"images_per_s": images / total_s, "steady_images_per_s": steady_images / steady_s if steady_s else None,
            "first_batch_s": statistics.median(first_batch_s), "images": images, "epochs": epochs}


# ----------------------------------------------------------------- 3. training steps
def training_rates(arch: str, precision: str, args) -> dict:
    """{kind: {"images_per_s", "median_s", "ratio_to_distill"}} plus the peak GPU memory of the set of steps."""
    import torch

    from benchmarks.bench_steps import KINDS, make_steps, measure

    device = torch.device(args.device)
    dtype = getattr(torch, PRECISIONS[precision]) if PRECISIONS[precision] else None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    steps = make_steps(arch, args.width, args.batch, args.size, 1, args.device, kinds=KINDS,
                       autocast_dtype=dtype, channels_last=True)
    times = measure(steps, args.repeats, args.warmup, device)
    medians = {kind: statistics.median(t["wall"]) for kind, t in times.items()}
    result = {kind: {"images_per_s": args.batch / m, "median_s": m, "ratio_to_distill": m / medians["distill"]}
              for kind, m in medians.items()}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del steps
    return result


# ----------------------------------------------------------------- report
def require_device(device: str) -> None:
    """One clear line (SystemExit) when ``device`` is CUDA and torch sees none."""
    import torch

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench_gpu: --device {device} but torch {torch.__version__} sees no CUDA device "
                         f"(use --dry-run on a CPU machine)")


def run(args) -> dict:
    import torch

    require_device(args.device)
    if torch.device(args.device).type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads:  # 0: torch's default; two threads on a loaded 2-core machine run ~10x slower than one
        torch.set_num_threads(args.threads)
    results = {"dry_run": args.dry_run, "gpu_run": torch.device(args.device).type == "cuda"}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        data = Path(work) / "synth"
        try:
            render = bare_render(args.render_size, args.bare_frames)
        except Exception as exc:
            render = _error(exc)
        try:
            render.update(pipeline_render(data, args.render_samples, args.render_size, args.render_workers))
        except Exception as exc:
            render["pipeline_error"] = _error(exc)["error"]
        results["render"] = render
        results["loader"] = {}
        for workers in (int(w) for w in args.loader_workers.split(",")):
            try:
                results["loader"][str(workers)] = loader_rate(data, args.size, args.batch, workers,
                                                              args.loader_epochs, args.device)
            except Exception as exc:
                results["loader"][str(workers)] = _error(exc)
    results["training"] = {}
    for arch in args.archs.split(","):
        results["training"][arch] = {}
        for precision in args.precisions.split(","):
            try:
                results["training"][arch][precision] = training_rates(arch, precision, args)
            except Exception as exc:
                results["training"][arch][precision] = _error(exc)
    results["loader_vs_training"] = _loader_vs_training(results)
    return results


def _loader_vs_training(results) -> dict:
    """Best steady loader rate / training images/s of each arch, precision and kind (>= 1: it keeps up)."""
    rates = [r["steady_images_per_s"] for r in results["loader"].values() if r.get("steady_images_per_s")]
    if not rates:
        return {}
    best = max(rates)
    return {f"{arch}/{precision}/{kind}": best / row["images_per_s"]
            for arch, by_precision in results["training"].items() for precision, kinds in by_precision.items()
            for kind, row in kinds.items() if isinstance(row, dict) and "images_per_s" in row}


def errors(results) -> list[str]:
    """Every section's error message, as 'where: message'."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("error", "pipeline_error"):
                    found.append(f"{where}: {value}")
                else:
                    walk(value, f"{where}/{key}" if where else key)
    walk(results, "")
    return found


def markdown(args, results, command: str) -> str:
    from benchmarks.bench_steps import KINDS, labels

    env = results["environment"]
    where = env.get("cuda_device", "CPU (dry run)" if args.dry_run else "CPU")
    lines = [HEADER, f"### `{command}`", "",
             f"Machine: {where}, {env['cpu_count']} CPUs, torch {env['torch']}; load average (1 min) "
             f"{env['load_average_before'][0]:.1f} before, {env['load_average_after'][0]:.1f} after; {env['date_utc']}. "
             f"Steps: batch {args.batch}, {args.size}², width {args.width}, {args.warmup} warm-up + {args.repeats} "
             f"interleaved repetitions. {'**Dry run: tiny sizes on the CPU, the figures mean nothing.**' if args.dry_run else ''}",
             "", "| step | " + " | ".join(f"{a} {p} img/s (× distill time)" for a, by in results["training"].items()
                                          for p in by) + " |",
             "|---|" + "---|" * sum(len(by) for by in results["training"].values())]
    names = labels(1)
    for kind in KINDS:
        cells = []
        for by_precision in results["training"].values():
            for row in by_precision.values():
                cells.append(f"{row[kind]['images_per_s']:.0f} ({row[kind]['ratio_to_distill']:.2f}×)"
                             if kind in row else "error")
        lines.append(f"| {names[kind]} | " + " | ".join(cells) + " |")
    memory = [f"{a} {p} {row['peak_memory_gib']:.1f} GiB" for a, by in results["training"].items()
              for p, row in by.items() if "peak_memory_gib" in row]
    if memory:
        lines += ["", "Peak GPU memory (all steps of one column alive): " + ", ".join(memory) + "."]
    lines += ["", "| loader workers | delivered img/s (steady) | overall img/s | first batch s |", "|---|---|---|---|"]
    for workers, row in results["loader"].items():
        lines.append(f"| {workers} | {row['steady_images_per_s'] or 0:.0f} | {row['images_per_s']:.0f} | "
                     f"{row['first_batch_s']:.2f} |" if "error" not in row else f"| {workers} | error | | |")
    ratios = results["loader_vs_training"]
    if ratios:
        shown = {k: v for k, v in ratios.items() if k.endswith(("/student", "/distill", "/first_order"))}
        lines += ["", "Best steady loader rate / training rate (≥ 1: the loader keeps up): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in shown.items()) + "."]
    r = results["render"]
    lines += ["", "| rendering | figure |", "|---|---|",
              f"| OpenGL renderer (EGL) | {r.get('gl_renderer', 'error')} ({r.get('gl_vendor', '')}) |",
              f"| bare loop, `HandRenderer`, {args.render_size}² | {r.get('bare_frames_per_s', 0):.0f} frames/s |",
              f"| full pipeline, {args.render_workers} workers, {args.render_samples} samples | "
              f"{r.get('pipeline_samples_per_s', 0):.0f} samples/s |"]
    problems = errors(results)
    if problems:
        lines += ["", "Errors:", *[f"- {p}" for p in problems]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = _parse(argv)
    load_before = os.getloadavg()
    start = time.perf_counter()
    results = run(args)
    results["wall_s"] = time.perf_counter() - start
    results["settings"] = vars(args)
    results["environment"] = environment(load_before)
    command = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results["command"] = command
    text = markdown(args, results, command)
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    if args.json:
        write_json(args.json, results)
    problems = errors(results)
    for problem in problems:
        print(f"bench_gpu: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
