"""Config: paper defaults, typed overrides, unknown keys with suggestions, the saved resolved config."""
import dataclasses
from pathlib import Path

import pytest
import yaml

from training.config import (ConfigError, TrainConfig, config_from_dict, load_config, load_run_config, save_config,
                             valid_keys)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_phase_files_carry_the_paper_hyperparameters():
    expected_epochs = {"teacher": 200, "student": 100, "distill": 100}
    for phase in ("teacher", "student", "distill", "target"):
        cfg = load_config(CONFIGS / f"{phase}.yaml")
        assert cfg.phase == phase
        assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.batch_size) == ("adam", 2.5e-4, 32)
        if phase in expected_epochs:
            assert cfg.optim.epochs == expected_epochs[phase]
    distill = load_config(CONFIGS / "distill.yaml")
    assert distill.prior.learn and distill.prior.beta == 1e-3 and distill.prior.init == 0.0
    assert distill.distill.lambda_att == 1e3
    assert distill.prior.alpha == 0.0  # 0 = "the student's learning rate" (method.md §5)
    assert load_config(CONFIGS / "teacher.yaml").modality == "depth"
    assert load_config(CONFIGS / "student.yaml").modality == "rgb"


def test_overrides_are_typed_and_dotted():
    cfg = load_config(CONFIGS / "student.yaml", ["optim.lr=1e-3", "optim.epochs=3", "data.train=[a, b]",
                                                 "model.arch=resnet50", "data.augment=false", "out=runs/x"])
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 3
    assert cfg.data.train == ["a", "b"]
    assert cfg.model.arch == "resnet50" and cfg.data.augment is False and cfg.out == "runs/x"
    # a single directory is a list of one
    assert load_config(CONFIGS / "student.yaml", ["data.train=shards/x"]).data.train == ["shards/x"]


