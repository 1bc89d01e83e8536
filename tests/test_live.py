"""End to end against the real Visdom server: real workers train on real data and stream; then
what the server holds is compared with the run logs. Also the server killed and restarted
mid-run, frozen with SIGSTOP, and a replay of the logged runs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard import panels, runlog, windows
from dashboard.adapter import DashboardOptions
from dashboard.board import Board
from dashboard.connection import VisdomConnection
from dashboard.replay import replay
from dashboard.sender import Sender
from dashboard.server import ServerConfig, ServerProcess, start_background
from tests.conftest import free_port
from tests.helpers import MAX_POINTS, assert_windows_match_logs, drawn_from_log, server_state
from trainers.config import RunConfig
from trainers.reporting import TEST_ACC, TRAIN_LOSS
from dashboard.launch.worker import WorkerSpec, run
from dashboard.windows import DrawOptions


def run_workers(specs: list[WorkerSpec], board: Board | None = None, during: Any = None,
                timeout: float = 240) -> list[int | None]:
    """Train each spec in its own process (as the launcher will), polling the board; `during(elapsed)` is
    called about every 0.1 s while they run."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run, args=(spec,)) for spec in specs]
    for p in procs:
        p.start()
    started = time.monotonic()
    while any(p.is_alive() for p in procs) and time.monotonic() - started < timeout:
        if board is not None:
            board.poll()
        if during is not None:
            during(time.monotonic() - started)
        time.sleep(0.1)
    for p in procs:
        p.join(5)
    if board is not None:
        board.poll()
    return [p.exitcode for p in procs]


