"""Bad input to every tool: one line naming the file or key, what was expected and what was found.

The tools' ``main(argv)`` run in-process (fast); ``run_tool`` is what keeps tracebacks away, so an
exception escaping ``main`` fails the test. Read-only and full output directories are simulated
(the tests may run as root, for whom permissions do not block writes): the write probe raises
EROFS, or every atomic write raises ENOSPC when it flushes.
"""
from __future__ import annotations

import errno
import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from datasets.shard_format import file_sha256, record_shards
from tests.training_fixtures import random_checkpoint, tiny_shards

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_error_line(capsys, *fragments: str) -> str:
    """The single line the tool wrote to stderr; it must contain every fragment."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def usage_error(capsys, tool, argv, *fragments):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv)
    assert exit_info.value.code == 2
    return one_error_line(capsys, *fragments)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.mktemp("errors") / "test", samples=4, seed=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("run") / "model.pt", "rgb")


def planted(source: Path, target: Path, shard: str, sample: int, key: str, value) -> Path:
    """A copy of ``source`` whose ``shard`` holds ``value`` in ``key`` of ``sample`` (manifest updated)."""
    shutil.copytree(source, target)
    path = target / shard
    with h5py.File(path, "a") as f:
        array = f[key][sample]
        array.reshape(-1)[-1] = value
        f[key][sample] = array
    record_shards(target, [{"name": shard, "num_samples": 2, "sha256": file_sha256(path),
                            "bytes": path.stat().st_size}])
    return target


def flipped(source: Path, target: Path, shard: str) -> Path:
    shutil.copytree(source, target)
    data = bytearray((target / shard).read_bytes())
    data[len(data) // 2] ^= 0x01
    (target / shard).write_bytes(bytes(data))
    return target


@pytest.fixture
def read_only(monkeypatch):
    """Writing into any new file under the output directory fails as on a read-only mount."""
    original = Path.write_bytes

    def refuse(self, data):
        if self.name.startswith(".write-test-"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)


@pytest.fixture
def full_disk(monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("datasets.atomic.os.fsync", no_space)


# --------------------------------------------------------------------------- render_synth


def test_render_synth_rejects_bad_values_and_files(tmp_path, capsys):
    tool = _tool("render_synth")
    base = ["--out", str(tmp_path / "out"), "--num", "4", "--shard-size", "2", "--size", "32", "--no-progress"]
    assert tool.main(base + ["--set", "margin=abc"]) == 2
    one_error_line(capsys, "SynthConfig.margin", "should be a number", "'abc'")
    assert tool.main(base + ["--set", "pose_range=5"]) == 2
    one_error_line(capsys, "SynthConfig.pose_range", "[low, high]", "found 5")
    assert tool.main(base + ["--set", "background_families=nois"]) == 2
    one_error_line(capsys, "SynthConfig.background_families", "'noise'", "found ['nois']")
    assert tool.main(base + ["--shards", "7-3"]) == 2
    one_error_line(capsys, "--shards", "'7-3' is reversed", "7 > 3")
    usage_error(capsys, tool, base + ["--shard-index", "0", "--shard-count", "0"], "--shard-count",
                "expected a positive integer, found 0")

    not_a_pickle = tmp_path / "hand.pkl"
    not_a_pickle.write_text("this is text")
    assert tool.main(base + ["--mano", str(not_a_pickle)]) == 2
    one_error_line(capsys, str(not_a_pickle), "not a readable pickle", "expected a pickle file")

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.")  # os.system('touch …')
    assert tool.main(base + ["--mano", str(evil)]) == 2
    one_error_line(capsys, str(evil), "refusing to load global 'os.system'", "expected plain data")
    assert not marker.exists()


def test_background_families_is_a_list_of_names_not_letters():
    from render.sampling import SynthConfig

    assert SynthConfig.from_dict({"background_families": "noise"}).background_families == ("noise",)
    assert SynthConfig.from_dict({"background_families": "noise,stripes"}).background_families == ("noise", "stripes")
    assert SynthConfig.from_dict({"margin": 0}).margin == 0.0 and SynthConfig().to_json() == SynthConfig(
        margin=0.06).to_json()


# --------------------------------------------------------------------------- show_samples


def test_show_samples_rejects_counts_and_unwritable_outputs(shards, tmp_path, capsys, monkeypatch, read_only):
    tool = _tool("show_samples")
    usage_error(capsys, tool, [str(shards), "--count", "0"], "--count", "expected a positive integer, found 0")
    usage_error(capsys, tool, [str(shards), "--columns", "0"], "--columns", "expected a positive integer, found 0")
    out = tmp_path / "ro" / "grid.png"
    assert tool.main([str(shards), "--out", str(out)]) == 2
    one_error_line(capsys, str(out.parent), "expected a writable directory", "read-only file system")
    assert not out.parent.exists()


def test_show_samples_on_a_full_disk_leaves_nothing(shards, tmp_path, capsys, full_disk):
    tool = _tool("show_samples")
    out = tmp_path / "grid.png"
    assert tool.main([str(shards), "--out", str(out)]) == 2
    one_error_line(capsys, str(tmp_path), "no space left on device")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- evaluate


def test_evaluate_rejects_bad_options(shards, checkpoint, tmp_path, capsys, read_only):
    tool = _tool("evaluate")
    base = ["--checkpoint", str(checkpoint), "--data", str(shards), "--no-progress"]
    usage_error(capsys, tool, base + ["--image-size", "7"], "--image-size", "at least 32", "found 7")
    if not torch.cuda.is_available():
        assert tool.main(base + ["--device", "cuda"]) == 1
        one_error_line(capsys, "--device cuda", "expected a CUDA device", "found none")
    assert tool.main(base + ["--out", str(tmp_path / "ro")]) == 1
    one_error_line(capsys, str(tmp_path / "ro"), "expected a writable directory", "read-only file system")


def test_evaluate_on_a_full_disk(shards, checkpoint, tmp_path, capsys, full_disk):
    tool = _tool("evaluate")
    assert tool.main(["--checkpoint", str(checkpoint), "--data", str(shards), "--out", str(tmp_path / "e"),
                      "--no-progress"]) == 1
    one_error_line(capsys, str(tmp_path / "e"), "no space left on device", "rerun the same command")
    assert not (tmp_path / "e" / "metrics.json").exists() and not list((tmp_path / "e").glob(".*tmp*"))


def test_evaluate_names_the_shard_and_sample_of_a_nan_label(shards, checkpoint, tmp_path, capsys):
    data = planted(shards, tmp_path / "nan", "shard-000001.h5", 1, "joints3d", np.nan)
    assert _tool("evaluate").main(["--checkpoint", str(checkpoint), "--data", str(data), "--out",
                                   str(tmp_path / "e"), "--no-progress"]) == 1
    one_error_line(capsys, str(data / "shard-000001.h5"), "sample [1]", "'joints3d' is NaN or infinite",
                   "expected finite values")
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_evaluate_names_the_samples_of_a_nan_prediction(shards, tmp_path):
    from training.evaluation import NonFiniteValueError, evaluate_model

    class NaNNet(torch.nn.Module):
        def forward(self, x):
            return {"pred": torch.full((x.shape[0], 63), float("nan"))}

    info = {"arch": "resnet18", "width": 8, "in_channels": 3, "modality": "rgb", "image_size": 32}
    with pytest.raises(NonFiniteValueError, match=r"shard-000000.h5 samples \[0, 1\]; .*shard-000001.h5 samples "
                                                  r"\[0, 1\]: the network's prediction 'pred' is NaN"):
        evaluate_model(NaNNet(), info, [shards], tmp_path, progress=False)
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_stops_at_a_flipped_byte_naming_the_shard(shards, checkpoint, tmp_path, capsys):
    data = flipped(shards, tmp_path / "flipped", "shard-000001.h5")
    assert _tool("evaluate").main(["--checkpoint", str(checkpoint), "--data", str(data), "--no-progress"]) == 1
    one_error_line(capsys, str(data / "shard-000001.h5"), "does not match", str(data / "manifest.json"))


def test_evaluate_default_out_is_not_the_runs_own_validation(tmp_path):
    tool = _tool("evaluate")
    run = tmp_path / "run"
    for checkpoint in (run / "model.pt", run / "checkpoints" / "last.pt"):
        out = tool.default_out(checkpoint, ["data/stb_256/test", "data/rhd_256/evaluation"])
        assert out == run.resolve() / "eval_test+evaluation" and out.name != "eval"


# --------------------------------------------------------------------------- train


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs" / "student.yaml"), f"out={out}", f"data.train=[{data}]",
            "data.image_size=32", "data.augment=false", "data.workers=0", "model.width=8", "optim.batch_size=2",
            "optim.epochs=1", "device=cpu", "threads=1", *extra, "--no-progress"]


def test_train_rejects_unwritable_and_full_output_directories(shards, tmp_path, capsys, monkeypatch):
    tool = _tool("train")
    original = Path.write_bytes

    def refuse(self, data):
        if self.name.startswith(".write-test-"):
            raise OSError(errno.EACCES, "Permission denied", str(self))
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    assert tool.main(_train_args(shards, tmp_path / "ro")) == 1
    one_error_line(capsys, "out= ", str(tmp_path / "ro"), "expected a writable directory", "permission denied")
    monkeypatch.undo()

    monkeypatch.setattr("datasets.atomic.os.fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert tool.main(_train_args(shards, tmp_path / "full")) == 1
    one_error_line(capsys, str(tmp_path / "full"), "no space left on device", "rerun the same command to resume")
    assert not list((tmp_path / "full").rglob(".*.tmp-*"))


def test_a_flipped_byte_stops_training_naming_the_shard(shards, tmp_path, capsys):
    data = flipped(shards, tmp_path / "flipped", "shard-000000.h5")
    assert _tool("train").main(_train_args(data, tmp_path / "run")) == 1
    one_error_line(capsys, str(data / "shard-000000.h5"), "SHA-256", "does not match", str(data / "manifest.json"))
    assert not (tmp_path / "run" / "model.pt").exists()


def test_non_finite_loss_names_the_batchs_shard_files_and_samples(shards, tmp_path, capsys):
    data = planted(shards, tmp_path / "nan", "shard-000001.h5", 0, "joints3d", np.inf)
    # batches of 4 in order cover all 4 samples, so the first batch holds the planted one
    assert _tool("train").main(_train_args(data, tmp_path / "run", "optim.batch_size=4")) == 1
    line = one_error_line(capsys, "loss became non-finite", str(data / "shard-000000.h5"),
                          str(data / "shard-000001.h5"))
    assert "samples [0, 1]" in line
    assert not (tmp_path / "run" / "model.pt").exists()


# --------------------------------------------------------------------------- convert_mano / build_hand_model


def test_convert_mano_and_build_hand_model_errors(tmp_path, capsys, read_only):
    not_a_pickle = tmp_path / "MANO_RIGHT.pkl"
    not_a_pickle.write_bytes(pickle.dumps([1, 2])[:5])
    assert _tool("convert_mano").main([str(not_a_pickle)]) == 2
    one_error_line(capsys, str(not_a_pickle), "not a readable pickle")
    assert _tool("build_hand_model").main(["--out", str(tmp_path / "ro" / "hand.npz")]) == 2
    one_error_line(capsys, str(tmp_path / "ro"), "expected a writable directory")
    assert os.listdir(tmp_path) == ["MANO_RIGHT.pkl"]


# --------------------------------------------------------------------------- datasets


def test_freihand_evaluation_without_its_labels_says_where_they_come_from(tmp_path):
    from datasets.errors import DatasetError
    from datasets.freihand import FreiHANDDataset
    from tests.raw_fixtures import write_freihand

    root = write_freihand(tmp_path / "FreiHAND_pub_v2").root
    (root / "evaluation_xyz.json").unlink()
    with pytest.raises(DatasetError, match="evaluation_xyz.json: FreiHAND annotation file not found; .* separate "
                                           "evaluation-annotation release"):
        FreiHANDDataset(root, split="evaluation")


# --------------------------------------------------------------------------- convert_dataset


def test_convert_dataset_errors_and_what_verify_checked(shards, tmp_path, capsys, read_only):
    from tools.convert_dataset import main as convert_tool

    raw = tmp_path / "raw"
    raw.mkdir()
    usage_error(capsys, _ToolModule(convert_tool), ["rhd", "--root", str(raw), "--out", str(tmp_path / "o"),
                                                    "--shard-size", "0"], "--shard-size", "found 0")
    assert convert_tool(["rhd", "--root", str(raw), "--out", str(tmp_path / "ro"), "--no-progress"]) == 2
    one_error_line(capsys, str(tmp_path / "ro"), "expected a writable directory", "read-only file system")
    assert convert_tool(["verify", str(shards)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(f"{shards}: OK; checked 2 shard(s) (2 checksum(s)") and "4 sample(s)" in out[-1]


class _ToolModule:
    def __init__(self, main):
        self.main = main


# --------------------------------------------------------------------------- --help


@pytest.mark.parametrize("tool, argv, defaults", [
    ("render_synth", [], ["samples (default: 50000)", "global seed (default: 0)", "pixels (default: 256)"]),
    ("show_samples", [], ["(default: samples.png)", "number of samples (default: 8)"]),
    ("evaluate", [], ["(default: <run>/eval_<data names>)", "(default: 32)", "(default: cpu)"]),
    ("convert_dataset", ["rhd"], ["pixels (default: 256)", "samples per shard (default: 1000)"]),
    ("demo", [], ["output directory (default: demo_output)", "(default: 0)", "about 5 minutes"]),
    ("convert_mano", [], ["(default: next to the input)"]),
])
def test_every_help_shows_the_defaults(tool, argv, defaults, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool(tool).main(argv + ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for fragment in defaults:
        assert fragment in text, fragment


def test_a_directory_without_manifest_is_read_with_a_warning(shards, tmp_path, capsys):
    from training.data import verify_shard_checksums

    bare = tmp_path / "bare"
    shutil.copytree(shards, bare)
    (bare / "manifest.json").unlink()
    assert verify_shard_checksums([shards, bare])[0] == 2  # the two shards of the directory with a manifest
    one_error_line(capsys, f"warning: {bare} has no manifest.json", "without a checksum check")
