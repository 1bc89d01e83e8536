"""Time to accuracy: each default recipe trained on Fashion-MNIST until its test accuracy first
reaches a target, in seconds (as the field's speed records count it: airbench, DAWNBench),
against a d2l-style loop on the same model in the same run where that loop gets there at all.

- livetrain: `trainers.loop.fit`, the product's training path (every batch reported to an
  in-memory recorder, the test split evaluated and measured after every epoch), the recipe as
  the model's defaults give it (schedule, augmentation, label smoothing).
- d2l-style: torchvision's FashionMNIST + ToTensor (+ Normalize where the recipe normalises)
  through a DataLoader, the same model, optimizer and lr, constant, and d2l's evaluate_accuracy
  after every epoch (`train_ch6`).

The clock runs from the first batch (data already in memory for both) to the end of the epoch
whose test accuracy reaches the target; both stop at the recipe's epochs. `--device cuda`: both
on the GPU, livetrain's data resident there (the loop keeps each split on the run's device), the
d2l loop moving each batch there as train_ch6 does. Each row also gives the seconds an epoch
takes (the first, with its warm-up, apart from the rest).

    .venv/bin/python -m benchmarks.time_to_accuracy [--models softmax,mlp,cnn] [--seed 0] [--device cpu|cuda]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from benchmarks.trainers_bench import torchvision_copy
from trainers import data, losses, models
from trainers.config import RunConfig
from trainers.loop import accuracy_count, fit, make_optimizer
from trainers.reporting import TEST_ACC, Recorder

TARGETS = {"softmax": (0.82,), "mlp": (0.89,), "cnn": (0.92, 0.925)}


class Clocked(Recorder):
    """A Recorder that notes (seconds since the first batch, test accuracy) at each epoch's end."""

    def __init__(self) -> None:
        super().__init__()
        self.start: float | None = None
        self.epochs: list[tuple[float, float]] = []

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        if step > 0 and self.start is None:
            self.start = time.perf_counter()  # the first batch's report: its time is the loop's from here
        if TEST_ACC in values and x > 0:
            assert self.start is not None
            self.epochs.append((time.perf_counter() - self.start, values[TEST_ACC]))
        super().scalars(step, x, values)


def first_reached(epochs: list[tuple[float, float]], target: float) -> tuple[int, float] | None:
    """(epoch, seconds) where the accuracy first reaches `target`; None if it never does."""
    return next(((i + 1, s) for i, (s, acc) in enumerate(epochs) if acc >= target), None)


def ours(name: str, seed: int, ds: data.Dataset, device: str) -> list[tuple[float, float]]:
    clock = Clocked()
    fit(RunConfig(name, seed=seed, device=device), clock, dataset=ds)
    return clock.epochs


def d2l(name: str, seed: int, ds: data.Dataset, root: Path, device: str) -> list[tuple[float, float]]:
    """d2l's train_ch6 on our model: DataLoader batches moved to the device, a constant lr,
    evaluate_accuracy each epoch."""
    cfg = RunConfig(name, seed=seed, device=device).resolved()
    spec = models.MODELS[name]
    steps: list[Any] = [transforms.ToTensor()]
    if spec.normalize:
        mean, std = data.pixel_stats(ds.train)
        steps.append(transforms.Normalize(mean.flatten().tolist(), std.flatten().tolist()))
    make = transforms.Compose(steps)
    train = torchvision.datasets.FashionMNIST(str(root), train=True, download=False, transform=make)
    test = torchvision.datasets.FashionMNIST(str(root), train=False, download=False, transform=make)
    train_iter = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
    test_iter = DataLoader(test, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
    torch.manual_seed(seed)
    model = models.build(name, ds.image_shape, len(ds.classes), cfg.model_settings()).to(device)
    optimizer = make_optimizer(model, cfg)
    loss_fn = losses.get(cfg.loss, by_hand=spec.scratch)
    epochs = []
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        if isinstance(model, torch.nn.Module):
            model.train()
        for x, y in train_iter:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if isinstance(model, torch.nn.Module):
            model.eval()
        correct = seen = 0
        with torch.no_grad():
            for x, y in test_iter:
                x, y = x.to(device), y.to(device)
                correct += accuracy_count(model(x), y)
                seen += y.numel()
        epochs.append((time.perf_counter() - start, correct / seen))
    return epochs


def epoch_times(epochs: list[tuple[float, float]]) -> str:
    """'first / median of the rest' of the seconds each epoch took (from the times at their ends)."""
    ends = [s for s, _ in epochs]
    each = [b - a for a, b in zip([0.0] + ends, ends)]
    return f"{each[0]:.2f} / {statistics.median(each[1:]):.2f}" if len(each) > 1 else f"{each[0]:.2f} / -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU here; run it on a machine with one, or leave it out")
    ds = data.load("fashion-mnist")
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {args.device}: {where}, seed {args.seed}\n")
    print("| model | target | livetrain: epoch, seconds | d2l-style loop: epoch, seconds | d2l / livetrain "
          "| s an epoch, livetrain: the first / the median of the rest | the same, d2l-style loop |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_copy(ds, Path(tmp))
        for name in args.models.split(","):  # each model's rows as it finishes: a time limit keeps those done
            runs = results[name] = {"ours": ours(name, args.seed, ds, args.device),
                                    "d2l": d2l(name, args.seed, ds, root, args.device)}
            for target in TARGETS[name]:
                mine, theirs = first_reached(runs["ours"], target), first_reached(runs["d2l"], target)
                said = [f"{e}, {s:.1f} s" if e
                        else f"not in {len(runs[k])} epochs (best {max(a for _, a in runs[k]):.4f})"
                        for k, (e, s) in (("ours", mine or (0, 0)), ("d2l", theirs or (0, 0)))]
                ratio = f"{theirs[1] / mine[1]:.1f}x" if mine and theirs else "-"
                print(f"| {name} | {target} | {said[0]} | {said[1]} | {ratio} | {epoch_times(runs['ours'])} "
                      f"| {epoch_times(runs['d2l'])} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
