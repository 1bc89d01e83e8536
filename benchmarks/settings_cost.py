"""What the experiment settings (losses, schedules, momentum, model settings; issue 16) cost the
default recipes: training samples/s now against the code just before them, in the same run.

    .venv/bin/python -m benchmarks.settings_cost [--reference 75a3401] [--rounds 8]

The reference commit is checked out into a temporary git worktree. Each round trains one epoch
of each default recipe in a fresh process per tree, alternating the trees (A B B A ...), and takes the median
per-batch samples/s the run reports (`train/samples_per_s`); the ratio is now / reference."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# (epochs, training images): the softmax's epoch is a quarter of a second, too short to time alone
MODELS = {"softmax": (5, 60_000), "mlp": (1, 60_000), "cnn": (1, 12_000)}
PROBE = """
import json, statistics, sys, torch
from trainers import data
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.reporting import Recorder
torch.set_num_threads(2)
ds = data.load("fashion-mnist")
out = {}
for name, (epochs, limit) in json.loads(sys.argv[1]).items():
    recorder = Recorder()
    fit(RunConfig(name, epochs=epochs, limit=limit, device="cpu", threads=2), recorder, dataset=ds)
    out[name] = statistics.median(recorder.series("train/samples_per_s")[5:])
print(json.dumps(out))
"""


def probe(tree: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(MODELS)], cwd=tree, capture_output=True,
                          text=True, check=True, env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="75a3401")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        subprocess.run(["git", "worktree", "add", "--detach", str(reference), args.reference], cwd=REPO,
                       check=True, capture_output=True)
        try:
            now: dict[str, list[float]] = {m: [] for m in MODELS}
            then: dict[str, list[float]] = {m: [] for m in MODELS}
            for round_ in range(args.rounds):  # A B, B A, ...: neither tree always goes first
                pair = [(REPO, now), (reference, then)]
                for tree, into in pair if round_ % 2 == 0 else pair[::-1]:
                    for name, value in probe(tree).items():
                        into[name].append(value)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=REPO, check=False)
    print(f"| default recipe | samples/s now | samples/s at {args.reference} | now / then | rounds' range |")
    print("| --- | --- | --- | --- | --- |")
    for name in MODELS:
        a, b = statistics.median(now[name]), statistics.median(then[name])
        spread = f"{min(now[name] + then[name]):,.0f}-{max(now[name] + then[name]):,.0f}"
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.3f}x | {spread} |")


if __name__ == "__main__":
    main()
