"""The CNN's training step with its layout hook (trainers.models.CNN.forward: the gradient the
head's Flatten hands back in NCHW order turned channels-last) against the same layers called
without it, as the CNN ran before 2026-12-07. The two models start from the same weights and train
on the same batches; the benchmark first checks they stay bit-identical, then times them
alternating, in rounds: best round against best round, and the median of the rounds' ratios.

    .venv/bin/python -m benchmarks.cnn_layout_bench [--rounds 9] [--block conv-bn-relu-pool]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from trainers import catalog, data, models
from trainers.config import RunConfig

BATCH = 128


def step_of(ds: data.Dataset, block: str, hooked: bool) -> tuple[torch.nn.Module, Any]:
    cfg = RunConfig("cnn", device="cpu", block=block).resolved()
    torch.manual_seed(0)
    cnn = models.build("cnn", ds.image_shape, len(ds.classes), cfg.model_settings())
    optimizer = torch.optim.Adam(cnn.parameters(), lr=cfg.lr, fused=True)  # as the loop makes it

    def forward(x: torch.Tensor) -> torch.Tensor:
        if hooked:
            return cnn(x)
        return cnn.head(cnn.features(x.contiguous(memory_format=torch.channels_last)))

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return cnn, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=30, help="steps a variant is timed over in each round")
    parser.add_argument("--block", default=catalog.BLOCKS[0], choices=catalog.BLOCKS)
    args = parser.parse_args()
    ds = data.load("fashion-mnist")
    batches = list(data.batches(ds.train.images[:BATCH * 20], ds.train.labels[:BATCH * 20], BATCH,
                                generator=torch.Generator().manual_seed(0), stats=data.pixel_stats(ds.train)))
    (plain_model, plain), (hooked_model, hooked) = step_of(ds, args.block, False), step_of(ds, args.block, True)
    torch.manual_seed(1)
    losses = [plain(*batches[i]) for i in range(5)]
    torch.manual_seed(1)
    same = losses == [hooked(*batches[i]) for i in range(5)] and all(
        torch.equal(a, b) for a, b in zip(plain_model.parameters(), hooked_model.parameters()))
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for r in range(args.rounds):
        order = (("without", plain), ("with", hooked)) if r % 2 == 0 else (("with", hooked), ("without", plain))
        for name, step in order:
            start = time.perf_counter()
            for i in range(args.steps):
                step(*batches[i % len(batches)])
            rates[name].append(args.steps * BATCH / (time.perf_counter() - start))
    ratios = [w / p for w, p in zip(rates["with"], rates["without"])]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, block {args.block}, {args.rounds} rounds "
          f"of {args.steps} steps; 5 steps bit-identical: {same}")
    best_without, best_with = max(rates["without"]), max(rates["with"])
    print(f"images/s, best round: without the hook {best_without:,.0f}, with it {best_with:,.0f}: "
          f"{best_with / best_without:.3f}x; median of the rounds' ratios {statistics.median(ratios):.3f}x")


if __name__ == "__main__":
    main()
