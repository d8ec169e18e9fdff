"""The bare render loops that ``bench_render.py`` measures the pipeline against, and their helpers.

- :func:`typical_mesh` — one hand mesh of a typical sample (median hand coverage), and the renderer
  calls of the pipeline's first 32 samples;
- :data:`KINDS` / :func:`bare_loop` — ``--workers`` processes rendering that mesh again and again with
  the stock pyrender renderer (PBR, 4× MSAA) or the toolkit's :class:`render.renderer.HandRenderer`, or
  (``hands``) the toolkit renderer repeating the pipeline's own 32 renderer calls in turn,
  frames per second over a fixed time;
- :func:`frame_cpu_costs` — CPU time per frame of each kind in a child process;
- :func:`in_child` — run a measurement in a fresh process (one GL context per process).
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import time

import numpy as np

from render.gl import llvmpipe_threads
from render.sampling import SynthConfig


def typical_mesh(size: int):
    """Vertices, faces, K and coverage of the median-coverage sample among the first 32, and the
    renderer calls (vertices, colours, K, lighting) the pipeline makes for those 32 samples."""
    from render.pipeline import SamplePipeline

    pipeline = SamplePipeline(SynthConfig(image_size=size), seed=0)
    calls, render = [], pipeline.renderer.render

    def recording(vertices, colours, K, lighting):
        calls.append((vertices.copy(), colours.copy(), K.copy(), lighting))
        return render(vertices, colours, K, lighting)

    pipeline.renderer.render = recording
    arrays = pipeline.render(0, 32)
    coverage = arrays["mask"].reshape(32, -1).mean(1)
    i = int(np.argsort(coverage)[16])
    posed = pipeline.hand_model(arrays["pose_pca"][i:i + 1], arrays["betas"][i:i + 1], arrays["global_orient"][i:i + 1])
    vertices = posed.vertices[0] + (arrays["joints3d"][i, 0] - posed.joints[0, 0])
    pipeline.close()
    return vertices, pipeline.hand_model.faces, pipeline.K, float(coverage[i]), calls


def typical_mesh_process(size: int, results) -> None:
    results.put(typical_mesh(size))


KINDS = {
    "hands": "toolkit `HandRenderer`, the pipeline's own first 32 hands, colours and lights in turn",
    "stock": "stock pyrender (PBR shader, 4× MSAA)",
    "pbr": "toolkit `HandRenderer`, pyrender's PBR shader (single-sample)",
    "toolkit": "toolkit `HandRenderer` (Lambert shader, single-sample, vertex-buffer update)",
    "rebuild": "toolkit `HandRenderer`, but a new `pyrender.Mesh` per frame instead of the buffer update",
}


def _make_frame(kind, mesh, size):
    """A callable rendering one frame of ``mesh`` with renderer variant ``kind`` (see :data:`KINDS`)."""
    vertices, faces, K, _, calls = mesh
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
    if kind == "hands":
        turn = iter(range(1 << 62))
        return lambda: renderer.render(*calls[next(turn) % len(calls)])
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


def in_child(target, *args):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=target, args=(*args, results))
    process.start()
    return _collect([process], results)[0]


def frame_cpu_costs(mesh, size: int, frames: int = 150) -> dict:
    return in_child(_cpu_cost_process, mesh, size, frames)


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
    lp_threads = llvmpipe_threads(workers)  # as the pipeline's workers
    processes = [context.Process(target=_bare_process, args=(kind, mesh, size, seconds, lp_threads, barrier, results))
                 for _ in range(workers)]
    for p in processes:
        p.start()
    outcomes = _collect(processes, results)
    return sum(frames / elapsed for frames, elapsed in outcomes)
