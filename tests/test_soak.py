"""Faults under load: five runs launched as a user launches them (three that should finish, one
whose worker is killed, one forced to diverge) while the server is killed and restarted, and
frozen and resumed, at random moments. Afterwards every window holds what the run logs hold, the
runs trained no slower while the server was away (time per batch, like with like), and the
three healthy runs finished.

The moments are drawn from a seed printed with any failure (LIVETRAIN_SOAK_SEED repeats one)."""

from __future__ import annotations

import math
import os
import random
import signal
import statistics
import time
from pathlib import Path

import pytest

from dashboard import runlog, windows
from dashboard.server import ServerConfig, ServerProcess, start_background
from tests.conftest import free_port
from tests.test_launch_e2e import finish, launch_dir, livetrain, training, worker_of
from tests.test_live import drawn_from_log, server_state, traces
from trainers.reporting import TRAIN_LOSS

pytestmark = pytest.mark.slow

HEALTHY = ("softmax", "mlp", "cnn")
EPOCHS = 4
CNN_EPOCHS = 8  # the CNN trains longest: the faults happen while it does
FAULTS = 5


def assert_windows_hold_the_logs(state: dict, records: list[runlog.RunRecord], context: str) -> None:
    """Each run's trace in each compare window is what its log's points downsample to (a run that
    logged no point of a metric, e.g. one that diverged in its first epoch, has none)."""
    for window in windows.COMPARE_WINDOWS:
        held = traces(state, window.win)
        for record in records:
            label = record.meta["label"]
            expected = drawn_from_log(record, window.metric, max_points=1000).points()
            assert held.get(label, ([], [])) == expected, (context, window.win, label)


Outage = tuple[str, float, float, float]  # (what, away from, back at, answering at): wall-clock time


def time_per_batch_while_away(points: dict[str, list[tuple[float, float]]],
                              outages: list[Outage]) -> tuple[float, float]:
    """How much longer a batch took while the server was away (killed, or frozen) than while it
    was up, as a ratio, and the seconds away it was measured over.

    Like is compared with like: a run's mean time between batches of one epoch (the test pass
    between epochs is not a batch), only while the same runs were training (a run's share of the
    cores changes as runs start and end), leaving out a killed server's restart (a new process
    starting up, not the dashboard at work). The ratios are averaged, weighted by time away; every
    run counts, the failing ones too, as their shares of the cores add up while they train.
    `points`: each run's (wall-clock time, x) of its batches."""
    alive = {name: (p[0][0], p[-1][0]) for name, p in points.items() if p}

    def training(t: float) -> frozenset[str]:
        return frozenset(name for name, (lo, hi) in alive.items() if lo <= t <= hi)

    def server(t: float) -> str:
        for _, start, back, answering in outages:
            if start <= t <= back:
                return "away"
            if back <= t <= answering:
                return "restarting"
        return "up"

    gaps: dict[tuple[str, frozenset[str]], dict[str, list[float]]] = {}
    for name, p in points.items():
        for (a, xa), (b, xb) in zip(p, p[1:]):
            state, beside = server(a), training(a)
            if (math.ceil(xa) == math.ceil(xb) and state == server(b) != "restarting"
                    and beside == training(b)):
                gaps.setdefault((name, beside), {"up": [], "away": []})[state].append(b - a)
    weighted = away = 0.0
    for g in gaps.values():
        if len(g["up"]) >= 10 and len(g["away"]) >= 10:
            weighted += sum(g["away"]) * statistics.mean(g["away"]) / statistics.mean(g["up"])
            away += sum(g["away"])
    return (weighted / away if away else 0.0), away


def _batches(start: float, end: float, every: float, x0: float = 0.0, per: int = 100) -> list[tuple[float, float]]:
    """Batches every `every` s from `start` to `end`, `per` to an epoch, x counting on from `x0`."""
    n = int(round((end - start) / every))
    return [(start + i * every, x0 + (i + 1) / per) for i in range(n)]


def test_the_measure_of_time_per_batch_while_away_sees_a_slowdown_and_nothing_else() -> None:
    # one run alone, 10 ms a batch; the server away from 2 s to 4 s
    steady = _batches(0, 6, 0.01)
    away = [("frozen", 2.0, 4.0, 4.0)]
    ratio, seconds = time_per_batch_while_away({"a": steady}, away)
    assert ratio == pytest.approx(1.0) and seconds == pytest.approx(2.0, abs=0.02)
    # 20 ms a batch while away: seen
    slowed = _batches(0, 2, 0.01) + _batches(2.01, 4, 0.02, x0=2.0) + _batches(4.01, 6, 0.01, x0=3.0)
    assert time_per_batch_while_away({"a": slowed}, away)[0] == pytest.approx(2.0, rel=0.02)
    # a second run that starts as the server goes takes half the core: no slowdown of the dashboard's
    shared = _batches(0, 2, 0.01) + _batches(2.01, 6, 0.02, x0=2.0)
    beside = _batches(2.01, 6, 0.02)
    assert time_per_batch_while_away({"a": shared, "b": beside}, away)[0] == pytest.approx(1.0, rel=0.02)
    # a test pass between epochs (0.5 s with no batch) while away is no batch
    paused = _batches(0, 3, 0.01) + _batches(3.5, 6, 0.01, x0=3.0)
    assert time_per_batch_while_away({"a": paused}, away)[0] == pytest.approx(1.0, rel=0.02)
    # nor is a killed server's restart (the new process starting up)
    restart = [("killed", 2.0, 3.0, 4.0)]
    slow_start = _batches(0, 3, 0.01) + _batches(3.01, 4, 0.03, x0=3.0) + _batches(4.01, 6, 0.01, x0=4.0)
    assert time_per_batch_while_away({"a": slow_start}, restart)[0] == pytest.approx(1.0, rel=0.02)


