"""Run an experiment: data steps once, arms × seeds as ordinary run directories, then aggregate.

Layout under ``out``: ``data/<step>`` (rendered sets, unless ``data_cache`` points elsewhere),
``runs/<arm>/seed<k>`` (unless ``runs_dir`` points elsewhere; a normal run directory of
:func:`training.trainer.train`, with its evaluation in ``eval/metrics.json`` and the arm's wall
time in ``experiment.json``), and the aggregate of :mod:`training.experiments.report`.

Resume: a finished training arm (``model.pt`` and ``eval/metrics.json`` present, its
``config.yaml`` equal to the declared config) is not retrained; an interrupted one resumes from
its last checkpoint (the trainer's own resume); a run directory made with other settings is
refused with the keys that differ, never silently reused.

Dispatch (``cluster``): ``none`` runs the steps one after another in this process; ``local`` and
``slurm`` hand each step to a `submitit <https://github.com/facebookincubator/submitit>`_
executor. SLURM gets every step at once, each with ``--dependency=afterok:<ids of its
dependencies>``; submitit's local executor has no dependencies, so a step is submitted once its
dependencies have finished, at most ``max_jobs`` at once (:func:`~training.experiments.dispatch.run_local`).
Either way the results are aggregated when every
job has finished.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from datasets.atomic import write_text_atomic
from training.experiments.catalog import build
from training.experiments.spec import (EvalArm, Experiment, ExperimentError, PriorControl, RealData, RenderData,
                                       Step, TrainArm)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRIOR_CONTROLS = {"shuffled": "shuffled_prior", "matched": "matched_prior", "scaled": "scaled_prior",
                  "positive": "positive_prior"}


@dataclass
class RunOptions:
    """How to run an experiment (``tools/experiment.py`` flags)."""

    out: Path
    quick: bool = False
    seeds: int | None = None  # None: the experiment's declared number
    data_root: Path = Path("data")  # converted real datasets (table1-3)
    data_cache: Path | None = None  # rendered data steps (default: <out>/data); may be shared
    runs_dir: Path | None = None  # arm run directories (default: <out>/runs); may be shared (see run_dir)
    arms: tuple[str, ...] = ()  # only these arms (and what they depend on)
    cluster: str = "none"  # none | local | slurm
    slurm_partition: str = ""
    timeout_min: int = 24 * 60
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    max_jobs: int = 0  # cluster local: at most this many jobs at once (0: every task whose dependencies are done)
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out).resolve()
        self.data_root = Path(self.data_root).resolve()
        self.data_cache = Path(self.data_cache).resolve() if self.data_cache else self.out / "data"
        self.runs_dir = Path(self.runs_dir).resolve() if self.runs_dir else self.out / "runs"
        if self.cluster not in ("none", "local", "slurm"):
            raise ExperimentError(f"cluster should be none, local or slurm, found {self.cluster!r}")


@dataclass(frozen=True)
class Task:
    """One unit of work: a data step (``seed`` None) or an arm of one seed."""

    step: str
    seed: int | None = None

    def __str__(self) -> str:
        return self.step if self.seed is None else f"{self.step}/seed{self.seed}"


@dataclass
class Plan:
    """An experiment resolved against the options: paths, seeds, tasks and arms that cannot run here."""

    name: str
    experiment: Experiment
    options: RunOptions
    seeds: list[int]
    unavailable: dict[str, str] = field(default_factory=dict)  # arm → why it cannot run in this checkout

    def data_path(self, name: str) -> Path:
        step = self.experiment.step(name)
        if isinstance(step, RealData):
            return self.options.data_root / step.path
        return self.options.data_cache / name

    def run_dir(self, arm: str, seed: int) -> Path:
        """``<runs dir>/<arm>/seed<k>``. Experiments given one runs dir share the arms they declare alike
        (synth-table1 and synth-table2 train the same teacher and student); an arm of the same name
        declared differently is refused by :func:`check_run_dir`, never mixed up."""
        return self.options.runs_dir / arm / f"seed{seed}"

    def tasks(self) -> list[Task]:
        """Every task in a valid run order (data steps first, then each arm for all seeds)."""
        tasks = [Task(d.name) for d in self.experiment.data if isinstance(d, RenderData)]
        for arm in self.experiment.arms:
            tasks += [Task(arm.name, seed) for seed in self.seeds]
        return tasks

    def dependencies(self, task: Task) -> list[Task]:
        step = self.experiment.step(task.step)
        needed = list(step.depends) + ([step.evaluate_on] if getattr(step, "evaluate_on", "") else [])
        out = []
        for name in dict.fromkeys(needed):
            dep = self.experiment.step(name)
            if isinstance(dep, RenderData):
                out.append(Task(name))
            elif not isinstance(dep, RealData):
                out.append(Task(name, task.seed))
        return out

    def references(self, seed: int) -> dict[str, str]:
        """Values of ``{name}`` in overrides for ``seed``: data directories and the run directories of arms."""
        values = {d.name: str(self.data_path(d.name)) for d in self.experiment.data}
        values.update({a.name: str(self.run_dir(a.name, seed)) for a in self.experiment.arms})
        return values


# --------------------------------------------------------------------------- planning


def _missing_keys(arm: TrainArm) -> list[str]:
    from training.config import valid_keys

    keys = set(valid_keys())
    return [text.partition("=")[0] for text in arm.overrides if text.partition("=")[0] not in keys]


def _unavailable_reason(arm, unavailable: dict[str, str]) -> str:
    """Why an arm cannot run in this checkout ('' if it can): a config key or a function that does not exist."""
    for dep in arm.depends:
        if dep in unavailable:
            return f"depends on {dep}, which is unavailable"
    if isinstance(arm, TrainArm):
        missing = _missing_keys(arm)
        if missing:
            return f"needs config key(s) {', '.join(missing)}, which training.config does not have yet"
    if isinstance(arm, PriorControl):
        name = PRIOR_CONTROLS.get(arm.kind)
        if name is None:
            return f"unknown prior control kind {arm.kind!r} (known: {', '.join(PRIOR_CONTROLS)})"
        if importlib.util.find_spec("training.prior_controls") is None:
            return f"needs training.prior_controls.{name}, which this checkout does not have yet"
        module = importlib.import_module("training.prior_controls")
        if not hasattr(module, name):
            return f"needs training.prior_controls.{name}, which this checkout does not have yet"
    return ""


def make_plan(name: str, options: RunOptions) -> Plan:
    """Build the experiment, check the real datasets exist, and find arms this checkout cannot run."""
    experiment = build(name, options.quick)
    if options.arms:
        experiment = experiment.closure(list(options.arms))
    seeds = list(range(options.seeds if options.seeds is not None else experiment.seeds))
    if not seeds:
        raise ExperimentError(f"--seeds should be at least 1, found {options.seeds}")
    plan = Plan(name, experiment, options, seeds)
    for step in experiment.data:
        if isinstance(step, RealData):
            path = plan.data_path(step.name)
            if not (path / "manifest.json").is_file():
                raise ExperimentError(f"{name}: dataset {step.name} not found at {path} (a converted shard directory "
                                      f"with manifest.json); create it with: "
                                      f"{step.convert.format(root=options.data_root)}")
    for arm in experiment.arms:
        reason = _unavailable_reason(arm, plan.unavailable)
        if reason:
            plan.unavailable[arm.name] = reason
    return plan


def arm_config(plan: Plan, arm: TrainArm, seed: int):
    """The arm's ordinary :class:`~training.config.TrainConfig`: phase file + common + arm overrides + run dir and seed."""
    from training.config import load_config

    values = plan.references(seed)
    overrides = [text.format_map(values) for text in (*plan.experiment.common, *arm.overrides)]
    overrides += [f"out={plan.run_dir(arm.name, seed)}", f"seed={seed}", "data.val=[]",
                  f"progress={str(plan.options.progress).lower()}"]
    return load_config(CONFIGS / f"{arm.config}.yaml", overrides)


