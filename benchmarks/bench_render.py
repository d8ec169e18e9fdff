#!/usr/bin/env python
"""Rendering throughput: bare render loops vs. the full synthetic-data pipeline, in one run.

Measured, all at the same image size and with the same worker count:

1. bare loop, stock pyrender — ``OffscreenRenderer`` kept, one hand mesh (a typical
   sample: median hand coverage) rendered again and again (pyrender's PBR shader, 4× MSAA);
2. bare loop, toolkit renderer — :class:`render.renderer.HandRenderer` kept, the same
   mesh uploaded and rendered again and again (single-sample, Lambert shader);
3. full pipeline — :func:`render.synth.generate`: sampling, batched hand model, render,
   composite, visibility, shard writing and manifest, including worker start-up.

Bare loops run ``--workers`` processes at once, like the pipeline; the toolkit loop runs
right before and right after the pipeline and the mean of the two is the reference (the
machine may be shared, and its load drifts). Also reported: peak
resident memory (RSS) of the pipeline's processes, bytes per stored sample, and a
per-stage CPU profile of one in-process pipeline. Writes ``docs/rendering_benchmark.md``.

Example:
    python benchmarks/bench_render.py --num 1000 --workers 2 --size 256
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import queue
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render.sampling import SynthConfig  # noqa: E402
from render.synth import GenerationJob, generate  # noqa: E402

STAGES = {  # (where, function) → stage name; "pipeline" = names as imported by render.pipeline
    ("renderer", "render"): "render (GL draw + read-back + normals + vertex upload)",
    ("bank", "sample"): "background (bank: crop, flip, rotate, recolour, upsample)",
    ("pipeline", "composite"): "composite",
    ("pipeline", "joint_visibility"): "visibility",
    ("pipeline", "depth_to_millimetres"): "depth encoding",
    ("pipeline", "draw_skin"): "skin colours",
    ("pipeline", "place_hand"): "placement",
    ("pipeline", "draw_lighting"): "lighting",
    ("pipeline", "draw_hand"): "hand parameters",
    ("pipeline", "project_elementwise"): "projection",
}


def typical_mesh(size: int):
    """Vertices, faces, colours and K of the median-coverage sample among the first 32."""
    from render.pipeline import SamplePipeline

    pipeline = SamplePipeline(SynthConfig(image_size=size), seed=0)
    arrays = pipeline.render(0, 32)
    coverage = arrays["mask"].reshape(32, -1).mean(1)
    i = int(np.argsort(coverage)[16])
    posed = pipeline.hand_model(arrays["pose_pca"][i:i + 1], arrays["betas"][i:i + 1], arrays["global_orient"][i:i + 1])
    vertices = posed.vertices[0] + (arrays["joints3d"][i, 0] - posed.joints[0, 0])
    pipeline.close()
    return vertices, pipeline.hand_model.faces, pipeline.K, float(coverage[i])


def _typical_mesh_process(size: int, results) -> None:
    results.put(typical_mesh(size))


KINDS = {
    "stock": "stock pyrender (PBR shader, 4× MSAA)",
    "pbr": "toolkit `HandRenderer`, pyrender's PBR shader (single-sample)",
    "toolkit": "toolkit `HandRenderer` (Lambert shader, single-sample, vertex-buffer update)",
    "rebuild": "toolkit `HandRenderer`, but a new `pyrender.Mesh` per frame instead of the buffer update",
}


def _make_frame(kind, mesh, size):
    """A callable rendering one frame of ``mesh`` with renderer variant ``kind`` (see :data:`KINDS`)."""
    vertices, faces, K, _ = mesh
    from render.sampling import Lighting

    lighting = Lighting(np.array([0.3, 0.4, 0.87]), np.ones(3), 3.0, 0.3)
    colours = np.full(vertices.shape, 0.75, np.float32)
    if kind == "stock":
        import trimesh

        from render.gl import import_pyrender
        pyrender = import_pyrender()
        renderer = pyrender.OffscreenRenderer(size, size)
        scene = pyrender.Scene(ambient_light=[0.3] * 3)
        scene.add(pyrender.Mesh.from_trimesh(trimesh.Trimesh(vertices, faces, vertex_colors=colours, process=False)))
        camera = pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5)
        scene.add(camera, pose=np.diag([1.0, -1.0, -1.0, 1.0]))
        scene.add(pyrender.DirectionalLight(intensity=3.0))
        return lambda: renderer.render(scene)
    from render.renderer import HandRenderer, pyrender
    renderer = HandRenderer(size, size, faces, len(vertices), shading="pbr" if kind == "pbr" else "lambert")
    if kind in ("toolkit", "pbr"):
        return lambda: renderer.render(vertices, colours, K, lighting)
    renderer.render(vertices, colours, K, lighting)
    state = {"node": next(iter(renderer.scene.mesh_nodes))}
    rgba = np.concatenate([colours, np.ones((len(colours), 1), np.float32)], 1)

    def rebuild():
        renderer.scene.remove_node(state["node"])
        primitive = pyrender.Primitive(positions=vertices, normals=renderer.vertex_normals(vertices), color_0=rgba,
                                       indices=faces, material=renderer._primitive.material)
        state["node"] = renderer.scene.add(pyrender.Mesh([primitive]))
        return renderer._offscreen.render(renderer.scene)

    return rebuild


def _cpu_cost_process(mesh, size, frames, results):
    """CPU ms per frame of every variant, llvmpipe rasterising in this thread (LP_NUM_THREADS=0)."""
    os.environ["LP_NUM_THREADS"] = "0"
    costs = {}
    # All renderers stay alive until the end: pyrender's EGL clean-up of one (on garbage
    # collection) terminates the display that the others share.
    renderers = {kind: _make_frame(kind, mesh, size) for kind in KINDS}
    for kind, frame in renderers.items():
        for _ in range(5):
            frame()
        start = time.process_time()
        for _ in range(frames):
            frame()
        costs[kind] = 1e3 * (time.process_time() - start) / frames
    results.put(costs)


def _collect(processes, results, timeout_s: float = 900.0) -> list:
    """One result per process. A process that dies (crash, kill) or a run past ``timeout_s``
    stops every process and raises, instead of waiting forever for a result that never comes."""
    outcomes = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(outcomes) < len(processes):
            try:
                outcomes.append(results.get(timeout=1.0))
                continue
            except queue.Empty:
                pass
            crashed = [p for p in processes if p.exitcode not in (None, 0)]
            if crashed:
                raise RuntimeError(f"a benchmark process died (exit code {crashed[0].exitcode}) without a result")
            if all(p.exitcode == 0 for p in processes) and results.empty():
                raise RuntimeError("a benchmark process exited without a result (see its error above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"benchmark processes gave no result within {timeout_s:.0f} s")
    finally:
        for p in processes:
            if len(outcomes) < len(processes):  # failed: do not wait for the survivors
                p.terminate()
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    return outcomes


def _in_child(target, *args):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    return _collect([process], results)[0]


def frame_cpu_costs(mesh, size: int, frames: int = 150) -> dict:
    return _in_child(_cpu_cost_process, mesh, size, frames)


def _bare_process(kind, mesh, size, seconds, lp_threads, barrier, results):
    os.environ.setdefault("LP_NUM_THREADS", str(lp_threads))
    frame = _make_frame(kind, mesh, size)
    for _ in range(5):
        frame()
    barrier.wait(timeout=600)  # a sibling that died never arrives: fail instead of hanging
    start, frames = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        frame()
        frames += 1
    results.put((frames, time.perf_counter() - start))


def bare_loop(kind: str, mesh, size: int, workers: int, seconds: float) -> float:
    """Frames per second of ``workers`` processes rendering ``mesh`` at once (summed)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    lp_threads = max(1, (os.cpu_count() or 1) // workers)
    processes = [context.Process(target=_bare_process, args=(kind, mesh, size, seconds, lp_threads, barrier, results))
                 for _ in range(workers)]
    for p in processes:
        p.start()
    outcomes = _collect(processes, results)
    return sum(frames / elapsed for frames, elapsed in outcomes)


def _stage_process(size: int, num: int, results) -> None:
    """CPU ms per sample of each pipeline stage and in total (LP_NUM_THREADS=0: rasterising in-thread)."""
    os.environ["LP_NUM_THREADS"] = "0"
    import collections

    import datasets.shard_format as shard_format
    import render.pipeline as pipeline_module
    from render.backgrounds import BackgroundBank
    from render.renderer import HandRenderer

    spent: collections.Counter = collections.Counter()

    def timed(owner, name, label):
        function = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - start

        setattr(owner, name, wrapper)

    for (owner, name), label in STAGES.items():
        timed({"renderer": HandRenderer, "bank": BackgroundBank, "pipeline": pipeline_module}[owner],
              name, label)
    pipeline = pipeline_module.SamplePipeline(SynthConfig(image_size=size), seed=1)
    timed(type(pipeline.hand_model), "__call__", "hand model (batched)")
    pipeline.render(0, num)  # warm-up; also allocates the reused shard arrays, as the first shard of a run does
    spent.clear()
    start = time.process_time()
    arrays = pipeline.render(0, num)
    with tempfile.TemporaryDirectory() as tmp:
        write_start = time.process_time()
        shard_format.write_shard(tmp, 0, arrays, {"source": "synthetic", "config": "{}"})
        spent["shard write (lzf, fsync, re-open, SHA-256)"] = time.process_time() - write_start
    total = time.process_time() - start
    rows = sorted(((label, 1e3 * t / num) for label, t in spent.items()), key=lambda r: -r[1])
    results.put((rows, 1e3 * total / num, _background_costs(pipeline.cfg, size)))


def _background_costs(cfg: SynthConfig, size: int, samples: int = 100) -> dict:
    """CPU cost of building a worker's background bank, and of drawing a background afresh instead."""
    from render.backgrounds import BackgroundBank, ProceduralBackgrounds
    from render.sampling import sample_rng

    start = time.process_time()
    BackgroundBank(1, size, cfg.background_bank)
    build_s = time.process_time() - start
    fresh = ProceduralBackgrounds()
    start = time.process_time()
    for index in range(samples):
        fresh.sample(sample_rng(1, index), size)
    return {"bank_build_s": build_s, "fresh_ms": 1e3 * (time.process_time() - start) / samples,
            "bank_size": cfg.background_bank}


def stage_profile(size: int, num: int) -> tuple[list[tuple[str, float]], float, dict]:
    return _in_child(_stage_process, size, num)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=1000, help="samples for the full pipeline (default 1000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each bare loop (default 10)")
    parser.add_argument("--out", type=Path, default=Path("docs/rendering_benchmark.md"))
    args = parser.parse_args(argv)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        # Child processes (bare loops, CPU-time probes) get one BLAS thread each, like pipeline
        # workers: idle BLAS threads spin and would be counted in the CPU-time measurements.
        os.environ.setdefault(name, "1")
    load_before = os.getloadavg()[0]

    mesh = _in_child(_typical_mesh_process, args.size)  # a child, so the main process's peak RSS stays the pipeline's
    # The toolkit bare loop runs right before and right after the pipeline: on a shared machine
    # the load changes over minutes, and the mean of the two brackets the pipeline's conditions.
    toolkit_before = bare_loop("toolkit", mesh, args.size, args.workers, args.seconds)
    print(f"bare toolkit renderer (before the pipeline): {toolkit_before:.1f} frames/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        shard_size = max(1, min(1000, args.num // (4 * args.workers)))  # the tool's default shard size at most
        job = GenerationJob(out=Path(tmp), num=args.num, seed=0, shard_size=shard_size, workers=args.workers,
                            config=SynthConfig(image_size=args.size), command="bench_render")
        timeline: list[tuple[float, int]] = []
        done = [0]

        def on_progress(n: int) -> None:
            done[0] += n
            timeline.append((time.perf_counter(), done[0]))

        start = time.perf_counter()
        manifest = generate(job, progress_bar=False, log=lambda _: None, on_progress=on_progress)
        pipeline_rate = args.num / (time.perf_counter() - start)
        # Steady state: from the first completed chunk (workers started) to the end.
        (t0, n0), (t1, n1) = timeline[0], timeline[-1]
        steady_rate = (n1 - n0) / (t1 - t0)
        stored = sum(e["bytes"] for e in manifest["shards"].values()) / args.num
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pipeline: {pipeline_rate:.1f} samples/s with start-up, {steady_rate:.1f} steady", flush=True)

    toolkit_after = bare_loop("toolkit", mesh, args.size, args.workers, args.seconds)
    print(f"bare toolkit renderer (after the pipeline): {toolkit_after:.1f} frames/s", flush=True)
    toolkit = 0.5 * (toolkit_before + toolkit_after)
    stock = bare_loop("stock", mesh, args.size, args.workers, args.seconds)
    print(f"bare stock pyrender: {stock:.1f} frames/s", flush=True)
    costs = frame_cpu_costs(mesh, args.size)
    print("CPU ms per frame:", {k: round(v, 2) for k, v in costs.items()}, flush=True)
    stages, pipeline_cpu, background = stage_profile(args.size, min(300, args.num))
    load_after = os.getloadavg()[0]

    from OpenGL import GL  # noqa: F401  (renderer string for the record)
    from render.renderer import HandRenderer
    probe = HandRenderer(8, 8, np.array([[0, 1, 2]]), 3)
    gl_renderer = GL.glGetString(GL.GL_RENDERER).decode()
    probe.close()

    lines = [
        "# Rendering benchmark",
        "",
        f"`python benchmarks/bench_render.py --num {args.num} --workers {args.workers} --size {args.size} "
        f"--seconds {args.seconds:g}` — {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"GL: {gl_renderer}. Load average {load_before:.1f} before, {load_after:.1f} after "
        "(the machine was shared; compare the ratios, which come from the same run).",
        "",
        f"The bare loops render a typical sample (hand covers {100 * mesh[3]:.0f}% of the image) with "
        f"{args.workers} processes at once; the pipeline renders {args.num} samples with {args.workers} workers "
        "(steady state: from the first completed chunk of 50 samples to the end; start-up = spawning the "
        "workers, importing torch/pyrender, loading the hand model, creating the GL context).",
        "",
        "| measurement | samples or frames / s |",
        "|---|---|",
        f"| bare loop, {KINDS['stock']} | {stock:.1f} |",
        f"| bare loop, {KINDS['toolkit']}: mean of the runs right before and after the pipeline "
        f"({toolkit_before:.1f}, {toolkit_after:.1f}) | {toolkit:.1f} |",
        f"| **full pipeline, steady state** (sampling, hand model, render, background bank, composite, "
        f"visibility, lzf shards, "
        f"manifest) | **{steady_rate:.1f}** |",
        f"| full pipeline including worker start-up | {pipeline_rate:.1f} |",
        "",
        f"Steady-state pipeline ÷ bare loops: {steady_rate / stock:.0%} of stock pyrender, "
        f"{steady_rate / toolkit:.0%} of the toolkit renderer alone.",
        "",
        f"Peak RSS: largest worker {peak_children:.0f} MiB, main process {peak_self:.0f} MiB. "
        f"Stored bytes per sample: {stored:.0f} ({stored * 50000 / 1e9:.1f} GB per 50k samples).",
        "",
        "Renderer variants, CPU time per frame of the same mesh, one process, llvmpipe rasterising in the "
        "calling thread (`LP_NUM_THREADS=0`), so the numbers do not depend on other load:",
        "",
        "| renderer | CPU ms / frame |",
        "|---|---|",
        *[f"| {KINDS[kind]} | {ms:.2f} |" for kind, ms in costs.items()],
        "",
        f"Full pipeline, same conditions ({min(300, args.num)} samples, one process): **{pipeline_cpu:.2f} CPU ms "
        f"per sample**, i.e. {costs['stock'] / pipeline_cpu:.0%} of the stock pyrender frame rate and "
        f"{costs['toolkit'] / pipeline_cpu:.0%} of the toolkit renderer's; on 2 fully used cores that is "
        f"{2000 / pipeline_cpu:.0f} samples/s. Per stage:",
        "",
        "| stage | CPU ms / sample |",
        "|---|---|",
    ]
    lines += [f"| {stage} | {ms:.2f} |" for stage, ms in stages]
    render_ms = next((ms for stage, ms in stages if stage.startswith("render")), 0.0)
    bank_ms = next((ms for stage, ms in stages if stage.startswith("background")), 0.0)
    lines += [
        "",
        f"Backgrounds: each worker builds a bank of {background['bank_size']} procedural textures per family "
        f"from the global seed at start-up ({background['bank_build_s']:.2f} CPU s); a sample's background is a "
        f"random crop, mirror, 90° rotation and colour change of one of them ({bank_ms:.2f} ms above). "
        f"Drawing every background afresh (`SynthConfig.background_bank=0`) costs {background['fresh_ms']:.2f} "
        "CPU ms per sample. The shard write is mostly lzf compression inside h5py; its SHA-256 re-read of the "
        "file is about a tenth of it.",
    ]
    lines += [
        "",
        "## Against the project goals",
        "",
        f"- ≥ 100 samples/s with 2 workers on 2 cores at {args.size}²: steady state {steady_rate:.0f} samples/s "
        f"({'met' if steady_rate >= 100 else 'not met'} in this run).",
        f"- Full pipeline ≥ 70% of the bare pyrender loop, against the honest reference (the toolkit's own "
        f"render-only loop, same mesh, size and renderer settings): {steady_rate / toolkit:.0%} "
        f"({'met' if steady_rate >= 0.7 * toolkit else 'not met'} in this run); against stock pyrender "
        f"(secondary reference): {steady_rate / stock:.0%}. In CPU time the renderer is {render_ms:.1f} of the "
        f"{pipeline_cpu:.1f} ms a sample costs ({render_ms / pipeline_cpu:.0%}); the rest is listed per stage above.",
        "",
        "Noise: the throughput rows are wall-clock rates on a shared machine (see the load average above), so "
        "single runs vary by several percent; the ratios compare measurements of the same run. The CPU-time "
        "tables do not depend on other load as much, but still vary by a few percent between runs.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
