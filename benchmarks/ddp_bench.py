"""One run on several processes against one process, as `launch.py run --headless` trains them.

On the CPU: the CNN on 2 ranks x 1 thread (`--set cnn.nproc=2`) against 1 process x 2 threads,
on this machine's 2 cores. On CUDA (`--device cuda`): 1 GPU against every GPU torch sees, one rank
each. Interleaved cycles (one of each per cycle), the throughput of each run the global
training samples/s of its epoch: the images over the sum of the batches' times, from its log
(startup and evaluation not counted). Reported: each side's median and their ratio.

    .venv/bin/python -m benchmarks.ddp_bench [--cycles 3] [--limit 20000] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from dashboard.runlog import metric_values, read, run_dirs
from trainers.reporting import SAMPLES_PER_S

REPO = Path(__file__).resolve().parent.parent


def throughput(run_dir: Path, images: int, batch: int) -> float:
    """Global training samples/s of the run: its images over the sum of its batches' times."""
    rates = [metric_values(row)[SAMPLES_PER_S] for row in read(run_dir).scalars if SAMPLES_PER_S in metric_values(row)]
    per_epoch = -(-images // batch)
    sizes = [min(batch, images - (i % per_epoch) * batch) for i in range(len(rates))]
    return sum(sizes) / sum(b / rate for b, rate in zip(sizes, rates))


def one_run(model: str, nproc: int, limit: int, device: str, batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "launch.py"), "run", "--headless", "--models", model, "--epochs", "1",
               "--limit", str(limit), "--batch-size", str(batch), "--device", device, "--nproc", str(nproc),
               "--log-dir", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
        (run_dir,) = run_dirs(Path(tmp), depth=2)
        return throughput(run_dir, limit, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    ranks = torch.cuda.device_count() if args.device == "cuda" else 2
    if ranks < 2:
        raise SystemExit(f"{args.device}: {ranks} device(s); the comparison needs 2 or more")
    one, many = [], []
    for cycle in range(args.cycles):
        one.append(one_run(args.model, 1, args.limit, args.device, args.batch_size))
        many.append(one_run(args.model, ranks, args.limit, args.device, args.batch_size))
        print(f"cycle {cycle + 1}: 1 process {one[-1]:,.0f} samples/s, {ranks} ranks {many[-1]:,.0f} samples/s",
              flush=True)
    result = {"model": args.model, "device": args.device, "ranks": ranks, "limit": args.limit,
              "one_process": statistics.median(one), "ranks_samples_per_s": statistics.median(many),
              "ratio": statistics.median(many) / statistics.median(one), "cycles": args.cycles}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
