"""benchmarks/bench_gpu.py: the dry run exercises every section on the CPU and writes the promised JSON."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_gpu
from benchmarks.bench_steps import KINDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_gpu")
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--dry-run", "--work-dir", str(out),
               "--json", str(out / "gpu.json"), "--out", str(out / "gpu.md")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text(), out


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_dry_run_measures_every_step_of_both_networks_in_both_precisions(dry_run):
    results, _, _ = dry_run
    assert results["dry_run"] is True and results["gpu_run"] is False
    assert set(results["training"]) == {"resnet18", "resnet50"}
    for arch, by_precision in results["training"].items():
        assert set(by_precision) == {"bf16", "fp32"}, arch
        for precision, rows in by_precision.items():
            assert set(KINDS) <= set(rows), (arch, precision)
            for kind in KINDS:
                assert _positive(rows[kind]["images_per_s"]), (arch, precision, kind)
            assert rows["distill"]["ratio_to_distill"] == 1.0


def test_dry_run_renders_with_egl_and_the_loader_reads_the_rendered_set(dry_run):
    results, _, work = dry_run
    render = results["render"]
    assert render["gl_renderer"] and _positive(render["bare_frames_per_s"])
    assert render["samples"] == results["settings"]["render_samples"] and _positive(render["pipeline_samples_per_s"])
    loader = results["loader"]["1"]
    assert loader["images"] == render["samples"] * results["settings"]["loader_epochs"]
    assert _positive(loader["steady_images_per_s"]) and _positive(loader["images_per_s"])
    assert results["loader_vs_training"]["resnet18/bf16/distill"] > 0
    assert not list(work.glob("tmp*")), "the rendered set lives in a temporary directory that is removed"


def test_dry_run_report_has_no_errors_and_says_it_is_a_dry_run(dry_run):
    results, text, _ = dry_run
    assert bench_gpu.errors(results) == []
    assert "Dry run" in text and "first order (l=1)" in text and results["render"]["gl_renderer"] in text
    assert {"load_average_before", "load_average_after", "torch"} <= set(results["environment"])


def test_bad_options_give_one_clear_line(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        bench_gpu._parse(["--precisions", "bf16,fp16"])
    assert "unknown ['fp16']" in capsys.readouterr().err
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda but torch .* sees no CUDA device"):
        bench_gpu.require_device("cuda")
    bench_gpu.require_device("cpu")
