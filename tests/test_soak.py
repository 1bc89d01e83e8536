"""Faults under load: five runs launched as a user launches them (three that should finish, one
whose worker is killed, one forced to diverge) while the server is killed and restarted, and
frozen and resumed, at random moments. Afterwards every window holds what the run logs hold and
the three healthy runs finished (how fast they trained while it was away is
benchmarks/outage_bench.py's to measure).

The moments are drawn from a seed printed with any failure (LIVETRAIN_SOAK_SEED repeats one)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from dashboard import runlog, windows
from benchmarks.outage_bench import make_fault
from dashboard.server import ServerConfig, ServerProcess, start_background
from tests.helpers import (
    drawn_from_log, finish, launch_dir, launched, livetrain, server_state, traces, training, worker_of,
)

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
            assert held.get(windows.trace_name(label, part=window.part), ([], [])) == expected, (context, window.win, label)


def test_soak_server_killed_and_frozen_at_random_while_runs_fail_beside_healthy_ones(tmp_path: Path) -> None:
    seed = int(os.environ.get("LIVETRAIN_SOAK_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    context = f"LIVETRAIN_SOAK_SEED={seed}"
    servers: list[ServerProcess] = [start_background(ServerConfig(port=0, env_dir=tmp_path / "visdom"))]
    config = servers[0].config  # with the port it took: restarted on it
    log_dir = tmp_path / "runs"
    proc = livetrain(tmp_path, "run", "--models", "softmax,mlp,cnn,mlp:killed,mlp:diverges",
                     "--set", "diverges.lr=1e30", "--set", "killed.epochs=20",
                     "--set", f"cnn.epochs={CNN_EPOCHS}", "--limit", "12000",
                     "--epochs", str(EPOCHS), "--visdom-url", config.url, "--env", "soak",
                     "--log-dir", str(log_dir), "--no-keep-serving")
    outages: list[tuple[str, float, float, float]] = []
    try:
        deadline = time.monotonic() + 120
        # every run but the diverging one training: the one to kill too (on a busy machine it may
        # start seconds after the others)
        while not (launched(log_dir)
                   and all(training(launch_dir(log_dir) / label) for label in (*HEALTHY, "killed"))):
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
            server, outage = make_fault(servers[-1], config, rng)
            if server is not servers[-1]:
                servers.append(server)
            outages.append(outage)
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
            # the untrained point at x = 0, then one per epoch
            assert record.status == "finished" and len(record.series("test/acc")[0]) == 1 + epochs, (context, label)
        # every window holds what the logs hold (the launcher redrew what the server missed)
        assert_windows_hold_the_logs(server_state(config.url, "soak"), list(records.values()), context)
        assert not [d for d in run_dirs if (d / runlog.INCOMPLETE_MARK).exists()], context
        # (that training goes on while the server is away is what test_live's frozen-server test and
        # its socket spy assert; how fast it goes is benchmarks/outage_bench.py's to measure: here
        # an outage can fall inside the CNN's test pass, when it logs no batch at all)
    finally:
        for server in servers:
            server.stop()
