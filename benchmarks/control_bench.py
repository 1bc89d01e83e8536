"""Control from the page: how soon a run applies a request, and what the control path costs.

1. Latency: a live launch of two MLP runs (a real server, started here; `livetrain run` as a user
   starts it). Requests alternate between the two ways in:
   - the page: a `PropertyUpdate` event over Visdom's socket, as the Control pane's field sends
     when a person types an lr and presses Enter (Visdom forwards it to the launcher);
   - the command line's path: a request file in the launch's inbox, as `livetrain control`
     writes it (the CLI's own start, a Python process, is not counted).
   Each is a `set lr=...` to one run, alternating runs. The latency is from the request's send
   to the time the run's log records it applied (both clocks of this machine). Goals: median
   under 0.5 s, 95th percentile under 1 s.
2. Throughput: the same launch (two MLP runs, live) with the control path on, against
   `--no-control` (no pane, no page events followed, workers looking for no requests), whole
   launches interleaved on, off, off, on, ...: the runs' mean samples/s from their logs.

    .venv/bin/python -m benchmarks.control_bench [--requests 24] [--rounds 3] [--limit 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websocket

from dashboard.connection import VisdomConnection
from dashboard.launch.control import LAUNCH_LOG, ask
from dashboard.launch.page import CONTROL_WIN
from dashboard.runlog import read
from dashboard.server import ServerConfig, start_background
from tests.conftest import REPO, free_port
from tests.helpers import launch_dir, launched, training, wait_for
from trainers.reporting import SAMPLES_PER_S

LABELS = ("a", "b")


def launch(tmp: Path, url: str, env: str, epochs: int, limit: int, control: bool = True) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "run", "--models", ",".join(f"mlp:{label}" for label in LABELS),
         "--epochs", str(epochs), "--limit", str(limit), "--set", "mlp.schedule=constant", "--visdom-url", url,
         "--env", env, "--no-keep-serving", *([] if control else ["--no-control"])],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def applied_at(run_dir: Path, lr: float, after: float) -> float | None:
    """When the run's log says it applied lr (the first such record after `after`)."""
    for item in read(run_dir, keep_scalars=False).controls:
        if item.get("applied") and item.get("values") == {"lr": lr} and item["time"] >= after - 0.01:
            return float(item["time"])
    return None


def latency(url: str, requests: int, limit: int) -> dict[str, Any]:
    env = "control-bench"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        proc = launch(tmp, url, env, epochs=1000, limit=limit)
        try:
            wait_for(lambda: launched(tmp / "runs"), timeout=120)
            runs = launch_dir(tmp / "runs")
            wait_for(lambda: all(training(runs / label) for label in LABELS), timeout=120)
            connection = VisdomConnection(url)
            wait_for(lambda: listening(connection, env), timeout=60)
            socket = websocket.create_connection(url.replace("http", "ws") + "/socket", origin=url, timeout=10)
            socket.recv()  # "register"
            by_way: dict[str, list[float]] = {"page": [], "command line": []}
            for i in range(requests):
                label, way = LABELS[i % 2], ("page", "command line")[(i // 2) % 2]
                lr = round(1e-3 * (1 + 0.01 * (i + 1)), 8)  # a new value each time: each request applies
                sent = time.time()
                if way == "page":
                    forward(socket, env, 0, str(LABELS.index(label) + 1))  # the run field
                    sent = time.time()
                    forward(socket, env, 4, repr(lr))  # the lr field, Enter pressed
                else:
                    ask(runs, label, "set", {"lr": lr})
                try:
                    wait_for(lambda: applied_at(runs / label, lr, sent) is not None, timeout=30)
                except AssertionError:
                    said = (runs / LAUNCH_LOG).read_text() if (runs / LAUNCH_LOG).is_file() else "(nothing)"
                    raise SystemExit(f"request {i} ({way}, {label} lr={lr}) not applied in 30 s; the launcher: {said}")
                at = applied_at(runs / label, lr, sent)
                assert at is not None
                by_way[way].append(at - sent)
                time.sleep(0.3)  # not in step with the launcher's or the run's polls
            socket.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    every = sorted(v for values in by_way.values() for v in values)
    return {"requests": len(every), "median_s": statistics.median(every), "p95_s": every[int(0.95 * (len(every) - 1))],
            "max_s": every[-1], **{f"{way} median_s": statistics.median(v) for way, v in by_way.items()}}


def listening(connection: VisdomConnection, env: str) -> bool:
    """Whether the env's Control pane has its controls (the launcher hears the page)."""
    pane = json.loads(connection.post("win_data", {"eid": env, "win": None})).get(CONTROL_WIN)
    return pane is not None and any(f.get("name") == "run" for f in pane["content"])


def forward(socket: Any, env: str, field: int, value: str) -> None:
    """What the page sends when a field of the Control pane changes (Visdom's PropertyUpdate)."""
    socket.send(json.dumps({"cmd": "forward_to_vis", "data": {
        "event_type": "PropertyUpdate", "propertyId": field, "value": value, "target": CONTROL_WIN, "eid": env}}))


def throughput(url: str, rounds: int, limit: int) -> dict[str, Any]:
    speeds: dict[bool, list[float]] = {True: [], False: []}
    order = [on for _ in range(rounds) for on in (True, False, False, True)][:2 * rounds]
    for index, on in enumerate(order):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            proc = launch(tmp, url, f"throughput-{index}", epochs=1, limit=limit, control=on)
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise SystemExit(err)
            runs = launch_dir(tmp / "runs")
            values = [row[SAMPLES_PER_S] for label in LABELS for row in read(runs / label).scalars
                      if SAMPLES_PER_S in row]
            speeds[on].append(statistics.mean(values))
    on, off = statistics.mean(speeds[True]), statistics.mean(speeds[False])
    return {"on samples/s": on, "off samples/s": off, "ratio on/off": on / off, "launches": len(order)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as env_dir:
        server = start_background(ServerConfig(port=free_port(), env_dir=Path(env_dir)))
        try:
            results = {"latency": latency(server.config.url, args.requests, 6000),
                       "throughput": throughput(server.config.url, args.rounds, args.limit)}
        finally:
            server.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
