"""The same 12-run sweep on the local queue (`--parallel 2`) and on a 2-node Ray cluster on the
same 2 cores (`--cluster`, `--parallel 2`), launched headless from the command line as a user
launches them, alternating (local, cluster, cluster, local, ...): the total time ratio, and what
Ray adds to each run.

    .venv/bin/python -m benchmarks.cluster_bench [--limit 6000] [--repeats 2]

The cluster is a head and a second node of one CPU each, started with Ray's own commands
(tests/ray_cluster.py) before the first launch, as a user's cluster is up before a sweep; its
start is timed apart. The sweep: an MLP (hidden 128) at four learning rates and three seeds, one
epoch on the first `--limit` Fashion-MNIST images.

What Ray adds to a run, from the run logs: the time from the launch's start to its first runs'
first records (the slots' first: connecting, and starting Ray's workers), and then the time
between two runs' starts in one slot, less what the run logs as its own (its first record to
its last): what starting a run costs once the launch is under way. On the local queue that is a
worker process forked per run; Ray keeps its workers and gives each the next task."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sweep_bench import REPO

RUNS = 12
SLOTS = 2


def sweep(log_dir: Path, limit: int, cluster: str | None) -> list[str]:
    return [sys.executable, str(REPO / "launch.py"), "run", "--headless", "--models", "mlp",
            "--set", "mlp.hidden=128", "--set", "mlp.lr=3e-4,1e-3,3e-3,1e-2", "--seeds", "0,1,2", "--epochs", "1",
            "--limit", str(limit), "--parallel", str(SLOTS), "--log-dir", str(log_dir),
            *(["--cluster", cluster] if cluster else [])]


def measure(limit: int, cluster: str | None) -> tuple[float, float, float]:
    """The sweep's total seconds; the mean seconds from its start to its first runs' first
    records; and the mean seconds a run holds its slot beyond what it logs (see above)."""
    from dashboard.runlog import read, run_dirs

    with tempfile.TemporaryDirectory() as tmp:
        began = time.time()
        start = time.perf_counter()
        done = subprocess.run(sweep(Path(tmp), limit, cluster), cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"the sweep failed: {done.stderr[-3000:]}")
        records = [read(d, keep_scalars=False) for d in run_dirs(Path(tmp))]
        if len(records) != RUNS or any(r.status != "finished" or not r.started for r in records):
            raise SystemExit(f"the sweep did not finish its {RUNS} runs: {[r.status for r in records]}")
        starts = sorted(float(r.started or 0) for r in records)
        every = (starts[-1] - starts[0]) / (RUNS / SLOTS - 1)  # one slot's run after run
        own = statistics.mean(float((r.updated or 0) - (r.started or 0)) for r in records)
        return seconds, statistics.mean(t - began for t in starts[:SLOTS]), every - own


def main() -> None:
    from tests.ray_cluster import start_cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="lt-ray-")))
    print(f"2-node cluster started in {time.perf_counter() - start:.1f} s", flush=True)
    results: dict[str, list[tuple[float, float, float]]] = {"local": [], "cluster": []}
    try:
        for cycle in range(args.repeats):
            for name in (("local", "cluster") if cycle % 2 == 0 else ("cluster", "local")):
                results[name].append(measure(args.limit, cluster.address if name == "cluster" else None))
                seconds, first, cost = results[name][-1]
                print(f"{name}: {seconds:.1f} s (first runs' first record at {first:.1f} s; "
                      f"a run's start in its slot {cost:.2f} s)", flush=True)
    finally:
        cluster.stop()
    mean = {name: [statistics.mean(r[i] for r in rows) for i in range(3)] for name, rows in results.items()}
    print(f"| {RUNS} runs, --parallel {SLOTS} | total time, each launch | mean | to the first runs' first records "
          "| a run's start in its slot, after |\n| --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        print(f"| {name} | {', '.join(f'{r[0]:.1f}' for r in rows)} s | {mean[name][0]:.1f} s | "
              f"{mean[name][1]:.1f} s | {mean[name][2]:.2f} s |")
    print(f"cluster speed against the local queue (local time / cluster time): "
          f"{mean['local'][0] / mean['cluster'][0]:.2f}x")


if __name__ == "__main__":
    main()
