"""The CNN's training step with its layout hook (trainers.models.CNN.forward: the gradient the
head's Flatten hands back in NCHW order turned channels-last) against the same layers called
without it, as the CNN ran before 2026-12-07. The two models start from the same weights and train
on the same batches (benchmarks.arithmetic_share's bare loop); the benchmark first checks they stay
bit-identical, then times them alternating, in rounds: best round against best round, and the
median of the rounds' ratios.

    .venv/bin/python -m benchmarks.cnn_layout_bench [--rounds 9] [--block conv-bn-relu-pool]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.arithmetic_share import BATCH, images_per_s, loop, step_batches
from trainers import catalog, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=30, help="steps a variant is timed over in each round")
    parser.add_argument("--block", default=catalog.BLOCKS[0], choices=catalog.BLOCKS)
    args = parser.parse_args()
    ds = data.load("fashion-mnist")
    batches = step_batches(ds)
    hooked_model, hooked = loop("cnn", ds, "fused", block=args.block)
    plain_model, plain = loop("cnn", ds, "fused", block=args.block)
    plain_model.forward = lambda x: plain_model.head(  # type: ignore[method-assign]
        plain_model.features(x.contiguous(memory_format=torch.channels_last)))  # CNN.forward without the hook
    for step in (plain, hooked):
        torch.manual_seed(1)  # the same dropout masks
        for x, y in batches[:5]:
            step(x, y)
    same = all(torch.equal(a, b) for a, b in zip(plain_model.parameters(), hooked_model.parameters()))
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for r in range(args.rounds):
        order = (("without", plain), ("with", hooked)) if r % 2 == 0 else (("with", hooked), ("without", plain))
        for name, step in order:
            rates[name].append(images_per_s(step, batches, args.steps)[0])
    ratios = [w / p for w, p in zip(rates["with"], rates["without"])]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, block {args.block}, batch {BATCH}, "
          f"{args.rounds} rounds of {args.steps} steps; the weights after 5 steps bit-identical: {same}")
    best_without, best_with = max(rates["without"]), max(rates["with"])
    print(f"images/s, best round: without the hook {best_without:,.0f}, with it {best_with:,.0f}: "
          f"{best_with / best_without:.3f}x; median of the rounds' ratios {statistics.median(ratios):.3f}x")


if __name__ == "__main__":
    main()
