"""`livetrain run` end to end, as a user runs it (a subprocess of `launch.py`), on real data against
the real server: live, headless then replayed, Ctrl-C (once and twice) then --resume, kill -9 of
one worker, and runs that raise or diverge beside one that finishes."""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dashboard import windows
from dashboard.launch.plan import PlannedRun
from dashboard.launch.run import LaunchOptions, Outcome, launch
from dashboard.launch.servers import Server
from dashboard.adapter import Dashboard, DashboardOptions
from dashboard.connection import Unreachable, VisdomConnection
from dashboard.runlog import INCOMPLETE_MARK, RunLog, read
from dashboard.server import ServerConfig, ServerProcess, probe, start_background
from tests.conftest import free_port
from tests.helpers import (
    assert_windows_match_logs, children, finish, launch_dir, launched, livetrain, server_state, training, wait_for,
    worker_of,
)
from trainers import data
from trainers.config import RunConfig
from trainers.checkpoints import CHECKPOINT
from dashboard.launch.worker import KEPT
from trainers.reporting import TRAIN_LOSS
from dashboard.launch.worker import ERROR_FILE
from dashboard.windows import DrawOptions

pytestmark = pytest.mark.slow


def test_run_live_draws_every_run_on_the_server(visdom_server: ServerProcess, tmp_path: Path) -> None:
    url = visdom_server.config.url
    code, out, err = finish(livetrain(tmp_path, "run", "--models", "softmax,mlp,cnn", "--epochs", "1",
                                      "--limit", "2000", "--visdom-url", url, "--env", "e2e", "--no-control"))
    assert code == 0, out + err
    assert err == "" and f"Dashboard: {url}/env/e2e" in out and "All 3 run(s) finished" in out
    runs = launch_dir(tmp_path / "runs")
    run_dirs = [runs / label for label in ("softmax", "mlp", "cnn")]
    state = server_state(url, "e2e")
    assert_windows_match_logs(state, run_dirs, max_points=1000)
    pane = state[windows.RUNS_WIN]["content"]
    assert all(f">{label}<" in pane for label in ("softmax", "mlp", "cnn")) and pane.count("finished") >= 3
    assert [read(d).meta["colour"] for d in run_dirs] == [0, 1, 2]
    assert "control" not in state and "control-requests" not in state  # --no-control: no Control pane


def test_headless_then_replay(visdom_server: ServerProcess, tmp_path: Path) -> None:
    code, out, err = finish(livetrain(tmp_path, "run", "--headless", "--models", "softmax,mlp:second",
                                      "--epochs", "1", "--limit", "2000", "--log-dir", "logs"))
    assert code == 0, out + err
    assert "Headless: no Visdom server" in out and "second" in out and "finished" in out
    runs = launch_dir(tmp_path / "logs")
    assert sorted(p.name for p in runs.iterdir() if (p / "log.jsonl").is_file()) == ["second", "softmax"]
    assert all(read(runs / label).status == "finished" for label in ("softmax", "second"))
    url = visdom_server.config.url
    code, out, err = finish(livetrain(tmp_path, "replay", str(runs), "--visdom-url", url, "--env", "headless"))
    assert code == 0, out + err
    assert_windows_match_logs(server_state(url, "headless"), [runs / "softmax", runs / "second"], max_points=1000)


def test_replay_starts_a_server_when_none_answers_and_keeps_it_up(tmp_path: Path) -> None:
    code, out, err = finish(livetrain(tmp_path, "run", "--headless", "--models", "softmax", "--epochs", "1",
                                      "--limit", "2000"))
    assert code == 0, out + err
    runs = launch_dir(tmp_path / "runs")
    port = free_port()
    proc = livetrain(tmp_path, "replay", str(runs), "--port", str(port), "--env-dir", str(tmp_path / "visdom"))
    url = f"http://127.0.0.1:{port}"
    def drawn() -> bool:  # the replay draws window after window: wait for the last
        try:
            assert_windows_match_logs(server_state(url, "replay"), [runs / "softmax"], max_points=1000)
            return True
        except (AssertionError, KeyError, Unreachable, ValueError):
            return False

    try:
        wait_for(lambda: probe(url) == "visdom" and "replay" in server_state_or_none(url), timeout=60)
        wait_for(drawn, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=30)
    assert code == 0 and err == "", out + err
    assert "Replayed 1 run(s): softmax" in out and "The page stays up" in out and "Visdom server stopped" in out
    assert probe(url) == "none"


