"""Progress output: a bounded number of lines in a log file, one switch to turn it off, rank 0 only."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from common.progress import PROGRESS_ENV, Progress

ROOT = Path(__file__).resolve().parents[1]


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


def test_trainer_progress_into_a_log_file_stays_short(tmp_path):
    """A real training run with its output redirected to a file: the log holds a few progress lines."""
    from tests.training_fixtures import tiny_shards

    data = tiny_shards(tmp_path / "data", samples=8)
    log = tmp_path / "train.log"
    with open(log, "w") as handle:
        code = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), "--config",
                               str(ROOT / "configs" / "student.yaml"), f"out={tmp_path / 'run'}",
                               f"data.train=[{data}]", "data.image_size=32", "data.augment=false", "data.workers=0",
                               "model.width=8", "optim.batch_size=2", "optim.epochs=25", "device=cpu", "threads=1",
                               "log_every=1000", "checkpoint_every=1000", "progress=true"],
                              stdout=handle, stderr=subprocess.STDOUT, timeout=300, env=_env()).returncode
    lines = log.read_text().splitlines()
    assert code == 0, lines[-3:]
    progress_lines = [line for line in lines if line.startswith("student: ")]
    # 100 steps: one line per 10 % plus the final line, however many steps
    assert 2 <= len(progress_lines) <= 11 + 1 and "\r" not in log.read_text()
    assert progress_lines[-1].startswith("student: 100/100 step (100%)")


def _env() -> dict:
    import os

    env = dict(os.environ)
    env.pop(PROGRESS_ENV, None)
    env.pop("RANK", None)
    return env
