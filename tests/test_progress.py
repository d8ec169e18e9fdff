"""Progress output: a bounded number of lines in a log file, one switch to turn it off, rank 0 only."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from common.progress import PROGRESS_ENV, Progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(total: int, seconds_per_step: float, **options) -> list[str]:
    clock, log = FakeClock(), io.StringIO()  # a StringIO is not a terminal: plain lines
    with Progress(total, "train", unit="step", stream=log, clock=clock, **options) as bar:
        for _ in range(total):
            clock.now += seconds_per_step
            bar.update(1)
            bar.set_postfix(loss=0.5)
    return log.getvalue().splitlines()


def test_a_long_loop_into_a_file_writes_a_bounded_number_of_lines(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    # 200,000 steps over 100 minutes: one line per 10 % (10) + one per 30 s (200) + the final one.
    lines = _run(200_000, 0.03)
    assert 200 <= len(lines) <= 10 + 200 + 1
    # a fast loop (one second in all) gets one line per 10 % and the final line
    lines = _run(100_000, 1e-5)
    assert len(lines) == 11
    assert lines[4].startswith("train: 50000/100000 step (50%)") and "ETA 0:00:01" in lines[4]
    assert "loss=0.5" in lines[4] and "step/s" in lines[4]
    assert lines[-1].startswith("train: 100000/100000 step (100%)") and "took 0:00:01" in lines[-1]


def test_rate_and_eta_are_computed_from_the_elapsed_time(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    clock, log = FakeClock(), io.StringIO()
    bar = Progress(1000, "render", unit="sample", stream=log, clock=clock, initial=100, percent_step=0)
    clock.now = 30.0
    bar.update(150)  # 150 samples in 30 s = 5/s; 750 left → 150 s
    assert log.getvalue().strip() == "render: 250/1000 sample (25%), 5 sample/s, ETA 0:02:30"


@pytest.mark.parametrize("switch", ["argument", "environment", "rank"])
def test_one_switch_turns_progress_off(monkeypatch, switch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    if switch == "environment":
        monkeypatch.setenv(PROGRESS_ENV, "0")
    if switch == "rank":
        monkeypatch.setenv("RANK", "1")  # torchrun's rank 1: only rank 0 reports
    assert _run(1000, 1.0, enabled=switch != "argument") == []


def test_no_progress_flag_reaches_worker_processes(monkeypatch):
    from common.cli import add_progress_switch, apply_progress_switch, tool_parser

    monkeypatch.setenv(PROGRESS_ENV, "1")  # (and restored after the test)
    parser = tool_parser("test tool")
    add_progress_switch(parser)
    assert apply_progress_switch(parser.parse_args([])) is True
    assert apply_progress_switch(parser.parse_args(["--no-progress"])) is False
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('HANDKIT_PROGRESS'))"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "0"


def test_trainer_progress_into_a_log_file_stays_short(tmp_path, capsys, monkeypatch):
    """A real training run whose stderr is not a terminal (captured, like a redirected job log)."""
    from tests.training_fixtures import tiny_config, tiny_shards
    from training.trainer import train

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.delenv("RANK", raising=False)
    data = tiny_shards(tmp_path / "data", samples=8)
    train(tiny_config("student", tmp_path / "run", [data], ["progress=true", "optim.batch_size=2", "optim.epochs=5",
                                                            "log_every=1000"]))
    err = capsys.readouterr().err
    progress_lines = [line for line in err.splitlines() if line.startswith("student: ")]
    # 20 steps: at most one line per 10 % plus the final line (however many steps a run has)
    assert 2 <= len(progress_lines) <= 11 and "\r" not in err
    assert progress_lines[-1].startswith("student: 20/20 step (100%)") and "took" in progress_lines[-1]