def server_state_or_none(url: str) -> list[str]:
    """The envs the server holds (none while it is still starting)."""
    import json

    try:
        return json.loads(VisdomConnection(url, timeout=2).post("env_state", {}))
    except (Unreachable, ValueError):
        return []


LONG_GRACE = {"LIVETRAIN_STOP_GRACE": "600"}  # a worker is never killed for being slow to stop


def test_ctrl_c_stops_every_run_then_resume_finishes_them(tmp_path: Path) -> None:
    # the softmax's 40 epochs of 6,000 images may end while the CNN still evaluates its untrained
    # model: it trains on all 60,000 (the resume below trains each run to one epoch only)
    proc = livetrain(tmp_path, "run", "--headless", "--models", "softmax,mlp,cnn", "--epochs", "40",
                     "--limit", "6000", "--set", "softmax.limit=60000", env=LONG_GRACE)
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all(training(runs / label) for label in ("softmax", "mlp", "cnn"))
             and (runs / "softmax" / CHECKPOINT).is_file())
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=120)  # with a 600 s grace, a worker that did not stop holds it up
    assert code == 130, out + err
    assert "Traceback" not in err and f"livetrain run --resume runs/{runs.name}" in out
    for label in ("softmax", "mlp", "cnn"):  # each worker stopped and logged it itself: none was killed
        record = read(runs / label)
        assert record.status == "interrupted" and record.skipped == 0, label
        assert record.states[-1]["reason"] == f"stopped by Ctrl-C; {KEPT}", record.states[-1]
    assert (runs / "softmax" / CHECKPOINT).is_file()  # the finished epochs' checkpoint is kept

    code, out, err = finish(livetrain(tmp_path, "run", "--resume", str(runs), "--epochs", "1", "--headless"))
    assert code == 0, out + err
    assert "(resumed)" in out
    for label in ("softmax", "mlp", "cnn"):
        record = read(runs / label)
        assert record.status == "finished" and record.x >= 1, label
    code, out, err = finish(livetrain(tmp_path, "run", "--resume", str(runs), "--epochs", "1", "--headless"))
    assert code == 1 and err.startswith("Error: every run in") and "--epochs" in err


def test_ctrl_c_while_the_fork_server_starts_stops_the_launch(tmp_path: Path) -> None:
    """With runs queued, the workers come from a fork server that imports torch first (seconds);
    a Ctrl-C in the terminal then stops the launch: it is not lost while the launcher waits."""
    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp,mlp,mlp", "--parallel", "1", "--epochs", "40",
                     "--limit", "6000", session=True)

    def fork_server_started() -> bool:
        assert proc.poll() is None
        return any(b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children(proc.pid))

    wait_for(fork_server_started, timeout=60)
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = finish(proc, timeout=120)  # ignored, the launch would train 3 x 40 epochs
    assert code == 130, out + err
    runs = launch_dir(tmp_path / "runs")
    assert all(read(runs / label).status == "interrupted" for label in ("mlp-1", "mlp-2", "mlp-3"))


def test_a_queued_worker_finds_the_data_set_in_memory() -> None:
    """Queued runs' workers come from the fork server, which loads the runs' data sets once: a
    worker finds them in memory, shared with the server, and reads no copy of its own from disk
    (Fashion-MNIST: 55 MB a worker; CIFAR-10: about 180 MB)."""
    from dashboard.launch.supervisor import worker_context
    from tests.forkcheck import cached_data_sets
    from trainers import data as loaded

    ctx = worker_context("forkserver", [RunConfig("mlp"), RunConfig("cnn")])
    answers = ctx.Queue()
    proc = ctx.Process(target=cached_data_sets, args=(answers,))
    proc.start()
    assert answers.get(timeout=120) == [("fashion-mnist", str(loaded.locate("fashion-mnist").resolve()))]
    proc.join(30)


STUBBORN = """
import signal
from torch import nn


class Stubborn(nn.Module):
    \"\"\"An MLP whose worker ignores the launcher's stop request (SIGUSR1, its Ctrl-C).\"\"\"

    def __init__(self, num_classes):
        super().__init__()
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    def forward(self, x):
        return self.net(x)
"""