def check_run_dir(cfg, run_dir: Path) -> None:
    """Refuse a run directory whose ``config.yaml`` was written with other settings
    (:func:`training.run_directory.config_differences`: result-neutral keys such as threads may differ)."""
    from training.config import read_yaml_mapping
    from training.run_directory import config_differences, describe

    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    differences = config_differences(read_yaml_mapping(path, "run config"), cfg)
    if differences:
        raise ExperimentError(f"{run_dir}: this arm-seed was run with other settings ({describe(differences)}); "
                              "rerun with the original declaration to resume it, or use another --out / --runs-dir "
                              "(or delete that run directory) for the new one")


# --------------------------------------------------------------------------- running one task


def task_done(plan: Plan, task: Task) -> bool:
    step = plan.experiment.step(task.step)
    if isinstance(step, RenderData):  # complete and rendered with these settings (else render.synth decides)
        manifest = plan.data_path(step.name) / "manifest.json"
        if not manifest.is_file():
            return False
        values = json.loads(manifest.read_text())
        job = _render_job(plan, step)
        return (values.get("num") == values.get("num_samples") == step.num and values.get("seed") == step.seed
                and values.get("config") == json.loads(job.config.to_json()))
    run_dir = plan.run_dir(step.name, task.seed)
    if isinstance(step, PriorControl):
        return (run_dir / "prior.pt").is_file()
    metrics = run_dir / "eval" / "metrics.json"
    if isinstance(step, EvalArm):
        model = plan.run_dir(step.model, task.seed) / "model.pt"
        return metrics.is_file() and model.is_file() and metrics.stat().st_mtime >= model.stat().st_mtime
    return (run_dir / "model.pt").is_file() and metrics.is_file()


