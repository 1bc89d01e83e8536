"""How near this machine's arithmetic limit training runs: the share of the fp32 matrix-multiply
peak that a model's training reaches, and what moves it.

- The peak: fp32 matrix multiply on torch's threads, the best of a few large shapes, in GFLOP/s.
- A model's FLOPs per image, forward plus backward (torch.utils.flop_counter), times the images
  per second of a bare training loop (batch 128, the recipe's optimizer, data in memory as float
  batches): its GFLOP/s, and that as a share of the peak.
- Both measured the same way, on a VM whose speed drifts by 1.5x within minutes: in rounds, each
  round the peak and then every loop, and the best round of each is compared (the median of the
  rounds' own shares printed beside it). The host's CPU is printed too: the share depends on it
  (a CPU with faster matrix units leaves a larger part of the step to memory-bound work).
- Variants of the loop, each measured in the same run: the optimizer fused (`fused=True`), and
  the model under torch.compile (its compile time reported apart, from the first steps).
- For a model of Linear layers (the MLP): its matrix multiplies alone, as a step does them at
  batch 128, the ceiling of the whole step's share.

    .venv/bin/python -m benchmarks.arithmetic_share [--models mlp,cnn] [--steps 60] [--rounds 5] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from trainers import data, models
from trainers.config import RunConfig

BATCH = 128
SHAPES = ((2048, 2048, 2048), (1024, 4096, 1024), (4096, 1024, 1024))


def cpu_name() -> str:
    """The host's CPU as /proc/cpuinfo names it, with its family and model numbers (Linux)."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    except OSError:
        return "unknown CPU"
    field = {k.strip(): v.strip() for k, v in info.items()}
    return f"{field.get('model name', '?')}, family {field.get('cpu family', '?')} model {field.get('model', '?')}"


def matmul_peak(repeats: int = 5) -> float:
    """GFLOP/s: the best of `repeats` of each shape in SHAPES."""
    best = 0.0
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b  # warm
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_image(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward plus backward FLOPs of one batch, per image."""
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / x.shape[0]


def images_per_s(step: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> tuple[float, float]:
    """(images/s over `steps` steps after the first 5, seconds the first 5 took: a compile's)."""
    start = time.perf_counter()
    for x, y in batches[:5]:
        step(x, y)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        step(x, y)
    return steps * BATCH / (time.perf_counter() - start), first


def matmuls_alone(model: torch.nn.Module, repeats: int = 200) -> float | None:
    """GFLOP/s of the model's matrix multiplies alone, as its training step does them at BATCH:
    each Linear layer's forward, weight gradient and (but the first layer's) input gradient, on
    random data, best of 3. The ceiling of the whole step's share, the rest being memory-bound
    work (activations, dropout, the optimizer). None for a model with convolutions."""
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return None
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    ops, flops = [], 0
    for k, layer in enumerate(linears):
        w = layer.weight.detach().clone()  # (out, in)
        x, g = torch.randn(BATCH, layer.in_features), torch.randn(BATCH, layer.out_features)
        ops += [lambda x=x, w=w: x @ w.T, lambda g=g, x=x: g.T @ x] + ([lambda g=g, w=w: g @ w] if k else [])
        flops += 2 * BATCH * layer.in_features * layer.out_features * (3 if k else 2)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            for op in ops:
                op()
        best = max(best, flops * repeats / (time.perf_counter() - start) / 1e9)
    return best


def step_batches(ds: data.Dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """20 training batches of BATCH, as the loop makes them (standardised), the same every call."""
    return list(data.batches(ds.train.images[:BATCH * 20], ds.train.labels[:BATCH * 20], BATCH,
                             generator=torch.Generator().manual_seed(0), stats=data.pixel_stats(ds.train)))


def loop(name: str, ds: data.Dataset, variant: str, **settings: Any) -> Any:
    """(the model, its training step) for a bare loop: batch 128, Adam as the variant has it,
    `settings` the model's own (RunConfig's), seed 0."""
    cfg = RunConfig(name, device="cpu", **settings).resolved()
    torch.manual_seed(0)
    model = models.build(name, ds.image_shape, len(ds.classes), cfg.model_settings())
    params = list(model.parameters())
    fused = variant in ("fused", "compile")
    optimizer = (torch.optim.Adam(params, lr=cfg.lr, fused=True) if fused else torch.optim.Adam(params, lr=cfg.lr))
    forward = torch.compile(model) if variant == "compile" else model

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--steps", type=int, default=60, help="steps a loop is timed over in each round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (a minute or more to compile)")
    args = parser.parse_args()
    ds = data.load("fashion-mnist")
    batches = step_batches(ds)
    variants = ("eager", "fused", "compile") if args.compile else ("eager", "fused")
    loops = {}  # (model, variant) -> (the model, its step, FLOPs per image, seconds of its first 5 steps)
    for name in args.models.split(","):
        for variant in variants:
            model, step = loop(name, ds, variant)
            per_image = flops_per_image(model, *batches[0])
            loops[name, variant] = model, step, per_image, images_per_s(step, batches, 5)[1]
    peaks: list[float] = []
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in loops}
    for _ in range(args.rounds):
        peaks.append(matmul_peak(2))
        for key, (_, step, _, _) in loops.items():
            rates[key].append(images_per_s(step, batches, args.steps)[0])
    peak = max(peaks)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
    print(f"fp32 matmul peak {peak:.1f} GFLOP/s (best of {args.rounds} rounds; the rounds: "
          f"{', '.join(f'{p:.0f}' for p in peaks)})\n")
    print("| model | loop | MFLOP per image | images/s | GFLOP/s | share of the peak | median of the rounds' shares "
          "| first 5 steps, s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, variant), (_, _, per_image, first) in loops.items():
        rate = max(rates[name, variant])
        gflops = per_image * rate / 1e9
        median = statistics.median(per_image * r / 1e9 / p for r, p in zip(rates[name, variant], peaks))
        print(f"| {name} | {variant} | {per_image / 1e6:.2f} | {rate:,.0f} | {gflops:.1f} | {gflops / peak:.0%} "
              f"| {median:.0%} | {first:.1f} |", flush=True)
    for name in args.models.split(","):
        alone = matmuls_alone(loops[name, "eager"][0])
        if alone is not None:
            print(f"| {name} | its matmuls alone | | | {alone:.1f} | {alone / peak:.0%} | | |", flush=True)

if __name__ == "__main__":
    main()
