"""Where the tasks of a plan run: in this process, or as submitit jobs (local processes or SLURM).

:func:`run_experiment` is the whole experiment: plan → run every task that is not done → aggregate
(:func:`training.experiments.report.write_results`). Cluster jobs call
:func:`training.experiments.runner.execute_task`, which rebuilds the plan from the catalog, so a
job carries only the experiment's name, the options and one :class:`Task`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from training.experiments.runner import Plan, RunOptions, Task, execute_task, make_plan, run_task, task_done
from training.experiments.spec import ExperimentError

REPOSITORY = Path(__file__).resolve().parents[2]


def run_sequential(plan: Plan, log: Callable[[str], None] = print) -> list[str]:
    """Run the tasks one after another in this process; returns the failed ones.

    A task that fails (a non-finite loss, a refused run directory, …) is reported and its dependents are
    skipped, while the independent tasks still run, so one bad arm does not cost the rest of the experiment.
    """
    tasks = plan.tasks()
    broken: set[Task] = set()
    failed: list[str] = []
    for index, task in enumerate(tasks, 1):
        if any(d in broken for d in plan.dependencies(task)):
            broken.add(task)
            failed.append(f"{task} (not run: a dependency failed)")
            log(f"[{index}/{len(tasks)}] {task}: not run (a dependency failed)")
            continue
        start = time.perf_counter()
        try:
            outcome = run_task(plan, task)
        except Exception as exc:  # reported with the task's name; the other arms go on
            broken.add(task)
            message = " ".join(str(exc).split()) or type(exc).__name__
            failed.append(f"{task} ({type(exc).__name__}: {message})")
            outcome = f"FAILED: {message}"
        log(f"[{index}/{len(tasks)}] {task}: {outcome} ({time.perf_counter() - start:.0f} s)")
    return failed


def _executor(plan: Plan):
    import submitit

    options = plan.options
    executor = submitit.AutoExecutor(folder=options.out / "submitit" / "%j", cluster=options.cluster)
    parameters = {"timeout_min": options.timeout_min}
    if options.cluster == "slurm":
        parameters.update(cpus_per_task=options.cpus_per_job, gpus_per_node=options.gpus_per_job)
        if options.slurm_partition:
            parameters["slurm_partition"] = options.slurm_partition
    executor.update_parameters(**parameters)
    return executor


def _job_environment() -> None:
    """Jobs import the repository's packages (``training``, ``render``) and render headless."""
    paths = [str(REPOSITORY), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def submit_with_dependencies(plan: Plan, executor, tasks: list[Task]) -> dict[Task, object]:
    """Submit ``tasks`` (in run order) to a SLURM-like executor, each after its dependencies (``afterok``).

    Dependencies already done are not waited for; a failed dependency cancels its dependents
    (``kill-on-invalid-dep``) instead of leaving them pending forever.
    """
    jobs: dict[Task, object] = {}
    for task in tasks:
        after = [jobs[d].job_id for d in plan.dependencies(task) if d in jobs]
        extra = {"dependency": "afterok:" + ":".join(after), "kill-on-invalid-dep": "yes"} if after else {}
        executor.update_parameters(name=f"{plan.name}:{task}", slurm_additional_parameters=extra)
        jobs[task] = executor.submit(execute_task, plan.name, plan.options, task)
    return jobs


def _describe_failure(task: Task, job, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return f"{task} (job {job.job_id}: {first}; log {job.paths.stderr})"


def run_local(plan: Plan, executor, pending: list[Task], log: Callable[[str], None] = print,
              max_jobs: int = 0, poll_s: float = 1.0) -> list[str]:
    """Run ``pending`` as local submitit jobs, at most ``max_jobs`` at once (0: no limit).

    submitit's local executor knows no dependencies, so a task is submitted once every dependency
    that is part of this run has finished (the others were done before); the dependents of a failed
    task are not run. Returns the failed tasks with their job logs.
    """
    waiting, running = list(pending), {}
    in_run, finished, broken, failed = set(pending), set(), set(), []
    while waiting or running:
        for task in list(waiting):
            dependencies = [d for d in plan.dependencies(task) if d in in_run]
            if any(d in broken for d in dependencies):
                waiting.remove(task)
                broken.add(task)
                failed.append(f"{task} (not run: a dependency failed)")
            elif all(d in finished for d in dependencies) and (not max_jobs or len(running) < max_jobs):
                waiting.remove(task)
                running[task] = executor.submit(execute_task, plan.name, plan.options, task)
                log(f"{task}: started (local job {running[task].job_id})")
        if not running:
            break
        time.sleep(poll_s)
        for task, job in list(running.items()):
            if job.done():
                del running[task]
                try:
                    log(f"{task}: {job.result()} (local job {job.job_id})")
                    finished.add(task)
                except Exception as exc:  # a failed job: report it, carry on with what does not depend on it
                    broken.add(task)
                    failed.append(_describe_failure(task, job, exc))
    return failed


def run_on_cluster(plan: Plan, log: Callable[[str], None] = print) -> list[str]:
    """Run the pending tasks as submitit jobs; returns the failed tasks (with their job logs)."""
    _job_environment()
    executor = _executor(plan)
    pending = [t for t in plan.tasks() if t.step not in plan.unavailable and not task_done(plan, t)]
    if plan.options.cluster == "local":
        return run_local(plan, executor, pending, log, plan.options.max_jobs)
    jobs = submit_with_dependencies(plan, executor, pending)
    log(f"submitted {len(jobs)} SLURM jobs; waiting for them to finish")
    failed = []
    for task, job in jobs.items():
        try:
            log(f"{task}: {job.result()} (job {job.job_id})")
        except Exception as exc:  # a failed or cancelled job: report it, keep collecting the others
            failed.append(_describe_failure(task, job, exc))
    return failed


def run_experiment(name: str, options: RunOptions, log: Callable[[str], None] = print) -> Path:
    """Run experiment ``name`` and aggregate it; returns ``<out>/results.json``.

    Raises :class:`ExperimentError` for a missing dataset (before anything runs) and, after
    aggregating what finished, when tasks failed (naming each and why).
    """
    from training.experiments.report import write_results

    plan = make_plan(name, options)
    for arm, reason in plan.unavailable.items():
        log(f"skipping arm {arm}: {reason}")
    start = time.perf_counter()
    runner = run_sequential if options.cluster == "none" else run_on_cluster
    failed = runner(plan, log)
    results = write_results(plan, wall_s=time.perf_counter() - start)
    if failed:
        raise ExperimentError(f"{name}: {len(failed)} task(s) failed: " + "; ".join(failed))
    return results


__all__ = ["run_experiment", "run_sequential", "run_on_cluster", "run_local", "submit_with_dependencies"]
