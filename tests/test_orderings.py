"""The paper's orderings checked on results.json: 1-std bands and paired differences."""
import pytest


def test_orderings_verdicts_from_results():
    from training.experiments.orderings import check_orderings, orderings_table

    results = {"experiment": "x", "arms": [
        {"name": "good", "seeds": [0, 1, 2], "epe_mean_mm": [10.0, 11.0, 12.0]},   # 11 ± 1
        {"name": "bad", "seeds": [0, 1, 2], "epe_mean_mm": [14.0, 15.0, 16.0]},    # 15 ± 1
        {"name": "close", "seeds": [0, 1, 2], "epe_mean_mm": [11.5, 12.0, 12.5]},  # 12 ± 0.5
    ]}
    checked = check_orderings(results, [("good", "bad", "a"), ("good", "close", "b"), ("bad", "good", "c"),
                                        ("good", "missing", "d")])
    assert [c["verdict"] for c in checked] == ["holds", "consistent, within 1 std", "reversed"]
    assert checked[0]["paired"] == {"seeds": 3, "mean_mm": 4.0, "se_mm": 0.0, "seeds_agreeing": 3}
    assert checked[1]["difference_mm"] == pytest.approx(1.0)
    assert "| a | good 11.00 ± 1.00 | bad 15.00 ± 1.00 | +4.00 |" in orderings_table(checked)
