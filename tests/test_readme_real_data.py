"""The README's real-data sequence, command by command, at tiny sizes on the raw fixtures.

The commands are read from README.md itself (sections "Synthetic data" — its first
command —, "Real datasets" and "Training and evaluation"), run in a scratch directory
holding only the raw fixtures under the README's raw paths, with size flags appended
(argparse and ``key=value`` overrides: the last value wins). So every path a command
reads must have been created by an earlier command, and the configs' default paths must
be among them. While training, every sample the training loaders read is recorded: none
comes from an evaluation/test split, neither by identity (source, split, source_index) nor
by image content.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shlex
from pathlib import Path

import h5py
import pytest

from datasets.shards import ShardDataset
from datasets.splits import directory_identity, is_evaluation_split
from tests.raw_fixtures import write_freihand, write_rhd, write_stb
from tests.shard_fixtures import write_synthetic_shards  # noqa: F401  (the README renders data/synth itself)

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "render_synth.py": ["--num", "8", "--size", "64", "--shard-size", "4", "--workers", "1"],
    "convert_dataset.py": ["--size", "48", "--limit", "6", "--no-progress"],
    "train.py": ["optim.epochs=1", "optim.batch_size=2", "data.image_size=32", "model.width=8", "device=cpu",
                 "threads=1", "progress=false", "data.workers=0", "log_every=1"],
    "evaluate.py": ["--batch-size", "4"],
}


def readme_commands(section: str) -> list[list[str]]:
    """The ``python tools/...`` commands of the bash blocks of README section ``## section``."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("python tools/"):
                commands.append(shlex.split(line)[1:])
    return commands


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    from tools import convert_dataset, evaluate, render_synth, train

    tools = {"render_synth.py": render_synth.main, "convert_dataset.py": convert_dataset.main,
             "train.py": train.main, "evaluate.py": evaluate.main}
    script, args = Path(argv[0]).name, argv[1:]
    extra = [] if args[:1] == ["verify"] else TINY[script]
    if args[:1] == ["freihand"]:  # the fixture has 3 training hands, not the paper's 30000 + held-out rest
        extra = extra + ["--option", "paper_train_size=2"]
    code = tools[script](args + extra)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    """A directory with the raw fixtures at the README's raw paths and the repository's configs."""
    write_rhd(tmp_path / "data/RHD_published_v2", "training", num=6, seed=0)
    write_rhd(tmp_path / "data/RHD_published_v2", "evaluation", num=4, seed=1)
    write_stb(tmp_path / "data/STB", frames=1)
    write_freihand(tmp_path / "data/FreiHAND_pub_v2", num_unique=3, num_eval=2)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDKIT_PROGRESS", "0")
    return tmp_path


def _record_training_reads(monkeypatch) -> list[tuple[Path, int]]:
    """Every (shard directory, index) read by a dataset that a training loader built."""
    import training.trainer as trainer

    reads: list[tuple[Path, int]] = []
    building = {"now": False}
    original_init, original_read, original_loader = ShardDataset.__init__, ShardDataset.read_raw, trainer.training_loader

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.read_by_training = building["now"]

    def read_raw(self, index, keys=None):
        if getattr(self, "read_by_training", False):
            reads.append((self.root.resolve(), int(index) % len(self)))
        return original_read(self, index, keys)

    def loader(*args, **kwargs):
        building["now"] = True
        try:
            return original_loader(*args, **kwargs)
        finally:
            building["now"] = False

    monkeypatch.setattr(ShardDataset, "__init__", init)
    monkeypatch.setattr(ShardDataset, "read_raw", read_raw)
    monkeypatch.setattr(trainer, "training_loader", loader)
    return reads


def _sample_identity(directory: Path, index: int) -> tuple[tuple, str]:
    """``((source, split, source_index), sha1 of the stored image)`` of one sample of a shard directory."""
    dataset = ShardDataset(directory)
    shard, local = dataset.locate(index)
    with h5py.File(dataset.shards[shard][0], "r") as f:
        source = str(f.attrs["source"])
        split = str(f.attrs["split"]) if "split" in f.attrs else ""
        number = int(f["source_index"][local]) if "source_index" in f else index
        image = hashlib.sha1(f["rgb"][local].tobytes()).hexdigest()
    return (source, split, number), image


