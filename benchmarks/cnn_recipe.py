"""The CNN's default recipe against its first one, on the same seeds in the same run: the final
test accuracy after the recipe's 10 epochs on Fashion-MNIST, and the wall-clock time of the
whole run (`trainers.loop.fit`: training, the test split after every epoch, every report).

- default: the recipe as `trainers.catalog` gives it (since issue 29: channels 16,64, blocks of
  conv3x3-maxpool-BN-ReLU, Adam lr 2e-3, cosine, dropout 0.3 by trainers.models.Dropout).
- first: the recipe before issue 29, as it ran then: channels 16,32, blocks of
  conv3x3-BN-ReLU-maxpool, Adam lr 1e-3, torch's nn.Dropout. (`--set cnn.channels=16,32 --set
  cnn.block=conv-bn-relu-pool --set cnn.lr=1e-3` trains it, with the faster dropout.)

The goal (issue 29): the default's mean over 3 seeds >= 0.925, each seed >= 0.922, in at most
1.1x the first recipe's time.

    .venv/bin/python -m benchmarks.cnn_recipe [--seeds 0,1,2] [--epochs 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from trainers import data, models
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.reporting import TEST_ACC, Recorder

FIRST = {"channels": (16, 32), "block": "conv-bn-relu-pool", "lr": 1e-3}


def run(recipe: str, seed: int, epochs: int, ds: data.Dataset) -> dict[str, Any]:
    """One run of `recipe` ("default" or "first"): its test accuracy by epoch and its seconds."""
    settings = FIRST if recipe == "first" else {}
    config = RunConfig("cnn", epochs=epochs, seed=seed, device="cpu", **settings)
    faster = models.Dropout
    if recipe == "first":
        models.Dropout = torch.nn.Dropout  # type: ignore[misc] - the dropout the first recipe ran with
    try:
        start = time.perf_counter()
        result = fit(config, Recorder(), dataset=ds)
        seconds = time.perf_counter() - start
    finally:
        models.Dropout = faster  # type: ignore[misc]
    return {"accs": [h[TEST_ACC] for h in result.history], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    ds = data.load("fashion-mnist")
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[int, dict[str, Any]]] = {"default": {}, "first": {}}
    for seed in seeds:  # interleaved, so that a slower stretch of the machine falls on both
        for recipe in results:
            results[recipe][seed] = run(recipe, seed, args.epochs, ds)
            print(recipe, seed, round(results[recipe][seed]["accs"][-1], 4),
                  f"{results[recipe][seed]['seconds']:.1f} s", flush=True)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs\n")
    print("| recipe | " + " | ".join(f"seed {s}: accuracy, s" for s in seeds) + " | mean accuracy | mean s |")
    print("| --- " * (len(seeds) + 3) + "|")
    for recipe, by_seed in results.items():
        cells = [f"{by_seed[s]['accs'][-1]:.4f}, {by_seed[s]['seconds']:.1f}" for s in seeds]
        mean_acc = statistics.mean(by_seed[s]["accs"][-1] for s in seeds)
        mean_s = statistics.mean(by_seed[s]["seconds"] for s in seeds)
        print(f"| {recipe} | " + " | ".join(cells) + f" | **{mean_acc:.4f}** | {mean_s:.1f} |")
    seconds = {recipe: sum(r["seconds"] for r in by_seed.values()) for recipe, by_seed in results.items()}
    ratio = seconds["default"] / seconds["first"]
    print(f"\ndefault / first, time: {ratio:.2f}x (goal <= 1.10x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
