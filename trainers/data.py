"""Data sets as in-memory uint8 tensors: found offline (where: trainers.datasets, which needs no
torch), validated on every load, loaded once. Every file is checked (IDX magic number, counts,
shape, label range; gzip or raw) and any problem is a one-line `DataError` naming the file and
the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from trainers.datafiles import check_labels, read_cifar_bin, read_cifar_pickle, read_idx
from trainers.datasets import (  # noqa: F401 - named here as before
    CIFAR10_CLASSES, CIFAR_PY, DATA_ENV, DATASETS, DEBIAN_PACKAGE, FASHION_CLASSES, IDX_FILES, MNIST_CLASSES, SPECS,
    SYSTEM_DATA_DIR, DataError, Spec, _find_in, _idx_path, candidate_roots, locate, spec as _spec,
)

@dataclass(frozen=True)
class Split:
    """One split in memory: images (N, C, H, W) uint8 and labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A whole data set: both splits, the class names, and the folder it was read from."""

    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split
    source: Path

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)


_cache: dict[tuple[str, str], Dataset] = {}


def load(name: str, data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Find, validate and load a data set (cached per process: each split is read once).
    Nothing is downloaded here: `livetrain data get` (trainers.download) fetches a data set
    when online; the launcher and the workers only read what is on disk."""
    return _cached(name, locate(name, data_dir))


def load_from(name: str, folder: str | os.PathLike[str]) -> Dataset:
    """Load a data set from exactly this folder of its standard files."""
    spec = _spec(name)
    found = _find_in(name, Path(folder), exact=True)
    if found is None:
        raise DataError(f"{spec.title}: no data files in {folder}; {spec.how_to_get}")
    return _cached(name, found)


def _cached(name: str, folder: Path) -> Dataset:
    key = (name, str(folder.resolve()))
    if key not in _cache:
        _cache[key] = _read(name, folder)
    return _cache[key]


def _read(name: str, folder: Path) -> Dataset:
    spec = SPECS[name]
    if name == "cifar10":
        train, test = _read_cifar(folder)
    else:
        train, test = (_read_idx_split(folder, *IDX_FILES[split]) for split in ("train", "test"))
    for split_name, split in (("training", train), ("test", test)):
        if len(split) == 0:  # a valid header of 0 items: nothing to train on, or to divide by
            raise DataError(f"{spec.title}: the {split_name} split in {folder} holds no images; get a fresh copy "
                            f"of its files ({spec.how_to_get})")
    return Dataset(name, spec.classes, train, test, folder)


# ---- IDX (MNIST, Fashion-MNIST) ------------------------------------------------------------

def _read_idx_split(folder: Path, images_base: str, labels_base: str) -> Split:
    images_path = _idx_path(folder, images_base)
    labels_path = _idx_path(folder, labels_base)
    assert images_path is not None and labels_path is not None  # _find_in checked
    images = read_idx(images_path, ndim=3)  # (N, 28, 28)
    labels = read_idx(labels_path, ndim=1)  # (N,)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path} holds {images.shape[1]}x{images.shape[2]} images, not 28x28")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} has {images.shape[0]} images but {labels_path.name} has "
            f"{labels.shape[0]} labels; the files do not belong together"
        )
    check_labels(labels, labels_path)
    return Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long())


# ---- CIFAR-10 (python pickles or binary records) -------------------------------------------

def _read_cifar(folder: Path) -> tuple[Split, Split]:
    if (folder / "test_batch.bin").is_file():
        reader: Callable[[Path], tuple[np.ndarray, np.ndarray]] = read_cifar_bin
        suffix = ".bin"
    else:
        reader, suffix = read_cifar_pickle, ""
    parts = [reader(folder / f"{n}{suffix}") for n in CIFAR_PY]
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))

    return split(train_x, train_y), split(*parts[5])


# ---- batches -------------------------------------------------------------------------------

CROP_PAD = 2  # px: how far "crop" may shift an image each way

