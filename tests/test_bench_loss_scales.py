"""benchmarks/bench_loss_scales.py runs on tiny networks, and its φ-gradient check agrees with finite differences."""
import json

from benchmarks import bench_loss_scales
from tests.training_fixtures import IMAGE, random_checkpoint, tiny_shards


def test_loss_scale_benchmark_reports_every_term_and_checks_the_phi_gradient(tmp_path):
    data = tiny_shards(tmp_path / "data", samples=4, seed=1)
    teacher = random_checkpoint(tmp_path / "teacher.pt", "depth", seed=1)
    student = random_checkpoint(tmp_path / "student.pt", "rgb", seed=2)
    out, js = tmp_path / "scales.md", tmp_path / "scales.json"
    assert bench_loss_scales.main(["--data", str(data), "--teacher", str(teacher), "--student", "init=",
                                   "--student", f"trained={student}", "--size", str(IMAGE), "--batches", "1",
                                   "--check-phi", "--out", str(out), "--json", str(js)]) == 0
    result = json.loads(js.read_text())
    for label in ("init", "trained"):
        terms = result["students"][label]["terms"]
        assert set(terms) == {"L_REG (mean)", "L_REG (sum, Eq. 1)", "L_ACT", "λ·L_ATT (literal)", "λ·L_ATT (resolution)"}
        # Eq. 1's sum is 63x the mean, and so is its gradient
        assert abs(terms["L_REG (sum, Eq. 1)"]["grad_ratio_to_l_reg_mean"] - 63) < 1e-3 * 63
        # at 32 px the literal L_ATT weighs 64x the resolution-normalised one (256² / 32²)
        ratio = terms["λ·L_ATT (literal)"]["value"] / terms["λ·L_ATT (resolution)"]["value"]
        assert abs(ratio - (256 / IMAGE) ** 2) < 1e-6 * ratio
        check = result["students"][label]["phi_gradient_check"]
        assert check["relative_error"] < 1e-5, check
    assert "| trained | λ·L_ATT (resolution) |" in out.read_text()
