"""A 24-run sweep under `--parallel 2` against the same 24 runs one after another (`--parallel
1`), launched headless from the command line as a user launches them: the total time ratio,
and the peak memory of all the launch's processes together (RSS summed, and PSS, which counts a
page its processes share once).

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


def sweep(log_dir: Path, parallel: int, limit: int, repo: Path = REPO) -> list[str]:
    return [sys.executable, str(repo / "launch.py"), "run", "--headless", "--models", "mlp,softmax-nn",
            "--set", "mlp.hidden=128", "--set", "mlp.lr=3e-4,1e-3,3e-3,1e-2", "--set", "softmax-nn.lr=0.03,0.1,0.3,1",
            "--seeds", "0,1,2", "--epochs", "1", "--limit", str(limit), "--parallel", str(parallel),
            "--log-dir", str(log_dir)]


def tree_memory(root: int) -> tuple[int, int]:
    """Resident bytes of `root` and every process below it, now: summed RSS (pages the processes
    share, torch's and the data set's, counted once per process) and summed PSS (each shared page
    split among its sharers: the memory the launch really takes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    below = {root}
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in below} - below
        below |= more
        grew = bool(more)
    rss = pss = 0
    for pid in below:
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            pss += 1024 * int(next(line for line in rollup if line.startswith("Pss:")).split()[1])
        except (OSError, StopIteration):
            continue
    return rss, pss


def measure(parallel: int, limit: int, repo: Path = REPO) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.Popen(sweep(Path(tmp), parallel, limit, repo), cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        peak_rss = peak_pss = 0
        while proc.poll() is None:
            rss, pss = tree_memory(proc.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the sweep failed: {proc.stderr.read() if proc.stderr else ''}")
        return seconds, peak_rss, peak_pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--against", type=Path, default=None,
                        help="Another tree of livetrain (a git worktree of an older commit): its launch, "
                             "alternating with this one's, under --parallel 2.")
    args = parser.parse_args()
    if args.against is not None:
        compare(args.against, args.limit, args.repeats)
        return
    results: dict[int, list[tuple[float, int, int]]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for parallel in (1, 2):
            results[parallel].append(measure(parallel, args.limit))
            seconds, rss, pss = results[parallel][-1]
            print(f"--parallel {parallel}: {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MiB, "
                  f"peak PSS {pss / 2**20:.0f} MiB", flush=True)
    one = min(r[0] for r in results[1])
    two = min(r[0] for r in results[2])
    print("| launch | total time | peak RSS, all processes summed | peak PSS, all processes summed |\n"
          "| --- | --- | --- | --- |")
    for parallel in (1, 2):
        print(f"| 24 runs, --parallel {parallel} | {min(r[0] for r in results[parallel]):.1f} s | "
              f"{max(r[1] for r in results[parallel]) / 2**20:.0f} MiB | "
              f"{max(r[2] for r in results[parallel]) / 2**20:.0f} MiB |")
    print(f"time ratio (--parallel 2 / one after another): {two / one:.2f}x")


def compare(other: Path, limit: int, repeats: int) -> None:
    """This tree against `other`, alternating A B B A, under --parallel 2: time and memory."""
    trees = {"this tree": REPO, str(other): other}
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in trees}
    for cycle in range(repeats):
        for name in (list(trees) if cycle % 2 == 0 else list(trees)[::-1]):
            results[name].append(measure(2, limit, trees[name]))
            seconds, rss, pss = results[name][-1]
            print(f"{name}: {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MiB, peak PSS {pss / 2**20:.0f} MiB",
                  flush=True)
    print("| --parallel 2, 24 runs | total time (best) | peak RSS summed (worst) | peak PSS summed (worst) |\n"
          "| --- | --- | --- | --- |")
    for name, rows in results.items():
        print(f"| {name} | {min(r[0] for r in rows):.1f} s | {max(r[1] for r in rows) / 2**20:.0f} MiB | "
              f"{max(r[2] for r in rows) / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()
