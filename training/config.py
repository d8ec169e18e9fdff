"""Typed run configuration: YAML file + ``key=value`` overrides → :class:`TrainConfig`.

One dataclass per concern (data, model, optimiser, distillation, prior, regulariser), all
held by :class:`TrainConfig`. The defaults are the paper's hyperparameters (`method.md`
§5, paper Sect. 5.1: Adam, batch 32, lr 2.5e-4, φ by SGD with β = 1e-3, α = the student
lr, φ0 = 0); the phase YAML files in ``configs/`` set the epochs of each phase (teacher
200, student 100, distill 100).

Rules a user relies on:

- every field can be overridden from the command line with a dotted key
  (``optim.lr=1e-3``, ``data.train=[a,b]``); values are parsed as YAML and then checked
  against the field's type (``1e-3`` is accepted for a float although YAML 1.1 reads it
  as a string);
- an unknown key, in the file or on the command line, is rejected with the closest valid
  names (:func:`difflib.get_close_matches`);
- invalid values are rejected when the config is loaded, with one line naming the key
  (:data:`VALUE_RULES`, :data:`PHASE_RULES`: one row per rule);
- the resolved configuration is written to ``<run dir>/config.yaml`` (:func:`save_config`)
  and can be loaded back unchanged, by :func:`load_run_config` or as a ``--config`` file
  (``python tools/train.py --config RUN/config.yaml out=NEW`` reproduces RUN).

Adding a field is one line in its dataclass (plus, if some values are nonsense, one row
in :data:`VALUE_RULES`).

Why not OmegaConf structured configs: OmegaConf 2.3 converts where this module refuses
(``data.augment=3`` becomes ``True``, ``model.arch=true`` becomes ``'True'``), its errors
span four lines and a single string is not accepted for a list; wrapping it to keep those
promises would cost as many lines as the plain coercion below.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from datasets.atomic import write_text_atomic
from training.losses import ATT_NORMALIZATIONS, REG_REDUCTIONS
from training.methods import aw_hourglass_config, lsps_config, supervision_transfer_config

#: Every method's settings module (``training/methods/<method>_config.py``): its phase names, its
#: config section (a dataclass, one field of :class:`TrainConfig`) and its rule rows.
METHOD_SETTINGS = (supervision_transfer_config, aw_hourglass_config, lsps_config)
KAP_PHASES = ("teacher", "student", "distill", "target")
PHASES = KAP_PHASES + tuple(name for module in METHOD_SETTINGS for name in module.PHASES)
REGULARIZERS = ("none", "prior", "prior_l1", "l1", "l2")
META_ALGORITHMS = ("efficient", "exact", "first_order")
PRIOR_FORMS = ("l2", "l1")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
#: PCK/AUC threshold range of the end-of-run validation: from the data's source (STB 20-50 mm,
#: others 0-50 mm) or forced (training.metrics.PCK_RANGES).
VAL_PROTOCOLS = ("auto", "rhd", "stb")
BETA_RULES = ("fixed", "paper_product")
REGULARIZER_APPLICATIONS = ("gradient", "decoupled")
#: Keys that cannot change a run's weights or metrics: a run directory may be resumed with
#: other values of these (``training.run_directory``).
RESULT_NEUTRAL_KEYS = ("out", "progress", "data.workers", "device", "threads", "log_every", "checkpoint_every",
                       "resume", "overwrite")


class ConfigError(ValueError):
    """A configuration file or override is malformed, unknown or inconsistent."""


@dataclass
class DataConfig:
    """Where samples come from and how they are prepared (``datasets.transforms``)."""

    train: list[str] = field(default_factory=list)  # shard directories; several are mixed (RHD + synthetic)
    val: list[str] = field(default_factory=list)  # evaluated after training when given
    image_size: int = 256  # hand-centred crop size (paper: 256×256)
    augment: bool = True  # rotation / scale / colour augmentation on the training set
    workers: int = 4  # DataLoader worker processes per training process
    allow_eval_split: bool = False  # allow data.train to name an evaluation/test split (refused otherwise)
    val_protocol: str = "auto"  # AUC range of the data.val evaluation: auto (from the data's source) | rhd | stb
    train_fraction: float = 1.0  # train on this labelled fraction of data.train only (training.data.labelled_subset)
    subset_seed: int = 0  # which samples form the labelled fractions (nested: 1 % ⊂ 10 % ⊂ 100 %)
    adapt: list[str] = field(default_factory=list)  # second domain of adaptation phases (training.adapt)
    adapt_label_fraction: float = 0.0  # labelled fraction of data.adapt (the phase's adapt_label_keys)


@dataclass
class ModelConfig:
    """The regression network (`method.md` §3): same architecture for teacher and student."""

    arch: str = "resnet18"  # models.build_model name: ablations resnet18, final numbers resnet50
    width: int = 64  # channels of the first stage (64 = the standard ResNet)
    init: str = ""  # checkpoint whose model weights initialise this run (distill: the student)
    freeze_bn: bool = False  # BatchNorm layers use running statistics and are not updated
    sync_bn: bool = True  # multi-GPU CUDA runs convert BatchNorm to SyncBatchNorm


@dataclass
class OptimConfig:
    """Optimiser and schedule of θ. ``batch_size`` is the global batch over all processes."""

    optimizer: str = "adam"
    lr: float = 2.5e-4
    batch_size: int = 32
    epochs: int = 100
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine" (per step, to 0 at the end)
    max_steps: int = 0  # stop after this many optimiser steps (0 = run all epochs)


@dataclass
class DistillConfig:
    """Cross-modal distillation (Eqs. 2–4): ``G = L_REG + L_ACT + λ·L_ATT``."""

    teacher: str = ""  # frozen teacher checkpoint (a run of phase "teacher")
    lambda_att: float = 1.0e3
    weight_act: float = 1.0  # weight of L_ACT in L_DIST (paper: 1; 0 = attention transfer only)
    att_normalization: str = "resolution"  # L_ATT: resolution (λ means what it means at 256 px) | literal (mean over H·W)


@dataclass
class LossConfig:
    """How L_REG is reduced (training.losses.regression_loss): it sets the balance against L_DIST and what σ, β mean."""

    reg_reduction: str = "mean"  # mean over the 63 numbers | sum = Eq. (1)'s per-sample squared norm (63× mean)


@dataclass
class PriorConfig:
    """Meta-learning of φ during distillation (Algorithm 1 exact / Algorithm 3 efficient)."""

    learn: bool = False
    algorithm: str = "efficient"
    form: str = "l2"  # the regulariser being meta-learned: l2 = Σφθ² (Eq. 10) or l1 = Σφ|θ| (Table 2 variant)
    beta: float = 1.0e-3  # SGD learning rate of φ
    alpha: float = 0.0  # inner step size; 0 means "the student's learning rate"
    inner_steps: int = 1  # l, the number of unrolled virtual steps
    init: float = 0.0  # φ0
    # fixed: β as given; paper_product: β = prior.beta_product / Σ_steps α_t, so that φ grows as
    # far as in the paper (α·β·N = 2.5e-4 · 1e-3 · ~285k steps ≈ 0.071) on a shorter schedule.
    beta_rule: str = "fixed"
    beta_product: float = 0.0713  # target Σ_t α_t·β of beta_rule=paper_product
    # Not in the paper: project φ onto φ ≥ 0 after each step so that R(θ;φ) stays a proper
    # (Gaussian / Laplace) prior that only ever pulls weights towards zero.
    nonnegative: bool = False


@dataclass
class RegularizerConfig:
    """Regulariser of the target phase (Algorithm 2 and the Table 2 baselines)."""

    kind: str = "none"  # none | prior (Σφθ²) | prior_l1 (Σφ|θ|) | l1 (σΣ|θ|) | l2 (σΣθ²)
    prior: str = ""  # learned prior file (prior.pt of a distill run) for kind prior / prior_l1
    sigma: float = 0.0  # strength of the l1 / l2 baselines
    # gradient: R's gradient is added to the loss's (paper-literal; Adam then rescales it by 1/√v);
    # decoupled: after each optimiser step θ ← θ(1 − 2·lr_t·φ) for Σφθ² (θ ← θ − lr_t·φ·sign θ for
    # Σφ|θ|; σ in place of φ for l2 / l1) — the decay φ was learned for (Algorithm 3), like AdamW.
    apply: str = "gradient"


@dataclass
class TrainConfig:
    """Everything one ``tools/train.py`` run needs."""

    phase: str = "student"
    out: str = "runs/student"  # run directory: config.yaml, checkpoints/, log.csv, tensorboard/
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # intra-op CPU threads of this process (0 = PyTorch's default)
    amp: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True  # channels_last memory format (CUDA only)
    log_every: int = 10  # steps between logged scalars
    checkpoint_every: int = 200  # steps between checkpoints (one is also written every epoch)
    resume: bool = True  # continue from <out>/checkpoints/last.pt when it exists
    overwrite: bool = False  # out holds a run with another config: delete its outputs and start afresh
    progress: bool = True  # progress on rank 0: a bar on a terminal, periodic lines into a log (common.progress)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    transfer: supervision_transfer_config.SupervisionTransferConfig = field(
        default_factory=supervision_transfer_config.SupervisionTransferConfig)
    aw_hourglass: aw_hourglass_config.AWHourglassConfig = field(default_factory=aw_hourglass_config.AWHourglassConfig)
    lsps: lsps_config.LSPSConfig = field(default_factory=lsps_config.LSPSConfig)

    @property
    def modality(self) -> str:
        """Input of the trained network: depth for the teacher, RGB otherwise."""
        return "depth" if self.phase == "teacher" else "rgb"


# --------------------------------------------------------------------------- checks, one row per rule


def _archs() -> list[str]:
    from models import known_models

    return known_models()


#: ``(key, accepts(value), what is expected)``: checked when a config is loaded.
VALUE_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("phase", lambda v: v in PHASES, f"one of {PHASES}"),
    ("seed", lambda v: v >= 0, ">= 0"),
    ("device", lambda v: v in DEVICES, f"one of {DEVICES}"),
    ("threads", lambda v: v >= 0, ">= 0 (0 = PyTorch's default)"),
    ("log_every", lambda v: v > 0, "> 0"),
    ("checkpoint_every", lambda v: v > 0, "> 0"),
    ("data.train", lambda v: all(str(d).strip() for d in v), "a list of shard directories, none of them empty"),
    ("data.val", lambda v: all(str(d).strip() for d in v), "a list of shard directories, none of them empty"),
    ("data.image_size", lambda v: v >= 16, ">= 16"),
    ("data.workers", lambda v: v >= 0, ">= 0"),
    ("data.val_protocol", lambda v: v in VAL_PROTOCOLS, f"one of {VAL_PROTOCOLS}"),
    ("data.train_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("data.subset_seed", lambda v: v >= 0, ">= 0"),
    ("data.adapt", lambda v: all(str(d).strip() for d in v), "a list of shard directories, none of them empty"),
    ("data.adapt_label_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("model.arch", lambda v: v in _archs(), "a model name of models.known_models()"),
    ("model.width", lambda v: v > 0, "> 0"),
    ("optim.optimizer", lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
    ("optim.lr", lambda v: v > 0, "> 0"),
    ("optim.batch_size", lambda v: v > 0, "> 0"),
    ("optim.epochs", lambda v: v > 0, "> 0"),
    ("optim.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optim.schedule", lambda v: v in SCHEDULES, f"one of {SCHEDULES}"),
    ("optim.max_steps", lambda v: v >= 0, ">= 0 (0 = run all epochs)"),
    ("distill.lambda_att", lambda v: v >= 0, ">= 0"),
    ("distill.weight_act", lambda v: v >= 0, ">= 0"),
    ("distill.att_normalization", lambda v: v in ATT_NORMALIZATIONS, f"one of {ATT_NORMALIZATIONS}"),
    ("loss.reg_reduction", lambda v: v in REG_REDUCTIONS, f"one of {REG_REDUCTIONS}"),
    ("prior.beta_rule", lambda v: v in BETA_RULES, f"one of {BETA_RULES}"),
    ("prior.beta_product", lambda v: v > 0, "> 0"),
    ("regularizer.apply", lambda v: v in REGULARIZER_APPLICATIONS, f"one of {REGULARIZER_APPLICATIONS}"),
    ("prior.algorithm", lambda v: v in META_ALGORITHMS, f"one of {META_ALGORITHMS}"),
    ("prior.form", lambda v: v in PRIOR_FORMS, f"one of {PRIOR_FORMS}"),
    ("prior.beta", lambda v: v > 0, "> 0 (the SGD step of phi)"),
    ("prior.alpha", lambda v: v >= 0, ">= 0 (0 = optim.lr)"),
    ("prior.inner_steps", lambda v: v >= 1, ">= 1"),
    ("regularizer.kind", lambda v: v in REGULARIZERS, f"one of {REGULARIZERS}"),
    ("regularizer.sigma", lambda v: v >= 0, ">= 0"),
    *(row for module in METHOD_SETTINGS for row in module.VALUE_RULES),
]

#: ``(applies(cfg), holds(cfg), message)``: what each phase requires of the other keys.
PHASE_RULES: list[tuple[Callable[[TrainConfig], bool], Callable[[TrainConfig], bool], str]] = [
    (lambda c: True, lambda c: bool(c.data.train), "data.train should list at least one shard directory"),
    (lambda c: c.phase == "distill", lambda c: bool(c.distill.teacher),
     "phase distill needs distill.teacher (the teacher run's checkpoint)"),
    (lambda c: c.prior.learn, lambda c: c.phase == "distill", "prior.learn is only meaningful in phase distill"),
    (lambda c: c.phase == "target" and c.regularizer.kind.startswith("prior"), lambda c: bool(c.regularizer.prior),
     "regularizer.kind={kind} needs regularizer.prior (a prior.pt file)"),
    (lambda c: c.phase == "target" and c.regularizer.kind in ("l1", "l2"), lambda c: c.regularizer.sigma > 0,
     "regularizer.kind={kind} needs regularizer.sigma > 0"),
    (lambda c: c.phase != "target", lambda c: c.regularizer.kind == "none",
     "regularizer.kind is used by phase target only (phase is {phase})"),
    *(row for module in METHOD_SETTINGS for row in module.PHASE_RULES),
]


def get_key(cfg: Any, key: str) -> Any:
    """The value of a dotted key (``get_key(cfg, "optim.lr")``)."""
    return functools.reduce(getattr, key.split("."), cfg)


def validate(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Apply :data:`VALUE_RULES` and :data:`PHASE_RULES`; the first broken one is a :class:`ConfigError`."""
    for key, accepts, expected in VALUE_RULES:
        value = get_key(cfg, key)
        if not accepts(value):
            raise ConfigError(f"{where}: {key} should be {expected}, found {value!r}")
    for applies, holds, message in PHASE_RULES:
        if applies(cfg) and not holds(cfg):
            raise ConfigError(f"{where}: " + message.format(kind=cfg.regularizer.kind, phase=cfg.phase))
    return cfg


