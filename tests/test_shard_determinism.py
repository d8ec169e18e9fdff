"""Converted shard files are bitwise identical however the command is typed (the history is in the manifest).

(The rendered counterpart is ``tests/test_render_synth.py``, which compares file checksums the same way.)
"""
from __future__ import annotations

import os
from pathlib import Path

from datasets.shard_format import file_sha256, list_shards, read_manifest
from tests.raw_fixtures import write_rhd
from tools.convert_dataset import main as convert_tool


def _checksums(out: Path) -> dict[str, str]:
    """SHA-256 of every shard file under ``out`` (all split directories), keyed by relative path."""
    return {str(path.relative_to(out)): file_sha256(path)
            for directory in sorted({p.parent for p in out.rglob("shard-*.h5")}) for path in list_shards(directory)}


def test_converted_shards_are_bitwise_equal_for_differently_typed_commands(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    write_rhd(raw, "training", num=5, seed=0)
    write_rhd(raw, "evaluation", num=2, seed=1)
    plain = ["rhd", "--root", str(raw), "--out", str(tmp_path / "a"), "--size", "32", "--shard-size", "2",
             "--workers", "1", "--no-progress"]
    assert convert_tool(plain) == 0
    monkeypatch.chdir(tmp_path)  # the raw root as a relative path with a trailing slash, flags reordered
    typed = ["rhd", "--no-progress", "--workers=2", "--shard-size=2", f"--out={tmp_path / 'b'}", "--size=32",
             "--root", "raw" + os.sep]
    assert convert_tool(typed) == 0
    first, second = _checksums(tmp_path / "a"), _checksums(tmp_path / "b")
    assert len(first) == 4 and first == second  # training: 3 shards of 2, 2, 1; evaluation: 1 shard
    histories = [read_manifest(path.parent)["invocations"] for path in sorted((tmp_path / "b").rglob("manifest.json"))]
    assert all(len(history) == 1 and "--workers=2" in history[0]["command"] for history in histories)
