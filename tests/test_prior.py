"""The prior phi: regulariser values (Eq. 10 and Table 2 baselines) and the saved artifact."""
import pytest
import torch

from models import build_model
from training import prior as prior_module
from training.prior import PriorError, init_phi, load_prior, read_prior, save_prior
from training.regularizers import l1_penalty, l2_penalty, weighted_l1_prior, weighted_l2_prior


def _params():
    return {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([[3.0], [-0.5]])}


def test_regularisers_hand_values():
    params = _params()
    phi = {"a": torch.tensor([0.5, 2.0]), "b": torch.tensor([[0.0], [4.0]])}
    assert weighted_l2_prior(params, phi).item() == pytest.approx(0.5 * 1 + 2 * 4 + 0 * 9 + 4 * 0.25)
    assert weighted_l1_prior(params, phi).item() == pytest.approx(0.5 * 1 + 2 * 2 + 0 * 3 + 4 * 0.5)
    assert l2_penalty(params, 1e-3).item() == pytest.approx(1e-3 * (1 + 4 + 9 + 0.25))
    assert l1_penalty(params, 1e-4).item() == pytest.approx(1e-4 * (1 + 2 + 3 + 0.5))


def test_weighted_l2_prior_gradient_is_2_phi_theta():
    params = {k: v.clone().requires_grad_() for k, v in _params().items()}
    phi = {"a": torch.tensor([0.5, 2.0]), "b": torch.tensor([[1.0], [4.0]])}
    weighted_l2_prior(params, phi).backward()
    for k in params:
        torch.testing.assert_close(params[k].grad, 2 * phi[k] * params[k].detach())


