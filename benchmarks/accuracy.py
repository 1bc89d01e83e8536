"""The accuracy table: each model's default configuration trained for N epochs on Fashion-MNIST.

    .venv/bin/python -m benchmarks.accuracy [--epochs 10]
"""

from __future__ import annotations

import argparse
import time

from trainers import data
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.models import MODELS
from trainers.reporting import TEST_ACC, Recorder

ANCHORS = {
    "softmax": "d2l softmax from scratch, 5 epochs: 0.828",
    "mlp": "MLP 256-128-100: 0.8833",
    "cnn": "2 conv + pooling: 0.876-0.916; 2 conv < 100K params: 0.925",
    "softmax-nn": "d2l concise softmax, 10 epochs: about 0.83 (equal to the scratch model's)",
    "lenet": "LeNet-5, Adam 1e-3, batch 128, 3 epochs: 0.854 (issue 16)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated [default: all]")
    args = parser.parse_args()
    ds = data.load("fashion-mnist")
    print(f"| model | test accuracy by epoch (1..{args.epochs}) | final | s/epoch | published anchor |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        start = time.perf_counter()
        result = fit(RunConfig(name, epochs=args.epochs, device="cpu"), Recorder(), dataset=ds)
        per_epoch = (time.perf_counter() - start) / args.epochs
        accs = [h[TEST_ACC] for h in result.history]
        print(f"| {name} | {' '.join(f'{a:.3f}' for a in accs)} | **{accs[-1]:.4f}** | {per_epoch:.1f} "
              f"| {ANCHORS[name]} |", flush=True)


if __name__ == "__main__":
    main()
