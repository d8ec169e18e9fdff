"""The loader benchmark runs end to end on a tiny directory and writes the figures the issue promises."""
import json

from benchmarks import bench_loader


def test_loader_benchmark_writes_its_json_keys_for_any_worker_counts(tmp_path):
    out, figures_path = tmp_path / "loader.md", tmp_path / "loader.json"
    bench_loader.main(["--samples", "48", "--shard-size", "24", "--size", "32", "--batch", "8", "--workers", "0",
                       "--repeats", "1", "--out", str(out), "--json", str(figures_path)])
    figures = json.loads(figures_path.read_text())
    assert figures["raw_per_s"] > 0 and set(figures["loader_per_s"]) == set(figures["ratio_to_raw"]) == {"0"}
    assert abs(figures["ratio_to_raw"]["0"] - figures["loader_per_s"]["0"] / figures["raw_per_s"]) < 0.01
    text = out.read_text()
    assert "training loader, num_workers=0" in text
    assert "not measured in this run (no `--workers 2`)" in text  # the 2-worker goal needs a 2-worker row