def pixel_stats(split: Split, chunk: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a split's pixels scaled to [0, 1], each shaped (1, C, 1, 1).

    Summed in float64 over chunks, so no float copy of the whole split is ever made."""
    total = torch.zeros(split.images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(split), chunk):
        x = split.images[start:start + chunk].double().div_(255)  # (chunk, C, H, W)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = split.images[:, :1].numel()  # pixels per channel
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).mul(count / max(count - 1, 1)).sqrt()
    return mean.float().reshape(1, -1, 1, 1), std.float().reshape(1, -1, 1, 1)


def augmented(images: torch.Tensor, how: str, generator: torch.Generator, keep: slice = slice(None),
              total: int | None = None) -> torch.Tensor:
    """A batch of uint8 images (B, C, H, W), each image moved by its own draw: "crop", a random
    H x W crop of it padded by CROP_PAD px of 0s (a shift of up to CROP_PAD px each way); "flip",
    mirrored left-right with probability 1/2; "crop-flip", both. Done on the whole batch at once.
    `keep` of `total`: draw for a whole batch of `total`, these images its part (a rank's)."""
    b, _, h, w = images.shape
    total = b if total is None else total
    shifts = torch.randint(0, 2 * CROP_PAD + 1, (total, 2), generator=generator)[keep].to(images.device)
    flips = (torch.rand(total, generator=generator) < 0.5)[keep].to(images.device)
    if "crop" in how:
        padded = torch.nn.functional.pad(images, (CROP_PAD,) * 4)  # (B, C, H + 2p, W + 2p)
        rows = torch.arange(h, device=images.device) + shifts[:, :1]  # (B, H)
        cols = torch.arange(w, device=images.device) + shifts[:, 1:]  # (B, W)
        images = padded[torch.arange(b, device=images.device)[:, None, None], :, rows[:, :, None],
                        cols[:, None, :]].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    if "flip" in how:
        images = torch.where(flips[:, None, None, None], images.flip(3), images)
    return images


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
            generator: torch.Generator | None = None,
            stats: tuple[torch.Tensor, torch.Tensor] | None = None,
            part: Callable[[int], slice] | None = None, offset: int = 0, augment: str = "none",
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float batches (B, C, H, W) and labels (B,) sliced from whole-split tensors.

    With a `generator` the order is a fresh random permutation; without, the stored order. The
    uint8 -> float conversion and the normalisation happen per batch, on the tensors' device.
    With `part` (a rank's `World.part`), each batch of `batch_size` is cut to that part of it
    (maybe empty), so the ranks of one run share each global batch. `offset`: leave out the first
    images of the order (a run resumed inside an epoch: the order is drawn as before).
    `augment` (with a `generator`): see `augmented`; each batch's draws come from the epoch's
    seed and the batch's place, so a run resumed inside an epoch draws them as before."""
    n = labels.shape[0]
    if generator is None:
        order = torch.arange(n, device=labels.device)
    else:
        order = torch.randperm(n, generator=generator).to(labels.device)
    seed = None  # the epoch's, for its augmentation draws
    if generator is not None and augment != "none":
        seed = int(torch.randint(1 << 62, (1,), generator=generator))
    for start in range(offset, n, batch_size):
        idx = order[start:start + batch_size]
        keep = part(idx.shape[0]) if part is not None else slice(None)
        x = images[idx[keep]]  # (B, C, H, W) uint8
        if seed is not None:
            x = augmented(x, augment, torch.Generator().manual_seed(seed + start // batch_size), keep, idx.shape[0])
        idx = idx[keep]
        x = x.float().div_(255)  # (B, C, H, W) in [0, 1]
        if stats is not None:
            x = x.sub_(stats[0]).div_(stats[1])
        yield x, labels[idx]


# ---- setup -------------------------------------------------------------

def ensure_fashion_mnist(data_dir: str | None = None) -> str:
    """Setup step: find Fashion-MNIST, or install Debian's package when root with apt-get.

    Returns where it was found; raises DataError with the way to get it otherwise."""
    try:
        return str(load("fashion-mnist", data_dir).source)
    except DataError as first:
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            raise first
    for attempt in ([apt, "install", "-y", "-q", DEBIAN_PACKAGE], [apt, "update", "-q"],
                    [apt, "install", "-y", "-q", DEBIAN_PACKAGE]):
        proc = subprocess.run(attempt, capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode == 0 and attempt[1] == "install":
            break
    return str(load("fashion-mnist", data_dir).source)


def main(argv: list[str] | None = None) -> int:
    """`python -m trainers.data`: make sure Fashion-MNIST is on this machine (used by setup)."""
    try:
        where = ensure_fashion_mnist(argv[0] if argv else None)
    except DataError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
