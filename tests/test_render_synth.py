"""Synthetic dataset generation: labels, determinism, resume, sharding, clear errors."""
from __future__ import annotations

import errno
import os
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from datasets.geometry import project
from datasets.joints import MANO21
from datasets.shard_format import file_sha256, list_shards, read_manifest
from render.sampling import SynthConfig
from render.synth import FAULT_ENV, GenerationJob, SynthError, generate, parse_shard_ranges

ROOT = Path(__file__).resolve().parents[1]
SIZE, NUM, SHARD, SEED = 64, 7, 3, 11
TIPS = np.array([name.endswith("_tip") for name in MANO21])


def _job(out, **overrides) -> GenerationJob:
    settings = dict(out=Path(out), num=NUM, seed=SEED, shard_size=SHARD, workers=1, config=SynthConfig(image_size=SIZE))
    settings.update(overrides)
    return GenerationJob(**settings)


def _generate(out, logs=None, **overrides):
    return generate(_job(out, **overrides), progress_bar=False, log=(logs.append if logs is not None else print))


def _contents(directory) -> list[dict]:
    """Every array and attribute of every shard, in shard order."""
    shards = []
    for path in list_shards(directory):
        with h5py.File(path, "r") as f:
            entry = {key: f[key][()] for key in f}
            entry.update({f"attr:{k}": v for k, v in f.attrs.items()})
            shards.append(entry)
    return shards


def _checksums(directory) -> dict[str, str]:
    return {path.name: file_sha256(path) for path in list_shards(directory)}


