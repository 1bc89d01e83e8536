"""Start-up of the commands that train nothing, against `python -c "import torch"` in the same run.

Each command is a fresh process, run `--rounds` times, interleaved with the reference (reference,
--help, runs, data list, reference, ...) so that the machine's drift hits all alike; the medians
are compared. Goals: `livetrain --help` under 0.1x of the torch import; `livetrain server`
resident under 100 MB once it answers (its peak RSS, from /proc, after the page's first load).

    .venv/bin/python -m benchmarks.startup_bench [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.conftest import REPO, free_port

LAUNCH = [sys.executable, str(REPO / "launch.py")]
VENV03_PYTHON = REPO / ".venv-visdom03" / "bin" / "python"


def timed(command: list[str], cwd: Path) -> float:
    """Wall seconds of one run of `command`."""
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def peak_rss_kb(command: list[str], cwd: Path) -> int:
    """A command's own peak RSS in KB (`/usr/bin/time`'s %M), one run."""
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1])


def server_rss_mb(cwd: Path, python: str | None = None) -> tuple[float, float]:
    """`livetrain server`: seconds until it answers, and its resident MB after the page is read.
    `python`: serve with `python -m dashboard.server` from that interpreter (visdom 0.3's venv)."""
    port = free_port()
    serve = [*LAUNCH, "server"] if python is None else [python, "-m", "dashboard.server"]
    started = time.perf_counter()
    server = subprocess.Popen([*serve, "--port", str(port), "--env-dir", str(cwd / "envs")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("livetrain server exited before it answered") from None
                time.sleep(0.02)
        ready = time.perf_counter() - started
        status = Path(f"/proc/{server.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
        return ready, rss / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lt-startup-"))
    (work / "runs").mkdir()
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "--help": [*LAUNCH, "--help"],
        "run --help": [*LAUNCH, "run", "--help"],
        "runs": [*LAUNCH, "runs", "--log-dir", str(work / "runs")],
        "data list": [*LAUNCH, "data", "list"],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            walls[name].append(timed(command, work))
    reference = statistics.median(walls["import torch"])
    server_ready, server_mb = zip(*(server_rss_mb(work) for _ in range(3)))
    results = {
        "rounds": args.rounds,
        "median_s": {name: round(statistics.median(w), 3) for name, w in walls.items()},
        "ratio_to_import_torch": {name: round(statistics.median(w) / reference, 3)
                                  for name, w in walls.items() if name != "import torch"},
        "peak_rss_mb": {name: round(peak_rss_kb(command, work) / 1024, 1) for name, command in commands.items()},
        "server_answers_s": round(statistics.median(server_ready), 3),
        "server_rss_mb": round(max(server_mb), 1),
    }
    # the server module alone, on each visdom: this venv's and, where `make visdom03` made it, 0.3's
    for name, python in (("visdom 0.2.4", sys.executable), ("visdom 0.3", str(VENV03_PYTHON))):
        if Path(python).is_file():
            ready, mb = zip(*(server_rss_mb(work, python) for _ in range(3)))
            results[f"dashboard.server on {name}"] = {"answers_s": round(statistics.median(ready), 3),
                                                      "rss_mb": round(max(mb), 1)}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
