"""One run on two processes with torch.distributed (gloo, on this CPU), started by torch's own
elastic launcher: the same numbers as one process at the same global batch, every test image
counted once, rank 0 alone reporting."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from dashboard.launch.plan import check_devices
from dashboard.launch.ranks import FAILURE_NOTE, failure_reason, rank_error, rank_threads
from tests.conftest import free_port
from tests.ddp_ranks import Scripted, train
from trainers import data
from trainers.config import ConfigError, RunConfig
from trainers.distributed import World
from trainers.checkpoints import CHECKPOINT, read_checkpoint
from trainers.control import Request
from trainers.loop import DeviceError, fit
from trainers.reporting import EPOCH_TRAIN_LOSS, TEST_ACC, Recorder, RunState

pytestmark = pytest.mark.slow


def on_ranks(config: RunConfig, ranks: int = 2, run_dir: Path | None = None, resume: bool = False,
             inbox: Scripted | None = None) -> dict[int, dict]:
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks, rdzv_backend="c10d",
                          rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn", run_id="test")
    return elastic_launch(launch, train)(config.to_dict(), str(run_dir) if run_dir else None, resume, inbox)


def test_parts_cover_every_item_once() -> None:
    for n in (0, 1, 7, 10_000, 10_001):
        for size in (1, 2, 3):
            parts = [World(r, size).part(n) for r in range(size)]
            covered = [i for p in parts for i in range(n)[p]]
            assert covered == list(range(n)) and max(len(range(n)[p]) for p in parts) - min(
                len(range(n)[p]) for p in parts) <= 1
    assert World(1, 2).loss_scale(53, 105) == pytest.approx(2 * 53 / 105) and World().loss_scale(5, 9) == 1.0


def test_two_ranks_train_as_one_process_at_the_same_global_batch() -> None:
    """An MLP without dropout, global batch 128 over 1,001 images (the last batch, 105, splits
    52 / 53): per-epoch train losses within 1e-4 of one process's, the same test accuracy, every
    one of the 10,000 test images counted once, and one rank's report."""
    config = RunConfig("mlp", epochs=2, limit=1001, batch_size=128, dropout=0.0, seed=5, threads=1, device="cpu")
    single = fit(config, Recorder(), dataset=data.load("fashion-mnist"))
    ranks = on_ranks(config)
    main = ranks[0]
    assert ranks[1]["rows"] == 0  # rank 1 reported nothing
    assert [h[EPOCH_TRAIN_LOSS] for h in main["history"]] == pytest.approx(
        [h[EPOCH_TRAIN_LOSS] for h in single.history], abs=1e-4)
    assert [h[TEST_ACC] for h in main["history"]] == pytest.approx([h[TEST_ACC] for h in single.history], abs=2e-4)
    assert main["confusion"] == [10_000, 10_000]  # each test image once, no sampler padding
    assert len(main["train_loss"]) == 2 * 8  # global batches, not a rank's


def test_two_ranks_take_each_request_at_the_same_batch_as_one_process(tmp_path: Path) -> None:
    """Rank 0 alone reads the inbox; both ranks apply what it decided at the same batch: a set lr,
    a refused value, a pause held over several waits (the ranks meet while paused, so nothing
    times out), a resume, and a fork that stops the run, its checkpoint written by rank 0. The
    numbers are one process's with the same requests: had rank 1 missed one, its weights would
    part from rank 0's and the global losses from one process's."""
    config = RunConfig("mlp", epochs=2, limit=1001, batch_size=128, dropout=0.0, seed=5, threads=1, device="cpu",
                       schedule="constant")

    def script() -> Scripted:
        return Scripted({3: [Request("s", "set", {"lr": 0.005}, "page"), Request("bad", "set", {"lr": -1.0}, "page")],
                         5: [Request("p", "pause", source="page")],
                         11: [Request("f", "fork", {}, "page", {"into": "f", "stop_parent": True})]},
                        while_paused=[None, None, None, Request("r", "resume", source="page")])

    single = Recorder()
    alone = fit(config, single, tmp_path / "one" / "run", dataset=data.load("fashion-mnist"), inbox=script())
    ranks = on_ranks(config, run_dir=tmp_path / "two" / "run", inbox=script())
    main = ranks[0]
    assert alone.status == RunState.INTERRUPTED and main["status"] == ranks[1]["status"] == "interrupted"
    assert main["reason"] == alone.reason == ("stopped from the page, forked into f; "
                                              "its checkpoint at epoch 1.38 is kept")
    assert main["lrs"] == [1e-3] * 3 + [0.005] * 8  # 11 batches, the lr set after the 3rd
    assert main["train_loss"] == pytest.approx(single.series("train/loss"), abs=1e-4)
    said = [(c["id"], c["applied"], c["step"] if "step" in c else None) for c in main["controls"]]
    assert [(c["id"], c["applied"]) for c in main["controls"]] == [("s", True), ("bad", False), ("p", True),
                                                                    ("r", True), ("f", True)], said
    assert [s for s in main["states"] if s[0] == "paused"] == [("paused", "paused (page)")]
    assert ranks[1]["rows"] == 0 and ranks[1]["controls"] == []  # rank 1 applied them, reporting nothing
    fork = read_checkpoint(tmp_path / "two" / "f" / CHECKPOINT, config)
    assert fork["fork"] and fork["config"]["lr"] == 0.005
    assert (tmp_path / "two" / "run" / CHECKPOINT).is_file()