def test_regulariser_rejects_a_mismatching_prior():
    params = _params()
    with pytest.raises(KeyError, match="no phi for"):
        weighted_l2_prior(params, {"a": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"phi\['b'\] has shape \(2,\)"):
        weighted_l1_prior(params, {"a": torch.zeros(2), "b": torch.zeros(2)})


def test_init_phi_parallels_named_parameters():
    model = build_model("resnet18", 3, width=4).double()
    phi = init_phi(model, 0.25)
    assert list(phi) == [n for n, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        assert phi[name].shape == p.shape and phi[name].dtype == torch.float64
        assert not phi[name].requires_grad and torch.all(phi[name] == 0.25)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 3, width=4)
    phi = {n: torch.rand_like(t) for n, t in init_phi(model).items()}
    path = tmp_path / "run" / "prior.pt"
    save_prior(path, phi, model.arch)
    assert [p.name for p in path.parent.iterdir()] == ["prior.pt"]  # no temporary left behind
    loaded = load_prior(path, build_model("resnet18", 3, width=4).double())
    assert list(loaded) == list(phi)
    for name in phi:
        assert loaded[name].dtype == torch.float64
        torch.testing.assert_close(loaded[name], phi[name].double())
    _, arch = read_prior(path)
    assert arch == {"name": "resnet18", "in_channels": 3, "width": 4, "num_outputs": 63}


@pytest.mark.parametrize("other,message", [
    (("resnet18", 1, 4), r"phi\['conv1.weight'\] has shape \(4, 3, 7, 7\).*\(4, 1, 7, 7\)"),
    (("resnet18", 3, 8), r"phi\['conv1.weight'\] has shape \(4, 3, 7, 7\).*\(8, 3, 7, 7\)"),
    (("resnet34", 3, 4), r"no phi for parameter 'layer1.2.conv1.weight'"),
])
def test_loading_onto_another_architecture_names_the_parameter(tmp_path, other, message):
    model = build_model("resnet18", 3, width=4)
    save_prior(tmp_path / "prior.pt", init_phi(model), model.arch)
    name, channels, width = other
    with pytest.raises(PriorError, match=message) as err:
        load_prior(tmp_path / "prior.pt", build_model(name, channels, width=width))
    assert "prior.pt" in str(err.value) and "'name': 'resnet18'" in str(err.value)


def test_corrupt_or_foreign_files_are_clear_errors(tmp_path):
    model = build_model("resnet18", 3, width=4)
    good = tmp_path / "prior.pt"
    save_prior(good, init_phi(model), model.arch)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(PriorError, match="truncated.pt: expected a prior saved by save_prior"):
        load_prior(truncated, model)
    foreign = tmp_path / "weights.pt"
    torch.save(model.state_dict(), foreign)
    with pytest.raises(PriorError, match="weights.pt: expected format 'cmkg-prior'"):
        load_prior(foreign, model)
    with pytest.raises(PriorError, match="missing.pt: prior file not found"):
        load_prior(tmp_path / "missing.pt", model)


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = build_model("resnet18", 3, width=4)
    path = tmp_path / "prior.pt"
    save_prior(path, init_phi(model, 1.0), model.arch)
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prior_module.torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_prior(path, init_phi(model, 2.0), model.arch)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["prior.pt"]


def test_prior_records_form_architecture_and_init_seed(tmp_path):
    from training.prior import prior_info

    model = build_model("resnet18", 3, width=4)
    save_prior(tmp_path / "l1.pt", init_phi(model), model.arch, form="l1", init_seed=7)
    assert prior_info(tmp_path / "l1.pt") == {"arch": model.arch, "form": "l1", "init_seed": 7}
    with pytest.raises(PriorError, match="form should be one of"):
        save_prior(tmp_path / "bad.pt", init_phi(model), model.arch, form="l3")
    old = {"format": "cmkg-prior", "version": 1, "arch": model.arch, "shapes": {}, "phi": {}}
    torch.save(old, tmp_path / "v1.pt")  # a prior of the previous version: no form, no seed
    with pytest.raises(PriorError, match="v1.pt: expected prior version 2, found 1.*rerun the distillation"):
        read_prior(tmp_path / "v1.pt")


@pytest.mark.parametrize("form,kind,seed,message", [
    ("l2", "prior_l1", 7, r"holds an l2 prior.*regularizer.kind=prior_l1 applies the l1 form; use regularizer.kind=prior"),
    ("l1", "prior", 7, r"holds an l1 prior.*regularizer.kind=prior applies the l2 form; use regularizer.kind=prior_l1"),
    ("l2", "prior", 8, r"initialised with seed 7, but this target student is initialised with seed 8.*set seed=7"),
    ("l1", "prior_l1", 0, r"seed 7.*seed 0"),
])
def test_target_refuses_another_form_or_initialisation(tmp_path, form, kind, seed, message):
    from training.prior import check_prior_fits

    model = build_model("resnet18", 3, width=4)
    save_prior(tmp_path / "prior.pt", init_phi(model), model.arch, form=form, init_seed=7)
    with pytest.raises(PriorError, match=message):
        check_prior_fits(tmp_path / "prior.pt", kind, seed)
    matching = {"l2": "prior", "l1": "prior_l1"}[form]
    assert check_prior_fits(tmp_path / "prior.pt", matching, 7)["form"] == form  # the matching use is accepted


def test_init_seed_follows_model_init_checkpoints():
    from training.prior import initialisation_seed

    assert initialisation_seed(4, None) == 4  # a fresh network: drawn from its run's seed
    assert initialisation_seed(4, {"init_seed": 9}) == 9  # started from a checkpoint: that one's initialisation
    assert initialisation_seed(4, {"arch": "resnet18"}) is None  # a checkpoint that predates the record


def test_distilled_prior_carries_the_student_seed_and_the_target_phase_checks_it(tmp_path):
    """student (seed 5) → distill from it (own seed 1) → prior.pt says 5; a target with seed 3 is refused."""
    from tests.training_fixtures import random_checkpoint, tiny_config, tiny_shards
    from training.checkpoint import load_checkpoint
    from training.prior import prior_info
    from training.trainer import train

    shards = tiny_shards(tmp_path / "data", samples=4, seed=0)
    teacher = random_checkpoint(tmp_path / "teacher.pt", "depth")
    student = train(tiny_config("student", tmp_path / "student", [shards], ["seed=5", "optim.epochs=1"]))
    assert load_checkpoint(student.checkpoint)["model_info"]["init_seed"] == 5
    distill = train(tiny_config("distill", tmp_path / "distill", [shards],
                                ["seed=1", "optim.epochs=1", f"model.init={student.checkpoint}",
                                 f"distill.teacher={teacher}", "prior.learn=true", "prior.form=l1"]))
    assert load_checkpoint(distill.checkpoint)["model_info"]["init_seed"] == 5
    assert prior_info(distill.prior) == {"arch": {"name": "resnet18", "in_channels": 3, "width": 8, "num_outputs": 63},
                                         "form": "l1", "init_seed": 5}
    with pytest.raises(PriorError, match="initialised with seed 5, but this target student is initialised with seed 3"):
        train(tiny_config("target", tmp_path / "target", [shards],
                          ["regularizer.kind=prior_l1", f"regularizer.prior={distill.prior}"]))  # tiny_config: seed 3
    with pytest.raises(PriorError, match="holds an l1 prior"):
        train(tiny_config("target", tmp_path / "target2", [shards],
                          ["seed=5", "regularizer.kind=prior", f"regularizer.prior={distill.prior}"]))
    result = train(tiny_config("target", tmp_path / "target3", [shards],
                               ["seed=5", "optim.epochs=1", "regularizer.kind=prior_l1",
                                f"regularizer.prior={distill.prior}"]))
    assert result.steps == 1