def _render_job(plan: Plan, step: RenderData):
    """The :class:`render.synth.GenerationJob` of a data step (domains: :func:`render.domains.domain_options`)."""
    from render.sampling import SynthConfig
    from render.synth import GenerationJob
    from render.domains import domain_options

    config = SynthConfig(**dict(domain_options(step.domain)[0], image_size=step.image_size,
                                depth_sensor=step.depth_sensor))
    return GenerationJob(out=plan.data_path(step.name), num=step.num, seed=step.seed,
                         shard_size=max(1, min(step.num, 500)), workers=step.workers, config=config,
                         command=f"tools/experiment.py {plan.name} (data step {step.name}, {step.domain} domain)")


def _render(plan: Plan, step: RenderData) -> None:
    """Render (or complete) a data step; a directory holding another dataset is refused by render.synth."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from render.synth import generate

    generate(_render_job(plan, step), progress_bar=plan.options.progress, log=lambda message: None)


def _evaluate(plan: Plan, checkpoint: Path, step, run_dir: Path, image_size: int | None) -> dict:
    from training.evaluation import evaluate_checkpoint

    t_min, t_max = step.auc_range
    return evaluate_checkpoint(checkpoint, [plan.data_path(step.evaluate_on)], run_dir / "eval", t_min=t_min,
                               t_max=t_max, image_size=image_size, label=step.name)


def _record(run_dir: Path, task: Task, **values) -> None:
    """``experiment.json``: which arm and seed the run directory is and how long each part took."""
    write_text_atomic(run_dir / "experiment.json", json.dumps({"arm": task.step, "seed": task.seed, **values,
                                                               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime())},
                                                              indent=2) + "\n")


def run_task(plan: Plan, task: Task) -> str:
    """Do one task unless it is done; returns ``"done"`` (nothing to do) or ``"ran"``."""
    step: Step = plan.experiment.step(task.step)
    if task.step in plan.unavailable:
        return "unavailable"
    if isinstance(step, TrainArm):
        cfg = arm_config(plan, step, task.seed)
        run_dir = Path(cfg.out)
        check_run_dir(cfg, run_dir)
    if task_done(plan, task):
        return "done"
    if isinstance(step, RenderData):
        _render(plan, step)
        return "ran"
    run_dir = plan.run_dir(step.name, task.seed)
    start = time.perf_counter()
    if isinstance(step, TrainArm):
        from training.trainer import train

        checkpoint = run_dir / "model.pt"
        if not checkpoint.is_file():
            checkpoint = train(cfg).checkpoint
        trained = time.perf_counter()
        _evaluate(plan, checkpoint, step, run_dir, cfg.data.image_size)
        _record(run_dir, task, train_s=trained - start, eval_s=time.perf_counter() - trained)
    elif isinstance(step, EvalArm):
        _evaluate(plan, plan.run_dir(step.model, task.seed) / "model.pt", step, run_dir, None)
        _record(run_dir, task, eval_s=time.perf_counter() - start, model=step.model)
    else:  # PriorControl
        module = importlib.import_module("training.prior_controls")
        source = plan.run_dir(step.source, task.seed) / "prior.pt"
        run_dir.mkdir(parents=True, exist_ok=True)
        if step.kind == "shuffled":
            module.shuffled_prior(source, run_dir / "prior.pt", task.seed)
        elif step.kind == "scaled":
            module.scaled_prior(source, run_dir / "prior.pt", step.factor)
        elif step.kind == "positive":
            module.positive_prior(source, run_dir / "prior.pt")
        else:
            module.matched_prior(source, run_dir / "prior.pt")
        _record(run_dir, task, derive_s=time.perf_counter() - start, source=str(source), kind=step.kind)
    return "ran"


def execute_task(name: str, options: RunOptions, task: Task) -> str:
    """Entry point of a cluster job: rebuild the plan (the catalog is deterministic) and run one task."""
    return run_task(make_plan(name, options), task)


__all__ = ["RunOptions", "Plan", "Task", "make_plan", "run_task", "task_done", "execute_task", "arm_config",
           "check_run_dir"]