def test_wrong_types_are_rejected_with_the_key():
    with pytest.raises(ConfigError, match="optim.epochs.*expects int.*'many'"):
        load_config(CONFIGS / "student.yaml", ["optim.epochs=many"])
    with pytest.raises(ConfigError, match="data.augment.*expects bool"):
        load_config(CONFIGS / "student.yaml", ["data.augment=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(CONFIGS / "student.yaml", ["optim.lr"])


def test_unknown_keys_get_the_closest_valid_names(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: unknown config key 'optim.learning_rate'.*'optim\.lr'"):
        load_config(CONFIGS / "student.yaml", ["optim.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'teacher'; did you mean 'distill.teacher'"):
        load_config(CONFIGS / "distill.yaml", ["teacher=t.pt"])
    with pytest.raises(ConfigError, match=r"'optim.bach_size'.*did you mean 'optim.batch_size'"):
        load_config(CONFIGS / "student.yaml", ["optim.bach_size=8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("phase: student\ndata:\n  train: [x]\n  image_sise: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'data.image_sise'.*did you mean 'data.image_size'"):
        load_config(bad)
    bad.write_text("phase: distill\ndata: {train: [x]}\ndistill: {teacher: t.pt, learn_prior: true}\n")
    with pytest.raises(ConfigError, match=r"'distill.learn_prior'.*did you mean.*'prior.learn'"):
        load_config(bad)


def test_phase_requirements_are_checked():
    with pytest.raises(ConfigError, match="distill.teacher"):
        load_config(CONFIGS / "distill.yaml", ["distill.teacher="])
    with pytest.raises(ConfigError, match="regularizer.sigma"):
        load_config(CONFIGS / "target.yaml", ["regularizer.kind=l2"])
    with pytest.raises(ConfigError, match="regularizer.kind should be one of"):
        load_config(CONFIGS / "target.yaml", ["regularizer.kind=l3"])
    with pytest.raises(ConfigError, match="prior.learn is only meaningful in phase distill"):
        load_config(CONFIGS / "student.yaml", ["prior.learn=true"])
    assert load_config(CONFIGS / "target.yaml", ["regularizer.kind=l1", "regularizer.sigma=1e-4"]).regularizer.sigma == 1e-4


def test_missing_or_malformed_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("phase: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "distill.yaml", ["optim.lr=5e-4", "prior.algorithm=exact"])
    path = save_config(cfg, tmp_path / "run", extra={"input_normalization": {"rgb_mean": [0.5, 0.5, 0.5]}})
    assert path == tmp_path / "run" / "config.yaml"
    assert yaml.safe_load(path.read_text())["_provenance"]["input_normalization"]["rgb_mean"] == [0.5] * 3
    assert load_run_config(tmp_path / "run") == cfg
    assert not list((tmp_path / "run").glob(".*tmp*"))


def test_every_field_is_reachable_by_a_dotted_key():
    keys = valid_keys()
    assert {"optim.lr", "prior.beta", "regularizer.kind", "data.train", "model.freeze_bn", "seed"} <= set(keys)
    # every key can be set from the command line (round trip through its current value)
    defaults = config_from_dict({"data": {"train": ["x"]}})
    assert isinstance(defaults, TrainConfig)


def test_train_tool_reports_unknown_key(tmp_path, capsys):
    from tools.train import main

    assert main(["--config", str(CONFIGS / "student.yaml"), "optim.lrr=1"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'optim.lrr'" in err and "optim.lr" in err


@pytest.mark.parametrize("override,expected", [
    ("optim.max_steps=-1", "optim.max_steps should be >= 0 (0 = run all epochs), found -1"),
    ("prior.beta=-1e-3", "prior.beta should be > 0 (the SGD step of phi), found -0.001"),
    ("prior.alpha=-0.5", "prior.alpha should be >= 0 (0 = optim.lr), found -0.5"),
    ("distill.lambda_att=-1000", "distill.lambda_att should be >= 0, found -1000.0"),
    ("regularizer.sigma=-1e-4", "regularizer.sigma should be >= 0, found -0.0001"),
    ("optim.epochs=0", "optim.epochs should be > 0, found 0"),
    ("optim.lr=0", "optim.lr should be > 0, found 0.0"),
    ("optim.weight_decay=-1", "optim.weight_decay should be >= 0, found -1.0"),
    ("seed=-3", "seed should be >= 0, found -3"),
    ("model.width=0", "model.width should be > 0, found 0"),
    ("model.arch=resnet19", "model.arch should be a model name of models.known_models(), found 'resnet19'"),
    ("prior.inner_steps=0", "prior.inner_steps should be >= 1, found 0"),
    ("data.val_protocol=mpii", "data.val_protocol should be one of ('auto', 'rhd', 'stb'), found 'mpii'"),
    ("optim.lr=.nan", "'optim.lr' expects a finite float, found nan"),
    ("prior.beta=.inf", "'prior.beta' expects a finite float, found inf"),
    ("data.train=[data/synth,'']", "data.train should be a list of shard directories, none of them empty, "
                                    "found ['data/synth', '']"),
])
def test_nonsense_values_are_rejected_at_load_in_one_line_naming_the_key(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "distill.yaml", [override])
    assert str(err.value) == f"{CONFIGS / 'distill.yaml'}: {expected}"


def test_a_run_config_yaml_is_a_valid_config_file(tmp_path):
    cfg = load_config(CONFIGS / "target.yaml", ["regularizer.kind=l2", "regularizer.sigma=1e-3", "overwrite=true"])
    path = save_config(cfg, tmp_path / "run", extra={"world_size": 1})
    again = load_config(path, [f"out={tmp_path / 'new'}"])  # what `train.py --config RUN/config.yaml out=NEW` does
    assert again.regularizer.sigma == 1e-3 and again.out == str(tmp_path / "new")
    assert again.overwrite is False  # overwrite is a one-time request, never saved
    assert load_run_config(tmp_path / "run") == dataclasses.replace(cfg, overwrite=False)