def test_soak_server_killed_and_frozen_at_random_while_runs_fail_beside_healthy_ones(tmp_path: Path) -> None:
    seed = int(os.environ.get("LIVETRAIN_SOAK_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    context = f"LIVETRAIN_SOAK_SEED={seed}"
    config = ServerConfig(port=free_port(), env_dir=tmp_path / "visdom")
    servers: list[ServerProcess] = [start_background(config)]
    log_dir = tmp_path / "runs"
    proc = livetrain(tmp_path, "run", "--models", "softmax,mlp,cnn,mlp:killed,mlp:diverges",
                     "--set", "diverges.lr=1e30", "--set", "killed.epochs=20",
                     "--set", f"cnn.epochs={CNN_EPOCHS}", "--limit", "12000",
                     "--epochs", str(EPOCHS), "--visdom-url", config.url, "--env", "soak",
                     "--log-dir", str(log_dir), "--no-keep-serving")
    outages: list[Outage] = []
    try:
        deadline = time.monotonic() + 120
        while not (log_dir.is_dir() and any(log_dir.iterdir())
                   and all(training(launch_dir(log_dir) / label) for label in HEALTHY)):
            assert proc.poll() is None and time.monotonic() < deadline, (context, proc.communicate())
            time.sleep(0.2)
        runs = launch_dir(log_dir)
        killed_at = time.monotonic() + rng.uniform(2, 8)

        cnn = runlog.LogFollower(runs / "cnn")  # reads only what the log gained since

        def cnn_x() -> float:
            cnn.poll()
            return cnn.record.x

        # FAULTS faults, or fewer if the CNN is half way through its second-last epoch first; then
        # the server stays up (one down as the launch ends is another test: the launcher says how
        # to redraw)
        while proc.poll() is None and len(outages) < FAULTS and cnn_x() < CNN_EPOCHS - 1.5:
            time.sleep(rng.uniform(0.5, 2.0))
            if killed_at and time.monotonic() >= killed_at:
                os.kill(worker_of(proc.pid, runs / "killed"), signal.SIGKILL)
                killed_at = 0.0
            server = servers[-1]
            start = time.time()
            if rng.random() < 0.5:
                server.process.kill()
                server.process.wait()
                time.sleep(rng.uniform(0.5, 3.0))
                back = time.time()
                servers.append(start_background(config))
                outages.append(("killed", start, back, time.time()))
            else:
                os.kill(server.process.pid, signal.SIGSTOP)
                time.sleep(rng.uniform(1.0, 5.5))  # past the 5 s request timeout, at times
                os.kill(server.process.pid, signal.SIGCONT)
                back = time.time()
                outages.append(("frozen", start, back, back))
        assert proc.poll() is None, (context, "the runs ended during a fault; raise --limit", outages)
        code, out, err = finish(proc, timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        for server in servers:
            if server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)
    try:
        assert len(outages) >= 3, (context, outages)
        assert code == 1, (context, out, err)  # two runs failed
        assert "killed failed: the worker process was killed (SIGKILL)" in out, (context, out)
        assert "diverges failed: loss became" in out, (context, out)
        run_dirs = [runs / label for label in (*HEALTHY, "killed", "diverges")]
        records = {d.name: runlog.read(d) for d in run_dirs}
        for label in HEALTHY:
            record = records[label]
            epochs = CNN_EPOCHS if label == "cnn" else EPOCHS
            assert record.status == "finished" and len(record.series("test/acc")[0]) == epochs, (context, label)
        # every window holds what the logs hold (the launcher redrew what the server missed)
        assert_windows_hold_the_logs(server_state(config.url, "soak"), list(records.values()), context)
        assert not [d for d in run_dirs if (d / runlog.INCOMPLETE_MARK).exists()], context
        # and training went on at full speed while the server was away
        points = {name: [(r["time"], r["x"]) for r in record.scalars if TRAIN_LOSS in r]
                  for name, record in records.items()}
        slower, away = time_per_batch_while_away(points, outages)
        assert away >= 1.0 and slower <= 1.25, (context, slower, away, outages)
    finally:
        for server in servers:
            server.stop()
