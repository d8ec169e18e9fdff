"""The README's "Other methods" commands, one after the other, at tiny sizes in a scratch directory.

Commands are read from README.md (the first command of "Synthetic data" renders ``data/synth``,
then every command of "Other methods"), with size flags appended (the last value wins), so every
path a command reads must have been made by an earlier one. Each evaluation must write its metrics.
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.test_readme_real_data import ROOT, readme_commands

# 40 renders: 10 % of them (the README's fine-tune fraction) still fill a batch of 4

TINY = {
    "render_synth.py": ["--num", "40", "--size", "48", "--shard-size", "20", "--workers", "1", "--no-progress"],
    "show_depth_sensor.py": ["--count", "2"],
    "train.py": ["optim.epochs=1", "optim.batch_size=4", "data.image_size=32", "model.width=8", "device=cpu",
                 "threads=1", "progress=false", "data.workers=0", "log_every=1"],
    "evaluate.py": ["--batch-size", "4", "--no-progress"],
}


def _tool(script: str):
    from tools import evaluate, render_synth, show_depth_sensor, train

    return {"render_synth.py": render_synth.main, "show_depth_sensor.py": show_depth_sensor.main,
            "train.py": train.main, "evaluate.py": evaluate.main}[script]


def test_readme_method_commands_run_end_to_end(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDKIT_PROGRESS", "0")
    commands = readme_commands("Synthetic data")[:1] + readme_commands("Other methods")
    scripts = [Path(c[0]).name for c in commands]
    assert scripts.count("train.py") >= 8 and scripts.count("evaluate.py") >= 4
    evaluated = []
    for argv in commands:
        script = Path(argv[0]).name
        code = _tool(script)(argv[1:] + TINY[script])
        out, err = capsys.readouterr()
        assert code == 0, (argv, err)
        if script == "evaluate.py":
            checkpoint = Path(argv[argv.index("--checkpoint") + 1])
            evaluated.append(checkpoint)
    for checkpoint in evaluated:  # evaluate.py writes next to the checkpoint's run by default
        written = sorted(checkpoint.parent.glob("**/metrics.json"))
        assert written, checkpoint
        assert json.loads(written[-1].read_text())["epe_mean_mm"] > 0
    # the depth-sensor picture and every stage's model were written
    assert Path("depth_sensor.png").stat().st_size > 1000
    for run in ("supervision_transfer_ft10", "aw_hourglass", "lsps_posterior"):
        assert Path(f"runs/{run}/model.pt").is_file(), run
