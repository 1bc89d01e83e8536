"""Dropout's cost, forward and backward, at the shapes the default recipes drop: torch's
nn.Dropout, livetrain's first 16-bit dropout (a bool mask converted to floats) and the layer as
it is now (trainers.models.Dropout: the comparison written straight into floats). The last two
draw the same bits and give the same masks (tests/test_experiments.py); all three are timed in
the same run, alternating, best of the rounds.

    .venv/bin/python -m benchmarks.dropout_bench [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from trainers import models

# (shape, p): the CNN head's two dropouts, then the MLP's two, at batch 128
SHAPES = (((128, 3136), 0.3), ((128, 128), 0.3), ((128, 512), 0.2), ((128, 256), 0.2))


class BoolMaskDropout(torch.nn.Dropout):
    """models.Dropout as first written (before 2026-12-07): the same bits, a bool mask converted."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = min(round(self.p * 65536), 65535)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - 32768
        return x * keep.to(x.dtype).mul_(65536 / (65536 - dropped))


def microseconds(layer: torch.nn.Module, shape: tuple[int, int], calls: int = 200) -> float:
    """Best of 3 x `calls` forward-and-backward passes, in microseconds a pass."""
    x, g = torch.randn(shape, requires_grad=True), torch.randn(shape)
    layer(x).backward(g)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            layer(x).backward(g)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    layers = {"nn.Dropout": torch.nn.Dropout, "16 bits, bool mask (first)": BoolMaskDropout,
              "16 bits, floats (now)": models.Dropout}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward, us a pass\n")
    print("| values | p | " + " | ".join(layers) + " | first / now | nn.Dropout / now |")
    print("| --- | --- | " + " | ".join("---" for _ in layers) + " | --- | --- |")
    for shape, p in SHAPES:
        best = dict.fromkeys(layers, float("inf"))
        for _ in range(args.rounds):
            for name, kind in layers.items():
                best[name] = min(best[name], microseconds(kind(p), shape))
        first, now, stock = best["16 bits, bool mask (first)"], best["16 bits, floats (now)"], best["nn.Dropout"]
        print(f"| {shape[0]} x {shape[1]} | {p} | " + " | ".join(f"{v:,.0f}" for v in best.values())
              + f" | {first / now:.2f}x | {stock / now:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