def test_a_cuda_group_has_a_backend_for_the_cpu_sums() -> None:
    """The per-batch sums are CPU tensors: on CUDA the group names gloo for them beside nccl
    (nccl alone has no CPU backend: every multi-GPU run would fail at its first batch). The
    nccl side needs GPUs: tests/test_cuda.py runs it where there are two (`make test-gpu`)."""
    from trainers.distributed import backend

    assert backend("cpu") == "gloo"
    assert dict(part.split(":") for part in backend("cuda").split(",")) == {"cpu": "gloo", "cuda": "nccl"}


def test_the_scratch_softmax_says_it_trains_on_one_process() -> None:
    with pytest.raises(Exception, match="one process only"):
        on_ranks(replace(RunConfig("softmax", epochs=1, limit=256, threads=1, device="cpu")))
    with pytest.raises(ConfigError, match="one process only; use softmax-nn"):
        RunConfig("softmax", nproc=2).resolved()
    with pytest.raises(ConfigError, match="nproc must be from 1 to 64, not 0"):
        RunConfig("mlp", nproc=0).resolved()


def test_a_checkpoint_moves_between_two_ranks_and_one_process(tmp_path: Path) -> None:
    """Written by rank 0 as one process writes it, so either resumes the other's: 2 ranks for an
    epoch then 1 process for the second, and 1 process then 2 ranks, train as 2 epochs on one."""
    config = RunConfig("mlp", epochs=1, limit=600, batch_size=100, dropout=0.0, schedule="constant", seed=3, threads=1,
                       device="cpu")
    ds = data.load("fashion-mnist")
    whole = [h[EPOCH_TRAIN_LOSS] for h in fit(replace(config, epochs=2), Recorder(), dataset=ds).history]

    on_ranks(config, run_dir=tmp_path / "a")
    assert read_checkpoint(tmp_path / "a" / CHECKPOINT, config)["epochs_done"] == 1
    resumed = fit(replace(config, epochs=2), Recorder(), tmp_path / "a", resume=True, dataset=ds)
    assert [h[EPOCH_TRAIN_LOSS] for h in resumed.history] == pytest.approx(whole, abs=1e-4)

    fit(config, Recorder(), tmp_path / "b", dataset=ds)
    back = on_ranks(replace(config, epochs=2), run_dir=tmp_path / "b", resume=True)[0]
    assert [h[EPOCH_TRAIN_LOSS] for h in back["history"]] == pytest.approx(whole, abs=1e-4)


class Failure:
    """torch's ProcessFailure, as failure_reason reads it."""

    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode

    def signal_name(self) -> str:
        return signal.Signals(-self.exitcode).name


def test_the_reason_of_a_failed_run_names_the_rank_that_caused_it(tmp_path: Path) -> None:
    def note(rank: int, error: str, at: float, collective: bool = False) -> None:
        (tmp_path / FAILURE_NOTE.format(rank=rank)).write_text(json.dumps(
            {"rank": rank, "time": at, "error": error, "collective": collective, "traceback": "Traceback ..."}))

    note(0, "a collective failed, most likely another rank stopped (Connection reset)", 5.0, collective=True)
    assert failure_reason({1: Failure(-9)}, tmp_path, 2) == (
        "rank 1 of 2 was killed (SIGKILL); the other ranks were stopped", "")
    assert failure_reason({0: Failure(1)}, tmp_path, 2)[0] == (
        "rank 1 of 2 ended unexpectedly (killed?), and the other ranks' collectives failed")
    note(1, "ValueError: bad batch", 6.0)  # its own error outranks the collective's, though later
    assert failure_reason({1: Failure(1), 0: Failure(-15)}, tmp_path, 2) == (
        "rank 1 of 2 failed: ValueError: bad batch", "Traceback ...")
    for path in tmp_path.iterdir():
        path.unlink()
    assert failure_reason({0: Failure(-15), 1: Failure(2)}, tmp_path, 2)[0] == (
        "rank 0 of 2 ended with SIGTERM; the other ranks were stopped")


def test_each_rank_gets_its_share_of_the_runs_threads() -> None:
    assert rank_threads(RunConfig("cnn", threads=4, nproc=2)).threads == 2
    assert rank_threads(RunConfig("cnn", threads=1, nproc=2)).threads == 1
    assert rank_threads(RunConfig("cnn", nproc=2)).threads is None


def test_a_run_on_more_cuda_ranks_than_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceError, match="nproc 2 on CUDA takes one GPU per rank, and torch sees 1; "
                                          "use --set mlp.nproc=1 or --device cpu"):
        check_devices([RunConfig("mlp", device="cuda", nproc=2, label="mlp")])
    check_devices([RunConfig("mlp", device="cuda", label="mlp")])


def test_a_failed_collective_is_said_in_one_short_line(tmp_path: Path) -> None:
    gloo = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
                        "[127.0.0.1]:64138: Connection reset by peer. This is typically caused by a remote worker")
    assert rank_error(gloo, tmp_path) == ("a collective failed, most likely another rank stopped "
                                          "(Read error [127.0.0.1]:64138: Connection reset by peer)")
    assert rank_error(ValueError("bad"), tmp_path) == "ValueError: bad"
