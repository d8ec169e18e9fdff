"""synth-methods: every method, the supervision its paper uses, one target test set; it shares its data
steps and knowledge-as-priors arms with synth-table2 (one --runs-dir trains them once)."""
import pytest

from training.config import load_config
from training.experiments import build
from training.experiments.runner import CONFIGS
from training.experiments.spec import RenderData, TrainArm


@pytest.mark.parametrize("quick", [False, True])
def test_every_method_has_arms_evaluated_on_the_same_target_samples(quick):
    experiment = build("synth-methods", quick)
    names = [a.name for a in experiment.arms]
    for method in ("supervision_transfer", "aw_hourglass", "lsps"):
        assert any(method in n for n in names), method
    assert {"target_prior", "target_none", "kd_on_target"} <= set(names)
    data = {d.name: d for d in experiment.data}
    test, sensor = data["target_test"], data["target_test_sensor"]
    assert (sensor.num, sensor.seed, sensor.domain, sensor.image_size) == (test.num, test.seed, test.domain,
                                                                          test.image_size)
    assert test.depth_sensor == "" and sensor.depth_sensor != ""
    for arm in experiment.reported_arms:
        if arm.name in ("depth_teacher", "rgb_student", "kd_meta_l2"):
            assert arm.evaluate_on == "source_test"
        elif "lsps" in arm.name:
            assert arm.evaluate_on == "target_test_sensor"
        else:
            assert arm.evaluate_on == "target_test", arm.name


def test_knowledge_as_priors_arms_are_those_of_synth_table2():
    methods, table2 = build("synth-methods"), build("synth-table2")
    shared = {a.name: a for a in table2.arms}
    assert methods.common == table2.common
    for name in ("depth_teacher", "rgb_student", "kd_meta_l2", "target_none", "target_l2_1e-03", "target_prior"):
        assert methods.step(name) == shared[name], name
    for step in table2.data:
        assert methods.step(step.name) == step


def test_no_method_trains_on_the_target_3d_labels_unless_its_paper_does():
    experiment = build("synth-methods")
    for arm in experiment.arms:
        if not isinstance(arm, TrainArm):
            continue
        values = dict(o.split("=", 1) for o in (*experiment.common, *arm.overrides))
        on_target = "target_train" in values.get("data.train", "")
        if arm.name.startswith(("aw_hourglass", "lsps")):
            assert not on_target, arm.name  # the target reaches them through data.adapt only
            if "data.adapt" in values:
                phase = load_config(CONFIGS / f"{arm.config}.yaml", [f"out=/tmp/x", "data.train=[a]"]).phase
                from training.methods import phase_class

                assert "target" not in phase_class(phase).adapt_keys, arm.name
                assert float(values.get("data.adapt_label_fraction", 0)) == 0.0, arm.name
        if arm.name == "supervision_transfer_zero_shot":
            assert on_target  # paired, unlabelled: the transfer phase reads no label (its own tests)
    assert all(isinstance(d, RenderData) for d in experiment.data)
