"""`make demo` end to end at a microscopic scale: render, four phases, evaluation, report."""
import json
import math

import pytest

from training.demo import L2_LABEL, NONE_LABEL, PRIOR_LABEL, DemoSettings, domain_options, run_demo


def test_target_domain_is_shifted_in_lighting_and_skin():
    source, _ = domain_options("source")
    target, description = domain_options("target")
    from render.sampling import SKIN_TONES, SynthConfig

    defaults = SynthConfig()
    assert SynthConfig(**target).light_intensity_range[1] < defaults.light_intensity_range[1]
    assert SynthConfig(**target).ambient_range[0] > defaults.ambient_range[0]
    assert set(target["skin_tones"]) < set(SKIN_TONES)
    if "background_families" in target:  # only when the renderer offers the choice
        assert not set(target["background_families"]) & set(source["background_families"])
    assert "lighting" in description


@pytest.mark.slow
def test_demo_writes_a_complete_report(tmp_path):
    settings = DemoSettings(source_train=16, source_test=8, target_train=16, target_test=8, render_size=32,
                            image_size=32, width=4, batch_size=8, teacher_epochs=1, student_epochs=1,
                            distill_epochs=1, target_epochs=1, render_workers=1, data_workers=0,
                            prior_beta_rule="fixed", prior_beta=1.0, prior_nonnegative=True)
    report = run_demo(tmp_path, settings)
    text = report.read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    results = metrics["results"]
    assert len(results) == 8
    assert {PRIOR_LABEL, NONE_LABEL, L2_LABEL.format(sigma=settings.l2_sigma)} <= set(results)
    for label, result in results.items():
        assert f"| {label} | {result['split']} | {result['epe_mean_mm']:.1f} |" in text
    assert "not** the paper's results" in text and "β = 1" in text and "not** evidence" in text
    for name in ("pck.png", "pck_source.png", "predictions.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"({name})" in text
    for run in ("teacher", "student", "distill", "control", "target_prior", "target_none", "target_l2"):
        assert (tmp_path / "runs" / run / "model.pt").exists()
    assert (tmp_path / "runs" / "distill" / "prior.pt").exists()
    prior = metrics["prior"]
    assert prior["elements"] > 0
    assert prior["min"] >= 0.0 and prior["negative_fraction"] == 0.0  # prior.nonnegative reached the distill run
    assert prior["max"] > 0.0  # β large enough that φ moved off its initial 0
    assert math.isfinite(prior["regularizer_over_l_reg_mean"]) and prior["regularizer_first"] > 0
    assert set(metrics["timings_s"]) >= {"render", "teacher", "student", "evaluation"}
