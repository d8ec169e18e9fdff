"""Synthetic dataset generation: shard plan, resume, worker processes, manifest.

A dataset of ``num`` samples is cut into shards of ``shard_size`` consecutive sample
indices; shard ``k`` holds samples ``k·shard_size …``. Each worker process builds one
:class:`render.pipeline.SamplePipeline` and renders whole shards, writes each with
:func:`datasets.shard_format.write_shard` (atomic) and records it in the manifest
(:func:`datasets.shard_format.record_shards`, under a lock), so an interrupted run
loses at most the shards in progress.

Guarantees (tested in ``tests/test_render_synth.py``):

- determinism — sample ``i`` depends only on (config, seed, shard size, chunk size, i):
  bitwise the same shard files for any worker count, shard subset, interruption or way of
  typing the command (the command lines are kept in the manifest's ``invocations`` only). (The
  hand model runs batched per chunk of a shard, and batched float arithmetic can differ
  in the last bit from unbatched, so the shard and chunk sizes are part of a dataset's
  identity in the manifest.)
- resume — a rerun skips shards that open, validate and match the manifest checksum,
  and redoes missing, truncated or corrupt ones;
- a worker that dies (killed, crashed, out of memory) or fails to start ends the run at
  once with a :class:`SynthError` instead of a hang; rerunning resumes;
- sharding across machines — ``shards`` selects a subset (``--shards 3-7`` or a job
  array's ``--shard-index I --shard-count N``), all writing into one directory.
"""
from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import queue
import shutil
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from common.cli import termination_deferred
from common.progress import Progress
from datasets.shard_format import (ShardError, file_sha256, open_shard, read_manifest, record_invocation,
                                   record_shards, shard_name, write_shard)
from render.gl import llvmpipe_threads
from render.sampling import SynthConfig

#: Bytes per pixel of a stored sample (rgb + depth + mask, Blosc lz4): 2.3 measured on procedural
#: backgrounds (docs/rendering_benchmark.md, stored bytes per sample); photos compress worse, hence the headroom.
ESTIMATED_BYTES_PER_PIXEL = 3.0
#: Manifest fields that must agree between runs filling one directory.
IDENTITY_FIELDS = ("generator", "config", "seed", "num", "shard_size", "chunk_size", "hand_model")


class SynthError(ValueError):
    """Bad generation request: flags, output directory, disk space or a mismatching existing dataset."""


@dataclass(frozen=True)
class ShardTask:
    index: int
    start: int
    count: int


@dataclass
class GenerationJob:
    """Everything that defines a generation run (and, except ``workers``/``shards``/``command``, the data)."""

    out: Path
    num: int
    seed: int = 0
    shard_size: int = 1000
    workers: int = 1
    config: SynthConfig = field(default_factory=SynthConfig)
    mano: str | None = None
    shards: list[int] | None = None  # None = all
    command: str = ""
    chunk_size: int = 50

    def __post_init__(self) -> None:
        self.out = Path(self.out)


def plan_shards(num: int, shard_size: int) -> list[ShardTask]:
    """Shards of ``shard_size`` consecutive samples covering ``0 … num−1`` (the last may be short)."""
    if num <= 0 or shard_size <= 0:
        raise SynthError(f"--num and --shard-size should be positive, found num={num}, shard_size={shard_size}")
    return [ShardTask(k, start, min(shard_size, num - start)) for k, start in enumerate(range(0, num, shard_size))]


def parse_shard_ranges(text: str, num_shards: int) -> list[int]:
    """``"3-7,9"`` → ``[3, 4, 5, 6, 7, 9]``; every index must lie in ``0 … num_shards−1``."""
    selected: set[int] = set()
    for part in text.split(","):
        try:
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high) if high else int(low)
        except ValueError:
            raise SynthError(f"--shards: expected ranges like '3-7,9', found {text!r}") from None
        if first > last:
            raise SynthError(f"--shards: range {part.strip()!r} is reversed; expected LOW-HIGH with LOW <= HIGH, "
                             f"found {first} > {last} (did you mean '{last}-{first}'?)")
        if not 0 <= first <= last < num_shards:
            raise SynthError(f"--shards: range {part.strip()!r} is outside the {num_shards} shards (0-{num_shards - 1})")
        selected.update(range(first, last + 1))
    return sorted(selected)


