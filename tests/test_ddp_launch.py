"""A run on two processes (`--set RUN.nproc=2`) as a user launches it, beside runs on one: one run
on the page, saying world size 2, every test image counted once; a rank killed with -9 fails the
run, with the reason, and leaves no process; Ctrl-C stops every rank, and the run resumes on one
process; the `torchrun` entry on two "nodes" of 127.0.0.1 draws the run on a live server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboard import windows
from dashboard.runlog import LOG_NAME, read
from dashboard.server import ServerProcess
from tests.conftest import free_port
from tests.helpers import (
    assert_windows_match_logs, breaks_at_fifth_batch, children, finish, gone, launch_dir, launched, livetrain,
    parent_pid, server_state, training, wait_for, worker_of,
)
from trainers.checkpoints import CHECKPOINT

pytestmark = pytest.mark.slow


def worker_of_ranks(launcher: int, run_dir: Path) -> int:
    """The worker of a run on several processes: the parent of rank 0, which writes the run log."""
    writer = worker_of(launcher, run_dir)
    assert parent_pid(writer) != launcher, "rank 0 is the worker's child"
    return parent_pid(writer)


def ranks_of(worker: int, run_dir: Path) -> tuple[int, list[int]]:
    """(rank 0, the other ranks) of a worker: its spawned children; rank 0 writes the run log."""
    spawned = [p for p in children(worker) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    writing = [p for p in spawned if any(os.readlink(fd) == str(run_dir / LOG_NAME)
                                         for fd in Path(f"/proc/{p}/fd").iterdir())]
    assert len(spawned) == 2 and len(writing) == 1, (spawned, writing)
    return writing[0], [p for p in spawned if p != writing[0]]


def test_a_run_on_two_ranks_beside_two_on_one_is_one_run_on_the_page(visdom_server: ServerProcess,
                                                                      tmp_path: Path) -> None:
    url = visdom_server.config.url
    code, out, err = finish(livetrain(tmp_path, "run", "--models", "mlp:ddp,softmax-nn,mlp:one", "--set",
                                      "ddp.nproc=2", "--epochs", "1", "--limit", "2000", "--visdom-url", url,
                                      "--env", "ddp"))
    assert code == 0, out + err
    assert err == "" and "All 3 run(s) finished" in out
    runs = launch_dir(tmp_path / "runs")
    run_dirs = [runs / label for label in ("ddp", "softmax-nn", "one")]
    state = server_state(url, "ddp")
    # every window holds each run's traces once, as its log has them (the ranks' would be twice)
    assert_windows_match_logs(state, run_dirs, max_points=1000)
    names = [d["name"] for d in state[windows.COMPARE_BY_METRIC["train/loss"].win]["content"]["data"]]
    assert names.count("ddp") == names.count("one") == 1, names
    record = read(runs / "ddp")
    assert record.config["nproc"] == 2 and [s["state"] for s in record.states] == ["running", "finished"]
    assert [sum(map(sum, c["matrix"])) for c in record.confusions] == [10_000]  # each test image once
    rows = [row for row in state[windows.RUNS_WIN]["content"].split("<tr>") if "&#9632;</span> ddp<" in row]
    assert len(rows) == 1 and rows[0].endswith(">2</td></tr>") and ">ranks</th>" in state[windows.RUNS_WIN]["content"]


def test_kill_9_of_one_rank_fails_its_run_and_leaves_no_process(tmp_path: Path) -> None:
    proc = livetrain(tmp_path, "run", "--headless", "--models", "cnn:ddp,mlp", "--set", "ddp.nproc=2",
                     "--epochs", "3", "--limit", "12000")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "ddp"))
    worker = worker_of_ranks(proc.pid, runs / "ddp")
    rank0, (rank1,) = ranks_of(worker, runs / "ddp")
    everyone = [proc.pid, worker, *children(worker)]
    os.kill(rank1, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: read(runs / "ddp", keep_scalars=False).status == "failed", timeout=60)
    assert time.monotonic() - killed < 60
    code, out, err = finish(proc)
    assert code == 1, out + err
    reason = "rank 1 of 2 was killed (SIGKILL); the other ranks were stopped"
    assert f"ddp failed: {reason}" in out and "Traceback" not in err
    assert read(runs / "ddp").states[-1]["reason"] == reason
    assert read(runs / "mlp").status == "finished"  # the launch's other run went on
    wait_for(lambda: gone(everyone), timeout=10)
    assert rank0 in everyone


def ignores(pid: int, sig: int) -> bool:
    """Whether process `pid` ignores signal `sig` (its SigIgn mask in /proc)."""
    mask = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask.split()[1], 16) >> (sig - 1) & 1)


def test_ctrl_c_stops_every_rank_and_the_run_resumes_on_one_process(tmp_path: Path) -> None:
    """Ctrl-C in the launch's terminal: SIGINT to every process of its group, the ranks too. They
    leave it to their worker, which the launcher stops, so the run ends interrupted, not failed."""
    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp", "--nproc", "2", "--epochs", "30",
                     "--limit", "3000", "--set", "mlp.schedule=constant", session=True)
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: (runs / "mlp" / CHECKPOINT).is_file())
    worker = worker_of_ranks(proc.pid, runs / "mlp")
    everyone = [proc.pid, worker, *children(worker)]
    ranks = [pid for pid in children(worker) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(ranks) == 2 and all(ignores(pid, signal.SIGINT) for pid in ranks)
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = finish(proc, timeout=30)
    assert code == 130, out + err
    record = read(runs / "mlp")
    assert record.status == "interrupted" and record.states[-1]["reason"].startswith("stopped by Ctrl-C")
    wait_for(lambda: gone(everyone), timeout=10)
    done = len(record.confusions)
    assert done >= 1

    code, out, err = finish(livetrain(tmp_path, "run", "--resume", str(runs), "--epochs", str(done + 1),
                                      "--nproc", "1", "--headless"))
    assert code == 0, out + err
    record = read(runs / "mlp")
    assert record.status == "finished" and record.config["nproc"] == 1
    assert [c["x"] for c in record.confusions] == [float(e) for e in range(1, done + 2)]


def test_the_torchrun_entry_on_two_nodes_draws_one_run(visdom_server: ServerProcess, tmp_path: Path) -> None:
    """Two torchrun agents, one per "node" (both on 127.0.0.1), one rank each, env:// rendezvous at
    node 0: rank 0 writes the run log and draws the run and the runs pane."""
    url, port = visdom_server.config.url, free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={n}",
         "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "dashboard.launch.ranks", "mlp",
         "--set", "epochs=1", "--set", "limit=2000", "--set", "threads=1", "--label", "two-nodes",
         "--visdom-url", url, "--env", "torchrun", "--log-dir", str(tmp_path / "runs")],
        cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in (0, 1)]
    for node in nodes:
        code, out, err = finish(node, timeout=180)
        assert code == 0, out + err
    run_dir = tmp_path / "runs" / "two-nodes"
    record = read(run_dir)
    assert record.status == "finished" and record.config["nproc"] == 2
    assert [sum(map(sum, c["matrix"])) for c in record.confusions] == [10_000]
    assert not (tmp_path / "runs" / "two-nodes" / "ranks").exists()  # torchrun's agents keep their own logs
    state = server_state(url, "torchrun")
    assert_windows_match_logs(state, [run_dir], max_points=1000)
    pane = state[windows.RUNS_WIN]["content"]
    assert "&#9632;</span> two-nodes<" in pane and ">finished</b>" in pane and pane.endswith(">2</td></tr></table>")
    assert "This run was started by torchrun, with no livetrain launcher" in state["control"]["content"]


BREAKS = breaks_at_fifth_batch('os.environ.get("RANK") == "1"', "rank 1 broke at its 5th batch")


def test_a_rank_that_raises_fails_its_run_with_that_error(tmp_path: Path) -> None:
    (tmp_path / "breaks.py").write_text(BREAKS)
    code, out, err = finish(livetrain(tmp_path, "run", "--headless", "--models", "breaks.py:Breaks,mlp",
                                      "--set", "Breaks.nproc=2", "--epochs", "1", "--limit", "2000"))
    assert code == 1, out + err
    runs = launch_dir(tmp_path / "runs")
    reason = read(runs / "Breaks").states[-1]["reason"]
    assert reason == "rank 1 of 2 failed: ValueError: rank 1 broke at its 5th batch", reason
    assert "ValueError" in (runs / "Breaks" / "error.txt").read_text()  # its traceback
    assert read(runs / "mlp").status == "finished" and "Traceback" not in err


def test_livetrain_control_pauses_sets_forks_and_stops_a_run_on_two_ranks(tmp_path: Path) -> None:
    """Requests to a run on two processes go to rank 0, which shares them with rank 1 at the same
    batch (tests/test_distributed.py checks the numbers): paused, its lr set, resumed, forked into
    a run on two processes of its own, then both stopped, each with its checkpoint, no rank left."""
    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp", "--nproc", "2", "--epochs", "1000",
                     "--limit", "3000", "--set", "mlp.schedule=constant")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "mlp"))

    def control(*words: str) -> tuple[int, str, str]:
        return finish(livetrain(tmp_path, "control", *words), timeout=120)

    code, out, err = control("pause", str(runs / "mlp"))
    assert code == 0 and out.startswith("mlp: pause applied at batch "), out + err
    paused_at = int(out.split("batch ")[1].split(",")[0])
    worker = worker_of_ranks(proc.pid, runs / "mlp")
    ranks = [pid for pid in children(worker) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    code, out, err = control("set", str(runs / "mlp"), "lr=0.004")
    assert code == 0 and out.startswith(f"mlp: set applied at batch {paused_at},"), out + err
    assert read(runs / "mlp", keep_scalars=False).status == "paused"
    code, out, err = control("resume", str(runs / "mlp"))
    assert code == 0 and f"resume applied at batch {paused_at}," in out, out + err
    code, out, err = control("fork", str(runs / "mlp"), "--set", "lr=1e-4", "--label", "slow")
    assert code == 0 and "the fork slow starts from there" in out, out + err
    wait_for(lambda: training(runs / "slow"))
    code, out, err = control("stop", str(runs))
    assert code == 0 and sorted(line.split(":")[0] for line in out.splitlines()) == ["mlp", "slow"], out + err
    code, out, err = finish(proc, timeout=120)
    assert code == 1, out + err  # stopped, not finished
    wait_for(lambda: gone(ranks), timeout=10)
    mlp, slow = read(runs / "mlp"), read(runs / "slow")
    assert mlp.status == "interrupted" and mlp.states[-1]["reason"].startswith(
        "stopped by `livetrain control`; its checkpoint at epoch ")
    lrs = [(row["step"], row["train/lr"]) for row in mlp.scalars if "train/lr" in row]
    assert {lr for step, lr in lrs if step <= paused_at} == {1e-3}
    assert {lr for step, lr in lrs if step > paused_at} == {0.004}
    assert [step for step, _ in lrs] == sorted({step for step, _ in lrs})  # none twice, none lost while paused
    assert [c["action"] for c in mlp.controls] == ["pause", "set", "resume", "fork", "stop"]
    forked = mlp.controls[3]
    assert slow.meta["parent"] == {"run": "mlp", "x": forked["x"], "step": forked["step"]}
    assert (slow.config["nproc"], slow.config["lr"]) == (2, 1e-4)
    assert slow.status == "interrupted"
    assert (runs / "slow" / CHECKPOINT).is_file() and (runs / "mlp" / CHECKPOINT).is_file()
