"""Trainer speed, as ratios against a reference measured in the same run.

1. One epoch of batches: our slices of a preloaded uint8 tensor vs torchvision's
   FashionMNIST + ToTensor + DataLoader (batch 256, 0 and 2 workers). Target: >= 30x.
2. Training samples/s per model, one epoch: our `train_one_epoch` (reporting every batch to an
   in-memory recorder) vs a d2l-style loop over the same model with torchvision's DataLoader.
   Target: >= 3x for softmax and MLP. A second reference, the model as d2l's code writes it:
   the same layers and initial weights in torch's own modules (nn.Dropout, NCHW input) and
   torch.optim's optimizer with its defaults (not fused), in the same d2l loop.

    .venv/bin/python -m benchmarks.trainers_bench [--cnn-limit 20000]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from trainers import data, losses, models
from trainers.config import RunConfig
from trainers.loop import accuracy_count, make_optimizer, train_one_epoch
from trainers.reporting import Recorder

BATCH = 256


def torchvision_copy(ds: data.Dataset, root: Path) -> Path:
    """Fashion-MNIST un-gzipped where torchvision's FashionMNIST(download=False) wants it."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for images, labels in data.IDX_FILES.values():
        for base in (images, labels):
            src = data._idx_path(ds.source, base)
            assert src is not None
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as fin, open(raw / base, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return root


def time_epoch(batches) -> float:
    start = time.perf_counter()
    n = 0
    for x, y in batches:
        n += int(y.shape[0])
    assert n > 0
    return time.perf_counter() - start


def bench_batches(ds: data.Dataset, root: Path) -> dict:
    stats = data.pixel_stats(ds.train)
    ours = min(time_epoch(data.batches(ds.train.images, ds.train.labels, BATCH,
                                       generator=torch.Generator().manual_seed(i), stats=stats)) for i in range(3))
    tv = torchvision.datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    ref0 = time_epoch(DataLoader(tv, batch_size=BATCH, shuffle=True, num_workers=0))
    ref2 = time_epoch(DataLoader(tv, batch_size=BATCH, shuffle=True, num_workers=2))
    return {"ours_s": ours, "torchvision_0_workers_s": ref0, "torchvision_2_workers_s": ref2,
            "speedup_vs_0_workers": ref0 / ours, "speedup_vs_2_workers": ref2 / ours}


def d2l_epoch(model: models.Model, optimizer, loss_fn, loader: DataLoader) -> tuple[float, int]:
    """d2l's train_epoch_ch3: DataLoader batches, loss summed into an accumulator per batch."""
    model.train()
    loss_sum, correct, n = 0.0, 0, 0
    start = time.perf_counter()
    for x, y in loader:
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * y.numel()
        correct += accuracy_count(logits.detach(), y)
        n += y.numel()
    return time.perf_counter() - start, n


def as_d2l_writes_it(model: models.Model) -> models.Model:
    """The same layers and weights in torch's own modules, as d2l's code has them: nn.Dropout for
    livetrain's 16-bit dropout, NCHW input (the CNN's forward turns its input channels-last)."""
    stock = copy.deepcopy(model)
    if not isinstance(stock, torch.nn.Module):
        return stock  # the from-scratch softmax: d2l's own code already
    for parent in stock.modules():
        for key, child in parent.named_children():
            if isinstance(child, models.Dropout):
                setattr(parent, key, torch.nn.Dropout(child.p))
    if isinstance(stock, models.CNN):
        return torch.nn.Sequential(stock.features, stock.head)
    return stock


def stock_optimizer(model: models.Model, cfg: RunConfig):
    """torch.optim's Adam or SGD with torch's defaults (for-loop on the CPU), as d2l's code makes it."""
    if cfg.optimizer == "adam" and isinstance(model, torch.nn.Module):
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return make_optimizer(model, cfg)


def bench_training(ds: data.Dataset, root: Path, name: str, limit: int | None) -> dict:
    cfg = RunConfig(name, epochs=1, limit=limit, device="cpu").resolved()
    assert cfg.batch_size is not None
    spec = models.MODELS[name]
    stats = data.pixel_stats(ds.train) if spec.normalize else None
    n = limit or len(ds.train)

    torch.manual_seed(0)
    model = models.build(name, ds.image_shape, 10)
    loss = losses.get(cfg.loss, by_hand=spec.scratch)
    opt = make_optimizer(model, cfg)
    start = time.perf_counter()
    train_one_epoch(model, opt, loss, ds.train.images[:n], ds.train.labels[:n], cfg, 0, Recorder(),
                    torch.Generator().manual_seed(0), stats)
    ours = n / (time.perf_counter() - start)

    steps = [transforms.ToTensor()]
    if stats is not None:
        steps.append(transforms.Normalize(stats[0].flatten().tolist(), stats[1].flatten().tolist()))
    tv = torchvision.datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.Compose(steps))
    loader = DataLoader(Subset(tv, range(n)), batch_size=cfg.batch_size, shuffle=True, num_workers=0)
    torch.manual_seed(0)
    model = models.build(name, ds.image_shape, 10)
    stock = as_d2l_writes_it(model)
    seconds, seen = d2l_epoch(model, make_optimizer(model, cfg), loss, loader)
    ref = seen / seconds
    seconds, seen = d2l_epoch(stock, stock_optimizer(stock, cfg), loss, loader)
    stock_ref = seen / seconds
    return {"model": name, "samples": n, "ours_samples_per_s": ours, "d2l_samples_per_s": ref, "speedup": ours / ref,
            "d2l_stock_samples_per_s": stock_ref, "speedup_vs_stock": ours / stock_ref}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn-limit", type=int, default=20_000, help="training images for the CNN rows")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    ds = data.load("fashion-mnist")
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_copy(ds, Path(tmp))
        batches = bench_batches(ds, root)
        training = [bench_training(ds, root, name, args.cnn_limit if name == "cnn" else None)
                    for name in ("softmax", "mlp", "cnn")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| one epoch of batches (batch 256) | seconds | ours is faster by |")
    print("| --- | --- | --- |")
    print(f"| livetrain: slices of a preloaded uint8 tensor | {batches['ours_s']:.3f} | |")
    print(f"| torchvision FashionMNIST + ToTensor + DataLoader, 0 workers | {batches['torchvision_0_workers_s']:.2f} "
          f"| {batches['speedup_vs_0_workers']:.0f}x |")
    print(f"| the same, 2 workers | {batches['torchvision_2_workers_s']:.2f} | {batches['speedup_vs_2_workers']:.0f}x |")
    print("\n| model (one epoch) | livetrain samples/s | d2l-style loop, same model: samples/s | speedup "
          "| d2l-style loop, the model as d2l writes it: samples/s | speedup |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in training:
        print(f"| {row['model']} ({row['samples']:,} images) | {row['ours_samples_per_s']:,.0f} "
              f"| {row['d2l_samples_per_s']:,.0f} | {row['speedup']:.1f}x "
              f"| {row['d2l_stock_samples_per_s']:,.0f} | {row['speedup_vs_stock']:.1f}x |")
    if args.json:
        args.json.write_text(json.dumps({"batches": batches, "training": training}, indent=2))


if __name__ == "__main__":
    main()