def job_array_shards(shard_index: int, shard_count: int, num_shards: int) -> list[int]:
    """Shards of job ``shard_index`` out of ``shard_count`` (round robin, so jobs get equal work)."""
    if shard_count <= 0:
        raise SynthError(f"--shard-count should be at least 1 (the number of jobs), found {shard_count}")
    if not 0 <= shard_index < shard_count:
        raise SynthError(f"--shard-index should be in 0…{shard_count - 1} for --shard-count {shard_count}, "
                         f"found {shard_index}")
    return list(range(shard_index, num_shards, shard_count))


def manifest_fields(job: GenerationJob, hand_model: str) -> dict:
    return {"generator": "render_synth", "config": json.loads(job.config.to_json()), "seed": job.seed,
            "num": job.num, "shard_size": job.shard_size, "chunk_size": job.chunk_size, "hand_model": hand_model,
            "source": "synthetic"}


# --------------------------------------------------------------------------- checks


def check_output_directory(out: Path, bytes_needed: int) -> None:
    """Create ``out`` if needed; fail clearly if it is not writable or lacks the estimated space."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise SynthError(f"{out}: output directory is not writable ({exc.strerror or exc})") from exc
    free = shutil.disk_usage(out).free
    if bytes_needed > free:
        raise SynthError(f"{out}: not enough free disk space: about {bytes_needed / 1e9:.2f} GB needed for the "
                         f"remaining shards, {free / 1e9:.2f} GB free")


def check_same_dataset(out: Path, fields: dict) -> None:
    """Refuse to add shards to a directory generated with different settings."""
    manifest = read_manifest(out)
    def leaves(value, prefix):  # nested settings → {"config.image_size": 128, ...}: name the keys that differ
        if not isinstance(value, dict):
            return {prefix: value}
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{prefix}.{key}").items()}

    existing = {k: v for f in IDENTITY_FIELDS if f in manifest for k, v in leaves(manifest[f], f).items()}
    requested = {k: v for f in IDENTITY_FIELDS if f in manifest for k, v in leaves(fields[f], f).items()}
    differing = [k for k in dict.fromkeys([*existing, *requested]) if existing.get(k) != requested.get(k)]
    if differing:
        details = "; ".join(f"{k}: existing {existing.get(k)!r} vs requested {requested.get(k)!r}" for k in differing)
        raise SynthError(f"{out}: holds a dataset generated with different settings ({details}); "
                         "use a new --out directory or the original settings")


def shard_is_complete(out: Path, task: ShardTask, manifest: dict) -> tuple[bool, str]:
    """Whether shard ``task`` exists, validates and matches its manifest checksum (reason if not)."""
    path = out / shard_name(task.index)
    if not path.exists():
        return False, "missing"
    try:
        open_shard(path, expected_samples=task.count).close()
    except ShardError as exc:
        return False, str(exc)
    entry = manifest.get("shards", {}).get(path.name)
    if entry is None:
        return False, "not recorded in the manifest"
    if entry.get("sha256") != file_sha256(path):
        return False, "checksum differs from the manifest (corrupt)"
    return True, "complete"


# --------------------------------------------------------------------------- workers

_PIPELINE = None
_PROGRESS: Callable[[int], None] | None = None
_MESSAGES = None  # a pool worker's queue to the parent (None in-process)
#: Test hook, read only inside pool workers: ``"exit-at-shard:K"`` makes the worker that
#: starts shard K kill itself (SIGKILL), ``"fail-init"`` makes worker start-up raise.
FAULT_ENV = "RENDER_SYNTH_TEST_FAULT"


def _init_worker(job: GenerationJob, messages, lp_threads: int | None) -> None:
    global _PIPELINE, _PROGRESS, _MESSAGES
    terminated: list[int] = []
    if messages is not None:  # a pool worker: Ctrl-C is the parent's to handle
        from common.cli import quiet_worker_signals

        quiet_worker_signals()
        # A SIGTERM during start-up is only noted: raised inside a ctypes call (the EGL context), the
        # SystemExit of the usual handler would surface as a ctypes error with an "Exception in
        # initializer" trace. Start-up writes nothing, so the worker then just exits.
        signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        if lp_threads is not None:  # a spawned worker: llvmpipe threads, set before its GL context exists
            os.environ.setdefault("LP_NUM_THREADS", str(lp_threads))
        if messages is not None and os.environ.get(FAULT_ENV) == "fail-init":
            raise RuntimeError(f"start-up failure injected by {FAULT_ENV}")
        from render.pipeline import SamplePipeline

        _PIPELINE = SamplePipeline(job.config, job.seed, job.mano, job.chunk_size)
    except SystemExit as exc:
        if messages is not None:  # stopped while starting: nothing to clean up or report, and
            os._exit(exc.code if isinstance(exc.code, int) else 1)  # no "Exception in initializer" trace
        raise
    except BaseException as exc:
        if terminated:  # the failure is the stop's doing: exit as stopped, silently
            os._exit(128 + terminated[0])
        if messages is not None:  # the parent only sees a broken pool: tell it why
            messages.put(("init-error", f"{type(exc).__name__}: {exc}"))
            messages.close()
            messages.join_thread()
        raise
    if terminated:
        os._exit(128 + terminated[0])
    if messages is not None:
        quiet_worker_signals()  # from now on SIGTERM unwinds (atomic writes remove their temporary files)
    _MESSAGES = messages
    _PROGRESS = messages.put if messages is not None else None


def _render_and_write(job: GenerationJob, task: ShardTask) -> dict:
    """Render shard ``task`` in this process, write it atomically and record it; return its manifest entry."""
    if _MESSAGES is not None:
        _MESSAGES.put(("start", task.index, os.getpid()))
        if os.environ.get(FAULT_ENV) == f"exit-at-shard:{task.index}":
            _MESSAGES.close()
            _MESSAGES.join_thread()  # flush, then die like an OOM-killed process
            os.kill(os.getpid(), signal.SIGKILL)
    arrays = _PIPELINE.render(task.start, task.count, _PROGRESS)
    # Only what determines the samples: the command line lives in the manifest's invocations.
    attrs = {"source": "synthetic", "config": job.config.to_json(), "hand_model": _PIPELINE.identity,
             "seed": job.seed, "first_sample": task.start}
    try:
        with termination_deferred():  # a stop arriving now waits for the shard and its manifest entry
            entry = write_shard(job.out, task.index, arrays, attrs)
            record_shards(job.out, [entry], **manifest_fields(job, _PIPELINE.identity))
    except OSError as exc:
        if exc.errno == errno.ENOSPC or "No space left" in str(exc):
            raise SynthError(f"{job.out}: no space left on device while writing {shard_name(task.index)}; "
                             "free space and rerun the same command to resume") from None
        raise SynthError(f"{job.out}: could not write {shard_name(task.index)} ({exc})") from None
    return entry


def pending_tasks(job: GenerationJob, log: Callable[[str], None] = print) -> list[ShardTask]:
    """The selected shards that still need rendering (logging why each incomplete one is redone)."""
    plan = plan_shards(job.num, job.shard_size)
    selected = plan if job.shards is None else [plan[k] for k in job.shards]
    manifest = read_manifest(job.out) if job.out.exists() else {"shards": {}}
    todo = []
    for task in selected:
        complete, reason = shard_is_complete(job.out, task, manifest)
        if not complete:
            if reason != "missing":
                log(f"redoing {shard_name(task.index)}: {reason}")
            for stale in job.out.glob(f".{shard_name(task.index)}.tmp-*"):  # left by a killed run
                stale.unlink(missing_ok=True)
            todo.append(task)
    return todo


def generate(job: GenerationJob, progress_bar: bool = True, log: Callable[[str], None] = print,
             on_progress: Callable[[int], None] | None = None) -> dict:
    """Render the selected shards of ``job`` that are not complete yet; return the manifest.

    ``on_progress(n)`` is called in this process as each chunk of ``n`` samples completes.
    """
    from render.backgrounds import background_source
    from render.hand_model import HandModel

    background_source(job.config.backgrounds)  # fail early on a bad background folder
    identity = HandModel(model_path=job.mano, num_pca_comps=job.config.num_pca_comps).identity
    if job.out.exists():
        check_same_dataset(job.out, manifest_fields(job, identity))
    todo = pending_tasks(job, log)
    remaining = sum(t.count for t in todo)
    check_output_directory(job.out, int(remaining * job.config.image_size**2 * ESTIMATED_BYTES_PER_PIXEL))
    if not todo:
        log(f"{job.out}: all {len(job.shards or plan_shards(job.num, job.shard_size))} selected shards are complete")
        return read_manifest(job.out)
    workers = max(1, min(job.workers, len(todo)))
    lp_threads = llvmpipe_threads(workers)
    record_invocation(job.out, job.command, workers=workers, shards_to_render=len(todo))

    with Progress(remaining, f"render {job.out.name}", unit="sample", enabled=progress_bar) as bar:

        def advance(n: int) -> None:
            bar.update(n)
            if on_progress is not None:
                on_progress(n)

        if workers == 1:
            _run_in_process(job, todo, advance)
        else:
            _run_in_pool(job, todo, advance, workers, lp_threads)
    return read_manifest(job.out)


def _run_in_process(job: GenerationJob, todo: list[ShardTask], advance) -> None:
    global _PIPELINE, _PROGRESS
    _init_worker(job, None, None)
    _PROGRESS = advance
    try:
        for task in todo:
            _render_and_write(job, task)
    finally:
        _PIPELINE.close()
        _PIPELINE = _PROGRESS = None


def _run_in_pool(job: GenerationJob, todo: list[ShardTask], advance, workers: int, lp_threads: int) -> None:
    """Render ``todo`` in ``workers`` spawned processes, forwarding their progress to ``advance``.

    A worker that dies (killed, segfault, out of memory) or whose start-up fails breaks the
    pool (:class:`BrokenProcessPool`); the run then stops at once with a :class:`SynthError`
    naming the shards in progress. Shards already written are complete and recorded, so a
    rerun of the same command resumes.
    """
    context = multiprocessing.get_context("spawn")  # no GL state or threads inherited through fork
    messages = context.Queue()  # ints: samples done; ("start", shard, pid) / ("init-error", text)
    started: dict[int, int] = {}  # shard → pid of the worker rendering it
    finished: set[int] = set()
    startup_errors: list[str] = []

    def drain(timeout: float) -> None:
        try:
            message = messages.get(timeout=timeout)
            while True:
                if isinstance(message, int):
                    advance(message)
                elif message[0] == "start":
                    started[message[1]] = message[2]
                else:
                    startup_errors.append(message[1])
                message = messages.get_nowait()
        except queue.Empty:
            pass

    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(job, messages, lp_threads))
    try:
        with _single_threaded_libraries():  # the submits spawn the workers: they start with this environment
            futures = {executor.submit(_render_and_write, job, task): task for task in todo}
        processes = list((getattr(executor, "_processes", None) or {}).values())
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain(0.0)
            for future in done:
                try:
                    future.result()
                except BrokenProcessPool:
                    drain(0.5)  # collect a failed start-up's message, if it sent one
                    raise _worker_died(job, processes, started, finished, startup_errors) from None
                finished.add(futures[future].index)
        drain(0.5)
    except BaseException:
        _stop_workers(executor)
        raise
    executor.shutdown(wait=True)
    while True:  # progress still queued once all workers are done
        try:
            message = messages.get_nowait()
        except queue.Empty:
            break
        if isinstance(message, int):
            advance(message)


def _worker_died(job: GenerationJob, processes: list, started: dict[int, int], finished: set[int],
                 startup_errors: list[str]) -> SynthError:
    """The error for a broken pool, naming the shard(s) whose worker died (the pool
    terminates the other workers itself, with SIGTERM)."""
    if startup_errors:
        return SynthError(f"{job.out}: a worker process failed to start: {startup_errors[0]}")
    for process in processes:
        process.join(timeout=2)
    dead = {p.pid for p in processes if p.exitcode not in (None, 0, -signal.SIGTERM)}
    in_progress = sorted(k for k in started if k not in finished)
    in_progress = [k for k in in_progress if started[k] in dead] or in_progress
    names = ", ".join(shard_name(k) for k in in_progress[:4]) + (" …" if len(in_progress) > 4 else "")
    names = names or "a shard"  # it died before reporting which
    return SynthError(f"{job.out}: worker process died while rendering {names}; "
                      "rerun the same command to resume")


def _stop_workers(executor: ProcessPoolExecutor) -> None:
    """Cancel queued shards and end the workers now (a shard in progress is redone on resume)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())  # taken before shutdown clears it
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


@contextlib.contextmanager
def _single_threaded_libraries():
    """Spawned workers inherit this environment: one BLAS/OpenMP thread each (parallelism
    comes from the workers; oversubscribed thread pools slow every worker down)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
