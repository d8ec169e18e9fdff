"""Ctrl-C: one line, exit code 130, no traceback from any process, nothing half-written; a rerun resumes.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group — the tool and its
worker processes (render pool, DataLoader workers) — which is what these tests do.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.cli import EXIT_INTERRUPTED, INTERRUPTED_MESSAGE
from tests.training_fixtures import tiny_shards

ROOT = Path(__file__).resolve().parents[1]


def interrupt_when(command: list[str], started, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``command`` in its own process group; once ``started()`` is true, Ctrl-C the group."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    while not started() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the command ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def assert_interrupted(result: subprocess.CompletedProcess, out: Path) -> None:
    assert result.returncode == EXIT_INTERRUPTED, result.stderr
    assert result.stderr.strip() == INTERRUPTED_MESSAGE, result.stderr  # nothing from the workers either
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]  # no half-written file under any name


@pytest.mark.slow
def test_ctrl_c_during_rendering_with_worker_processes(tmp_path):
    out = tmp_path / "synth"
    # 600 samples: at 64² two workers render the 90 of an earlier version in well under a second, so
    # the run could end between the first shard and the Ctrl-C
    command = [sys.executable, str(ROOT / "tools" / "render_synth.py"), "--out", str(out), "--num", "600",
               "--shard-size", "3", "--size", "64", "--workers", "2", "--no-progress"]
    result = interrupt_when(command, lambda: len(list(out.glob("shard-*.h5"))) >= 1)
    assert_interrupted(result, out)
    done = len(list(out.glob("shard-*.h5")))
    assert 1 <= done < 200


@pytest.mark.slow
def test_ctrl_c_during_training_with_dataloader_workers(tmp_path):
    data = tiny_shards(tmp_path / "data", samples=16)
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(ROOT / "configs" / "student.yaml"),
               f"out={out}", f"data.train=[{data}]", "data.image_size=32", "data.workers=2", "model.width=8",
               "optim.batch_size=2", "optim.epochs=500", "device=cpu", "threads=1", "checkpoint_every=5",
               "log_every=1"]
    result = interrupt_when(command, lambda: (out / "checkpoints" / "last.pt").exists())
    assert_interrupted(result, out)
    assert not (out / "model.pt").exists()


def test_a_worker_stop_inside_termination_deferred_waits_for_the_block():
    """A render worker records its shard in the manifest inside ``termination_deferred``: a SIGTERM from the
    parent (stopping a broken or interrupted pool) then ends the worker after the block, never between the
    shard's rename and its manifest entry; outside the block it ends the worker at once."""
    script = (
        "import os, signal\n"
        "from common.cli import quiet_worker_signals, termination_deferred\n"
        "quiet_worker_signals()\n"
        "with termination_deferred():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    print('the block finished', flush=True)\n"
        "print('after the block', flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM and result.stdout.splitlines() == ["the block finished"]
    immediate = script.replace("with termination_deferred():", "if True:")
    result = subprocess.run([sys.executable, "-c", immediate], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM and result.stdout == ""
