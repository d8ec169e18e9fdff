"""Experiments: the paper's tables and their synthetic analogues as declared arms × seeds.

- :mod:`.spec` — what an experiment is (data steps, training / evaluation arms, prior controls);
- :mod:`.catalog` — the declared experiments as tables (``table1``–``3``, ``synth-table1``/``2``);
- :mod:`.runner` — plans, run directories, resume, one task at a time;
- :mod:`.dispatch` — in this process or as submitit jobs (local or SLURM, with dependencies);
- :mod:`.report` — ``results.json`` / ``results.md`` / plots.

``tools/experiment.py`` wires them to the command line.
"""
from training.experiments.catalog import EXPERIMENTS, build
from training.experiments.dispatch import run_experiment
from training.experiments.runner import RunOptions
from training.experiments.spec import ExperimentError

__all__ = ["EXPERIMENTS", "build", "run_experiment", "RunOptions", "ExperimentError"]
