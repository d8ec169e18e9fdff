"""The experiment layer: declared experiments run as arms × seeds of ordinary run directories.

The two synthetic experiments run once each at ``--quick`` size (module fixtures sharing one folder
of rendered data and one of run directories, so synth-table2 reuses synth-table1's teacher and
student); the other tests read, rerun or extend those runs.
"""
import json
import math
from dataclasses import replace

import pytest
import yaml

from tools.experiment import main
from training.experiments import EXPERIMENTS, ExperimentError, RunOptions, build
from training.experiments.dispatch import submit_with_dependencies
from training.experiments.report import detectable_difference, markdown, mean_std, training_curve
from training.experiments.runner import Task, make_plan, run_task
from training.experiments.spec import EvalArm, Experiment, RenderData, TrainArm

CONTRACT_KEYS = {"name": str, "seeds": list, "epe_mean_mm": list, "auc": list, "auc_range_mm": list}


@pytest.fixture(scope="module", autouse=True)
def no_evaluation_images():
    """Each arm-seed's evaluation also draws pck.png and a skeleton grid (tests/test_evaluate.py checks them);
    at quick size drawing them takes longer than training, so these in-process runs skip the two images."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("training.evaluation.plot_pck", lambda curves, path, title="": path)
        patch.setattr("training.evaluation.plot_predictions", lambda predictions, path, count=8: path)
        yield


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Rendered data (``data``) and run directories (``runs``) shared by the quick experiments."""
    return tmp_path_factory.mktemp("experiments")


