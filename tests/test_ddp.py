"""torchrun with 2 CPU processes (gloo) equals 1 process with the doubled batch.

BatchNorm: per-process batch statistics differ from whole-batch statistics, and PyTorch's
SyncBatchNorm (used on CUDA) does not run on CPU, so these runs use ``model.freeze_bn=true``
(BatchNorm with running statistics); everything else — data split, gradient averaging, the
manual all-reduce of the meta-gradients, checkpointing on rank 0 — is the real code path.
θ is equal to tolerance; the learned φ only to first order in α (see the second test).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training_fixtures import IMAGE, WIDTH, random_checkpoint, tiny_config, tiny_shards, weights
from training.checkpoint import load_checkpoint
from training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _overrides(out, shards, extra):
    return [f"out={out}", f"data.train=[{shards}]", "device=cpu", "threads=1", "progress=false", "log_every=1",
            "data.workers=0", f"data.image_size={IMAGE}", f"model.width={WIDTH}", "model.freeze_bn=true",
            "data.augment=true", "optim.batch_size=8", "optim.epochs=2", "optim.lr=1e-3", "seed=3", *extra]


def _torchrun(config, overrides):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "tools/train.py", "--config", config, *overrides]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=atol, msg=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    return {"root": root, "shards": tiny_shards(root / "shards", samples=16, seed=2),
            "teacher": random_checkpoint(root / "teacher.pt", "depth", seed=1)}


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch in the environment")
def test_two_processes_equal_one_process_with_the_doubled_batch(data):
    root, shards = data["root"], data["shards"]
    _torchrun("configs/student.yaml", _overrides(root / "ddp_student", shards, []))
    single = train(tiny_config("student", root / "one_student", [shards],
                               _overrides(root / "one_student", shards, [])))
    ddp_state = load_checkpoint(root / "ddp_student" / "model.pt")
    assert ddp_state["step"] == single.steps == 4  # 16 samples / global batch 8 x 2 epochs
    _assert_same(weights(root / "ddp_student" / "model.pt"), weights(single.checkpoint), atol=1e-5)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is installed with torch in the environment")
def test_meta_learning_under_ddp_averages_the_prior_gradient(data):
    root, shards = data["root"], data["shards"]
    extra = [f"distill.teacher={data['teacher']}", "prior.learn=true", "prior.beta=5.0"]
    _torchrun("configs/distill.yaml", _overrides(root / "ddp_distill", shards, extra + ["model.init="]))
    single = train(tiny_config("distill", root / "one_distill", [shards],
                               _overrides(root / "one_distill", shards, extra + ["model.init="])))
    _assert_same(weights(root / "ddp_distill" / "model.pt"), weights(single.checkpoint), atol=1e-5)
    # φ: each process takes the virtual step θ̈ = θ − α∇L_REG with its own half of the batch (the
    # meta learner does not all-reduce that inner gradient), then the φ-gradients are averaged. The
    # result equals the single-process φ to first order in α only: measured relative error 0.07,
    # against 0.6 when the φ-gradients are not averaged (rank 0's half batch alone).
    flat = lambda phi: torch.cat([v.flatten() for v in phi.values()])  # noqa: E731
    phi_ddp = flat(load_checkpoint(root / "ddp_distill" / "model.pt")["phi"])
    phi_one = flat(load_checkpoint(single.checkpoint)["phi"])
    assert phi_one.abs().max() > 0
    assert float((phi_ddp - phi_one).norm() / phi_one.norm()) < 0.2