def _assert_same_dataset(a, b):
    """Bitwise the same shard files (SHA-256 of each file, not only equal arrays)."""
    sums = _checksums(a)
    assert len(sums) > 0 and sums == _checksums(b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    _generate(out)
    return out


def _load_tool():
    spec = importlib.util.spec_from_file_location("render_synth_tool", ROOT / "tools" / "render_synth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shards_follow_the_format_and_labels_agree_with_the_images(reference):
    manifest = read_manifest(reference)
    assert sorted(manifest["shards"]) == ["shard-000000.h5", "shard-000001.h5", "shard-000002.h5"]
    assert manifest["num_samples"] == NUM and manifest["seed"] == SEED and manifest["hand_model"]
    assert manifest["config"]["image_size"] == SIZE
    cfg = SynthConfig.from_dict(manifest["config"])
    margin = cfg.margin * SIZE
    for shard in _contents(reference):
        n = len(shard["rgb"])
        assert shard["attr:source"] == "synthetic" and json.loads(shard["attr:config"])["image_size"] == SIZE
        expected = {"rgb": (np.uint8, (n, SIZE, SIZE, 3)), "depth": (np.uint16, (n, SIZE, SIZE)),
                    "mask": (np.uint8, (n, SIZE, SIZE)), "joints3d": (np.float32, (n, 21, 3)),
                    "joints2d": (np.float32, (n, 21, 2)), "visible": (bool, (n, 21)), "K": (np.float32, (n, 3, 3)),
                    "pose_pca": (np.float32, (n, 10)), "hand_pose": (np.float32, (n, 45)),
                    "global_orient": (np.float32, (n, 3)), "betas": (np.float32, (n, 10))}
        for key, (dtype, shape) in expected.items():
            assert shard[key].dtype == dtype and shard[key].shape == shape, key
        np.testing.assert_allclose(project(shard["joints3d"], shard["K"]), shard["joints2d"], atol=0.5)
        assert shard["joints2d"].min() >= margin - 1e-3 and shard["joints2d"].max() <= SIZE - 1 - margin + 1e-3
        assert np.array_equal(shard["mask"] == 1, shard["depth"] > 0)
        assert np.all(shard["mask"].reshape(n, -1).sum(1) > 20)  # the hand is in every image
        assert np.all(np.abs(shard["pose_pca"]) <= 2) and np.all(np.abs(shard["betas"]) <= 0.03)
        for i in range(n):
            cols, rows = np.rint(shard["joints2d"][i]).astype(int).T
            surface = shard["depth"][i][rows, cols] / 1000.0
            z = shard["joints3d"][i][:, 2]
            seen = shard["visible"][i] & (surface > 0)
            # Joints sit inside the fingers: the surface seen at a visible joint's pixel is in
            # front of the joint (up to 1 mm of depth rounding) by less than the tolerance.
            # Fingertips are surface vertices on the silhouette; their pixel may show a surface behind.
            inner = seen & ~TIPS
            assert np.all(surface[inner] <= z[inner] + 0.001)
            assert np.all(surface[seen] >= z[seen] - cfg.visibility_tolerance_m)
            hidden = ~shard["visible"][i]
            assert np.all(surface[hidden] < z[hidden] - cfg.visibility_tolerance_m)
        assert shard["visible"].mean() > 0.3


def test_shard_files_are_bitwise_equal_however_the_command_is_typed(reference, tmp_path):
    """Worker count, flag order and ``--flag value`` vs ``--flag=value`` change only the manifest's history."""
    tool = _load_tool()
    typed = ["--workers=2", f"--seed={SEED}", "--no-progress", "--size", str(SIZE), "--shard-size", str(SHARD),
             "--num", str(NUM), "--out", str(tmp_path)]
    assert tool.main(typed) == 0
    _assert_same_dataset(reference, tmp_path)
    invocations = read_manifest(tmp_path)["invocations"]
    assert [entry["command"].split() for entry in invocations] == [typed] and invocations[0]["workers"] == 2
    for path in list_shards(tmp_path):
        with h5py.File(path, "r") as f:
            assert not any("command" in key or "--" in str(value) for key, value in f.attrs.items())
    assert not (tmp_path / ".manifest.json.lock").exists()  # the lock file is removed after use


def test_an_interrupted_run_resumes_to_the_same_dataset(reference, tmp_path, monkeypatch):
    from render import renderer

    original = renderer.HandRenderer.render
    calls = {"n": 0}

    def failing_render(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == SHARD + 2:  # in the middle of the second shard
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(renderer.HandRenderer, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        _generate(tmp_path)
    assert [p.name for p in list_shards(tmp_path)] == ["shard-000000.h5"]
    assert not list(tmp_path.glob(".shard-*.tmp-*"))  # nothing half-written under any name
    monkeypatch.setattr(renderer.HandRenderer, "render", original)
    _generate(tmp_path)
    _assert_same_dataset(reference, tmp_path)


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_dataset(tmp_path):
    args = [sys.executable, str(ROOT / "tools" / "render_synth.py"), "--out", str(tmp_path / "killed"),
            "--num", "45", "--shard-size", "3", "--size", str(SIZE), "--seed", str(SEED), "--no-progress"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed" / "shard-000000.h5"
    deadline = time.time() + 120
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list_shards(tmp_path / "killed"))
    assert 1 <= done < 15, f"the kill should land mid-run, found {done} shards"
    subprocess.run(args, check=True, capture_output=True, timeout=600)
    assert not list((tmp_path / "killed").glob(".shard-*.tmp-*"))  # the killed run's partial file is gone
    _generate(tmp_path / "straight", num=45)
    _assert_same_dataset(tmp_path / "straight", tmp_path / "killed")


def test_a_dead_worker_ends_the_run_promptly_and_a_rerun_completes_it(reference, tmp_path, monkeypatch):
    # The worker that starts shard 1 SIGKILLs itself (like the OOM killer): the run must stop
    # with a clear error instead of waiting forever for that shard.
    monkeypatch.setenv(FAULT_ENV, "exit-at-shard:1")
    started = time.monotonic()
    with pytest.raises(SynthError, match="worker process died while rendering shard-000001.h5; rerun"):
        _generate(tmp_path, workers=2)
    assert time.monotonic() - started < 60  # worker start-up (imports, GL) included; it used to hang
    for path in list_shards(tmp_path):  # whatever was written is complete and recorded
        assert path.name in read_manifest(tmp_path)["shards"]
    monkeypatch.delenv(FAULT_ENV)
    logs: list[str] = []
    _generate(tmp_path, logs, workers=2)
    _assert_same_dataset(reference, tmp_path)


def test_a_failing_worker_start_up_ends_the_run_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "fail-init")
    started = time.monotonic()
    with pytest.raises(SynthError, match="worker process failed to start: RuntimeError: start-up failure"):
        _generate(tmp_path, workers=2)
    assert time.monotonic() - started < 60
    assert list_shards(tmp_path) == []


def test_truncated_and_corrupted_shards_are_detected_and_redone(reference, tmp_path):
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    truncated = tmp_path / "shard-000001.h5"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    corrupted = tmp_path / "shard-000002.h5"
    data = bytearray(corrupted.read_bytes())
    data[-100] ^= 0xFF  # inside the last image chunk; the HDF5 structure still opens
    corrupted.write_bytes(bytes(data))
    logs: list[str] = []
    _generate(tmp_path, logs)
    assert any("redoing shard-000001.h5" in line for line in logs)
    assert any("redoing shard-000002.h5" in line and "checksum" in line for line in logs)
    assert not any("shard-000000" in line for line in logs)
    _assert_same_dataset(reference, tmp_path)
    untouched = {p.name: p.stat().st_mtime_ns for p in list_shards(tmp_path)}
    logs.clear()
    _generate(tmp_path, logs)
    assert any("complete" in line for line in logs)
    assert untouched == {p.name: p.stat().st_mtime_ns for p in list_shards(tmp_path)}


def test_two_machines_with_shard_subsets_fill_one_dataset(reference, tmp_path):
    tool = _load_tool()
    common = ["--out", str(tmp_path), "--num", str(NUM), "--shard-size", str(SHARD), "--size", str(SIZE),
              "--seed", str(SEED), "--no-progress"]
    assert tool.main(common + ["--shard-index", "0", "--shard-count", "2", "--workers", "1"]) == 0
    assert [p.name for p in list_shards(tmp_path)] == ["shard-000000.h5", "shard-000002.h5"]
    assert tool.main(common + ["--shard-index", "1", "--shard-count", "2"]) == 0
    assert read_manifest(tmp_path)["num_samples"] == NUM
    _assert_same_dataset(reference, tmp_path)
    assert parse_shard_ranges("0, 2-4,3", 5) == [0, 2, 3, 4]


def test_bad_requests_fail_with_clear_messages(reference, tmp_path, capsys, monkeypatch):
    tool = _load_tool()
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--out", str(tmp_path), "--shard-index", "1"])
    assert exit_info.value.code == 2 and "--shard-count" in capsys.readouterr().err

    assert tool.main(["--out", str(tmp_path / "a"), "--num", "7", "--shard-size", "3", "--shards", "2-5"]) == 2
    assert "outside the 3 shards" in capsys.readouterr().err

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert tool.main(["--out", str(blocker / "out"), "--num", "2", "--size", str(SIZE)]) == 2
    assert "expected a writable directory" in capsys.readouterr().err

    empty = tmp_path / "no-images"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    assert tool.main(["--out", str(tmp_path / "b"), "--num", "2", "--backgrounds", str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "holds no images" in err

    with pytest.raises(SynthError, match="different settings.*seed"):
        _generate(reference, seed=SEED + 1)

    monkeypatch.setattr("render.synth.shutil.disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(SynthError, match="not enough free disk space"):
        _generate(tmp_path / "c")
    monkeypatch.undo()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("render.synth.write_shard", full_disk)
    with pytest.raises(SynthError, match="no space left on device while writing shard-000000.h5"):
        _generate(tmp_path / "d")


def _environment_after_exec(pid: int, timeout_s: float = 30.0) -> list[bytes]:
    """The environment a spawned process started its interpreter with. multiprocessing returns from the spawn
    before the child has exec'd; until then /proc shows the parent's command line and start-up environment."""
    deadline = time.monotonic() + timeout_s
    while b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"process {pid} did not start the spawned interpreter"
        time.sleep(0.01)
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_pool_workers_start_with_one_blas_and_openmp_thread_each(tmp_path, monkeypatch):
    """Spawned render workers get OMP/OpenBLAS/MKL_NUM_THREADS=1 in the environment they start with (read
    back from /proc): BLAS and OpenMP pools size themselves at import, and an idle pool thread spinning
    beside each renderer costs CPU and preemptions on a machine the workers already fill."""
    import render.synth as synth

    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    started: list[dict] = []

    class RecordingPool(synth.ProcessPoolExecutor):
        def submit(self, *args, **kwargs):
            future = super().submit(*args, **kwargs)
            for process in (self._processes or {}).values():
                environ = _environment_after_exec(process.pid)
                started.append({name: next((v.split(b"=", 1)[1].decode() for v in environ
                                            if v.startswith(name.encode() + b"=")), None) for name in names})
            return future

    monkeypatch.setattr(synth, "ProcessPoolExecutor", RecordingPool)
    _generate(tmp_path, workers=2)
    assert started and all(found == dict.fromkeys(names, "1") for found in started)
    assert all(name not in os.environ for name in names)  # the parent's own environment is left as it was
