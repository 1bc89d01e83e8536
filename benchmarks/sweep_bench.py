"""A 24-run sweep under `--parallel 2` against the same 24 runs one after another (`--parallel
1`), launched headless from the command line as a user launches them: the total time ratio,
and the peak resident memory of all the launch's processes together.

    .venv/bin/python -m benchmarks.sweep_bench [--limit 6000] [--repeats 1]

The sweep: an MLP (hidden 128) and the concise softmax, each at four learning rates and three
seeds, one epoch on the first `--limit` Fashion-MNIST images. The two launches alternate, so
that a change in the machine's load falls on both."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = 4096


def sweep(log_dir: Path, parallel: int, limit: int) -> list[str]:
    return [sys.executable, str(REPO / "launch.py"), "run", "--headless", "--models", "mlp,softmax-nn",
            "--set", "mlp.hidden=128", "--set", "mlp.lr=3e-4,1e-3,3e-3,1e-2", "--set", "softmax-nn.lr=0.03,0.1,0.3,1",
            "--seeds", "0,1,2", "--epochs", "1", "--limit", str(limit), "--parallel", str(parallel),
            "--log-dir", str(log_dir)]


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process below it, now."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            statm = (stat.parent / "statm").read_text().split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], rss[pid] = int(fields[1]), int(statm[1]) * PAGE
    below = {root}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in below} - below
        below |= more
        grew = bool(more)
    return sum(rss.get(pid, 0) for pid in below)


def measure(parallel: int, limit: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.Popen(sweep(Path(tmp), parallel, limit), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the sweep failed: {proc.stderr.read() if proc.stderr else ''}")
        return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    results: dict[int, list[tuple[float, int]]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for parallel in (1, 2):
            results[parallel].append(measure(parallel, args.limit))
            seconds, peak = results[parallel][-1]
            print(f"--parallel {parallel}: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB", flush=True)
    one = min(s for s, _ in results[1])
    two = min(s for s, _ in results[2])
    print(f"| launch | total time | peak RSS, all processes |\n| --- | --- | --- |")
    for parallel in (1, 2):
        print(f"| 24 runs, --parallel {parallel} | {min(s for s, _ in results[parallel]):.1f} s | "
              f"{max(p for _, p in results[parallel]) / 2**20:.0f} MiB |")
    print(f"time ratio (--parallel 2 / one after another): {two / one:.2f}x")


if __name__ == "__main__":
    main()