def test_readme_real_data_sequence_keeps_evaluation_samples_out_of_training(scratch, monkeypatch, capsys):
    commands = (readme_commands("Synthetic data")[:1] + readme_commands("Real datasets")
                + readme_commands("Training and evaluation"))
    assert [c[0] for c in commands].count("tools/train.py") >= 5 and commands[-1][0] == "tools/train.py"
    reads = _record_training_reads(monkeypatch)
    printed = {}
    for argv in commands:
        code, out, err = _run(argv, capsys)
        assert code == 0, (argv, err)
        printed[" ".join(argv)] = out

    # every default path of the configs is one the README's commands created
    from training.config import load_config

    for name in ("teacher", "student", "distill", "target"):
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        for path in [*cfg.data.train, *cfg.data.val, cfg.model.init, cfg.distill.teacher, cfg.regularizer.prior]:
            assert not path or Path(path).exists(), (name, path)

    # the evaluation splits were converted, and no sample of them was read by a training loader
    evaluation_dirs = [scratch / "data/rhd_256/evaluation", scratch / "data/stb_256/test"]
    held_out_ids, held_out_images = set(), set()
    for directory in evaluation_dirs:
        assert directory_identity(directory)["evaluation"]
        for index in range(len(ShardDataset(directory))):
            identity, image = _sample_identity(directory, index)
            held_out_ids.add(identity)
            held_out_images.add(image)
    trained_on = {directory for directory, _ in reads}
    assert trained_on == {(scratch / d).resolve() for d in ("data/rhd_256/training", "data/synth", "data/stb_256/train")}
    for directory, index in set(reads):
        identity, image = _sample_identity(directory, index)
        source, split, _ = identity
        assert not is_evaluation_split(source, split), identity
        assert identity not in held_out_ids and image not in held_out_images, (directory, index)

    # STB is evaluated over 20-50 mm, by the end-of-run validation and by evaluate.py, and both say why
    validation = json.loads((scratch / "runs/target_prior/eval/metrics.json").read_text())
    evaluate_output = next(out for command, out in printed.items() if command.startswith("tools/evaluate.py"))
    written = re.search(r"wrote (\S+metrics\.json)", evaluate_output).group(1)
    evaluated = json.loads(Path(written).read_text())
    for metrics in (validation, evaluated):
        assert metrics["pck_range_mm"] == [20.0, 50.0] and metrics["pck_protocol"] == "stb"
        assert "source stb" in metrics["pck_range_reason"]
    # the last command reproduced the target run from its saved config
    assert (scratch / "runs/target_prior_again/model.pt").exists()


def test_training_refuses_evaluation_splits_and_parents_of_splits(scratch, capsys):
    from tools.convert_dataset import main as convert_tool
    from tools.train import main as train_tool

    assert convert_tool(["rhd", "--root", "data/RHD_published_v2", "--out", "data/rhd_256", *TINY["convert_dataset.py"]]) == 0
    capsys.readouterr()
    student = ["--config", "configs/student.yaml", *TINY["train.py"], "out=runs/s"]
    assert train_tool(student + ["data.train=[data/rhd_256/evaluation]"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data/rhd_256/evaluation: holds rhd's evaluation/test split (evaluation)" in err
    assert "data.allow_eval_split=true" in err
    assert train_tool(student + ["data.train=[data/rhd_256]"]) == 1
    err = capsys.readouterr().err
    assert "data/rhd_256: holds one directory per split (evaluation, training), not shards" in err
    assert not Path("runs/s").exists()  # refused before anything was written
    assert train_tool(student + ["data.train=[data/rhd_256/evaluation]", "data.allow_eval_split=true"]) == 0
    capsys.readouterr()
    from tools.evaluate import main as evaluate_tool

    assert evaluate_tool(["--checkpoint", "runs/s/model.pt", "--data", "data/rhd_256", "--no-progress"]) != 0
    assert "data/rhd_256: holds one directory per split (evaluation, training)" in capsys.readouterr().err
    assert convert_tool(["verify", "data/rhd_256"]) == 2
    assert "data/rhd_256: holds one directory per split" in capsys.readouterr().err
