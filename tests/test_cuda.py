"""The CUDA path, on a machine with a GPU (skipped elsewhere; the CPU-only messages are tested in
test_loop and test_launcher): each model trains on the GPU and learns, a checkpoint saved there
resumes, and the launcher runs all three side by side on it (spawned workers, not forked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dashboard import runlog
from tests.conftest import REPO
from trainers import data
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.reporting import TEST_ACC, Recorder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


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
    gallery = rec.prediction_calls[-1]
    assert gallery["images"].dtype == torch.uint8  # reported tensors reach the dashboard usable
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