# --------------------------------------------------------------------------- building


def valid_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """All dotted keys of a config class (``optim.lr``, ``data.train``, …)."""
    keys = []
    for name, kind in typing.get_type_hints(cls).items():
        keys += valid_keys(kind, f"{prefix}{name}.") if dataclasses.is_dataclass(kind) else [f"{prefix}{name}"]
    return keys


def _unknown_key(key: str, where: str) -> ConfigError:
    """The error for an unknown key, with the closest valid names (whole key, then its last part alone)."""
    candidates = valid_keys()
    # keys made of the typed words, in another order or section, first ('distill.learn_prior' -> 'prior.learn')
    words = set(re.split(r"[._]", key))
    close = [c for c in candidates if len(set(re.split(r"[._]", c))) > 1 and set(re.split(r"[._]", c)) <= words]
    close += [c for c in difflib.get_close_matches(key, candidates, n=3, cutoff=0.5) if c not in close]
    leaves = {c.rsplit(".", 1)[-1] for c in candidates}
    for leaf in difflib.get_close_matches(key.rsplit(".", 1)[-1], leaves, n=3, cutoff=0.6):
        close += [c for c in candidates if c.rsplit(".", 1)[-1] == leaf and c not in close]
    hint = f"; did you mean {', '.join(repr(c) for c in close[:4])}?" if close else ""
    return ConfigError(f"{where}: unknown config key '{key}'{hint}")


