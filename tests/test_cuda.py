"""The CUDA path, on a machine with a GPU (skipped elsewhere; the CPU-only messages are tested in
test_loop and test_launcher): each model trains on the GPU and learns, a checkpoint saved there
resumes, and the launcher runs all three side by side on it (spawned workers, not forked). With
two GPUs or more: a run on two ranks (nccl, one GPU each) trains as one GPU does, counts each test
image once, resumes on one GPU, and fails with the reason when a rank is killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dashboard import runlog
from tests.conftest import REPO
from tests.helpers import children, worker_of
from trainers import data
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.reporting import EPOCH_TRAIN_LOSS, TEST_ACC, Recorder

# `make test-gpu` sets LIVETRAIN_REQUIRE_GPU: there, a machine without CUDA fails these tests
REQUIRED = bool(os.environ.get("LIVETRAIN_REQUIRE_GPU"))
pytestmark = pytest.mark.skipif(not torch.cuda.is_available() and not REQUIRED, reason="no CUDA GPU here")


@pytest.fixture(scope="module")
def fashion() -> data.Dataset:
    return data.load("fashion-mnist")


@pytest.mark.parametrize("model, settings", [
    ("softmax", {}), ("softmax", {"momentum": 0.9, "loss": "bce"}), ("softmax-nn", {}), ("mlp", {}),
    ("mlp", {"loss": "mse", "activation": "tanh", "optimizer": "adamw"}), ("cnn", {}), ("lenet", {"schedule": "step"}),
])
def test_each_model_trains_on_the_gpu(fashion: data.Dataset, model: str, settings: dict, tmp_path: Path) -> None:
    """Each model and a few experiment settings (scratch momentum buffers, the one-hot losses)."""
    rec = Recorder()
    result = fit(RunConfig(model, epochs=2, device="cuda", limit=8192, **settings), rec, dataset=fashion,
                 run_dir=tmp_path)
    assert result.status == "finished"
    assert rec.series(TEST_ACC)[-1] > 0.6  # learned (chance: 0.1)
    gallery = rec.of("gallery")[-1]
    assert gallery["shape"][0] == len(rec.of("predictions")[-1]["predicted"])  # reported tensors reach the page usable
    resumed = fit(RunConfig(model, epochs=3, device="cuda", limit=8192, **settings), Recorder(), dataset=fashion,
                  run_dir=tmp_path, resume=True)
    assert resumed.status == "finished" and len(resumed.history) == 3


def test_the_launcher_trains_three_runs_on_the_gpu(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "launch.py", "run", "--headless", "--device", "cuda", "--limit", "8192",
         "--epochs", "2", "--log-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    logs = sorted(tmp_path.glob("*/*/log.jsonl"))
    assert len(logs) == 3
    for log in logs:
        record = runlog.read(log)
        assert record.status == "finished" and record.config["device"] == "cuda"
        assert record.latest[TEST_ACC] > 0.6


def test_a_queued_sweep_on_the_gpu(tmp_path: Path) -> None:
    """Queued runs on CUDA come from spawn, not the fork server."""
    result = subprocess.run(
        [sys.executable, "launch.py", "run", "--headless", "--device", "cuda", "--models", "mlp",
         "--set", "mlp.lr=1e-3,3e-3,1e-2", "--parallel", "2", "--limit", "4096", "--epochs", "1",
         "--log-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert [runlog.read(log).status for log in sorted(tmp_path.glob("*/*/log.jsonl"))] == ["finished"] * 3


two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="a run on two ranks takes two GPUs")


def _launch(tmp_path: Path, *args: str, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "launch.py", "run", "--headless", "--device", "cuda", "--log-dir", str(tmp_path), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@two_gpus
def test_a_run_on_two_gpus_with_nccl_trains_as_one(tmp_path: Path, fashion: data.Dataset) -> None:
    """Two ranks, one GPU each (nccl): per-epoch train losses as one GPU's at the same global
    batch (1e-3: cuDNN's sums are not bit-reproducible), each test image once, then the checkpoint
    resumed on one GPU."""
    config = RunConfig("mlp", epochs=2, limit=4000, dropout=0.0, schedule="constant", device="cuda")
    single = fit(config, Recorder(), dataset=fashion)
    result = _launch(tmp_path, "--models", "mlp", "--nproc", "2", "--epochs", "2", "--limit", "4000",
                     "--set", "mlp.dropout=0", "--set", "mlp.schedule=constant")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (log,) = tmp_path.glob("*/mlp/log.jsonl")
    record = runlog.read(log)
    assert record.config["nproc"] == 2 and record.config["device"] == "cuda"
    assert [sum(map(sum, c["matrix"])) for c in record.confusions] == [10_000, 10_000]
    losses = [r[EPOCH_TRAIN_LOSS] for r in record.scalars if r.get(EPOCH_TRAIN_LOSS) is not None]
    assert losses == pytest.approx([h[EPOCH_TRAIN_LOSS] for h in single.history], abs=1e-3)
    resumed = _launch(tmp_path, "--resume", str(log.parent.parent), "--epochs", "3", "--nproc", "1")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert runlog.read(log).status == "finished" and len(runlog.read(log).confusions) == 3


@two_gpus
def test_kill_9_of_a_gpu_rank_fails_the_run(tmp_path: Path) -> None:
    import signal
    import time

    proc = _launch(tmp_path, "--models", "cnn", "--nproc", "2", "--epochs", "50", "--limit", "20000", wait=False)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/cnn/log.jsonl")) or b'"scalars"' not in next(
            tmp_path.glob("*/cnn/log.jsonl")).read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # this run's ranks: the spawned children of its worker (the agent), not any on the machine
    worker = worker_of(proc.pid, next(tmp_path.glob("*/cnn")))
    ranks = [pid for pid in children(worker) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(ranks) == 2
    os.kill(max(ranks), signal.SIGKILL)  # the last rank the agent started
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, out + err
    record = runlog.read(next(tmp_path.glob("*/cnn/log.jsonl")))
    assert record.status == "failed" and "was killed (SIGKILL)" in record.states[-1]["reason"]


@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="for a machine with one GPU")
def test_two_ranks_on_one_gpu_are_refused_before_anything_starts(tmp_path: Path) -> None:
    result = _launch(tmp_path, "--models", "mlp", "--nproc", "2", "--epochs", "1")
    assert result.returncode != 0 and "takes one GPU per rank, and torch sees 1" in result.stderr
    assert "Traceback" not in result.stderr
