"""Every phase trains a few steps on tiny shards, its objective decreases, and its outputs are usable."""
import pytest
import torch

from tests.training_fixtures import tiny_config, tiny_shards, weights
from training.checkpoint import load_checkpoint
from training.logging import read_log
from training.phases import build_network
from training.prior import load_prior, save_prior
from training.trainer import train

STEPS = 6  # one batch of 4 samples per epoch: the objective sees the same batch each step


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phases")
    return {"root": root, "source": tiny_shards(root / "source", samples=4, seed=0),
            "target": tiny_shards(root / "target", samples=4, seed=5)}


@pytest.fixture(scope="module")
def teacher(data):
    cfg = tiny_config("teacher", data["root"] / "teacher", [data["source"]], [f"optim.epochs={STEPS}"])
    return train(cfg)


@pytest.fixture(scope="module")
def student(data):
    cfg = tiny_config("student", data["root"] / "student", [data["source"]], [f"optim.epochs={STEPS}"])
    return train(cfg)


def _series(run_dir, name):
    return [value for _, value in read_log(run_dir / "log.csv")[name]]


def _decreases(values):
    return values[-1] < values[0]


def test_teacher_regresses_from_depth(teacher):
    assert teacher.steps == STEPS
    losses = _series(teacher.run_dir, "loss/reg")
    assert len(losses) == STEPS and _decreases(losses), losses
    info = load_checkpoint(teacher.checkpoint)["model_info"]
    assert info["modality"] == "depth" and info["in_channels"] == 1
    assert (teacher.run_dir / "config.yaml").exists() and list((teacher.run_dir / "tensorboard").iterdir())


def test_student_regresses_from_rgb(student):
    assert _decreases(_series(student.run_dir, "loss/reg"))
    assert load_checkpoint(student.checkpoint)["model_info"]["in_channels"] == 3


@pytest.mark.parametrize("algorithm,form,nonnegative",
                         [("efficient", "l2", False), ("exact", "l2", False), ("efficient", "l1", True)])
def test_distill_learns_the_prior(data, teacher, student, algorithm, form, nonnegative):
    out = data["root"] / f"distill_{algorithm}_{form}"
    cfg = tiny_config("distill", out, [data["source"]],
                      [f"optim.epochs={STEPS}", f"model.init={student.checkpoint}",
                       f"distill.teacher={teacher.checkpoint}", "prior.learn=true", f"prior.algorithm={algorithm}",
                       f"prior.form={form}", f"prior.nonnegative={nonnegative}", "prior.beta=10.0"])
    result = train(cfg)
    assert _decreases(_series(out, "loss/G"))
    # the student starts from the student run: G's regression part starts where that run ended
    assert _series(out, "loss/reg")[0] < _series(student.run_dir, "loss/reg")[0]
    # the prior is a deliverable, shaped like the student, no longer φ0 = 0
    model = build_network(load_checkpoint(result.checkpoint)["model_info"])
    phi = load_prior(result.prior, model)
    assert set(phi) == {n for n, _ in model.named_parameters()}
    assert max(float(v.abs().max()) for v in phi.values()) > 0
    smallest = min(float(v.min()) for v in phi.values())
    assert smallest >= 0 if nonnegative else smallest < 0  # the projection keeps R a proper prior
    assert _series(out, "phi/abs_max")[-1] > 0


def test_distill_without_prior_and_teacher_must_be_depth(data, teacher, student):
    out = data["root"] / "distill_plain"
    cfg = tiny_config("distill", out, [data["source"]],
                      [f"optim.epochs={STEPS}", f"model.init={student.checkpoint}",
                       f"distill.teacher={teacher.checkpoint}"])
    result = train(cfg)
    assert result.prior is None and _decreases(_series(out, "loss/G"))
    wrong = tiny_config("distill", data["root"] / "distill_wrong", [data["source"]],
                        [f"distill.teacher={student.checkpoint}"])
    with pytest.raises(ValueError, match="should be a depth teacher checkpoint"):
        train(wrong)


def test_teacher_needs_depth_in_the_data(data, tmp_path):
    from tests.shard_fixtures import synthetic_arrays
    from datasets.shard_format import write_shard

    arrays = {k: v for k, v in synthetic_arrays(4, 48).items() if k != "depth"}
    (tmp_path / "rgb_only").mkdir()
    write_shard(tmp_path / "rgb_only", 0, arrays, {"source": "test", "config": "{}"})
    with pytest.raises(ValueError, match="rgb_only.*depth_input.*phase teacher"):
        train(tiny_config("teacher", tmp_path / "run", [tmp_path / "rgb_only"]))


def _parameter_norm(path):
    return float(torch.sqrt(sum(v.float().pow(2).sum() for k, v in weights(path).items()
                                if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))))


def test_target_regularisers_pull_weights_towards_zero(data, tmp_path):
    model = build_network({"arch": "resnet18", "width": 8, "in_channels": 3})
    strong = tmp_path / "strong_prior.pt"
    save_prior(strong, {n: torch.full_like(p, 50.0) for n, p in model.named_parameters()}, model.arch)
    norms = {}
    for kind, extra in [("none", []), ("prior", [f"regularizer.prior={strong}"]),
                        ("l2", ["regularizer.sigma=50.0"]), ("l1", ["regularizer.sigma=0.5"])]:
        out = tmp_path / kind
        result = train(tiny_config("target", out, [data["target"]],
                                   [f"optim.epochs={STEPS}", f"regularizer.kind={kind}", *extra]))
        objective = "loss/F" if kind != "none" else "loss/reg"
        assert _decreases(_series(out, objective)), (kind, _series(out, objective))
        norms[kind] = _parameter_norm(result.checkpoint)
    # same seed, same data: only the regulariser differs, and each one shrinks the weights
    assert norms["prior"] < norms["none"] and norms["l2"] < norms["none"] and norms["l1"] < norms["none"]
    # a uniform prior φ = 50 is the l2 penalty with σ = 50: identical runs
    assert norms["prior"] == pytest.approx(norms["l2"], rel=1e-5)


def test_target_rejects_a_prior_of_another_network(data, tmp_path):
    other = build_network({"arch": "resnet18", "width": 16, "in_channels": 3})
    prior = tmp_path / "wide_prior.pt"
    save_prior(prior, {n: torch.zeros_like(p) for n, p in other.named_parameters()}, other.arch)
    from training.prior import PriorError

    with pytest.raises(PriorError, match="wide_prior.pt.*shape"):
        train(tiny_config("target", tmp_path / "run", [data["target"]],
                          ["regularizer.kind=prior", f"regularizer.prior={prior}"]))


def test_mixed_source_directories(data, tmp_path):
    """The paper's source is RHD + synthetic: data.train accepts several directories."""
    cfg = tiny_config("student", tmp_path / "mix", [data["source"], data["target"]], ["optim.epochs=1"])
    result = train(cfg)
    assert result.steps == 2  # 8 samples, global batch 4