@pytest.fixture(scope="module")
def live(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    """A softmax and an MLP trained side by side, streaming to the server; the board draws the panes."""
    url, env = visdom_server.config.url, "live"
    root = tmp_path_factory.mktemp("runs")
    options = DashboardOptions(visdom_url=url, draw=DrawOptions(env, max_points=MAX_POINTS), interval=0.3)
    specs = [WorkerSpec(RunConfig(model, epochs=2, limit=6000, threads=1), root / model, options, i)
             for i, model in enumerate(["softmax", "mlp"])]
    sender = Sender(VisdomConnection(url), interval=0.3)
    board = Board(sender, DrawOptions(env))
    for spec in specs:
        board.add(spec.run_dir)
    sender.start()
    assert run_workers(specs, board) == [0, 0]
    assert sender.close(10)
    return url, [spec.run_dir for spec in specs]


def test_live_windows_hold_exactly_what_the_logs_hold(live: tuple[str, list[Path]]) -> None:
    url, run_dirs = live
    state = server_state(url, "live")
    assert_windows_match_logs(state, run_dirs)
    for run_dir in run_dirs:  # per-epoch traces drawn point for point, per-batch ones downsampled
        record = runlog.read(run_dir)
        assert drawn_from_log(record, TEST_ACC).size == 1 and drawn_from_log(record, TRAIN_LOSS).size > 1
    runs_pane = state[windows.RUNS_WIN]["content"]
    assert runs_pane.count("finished") == 2 and "softmax" in runs_pane and "mlp" in runs_pane
    assert "disagree on" in state[windows.DISAGREE_WIN]["content"]
    # the windows come in the board's order: runs pane, compare windows, training samples,
    # disagreement (a softmax and an MLP are no sweep), then each run's own windows
    order = sorted(state, key=lambda w: state[w]["i"])
    board = [windows.RUNS_WIN] + [w.win for w in windows.COMPARE_PANES] + [windows.SAMPLES_WIN, windows.DISAGREE_WIN]
    assert order[:len(board)] == board
    own = [w for d in run_dirs for w in panels.run_windows(d.name)]
    drawn = [panel.win(d.name) for d in run_dirs for panel in panels.PANELS if runlog.read(d).other.get(panel.kind)]
    assert set(order[len(board):]) <= set(own) and set(drawn) <= set(order[len(board):])
    assert len(order) - len(board) >= len(drawn) + len(run_dirs)  # the panels drawn, and the gradient norms
    assert all(panels.PANELS[0].win(d.name) in drawn for d in run_dirs)  # the gallery (and so on) of each


def test_replay_draws_the_same_windows_as_the_live_run(live: tuple[str, list[Path]]) -> None:
    url, run_dirs = live
    done = replay(run_dirs, url, DrawOptions("replayed", max_points=MAX_POINTS))
    assert done.labels == ["softmax", "mlp"]
    live_state, replayed = server_state(url, "live"), server_state(url, "replayed")
    # the replay also places the panels that do not apply to a run (a softmax's filters), waiting
    assert set(live_state) <= set(replayed)
    assert all(replayed[w]["type"] == "text" for w in set(replayed) - set(live_state))

    def content(p: dict[str, Any]) -> Any:
        if p["type"] == "plot":
            return sorted((d.get("name"), d.get("x"), d.get("y"), d.get("z")) for d in p["content"]["data"])
        return p["content"]

    for win in live_state:
        assert content(replayed[win]) == content(live_state[win]), win
        assert replayed[win]["title"] == live_state[win]["title"]


def _spec(url: str, run_dir: Path, epochs: int, limit: int) -> WorkerSpec:
    options = DashboardOptions(visdom_url=url, draw=DrawOptions("outage", max_points=MAX_POINTS), interval=0.3,
                               timeout=2.0)
    return WorkerSpec(RunConfig("mlp", epochs=epochs, limit=limit, threads=1), run_dir, options, 0)


def _rows(run_dir: Path) -> int:
    path = run_dir / runlog.LOG_NAME
    return path.read_bytes().count(b'"kind":"scalars"') if path.exists() else 0


@pytest.mark.slow  # 15 s each: the whole suite runs them, `make check` leaves them
def test_server_down_at_start_then_killed_mid_run_and_restarted(tmp_path: Path) -> None:
    config = ServerConfig(port=free_port(), env_dir=tmp_path / "visdom")  # a fixed port: restarted on it
    spec = _spec(config.url, tmp_path / "run", epochs=4, limit=30000)
    events: list[str] = []
    server: list[ServerProcess] = []

    def outages(elapsed: float) -> None:
        rows = _rows(spec.run_dir)
        if not server and rows >= 20:  # training began with no server: start one
            server.append(start_background(config))
            events.append(f"started at row {rows}")
        elif len(server) == 1 and rows >= 140:  # drawn for a while: kill it, then start a fresh one
            server[0].process.kill()
            server[0].process.wait()
            time.sleep(1.0)
            server.append(start_background(config))
            events.append(f"restarted at row {rows}")

    try:
        assert run_workers([spec], during=outages) == [0]
        assert len(events) == 2, events
        record = runlog.read(spec.run_dir)
        assert record.status == "finished" and len(record.series(TEST_ACC)[0]) == 1 + 4  # x = 0, then 4 epochs
        assert_windows_match_logs(server_state(config.url, "outage"), [spec.run_dir])
    finally:
        for s in server:
            s.stop()


@pytest.mark.slow  # 15 s each: the whole suite runs them, `make check` leaves them
def test_a_frozen_server_does_not_stop_training_and_its_windows_end_whole(tmp_path: Path) -> None:
    """Frozen past the 2 s request timeout, then thawed: training went on while it was frozen
    (it logged batches all through the freeze: the server is thawed once it has logged 20 after
    the run's requests timed out, whatever the machine's load), and the windows end equal to the
    log, although requests that timed out were applied when the server thawed (our server
    refuses them; see tests/test_late_requests.py)."""
    server = start_background(ServerConfig(port=0, env_dir=tmp_path / "visdom"))
    # 6 epochs, so that the run is still training when the server thaws
    spec = _spec(server.config.url, tmp_path / "run", epochs=6, limit=20000)
    timeout = spec.dashboard.timeout
    frozen: list[float] = []

    def batches_since(moment: float) -> int:
        return sum(TRAIN_LOSS in r and r["time"] >= moment for r in runlog.read(spec.run_dir).scalars)

    def freeze(elapsed: float) -> None:
        if not frozen and _rows(spec.run_dir) >= 100:
            os.kill(server.process.pid, signal.SIGSTOP)
            frozen.append(time.time())
        elif len(frozen) == 1 and (batches_since(frozen[0] + timeout + 0.5) >= 20 or time.time() - frozen[0] > 120):
            os.kill(server.process.pid, signal.SIGCONT)  # (the 120 s: a guard, should training stall)
            frozen.append(time.time())

    try:
        assert run_workers([spec], during=freeze) == [0]
        assert len(frozen) == 2
        record = runlog.read(spec.run_dir)
        assert record.status == "finished"
        # training went on while the server was frozen, past its requests' timeout: a training
        # thread waiting on the server would have logged none
        late = frozen[0] + timeout + 0.5
        during = [r for r in record.scalars if TRAIN_LOSS in r and late <= r["time"] <= frozen[1]]
        assert len(during) >= 20, len(during)
        assert_windows_match_logs(server_state(server.config.url, "outage"), [spec.run_dir])
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_the_training_thread_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every socket call a live run makes, against a frozen server, is on its sender thread."""
    import socket
    import threading

    from dashboard.adapter import Dashboard
    from trainers.loop import fit

    server = start_background(ServerConfig(port=0, env_dir=tmp_path / "visdom"))
    callers: list[str] = []
    for name in ("connect", "sendall", "send", "recv_into", "recv"):
        real = getattr(socket.socket, name)

        def spy(self: socket.socket, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            callers.append(threading.current_thread().name)
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(socket.socket, name, spy)
    options = DashboardOptions(visdom_url=server.config.url, draw=DrawOptions("frozen"), interval=0.2, timeout=0.5)
    try:
        os.kill(server.process.pid, signal.SIGSTOP)
        dash = Dashboard(tmp_path / "run", "mlp", options)
        try:
            result = fit(RunConfig("mlp", epochs=1, limit=4000, threads=1), dash, tmp_path / "run")
        finally:
            dash.close(wait=1.0)
        assert result.status == "finished"
        assert callers and set(callers) == {"visdom-mlp"}, set(callers)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
