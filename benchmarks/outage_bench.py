"""Training speed while the Visdom server is away (killed, or frozen), against while it is up.

The soak test (tests/test_soak.py) asserts what the runs did during the faults (they kept
logging batches; the windows end equal to the logs); how fast they trained then is a wall-clock
ratio, which depends on how the machine's cores are shared, so it is measured here:

    .venv/bin/python -m benchmarks.outage_bench [--seconds 60]

Three MLPs are launched as a user launches them, drawing into a server that is killed and
restarted, or frozen, at seeded moments; then each run's time per batch while the server was
away is compared with while it was up (like with like: see `time_per_batch_while_away`)."""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dashboard import runlog  # noqa: E402
from dashboard.server import ServerConfig, ServerProcess, start_background  # noqa: E402
from trainers.reporting import TRAIN_LOSS  # noqa: E402

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


def make_fault(server: ServerProcess, config: ServerConfig, rng: random.Random) -> tuple[ServerProcess, Outage]:
    """Kill the server and start a new one on its port after 0.5-3 s, or freeze it (SIGSTOP) for
    1-5.5 s (past a 5 s request timeout at times), at even odds: the server up after, and the outage."""
    start = time.time()
    if rng.random() < 0.5:
        server.process.kill()
        server.process.wait()
        time.sleep(rng.uniform(0.5, 3.0))
        back = time.time()
        server = start_background(config)
        return server, ("killed", start, back, time.time())
    os.kill(server.process.pid, signal.SIGSTOP)
    time.sleep(rng.uniform(1.0, 5.5))
    os.kill(server.process.pid, signal.SIGCONT)
    back = time.time()
    return server, ("frozen", start, back, back)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the faults go on")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(port=0, env_dir=Path(tmp) / "visdom")
        server = start_background(config)
        config = server.config  # the port it took: restarted on it
        log_dir = Path(tmp) / "runs"
        proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "run", "--models", "mlp:a,mlp:b,mlp:c",
                                 "--epochs", "200", "--visdom-url", config.url, "--env", "bench",
                                 "--log-dir", str(log_dir), "--no-keep-serving"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        outages: list[Outage] = []
        time.sleep(15)  # the runs start and settle
        ends = time.monotonic() + args.seconds
        while time.monotonic() < ends:
            time.sleep(rng.uniform(2.0, 4.0))
            server, outage = make_fault(server, config, rng)
            outages.append(outage)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        server.stop()
        points = {}
        for run_dir in sorted(p.parent for p in log_dir.glob(f"*/*/{runlog.LOG_NAME}")):
            record = runlog.read(run_dir)
            points[run_dir.name] = [(r["time"], r["x"]) for r in record.scalars if TRAIN_LOSS in r]
    ratio, away = time_per_batch_while_away(points, outages)
    print(f"{len(outages)} outages, {away:.1f} s away; time per batch while away / while up: {ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