def test_a_second_ctrl_c_ends_at_once(tmp_path: Path) -> None:
    """A worker that does not stop when asked is killed by the second Ctrl-C, without waiting
    out the grace (600 s here: the launch would not end within the test's guard)."""
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp,stubborn.py:Stubborn", "--epochs", "40",
                     "--limit", "6000", env=LONG_GRACE)
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "mlp") and training(runs / "Stubborn"))
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: read(runs / "mlp", keep_scalars=False).status == "interrupted")  # the first asked
    assert read(runs / "Stubborn", keep_scalars=False).status == "running"  # and this one did not stop
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=120)
    assert code == 130, out + err
    assert read(runs / "mlp").states[-1]["reason"] == f"stopped by Ctrl-C; {KEPT}"
    stubborn = read(runs / "Stubborn")  # killed, so the launcher wrote its end
    assert stubborn.status == "interrupted"
    assert stubborn.states[-1]["reason"] == "stopped by Ctrl-C before it could log it"


def test_kill_9_of_one_worker_leaves_the_others_training(visdom_server: ServerProcess, tmp_path: Path) -> None:
    url = visdom_server.config.url
    proc = livetrain(tmp_path, "run", "--models", "softmax,mlp,cnn", "--epochs", "2", "--limit", "4000",
                     "--visdom-url", url, "--env", "killed")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "cnn"))
    os.kill(worker_of(proc.pid, runs / "cnn"), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 1, out + err
    assert "cnn failed: the worker process was killed (SIGKILL)" in out
    assert read(runs / "cnn").states[-1]["reason"] == "the worker process was killed (SIGKILL)"
    assert read(runs / "softmax").status == "finished" and read(runs / "mlp").status == "finished"
    pane = server_state(url, "killed")[windows.RUNS_WIN]["content"]
    assert "the worker process was killed (SIGKILL)" in pane


def test_a_run_that_raises_or_diverges_does_not_stop_the_others(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(data.locate("fashion-mnist"), damaged)
    train_images = next(p for p in damaged.iterdir() if p.name.startswith("train-images"))
    train_images.write_bytes(train_images.read_bytes()[:100])  # cut short: reading it raises
    runs = tmp_path / "runs"
    plan = [
        PlannedRun(RunConfig("softmax", epochs=1, limit=2000, label="fine").resolved(), runs / "fine"),
        PlannedRun(RunConfig("mlp", epochs=1, limit=2000, label="broken", data_dir=str(damaged)).resolved(),
                   runs / "broken"),
        PlannedRun(RunConfig("mlp", epochs=1, limit=2000, lr=1e30, label="boom").resolved(), runs / "boom"),
    ]
    terminal = io.StringIO()
    outcome = launch(plan, runs, LaunchOptions(None, DrawOptions("isolation"), stream=terminal))
    assert outcome.exit_code == 1 and not outcome.interrupted
    status = {r.label: (r.status, r.reason) for r in outcome.runs}
    assert status["fine"] == ("finished", "")
    assert status["broken"][0] == "failed" and status["broken"][1].startswith("DataError:")
    assert "gzip" in status["broken"][1] or "truncated" in status["broken"][1]
    assert "DataError" in (runs / "broken" / ERROR_FILE).read_text()
    assert status["boom"][0] == "failed" and status["boom"][1].startswith("loss became")
    shown = terminal.getvalue()
    assert "failed: DataError" in shown and "failed: loss became" in shown


def test_demo_trains_the_three_models_live_and_keeps_the_page_up(tmp_path: Path) -> None:
    port = free_port()
    proc = livetrain(tmp_path, "demo", "--epochs", "1", "--limit", "1500", "--port", str(port),
                     "--env-dir", str(tmp_path / "envs"))
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the runs end, then the page stays up
        lines.append(line)
        if line.startswith("The page stays up at"):
            break
    out = "".join(lines)
    assert f"Dashboard: http://127.0.0.1:{port}/env/demo (server started by this command)" in out
    assert "All 3 run(s) finished" in out
    url = f"http://127.0.0.1:{port}"
    runs = launch_dir(tmp_path / "runs")
    assert_windows_match_logs(server_state(url, "demo"), [runs / m for m in ("softmax", "mlp", "cnn")],
                              max_points=1000)
    proc.send_signal(signal.SIGINT)
    code, rest, err = finish(proc, timeout=30)
    assert code == 0 and "Visdom server stopped." in rest and err == ""
    assert probe(url) == "none"  # the server it started is gone with it


def _two_runs(tmp_path: Path, url: str, during: Callable[[Path], None]) -> tuple[Outcome, str, list[Path]]:
    """Two short MLP runs drawing to `url`, with `during(runs folder)` run in a thread meanwhile.
    Returns how the launch ended, what its terminal showed and the run dirs."""
    runs = tmp_path / "runs"
    plan = [PlannedRun(RunConfig("mlp", epochs=2, limit=6000, label=label).resolved(), runs / label)
            for label in ("a", "b")]
    thread = threading.Thread(target=during, args=(runs,))
    thread.start()
    terminal = io.StringIO()
    try:
        outcome = launch(plan, runs, LaunchOptions(Server(url), DrawOptions("bounced"), stream=terminal))
    finally:
        thread.join()
    return outcome, terminal.getvalue(), [runs / "a", runs / "b"]


def test_a_server_frozen_as_the_runs_end_gets_them_redrawn(tmp_path: Path) -> None:
    server = start_background(ServerConfig(port=free_port(), env_dir=tmp_path / "envs"))

    def freeze_until_the_workers_give_up(runs: Path) -> None:
        wait_for(lambda: training(runs / "a") and training(runs / "b"))
        server.process.send_signal(signal.SIGSTOP)
        try:  # each worker waits 3 s for the server at its end, then marks its windows incomplete
            wait_for(lambda: all((runs / label / INCOMPLETE_MARK).is_file() for label in ("a", "b")))
        finally:
            server.process.send_signal(signal.SIGCONT)

    try:
        outcome, shown, run_dirs = _two_runs(tmp_path, server.config.url, freeze_until_the_workers_give_up)
        assert outcome.exit_code == 0, shown
        assert "redrew 2 run(s) from their logs" in shown
        state = server_state(server.config.url, "bounced")
        assert_windows_match_logs(state, run_dirs, max_points=1000)
        assert "This launch ended at " in state["control"]["content"]  # the Control pane too, as the launch left it
        assert not any((d / INCOMPLETE_MARK).exists() for d in run_dirs)
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()


def test_a_server_gone_at_the_end_says_how_to_redraw(tmp_path: Path) -> None:
    server = start_background(ServerConfig(port=free_port(), env_dir=tmp_path / "envs"))

    def stop(runs: Path) -> None:
        wait_for(lambda: training(runs / "a") and training(runs / "b"))
        server.stop()

    try:
        outcome, shown, run_dirs = _two_runs(tmp_path, server.config.url, stop)
    finally:
        server.stop()
    assert outcome.exit_code == 0, shown  # the runs finished: only the page missed updates
    assert f"`livetrain replay {run_dirs[0].parent} --env bounced` redraws the runs" in shown
    assert all((d / INCOMPLETE_MARK).is_file() for d in run_dirs)


def test_a_resumed_run_draws_its_earlier_points_too(visdom_server: ServerProcess, tmp_path: Path) -> None:
    url = visdom_server.config.url
    earlier = RunLog(tmp_path / "mlp", meta={"label": "mlp"})
    earlier.config(RunConfig("mlp").resolved().to_dict())
    for step in range(1, 6):
        earlier.scalars(step, step / 10, {TRAIN_LOSS: 1.0 / step})
    earlier.close()
    dash = Dashboard(tmp_path / "mlp", "mlp", DashboardOptions(visdom_url=url, draw=DrawOptions("resumed")))
    dash.scalars(6, 0.6, {TRAIN_LOSS: 0.1})  # the first point after the resume
    assert dash.close(wait=10)
    drawn = server_state(url, "resumed")[windows.COMPARE_BY_METRIC[TRAIN_LOSS].win]["content"]["data"]
    (trace,) = [d for d in drawn if d["name"] == "mlp"]
    assert trace["x"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6] and trace["y"][-1] == 0.1
    assert read(tmp_path / "mlp").series(TRAIN_LOSS)[0] == trace["x"]  # and the log holds them all once


def test_a_server_with_a_login_gets_every_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server elsewhere with its login on: the workers and the board log in with the
    credentials in the environment and draw everything, tails included."""
    monkeypatch.setenv("VISDOM_USERNAME", "ada")
    monkeypatch.setenv("VISDOM_PASSWORD", "s3cret")
    server = start_background(ServerConfig(port=free_port(), env_dir=tmp_path / "visdom", login=True))
    try:
        code, out, err = finish(livetrain(tmp_path, "run", "--models", "softmax,mlp", "--limit", "3000",
                                          "--epochs", "2", "--visdom-url", server.config.url, "--env", "login",
                                          "--log-dir", str(tmp_path / "runs"), "--no-keep-serving"))
        assert code == 0, err
        assert "missed" not in out  # nothing was left to redraw
        runs = launch_dir(tmp_path / "runs")
        assert_windows_match_logs(server_state(server.config.url, "login"), [runs / "softmax", runs / "mlp"],
                                  max_points=1000)
    finally:
        server.stop()
