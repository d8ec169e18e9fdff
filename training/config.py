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
- the resolved configuration is written to ``<run dir>/config.yaml`` (:func:`save_config`)
  and can be loaded back unchanged.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from datasets.atomic import write_text_atomic

PHASES = ("teacher", "student", "distill", "target")
REGULARIZERS = ("none", "prior", "prior_l1", "l1", "l2")
META_ALGORITHMS = ("efficient", "exact", "first_order")


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
    # Not in the paper: project φ onto φ ≥ 0 after each step so that R(θ;φ) stays a proper
    # (Gaussian / Laplace) prior that only ever pulls weights towards zero.
    nonnegative: bool = False


@dataclass
class RegularizerConfig:
    """Regulariser of the target phase (Algorithm 2 and the Table 2 baselines)."""

    kind: str = "none"  # none | prior (Σφθ²) | prior_l1 (Σφ|θ|) | l1 (σΣ|θ|) | l2 (σΣθ²)
    prior: str = ""  # learned prior file (prior.pt of a distill run) for kind prior / prior_l1
    sigma: float = 0.0  # strength of the l1 / l2 baselines


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
    progress: bool = True  # tqdm progress bars on rank 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)

    @property
    def modality(self) -> str:
        """Input of the trained network: depth for the teacher, RGB otherwise."""
        return "depth" if self.phase == "teacher" else "rgb"


# --------------------------------------------------------------------------- building


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls: type = TrainConfig, prefix: str = "") -> list[str]:
    """All dotted keys of a config class (``optim.lr``, ``data.train``, …)."""
    keys = []
    for f in dataclasses.fields(cls):
        kind = _hints(cls)[f.name]
        if dataclasses.is_dataclass(kind):
            keys.extend(valid_keys(kind, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key(key: str, where: str) -> ConfigError:
    candidates = valid_keys()
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    # also compare the last part alone (a right name under the wrong section, or none)
    leaf = key.rsplit(".", 1)[-1]
    by_leaf: dict[str, list[str]] = {}
    for candidate in candidates:
        by_leaf.setdefault(candidate.rsplit(".", 1)[-1], []).append(candidate)
    for match in difflib.get_close_matches(leaf, list(by_leaf), n=3, cutoff=0.6):
        close += [c for c in by_leaf[match] if c not in close]
    close = close[:4]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"{where}: unknown config key '{key}'{hint}")


def _coerce(value: Any, kind: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotated type ``kind`` (int, float, bool, str, list[str], Optional)."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    problem = f"{where}: '{key}' expects {getattr(kind, '__name__', kind)}, found {value!r}"
    if origin is list:
        if isinstance(value, (str, Path)):
            value = [value]  # a single shard directory is a list of one
        if not isinstance(value, (list, tuple)):
            raise ConfigError(problem)
        (item,) = typing.get_args(kind)
        return [_coerce(v, item, key, where) for v in value]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(problem)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(problem)
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(problem)
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(problem)
    raise ConfigError(f"{where}: '{key}' has an unsupported type {kind}")  # pragma: no cover


def _build(cls: type, values: dict[str, Any], prefix: str, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: section '{prefix.rstrip('.') or '<top>'}' should be a mapping, found {values!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise _unknown_key(f"{prefix}{key}", where)
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value or {}, f"{prefix}{name}.", where)
        else:
            kwargs[name] = _coerce(value, kind, f"{prefix}{name}", where)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


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
            raise ConfigError(f"command line: value of '{key}' is not valid YAML: {exc}") from exc
        parsed.append((key.strip(), value))
    return parsed


def validate(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Cross-field checks: choices, positivity and what each phase requires."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"{where}: {message}")

    need(cfg.phase in PHASES, f"phase should be one of {PHASES}, found {cfg.phase!r}")
    need(cfg.device in ("auto", "cpu", "cuda"), f"device should be auto, cpu or cuda, found {cfg.device!r}")
    need(cfg.optim.optimizer in ("adam", "sgd"), f"optim.optimizer should be adam or sgd, found {cfg.optim.optimizer!r}")
    need(cfg.optim.schedule in ("constant", "cosine"), f"optim.schedule should be constant or cosine, found {cfg.optim.schedule!r}")
    need(cfg.optim.lr > 0 and cfg.optim.batch_size > 0 and cfg.optim.epochs > 0,
         "optim.lr, optim.batch_size and optim.epochs must be positive")
    need(cfg.data.image_size >= 16, f"data.image_size should be at least 16, found {cfg.data.image_size}")
    need(cfg.data.workers >= 0 and cfg.threads >= 0, "data.workers and threads must be >= 0")
    need(cfg.log_every > 0 and cfg.checkpoint_every > 0, "log_every and checkpoint_every must be positive")
    need(bool(cfg.data.train), "data.train should list at least one shard directory")
    need(cfg.regularizer.kind in REGULARIZERS, f"regularizer.kind should be one of {REGULARIZERS}, found {cfg.regularizer.kind!r}")
    need(cfg.prior.algorithm in META_ALGORITHMS, f"prior.algorithm should be one of {META_ALGORITHMS}, found {cfg.prior.algorithm!r}")
    need(cfg.prior.form in ("l1", "l2"), f"prior.form should be 'l1' or 'l2', found {cfg.prior.form!r}")
    need(cfg.prior.inner_steps >= 1, "prior.inner_steps must be >= 1")
    if cfg.phase == "distill":
        need(bool(cfg.distill.teacher), "phase distill needs distill.teacher (the teacher run's checkpoint)")
    if cfg.prior.learn:
        need(cfg.phase == "distill", "prior.learn is only meaningful in phase distill")
    if cfg.phase == "target" and cfg.regularizer.kind.startswith("prior"):
        need(bool(cfg.regularizer.prior), f"regularizer.kind={cfg.regularizer.kind} needs regularizer.prior (a prior.pt file)")
    if cfg.phase == "target" and cfg.regularizer.kind in ("l1", "l2"):
        need(cfg.regularizer.sigma > 0, f"regularizer.kind={cfg.regularizer.kind} needs regularizer.sigma > 0")
    if cfg.phase != "target":
        need(cfg.regularizer.kind == "none", f"regularizer.kind is used by phase target only (phase is {cfg.phase})")
    return cfg


def config_from_dict(values: dict[str, Any], overrides: list[str] | None = None, where: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a nested dict plus ``key=value`` overrides."""
    tree = dict(values or {})
    for key, value in parse_overrides(list(overrides or [])):
        if key not in valid_keys():
            raise _unknown_key(key, "command line")
        _set_dotted(tree, key, value)
    return validate(_build(TrainConfig, tree, "", where), where)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a phase YAML file, apply overrides, validate. Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, found {type(values).__name__}")
    return config_from_dict(values, overrides, where=str(path))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, run_dir: str | Path, extra: Optional[dict[str, Any]] = None) -> Path:
    """Write the resolved config (plus ``extra`` sections, e.g. input normalisation) to ``run_dir/config.yaml`` atomically.

    ``extra`` keys are stored under ``_provenance`` so that :func:`load_config` on the file
    only needs to drop that section.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    values = config_to_dict(cfg)
    if extra:
        values["_provenance"] = extra
    return write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(values, sort_keys=False))


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """Read back ``run_dir/config.yaml`` written by :func:`save_config`."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: run config not found")
    values = yaml.safe_load(path.read_text()) or {}
    values.pop("_provenance", None)
    return config_from_dict(values, where=str(path))
