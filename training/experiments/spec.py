"""What an experiment is: data steps shared by all seeds, and arms run once per seed.

An :class:`Experiment` is a declared set of steps (the catalog, :mod:`training.experiments.catalog`,
writes them as readable tables):

- **data steps**, shared by every seed: :class:`RenderData` renders a synthetic set
  (:mod:`render.synth`) into ``<data dir>/<name>``; :class:`RealData` names a converted shard
  directory under ``--data-root`` (checked before anything runs);
- **arms**, run once per seed ``k`` into the ordinary run directory ``<out>/runs/<arm>/seed<k>``:
  :class:`TrainArm` (a phase file of ``configs/`` plus overrides, trained by
  :func:`training.trainer.train` and evaluated on a test set), :class:`EvalArm` (another arm's
  network evaluated on another test set, no training) and :class:`PriorControl` (a prior file
  derived from a distillation run's ``prior.pt`` by :mod:`training.prior_controls`).

Overrides and sources refer to other steps by name in braces: ``{teacher}`` is the run directory
of arm ``teacher`` *of the same seed*, ``{source_train}`` the directory of data step
``source_train``. The references are the dependencies: an arm runs after every step it names.
The same-seed rule is what makes a target student start from the initialisation its prior was
learned for (φ is per weight, tied to the source student's initial weights, `method.md` §5):
arm-seed ``k`` trains with ``seed=k`` and reads the prior of the distillation run of seed ``k``.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Union

#: the protocols' AUC ranges in mm (`method.md` §7): RHD 0-50, STB 20-50; FreiHAND uses 0-50.
AUC_RHD = (0.0, 50.0)
AUC_STB = (20.0, 50.0)


class ExperimentError(ValueError):
    """A declaration, a missing dataset or a run directory that does not match its declaration."""


def references(text: str) -> list[str]:
    """Names in braces of a format string: ``"a={teacher}/model.pt"`` → ``["teacher"]``."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


@dataclass(frozen=True)
class RenderData:
    """A synthetic set rendered once for all seeds: ``domain`` is ``source`` or ``target``
    (:func:`render.domains.domain_options`: the target has other background families, darker skin
    tones and dimmer, flatter light)."""

    name: str
    num: int
    seed: int
    domain: str = "source"
    image_size: int = 64
    workers: int = 2
    depth_sensor: str = ""  # stored depth through this sensor model (render.depth_sensor.PRESETS); "" = exact

    @property
    def depends(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class RealData:
    """A converted dataset: ``path`` relative to ``--data-root``; ``convert`` the command that creates it
    (``{root}`` stands for the data root)."""

    name: str
    path: str
    convert: str

    @property
    def depends(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class TrainArm:
    """One training run per seed: ``configs/<config>.yaml`` + the experiment's common overrides + ``overrides``.

    ``evaluate_on`` names the data step of its test set, ``auc_range`` the protocol's PCK range (mm).
    ``note`` says what the arm is, for the report.
    """

    name: str
    config: str
    overrides: tuple[str, ...] = ()
    evaluate_on: str = ""
    auc_range: tuple[float, float] = AUC_RHD
    note: str = ""

    @property
    def depends(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for text in self.overrides for name in references(text)))


@dataclass(frozen=True)
class EvalArm:
    """Arm ``model``'s network of the same seed evaluated on data step ``evaluate_on`` (no training)."""

    name: str
    model: str
    evaluate_on: str
    auc_range: tuple[float, float] = AUC_RHD
    note: str = ""

    @property
    def depends(self) -> tuple[str, ...]:
        return (self.model, self.evaluate_on)


@dataclass(frozen=True)
class PriorControl:
    """A control prior derived from arm ``source``'s ``prior.pt`` (same seed) into ``<run dir>/prior.pt``:
    ``kind`` ``shuffled`` (φ permuted within each tensor), ``matched`` (each tensor's φ replaced by its mean,
    i.e. ℓ2 with a per-tensor σ), ``scaled`` (φ × ``factor``) or ``positive`` (max(φ, 0)), by
    :mod:`training.prior_controls`."""

    name: str
    kind: str
    source: str
    note: str = ""
    factor: float = 1.0  # kind ``scaled``: φ × factor (the prior of a β that many times larger)

    @property
    def depends(self) -> tuple[str, ...]:
        return (self.source,)


DataStep = Union[RenderData, RealData]
Arm = Union[TrainArm, EvalArm, PriorControl]
Step = Union[RenderData, RealData, TrainArm, EvalArm, PriorControl]


@dataclass(frozen=True)
class Experiment:
    """A declared experiment. ``common`` overrides apply to every :class:`TrainArm`; ``settings`` is the
    size table it was built from (reported with the results); ``paper`` maps arms to the paper's EPE in mm
    (`method.md` §8), shown beside ours."""

    name: str
    description: str
    data: tuple[DataStep, ...]
    arms: tuple[Arm, ...]
    seeds: int = 3
    common: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [s.name for s in (*self.data, *self.arms)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ExperimentError(f"experiment {self.name}: step names must be unique, found {duplicates} twice")
        data_names = {d.name for d in self.data}
        arm_types = {a.name: type(a) for a in self.arms}
        known = set()
        for step in (*self.data, *self.arms):  # declaration order must already be a valid run order
            missing = [d for d in step.depends if d not in known]
            if missing:
                raise ExperimentError(f"experiment {self.name}: step {step.name!r} refers to {missing}, which is not "
                                      "declared before it (a data step or an earlier arm)")
            known.add(step.name)
        unknown = sorted(set(self.paper) - set(arm_types))
        if unknown:
            raise ExperimentError(f"experiment {self.name}: paper values for arms that are not declared: {unknown}")
        for arm in self.arms:
            test = getattr(arm, "evaluate_on", "")
            if test and test not in data_names:
                raise ExperimentError(f"experiment {self.name}: arm {arm.name!r} is evaluated on {test!r}, "
                                      f"which is not a data step ({sorted(data_names)})")
            if isinstance(arm, PriorControl) and arm_types.get(arm.source) not in (TrainArm, PriorControl):
                raise ExperimentError(f"experiment {self.name}: prior control {arm.name!r} needs a training arm or "
                                      f"another prior control as source, found {arm.source!r}")

    def step(self, name: str) -> Step:
        for candidate in (*self.data, *self.arms):
            if candidate.name == name:
                return candidate
        raise ExperimentError(f"experiment {self.name}: no step named {name!r}")

    @property
    def reported_arms(self) -> list[Arm]:
        """Arms with a test set, in declaration order (these are the rows of the results)."""
        return [a for a in self.arms if getattr(a, "evaluate_on", "")]

    def closure(self, names: list[str]) -> "Experiment":
        """The experiment restricted to the arms ``names`` and every step they depend on."""
        unknown = [n for n in names if n not in {a.name for a in self.arms}]
        if unknown:
            raise ExperimentError(f"experiment {self.name}: unknown arms {unknown}; "
                                  f"arms are {[a.name for a in self.arms]}")
        keep: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in keep:
                keep.add(name)
                step = self.step(name)
                todo.extend(step.depends)
                if getattr(step, "evaluate_on", ""):
                    todo.append(step.evaluate_on)
        return Experiment(self.name, self.description, tuple(d for d in self.data if d.name in keep),
                          tuple(a for a in self.arms if a.name in keep), self.seeds, self.common, self.settings,
                          {k: v for k, v in self.paper.items() if k in keep})