def _run(name, out, shared, *extra):
    options = ["--data-cache", str(shared / "data"), "--runs-dir", str(shared / "runs"), "--no-progress"]
    assert main([name, "--quick", "--out", str(out), *options, *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def table1(shared):
    return shared / "runs", _run("synth-table1", shared / "synth-table1", shared)


@pytest.fixture(scope="module")
def table2(shared, table1):
    return shared / "runs", _run("synth-table2", shared / "synth-table2", shared)


def _check_schema(results, name, runs):
    assert results["experiment"] == name and results["quick"] is True
    seeds = results["seeds_requested"]
    assert seeds == list(range(build(name, quick=True).seeds)) and len(seeds) >= 2
    for arm in results["arms"]:
        for key, kind in CONTRACT_KEYS.items():
            assert isinstance(arm[key], kind), (arm["name"], key)
        assert arm["seeds"] == seeds, arm["name"]
        assert len(arm["epe_mean_mm"]) == len(arm["auc"]) == len(seeds)
        assert all(math.isfinite(v) and v > 0 for v in arm["epe_mean_mm"])
        assert all(0.0 <= v <= 1.0 for v in arm["auc"])
        lo, hi = arm["auc_range_mm"]
        assert 0 <= lo < hi
        for seed, epe in zip(arm["seeds"], arm["epe_mean_mm"]):  # each value is that seed's own evaluation
            metrics = json.loads((runs / arm["name"] / f"seed{seed}" / "eval" / "metrics.json").read_text())
            assert metrics["epe_mean_mm"] == epe and metrics["pck_range_mm"] == [lo, hi]
        summary = arm["summary"]["epe_mean_mm"]
        assert summary["mean"] == pytest.approx(sum(arm["epe_mean_mm"]) / len(seeds))
    assert results["power"]["seeds"] == len(seeds) and results["power"]["detectable_difference_epe_mm"] > 0
    out = runs.parent / name
    markdown = (out / "results.md").read_text()
    for arm in results["arms"]:
        assert f"| {arm['name']} |" in markdown
    for plot in ("results.png", "curves.png"):
        assert (out / plot).stat().st_size > 1000


def _names(results):
    return [a["name"] for a in results["arms"]], [u["name"] for u in results["unavailable"]]


def test_list_names_every_declared_experiment(capsys):
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("table1", "table2", "table3", "synth-table1", "synth-table2"):
        assert name in listed and name in EXPERIMENTS


@pytest.mark.parametrize("name", ["table1", "table2", "table3"])
def test_real_data_tables_fail_at_once_naming_the_missing_dataset(name, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([name, "--data-root", str(tmp_path / "data"), "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "data" / "rhd_256" / "training") in message and "tools/convert_dataset.py rhd" in message
    assert not out.exists()  # nothing ran


def test_synth_table1_quick_writes_the_results_contract(table1):
    runs, results = table1
    _check_schema(results, "synth-table1", runs)
    ran, unavailable = _names(results)
    assert ran[:3] == ["depth_teacher", "rgb_student", "rgb_control"] and {"kd_act", "kd_act_att"} <= set(ran)
    assert "kd_att" in ran or "kd_att" in unavailable  # L_ATT alone needs distill.weight_act
    arms = {a["name"]: a for a in results["arms"]}
    assert arms["depth_teacher"]["evaluated_on"] == "source_test"
    for seed in results["seeds_requested"]:  # arm-seed k is an ordinary run with seed=k; the control continues rgb
        config = yaml.safe_load((runs / "rgb_control" / f"seed{seed}" / "config.yaml").read_text())
        assert config["seed"] == seed and config["phase"] == "student"
        assert config["model"]["init"] == str(runs / "rgb_student" / f"seed{seed}" / "model.pt")
        kd = yaml.safe_load((runs / "kd_act" / f"seed{seed}" / "config.yaml").read_text())
        assert kd["distill"]["lambda_att"] == 0.0 and kd["optim"]["epochs"] == config["optim"]["epochs"]


def test_synth_table2_quick_writes_the_results_contract(table1, table2):
    runs, results = table2
    _check_schema(results, "synth-table2", runs)
    ran, unavailable = _names(results)
    targets = [n for n in ran if n.startswith("target_")]
    assert "target_none" in targets and "target_prior" in targets and "target_prior_l1" in targets
    assert len([n for n in targets if n.startswith("target_l1_")]) == 2
    assert len([n for n in targets if n.startswith("target_l2_") and "matched" not in n]) == 2
    for control in ("target_prior_shuffled", "target_l2_matched"):
        assert control in ran or control in unavailable
    arms = {a["name"]: a for a in results["arms"]}
    assert arms["kd_on_target"]["evaluated_on"] == "target_test"
    assert all(arms[n]["evaluated_on"] == "target_test" for n in targets)
    for seed in results["seeds_requested"]:  # the target student uses the seed of the student whose prior it reads
        config = yaml.safe_load((runs / "target_prior" / f"seed{seed}" / "config.yaml").read_text())
        assert config["seed"] == seed
        assert config["regularizer"]["prior"] == str(runs / "kd_meta_l2" / f"seed{seed}" / "prior.pt")
        source = yaml.safe_load((runs / "rgb_student" / f"seed{seed}" / "config.yaml").read_text())
        assert source["seed"] == seed and source["model"]["width"] == config["model"]["width"]
    # the source phases were declared alike in both experiments, so synth-table2 reused synth-table1's runs
    first = {a["name"]: a for a in table1[1]["arms"]}
    for name in ("depth_teacher", "rgb_student"):
        assert arms[name]["epe_mean_mm"] == first[name]["epe_mean_mm"]
        assert arms[name]["wall_s"] == first[name]["wall_s"]  # experiment.json written once, by synth-table1


def test_rerun_resumes_without_retraining_finished_arms(table1, shared):
    runs, before = table1
    models = sorted(runs.glob("*/seed*/model.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in models}
    interrupted = runs / "kd_act_att" / "seed1"
    for path in sorted(interrupted.rglob("*"), reverse=True):  # as if this arm-seed had never finished
        path.unlink() if path.is_file() else path.rmdir()
    after = _run("synth-table1", shared / "synth-table1", shared)
    for path, stamp in stamps.items():
        if interrupted not in path.parents:
            assert path.stat().st_mtime_ns == stamp, f"{path} was retrained"
    assert (interrupted / "model.pt").is_file()
    old = {a["name"]: a for a in before["arms"]}
    for arm in after["arms"]:  # the retrained arm-seed reproduces its result (deterministic on CPU)
        assert arm["epe_mean_mm"] == pytest.approx(old[arm["name"]]["epe_mean_mm"], rel=1e-5)


def test_a_run_directory_made_with_other_settings_is_refused(table1, shared):
    plan = make_plan("synth-table1", RunOptions(out=shared / "synth-table1", quick=True, data_cache=shared / "data",
                                                runs_dir=shared / "runs"))
    plan.experiment = replace(plan.experiment, common=(*plan.experiment.common, "optim.lr=0.5"))
    with pytest.raises(ExperimentError, match="optim.lr"):
        run_task(plan, Task("rgb_student", 0))
    source, test = plan.experiment.data  # a data step declared anew (another crop size) in the same data folder
    plan.experiment = replace(plan.experiment, data=(replace(source, image_size=source.image_size + 8), test))
    with pytest.raises(ValueError, match="different settings"):
        run_task(plan, Task("source_train"))


def test_local_submitit_jobs_respect_dependencies_and_match_the_sequential_run(table1, shared, tmp_path):
    _, sequential = table1
    options = ["--data-cache", str(shared / "data"), "--no-progress", "--cluster", "local", "--seeds", "1",
               "--max-jobs", "1"]
    assert main(["synth-table1", "--quick", "--out", str(tmp_path), *options, "--arms", "rgb_control"]) == 0
    local = json.loads((tmp_path / "results.json").read_text())
    assert [a["name"] for a in local["arms"]] == ["rgb_student", "rgb_control"]
    reference = {a["name"]: a for a in sequential["arms"]}
    for arm in local["arms"]:
        assert arm["seeds"] == [0]
        assert arm["epe_mean_mm"][0] == pytest.approx(reference[arm["name"]]["epe_mean_mm"][0], rel=1e-4)
        assert arm["auc"][0] == pytest.approx(reference[arm["name"]]["auc"][0], abs=1e-3)
    # rgb_control's job started after rgb_student's had written the model it continues
    student = tmp_path / "runs" / "rgb_student" / "seed0" / "model.pt"
    control = tmp_path / "runs" / "rgb_control" / "seed0"
    assert yaml.safe_load((control / "config.yaml").read_text())["model"]["init"] == str(student)
    assert (control / "config.yaml").stat().st_mtime_ns > student.stat().st_mtime_ns
    assert len([p for p in (tmp_path / "submitit").iterdir() if p.name.isdigit()]) == 2  # one job per arm-seed


def test_a_failing_arm_is_reported_while_the_others_run(table1, shared, tmp_path, monkeypatch, capsys):
    base = build("synth-table1", quick=True)
    keep = [a for a in base.arms if a.name in ("depth_teacher", "rgb_student")]
    broken = TrainArm("target_broken", "target", ("data.train=[{source_train}]", "regularizer.kind=l2",
                                                  "regularizer.sigma=0"), "source_test")  # l2 needs sigma > 0
    after = EvalArm("after_broken", "target_broken", "source_test")
    tiny = replace(base, name="tiny", arms=(*keep, broken, after))
    monkeypatch.setitem(EXPERIMENTS, "tiny", ("test", lambda quick: tiny))
    options = ["--data-cache", str(shared / "data"), "--runs-dir", str(shared / "runs"), "--no-progress"]
    assert main(["tiny", "--quick", "--out", str(tmp_path), *options]) == 2
    captured = capsys.readouterr()
    assert "target_broken/seed0" in captured.err and "sigma" in captured.err
    assert "after_broken/seed1: not run (a dependency failed)" in captured.out
    results = {a["name"]: a for a in json.loads((tmp_path / "results.json").read_text())["arms"]}
    assert results["rgb_student"]["seeds"] == [0, 1]  # the independent arms ran (here: were already done)
    assert results["target_broken"]["seeds"] == [] and results["target_broken"]["missing_seeds"] == [0, 1]


class _FakeSlurm:
    """Records what a SLURM executor would be asked to submit."""

    def __init__(self):
        self.parameters, self.submitted = {}, []

    def update_parameters(self, **values):
        self.parameters.update(values)

    def submit(self, function, *args):
        job = type("Job", (), {"job_id": str(1000 + len(self.submitted))})()
        self.submitted.append((args[-1], dict(self.parameters["slurm_additional_parameters"]), job.job_id))
        return job


def test_slurm_jobs_wait_for_their_dependencies_afterok(tmp_path):
    plan = make_plan("synth-table2", RunOptions(out=tmp_path, quick=True, cluster="slurm"))
    executor = _FakeSlurm()
    submit_with_dependencies(plan, executor, plan.tasks())
    ids = {str(task): job_id for task, _, job_id in executor.submitted}
    extra = {str(task): parameters for task, parameters, _ in executor.submitted}
    assert extra["source_train"] == {}  # data steps wait for nothing
    assert extra["depth_teacher/seed1"]["dependency"] == f"afterok:{ids['source_train']}:{ids['source_test']}"
    expected = [ids[n] for n in ("source_train", "rgb_student/seed1", "depth_teacher/seed1", "source_test")]
    assert extra["kd_meta_l2/seed1"]["dependency"] == "afterok:" + ":".join(expected)
    target = extra["target_prior/seed1"]
    assert target["dependency"] == f"afterok:{ids['target_train']}:{ids['kd_meta_l2/seed1']}:{ids['target_test']}"
    assert target["kill-on-invalid-dep"] == "yes"
    order = [str(t) for t, _, _ in executor.submitted]
    assert order.index("kd_meta_l2/seed1") < order.index("target_prior/seed1")


def test_declarations_are_checked():
    data = (RenderData("train", 8, 1),)
    with pytest.raises(ExperimentError, match="teacher"):  # refers to a step not declared before it
        Experiment("x", "", data, (TrainArm("student", "student", ("model.init={teacher}/model.pt",)),))
    with pytest.raises(ExperimentError, match="unique"):
        Experiment("x", "", data, (TrainArm("train", "student", ()),))
    with pytest.raises(ExperimentError, match="not a data step"):
        Experiment("x", "", data, (TrainArm("student", "student", (), evaluate_on="test"),))


def test_mean_std_and_training_curve_by_hand(tmp_path):
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert mean_std([4.0]) == {"mean": 4.0, "std": None, "n": 1}
    # (t_0.975,4 + t_0.8,4) * sqrt(2/3) = (2.7764 + 0.9410) * 0.8165 (t tables)
    assert detectable_difference(1.0, 3) == pytest.approx(3.0353, abs=2e-3)
    assert detectable_difference(2.0, 3) == pytest.approx(2 * detectable_difference(1.0, 3))
    log = tmp_path / "log.csv"
    rows = [(5, 0, 2.0), (10, 0, 1.0), (15, 1, 0.5), (20, 1, 0.25)]  # 10 steps per epoch, logged every 5
    log.write_text("step,epoch,name,value\n" + "".join(f"{s},{e},loss/reg,{v}\n{s},{e},lr,0.1\n" for s, e, v in rows))
    assert training_curve(log) == {0.5: 2.0, 1.0: 1.0, 1.5: 0.5, 2.0: 0.25}


def test_markdown_table_by_hand():
    arm = {"name": "target_prior_l1", "note": "R = Σφ|θ|", "evaluated_on": "target_test", "seeds": [0, 1],
           "epe_mean_mm": [10.0, 12.0], "auc_range_mm": [20.0, 50.0], "wall_s": [3.0, 5.0], "paper_epe_mm": 8.86,
           "summary": {"epe_mean_mm": mean_std([10.0, 12.0]), "auc": mean_std([0.5, 0.7])}, "missing_seeds": []}
    results = {"experiment": "x", "quick": False, "description": "", "seeds_requested": [0, 1], "arms": [arm],
               "power": {"detectable_difference_epe_mm": None}, "unavailable": [], "phi": {}, "data": {},
               "settings": {}, "common_overrides": [], "wall_s": None}
    row = next(line for line in markdown(results).splitlines() if line.startswith("| target_prior_l1 "))
    # 11 ± 1.41 (sample std of 10 and 12 is √2), the bars of |θ| escaped, the paper's value last
    assert row == ("| target_prior_l1 | R = Σφ\\|θ\\| | target_test | 2 | 11.00 ± 1.41 | – | – | 0.600 ± 0.141 (20–50) "
                   "| 10.00, 12.00 | 4 | 8.86 |")


def test_paper_tables_use_the_paper_settings():
    table1 = build("table1")
    names = [a.name for a in table1.arms]
    assert {"kd_act", "kd_act_att", "kd_act_att_synth", "kd_act_att_synth_resnet50"} <= set(names)
    synth = table1.step("synth")
    assert synth.num == 50000 and synth.image_size == 256
    table2 = build("table2")
    sigmas = sorted(a.name for a in table2.arms if a.name.startswith(("target_l1_", "target_l2_1")))
    assert sigmas == ["target_l1_1e-04", "target_l1_1e-06", "target_l2_1e-03", "target_l2_1e-05"]
    assert all(a.auc_range == (20.0, 50.0) for a in table2.arms if a.name.startswith("target_"))
    assert table2.paper["target_prior"] == 8.18 and table2.paper["target_none"] == 15.67  # method.md §8
    table3 = build("table3")
    for letter in "ghsa":
        assert {f"freihand_{letter}_none", f"freihand_{letter}_l2_1e-05", f"freihand_{letter}_prior"} <= {
            a.name for a in table3.arms}
    for experiment in (table1, table2, table3):  # schedule and sizes are the phase files' (the paper's)
        assert experiment.common == ()
        assert not [o for a in experiment.arms for o in getattr(a, "overrides", ()) if o.startswith(("optim.", "data.image"))]