def _coerce(value: Any, kind: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotated type (int, float, bool, str, list[str], Optional[X])."""
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) is list:
        if isinstance(value, (str, Path)):
            value = [value]  # a single shard directory is a list of one
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' expects a list, found {value!r}")
        return [_coerce(v, typing.get_args(kind)[0], key, where) for v in value]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value, number = float(value), True
        except ValueError:
            pass
    accepted = {bool: isinstance(value, bool), int: number and isinstance(value, int),
                float: number and math.isfinite(value), str: number or isinstance(value, str)}[kind]
    if not accepted:
        expected = "a finite float" if kind is float else kind.__name__
        raise ConfigError(f"{where}: '{key}' expects {expected}, found {value!r}")
    return kind(value)


def _build(cls: type, values: Any, prefix: str, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section '{prefix.rstrip('.') or '<top>'}' should be a mapping, found {values!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if name not in hints:
            raise _unknown_key(f"{prefix}{name}", where)
        kind = hints[name]
        nested = dataclasses.is_dataclass(kind)
        kwargs[name] = _build(kind, value or {}, f"{prefix}{name}.", where) if nested else \
            _coerce(value, kind, f"{prefix}{name}", where)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``["optim.lr=1e-3", "data.train=[a, b]"]`` → ``[("optim.lr", 0.001 or "1e-3"), …]`` (values as YAML)."""
    parsed = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"command line: override '{text}' should look like key=value (e.g. optim.lr=1e-3)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problem = str(exc).replace("\n", " ")
            raise ConfigError(f"command line: value of '{key}' is not valid YAML: {problem}") from None
        parsed.append((key.strip(), value))
    return parsed


def config_from_dict(values: dict[str, Any], overrides: list[str] | None = None, where: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested dict plus ``key=value`` overrides.

    A ``_provenance`` section (written by :func:`save_config`) is ignored, so a run's
    ``config.yaml`` is a valid config file.
    """
    tree = {k: v for k, v in (values or {}).items() if k != "_provenance"}
    for key, value in parse_overrides(list(overrides or [])):
        if key not in valid_keys():
            raise _unknown_key(key, "command line")
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node[section] = node = dict(node.get(section) or {})
        node[leaf] = value
    return validate(_build(TrainConfig, tree, "", where), where)


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).replace(chr(10), ' ')}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, found {type(values).__name__}")
    return values


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a phase YAML file (or a run's ``config.yaml``), apply overrides, validate. Errors name the file and the key."""
    return config_from_dict(read_yaml_mapping(path), overrides, where=str(path))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, run_dir: str | Path, extra: Optional[dict[str, Any]] = None) -> Path:
    """Write the resolved config (plus ``extra`` sections, e.g. input normalisation) to ``run_dir/config.yaml`` atomically.

    ``extra`` is stored under ``_provenance``, which loading ignores. ``overwrite`` is a
    request for this invocation only and is saved as ``false``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    values = config_to_dict(dataclasses.replace(cfg, overwrite=False))
    if extra:
        values["_provenance"] = extra
    return write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(values, sort_keys=False))


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """Read back ``run_dir/config.yaml`` written by :func:`save_config`."""
    path = Path(run_dir) / "config.yaml"
    return config_from_dict(read_yaml_mapping(path, "run config"), where=str(path))
