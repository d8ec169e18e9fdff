"""`make demo` end to end at a microscopic scale: render, four phases, evaluation, report."""
import json

import pytest

from training.demo import DemoSettings, run_demo


@pytest.mark.slow
def test_demo_writes_a_complete_report(tmp_path):
    settings = DemoSettings(source_train=16, source_test=8, target_train=16, target_test=8, render_size=32,
                            image_size=32, width=4, batch_size=8, teacher_epochs=1, student_epochs=1,
                            distill_epochs=1, target_epochs=1, render_workers=1, data_workers=0)
    report = run_demo(tmp_path, settings)
    text = report.read_text()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["results"]) == 6
    for label, result in metrics["results"].items():
        assert f"| {label} | {result['split']} | {result['epe_mean_mm']:.1f} |" in text
    assert "not** the paper's results" in text and "max |φ|" in text
    for name in ("pck.png", "pck_source.png", "predictions.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"({name})" in text
    assert (tmp_path / "runs" / "distill" / "prior.pt").exists()
    assert metrics["prior"]["elements"] > 0
