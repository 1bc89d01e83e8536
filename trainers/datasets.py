"""The data sets livetrain knows, and where each one lies on this machine, without torch: what
`livetrain data list` and a plan's checks need. Reading them is trainers.data's.

Fashion-MNIST is looked for, in order, in `--data-dir` / `$LIVETRAIN_DATA`, in `./data`, in the
system data-set folder where Debian's `dataset-fashion-mnist` puts it. MNIST and CIFAR-10 lie in a
folder of their standard files (`livetrain data get` fetches them when online)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainers.errors import LivetrainError, did_you_mean
from trainers.installation import setup_command


class DataError(LivetrainError):
    """A one-line, user-facing reason why a data set cannot be loaded, with what to do."""


DATA_ENV = "LIVETRAIN_DATA"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_PY = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


@dataclass(frozen=True)
class Spec:
    """How one data set is named on disk and read."""

    title: str
    classes: tuple[str, ...]
    subdirs: tuple[str, ...]  # where it lies inside a data folder (torchvision's layout first)
    system_dir: Path | None  # where a Debian package puts it
    how_to_get: str
    torchvision_class: str


SPECS: dict[str, Spec] = {
    "fashion-mnist": Spec(
        "Fashion-MNIST", FASHION_CLASSES,
        ("FashionMNIST/raw", "fashion-mnist", "fashion_mnist"),
        SYSTEM_DATA_DIR / "fashion-mnist",
        f"install Debian's {DEBIAN_PACKAGE} (`{setup_command()}` does, as root) or put the four "
        "*-idx?-ubyte[.gz] files in ./data/fashion-mnist or --data-dir",
        "FashionMNIST",
    ),
    "mnist": Spec(
        "MNIST", MNIST_CLASSES, ("MNIST/raw", "mnist"), None,
        "put the four *-idx?-ubyte[.gz] files in ./data/mnist or --data-dir",
        "MNIST",
    ),
    "cifar10": Spec(
        "CIFAR-10", CIFAR10_CLASSES, ("cifar-10-batches-py", "cifar-10-batches-bin", "cifar10"), None,
        "put cifar-10-batches-py (or cifar-10-batches-bin) in ./data or --data-dir",
        "CIFAR10",
    ),
}
DATASETS = tuple(SPECS)

def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding `name`'s standard files (present, not yet read); DataError saying how to
    get them when they are not on this machine. Never downloads."""
    about = spec(name)
    searched: list[Path] = []
    for root in candidate_roots(data_dir):
        searched.append(root)
        found = _find_in(name, root)
        if found is not None:
            return found
    if about.system_dir is not None:
        searched.append(about.system_dir)
        found = _find_in(name, about.system_dir, exact=True)
        if found is not None:
            return found
    where = ", ".join(str(p) for p in searched)
    raise DataError(f"{about.title} not found (looked in {where}); {about.how_to_get}")


def candidate_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched, in order: --data-dir or $LIVETRAIN_DATA, then ./data."""
    roots = []
    explicit = data_dir or os.environ.get(DATA_ENV)
    if explicit:
        roots.append(Path(explicit))
    roots.append(Path("data"))
    return roots


def spec(name: str) -> Spec:
    if name not in SPECS:
        raise DataError(f"unknown data set {name!r}{did_you_mean(name, DATASETS)}; choose one of {', '.join(DATASETS)}")
    return SPECS[name]


def _find_in(name: str, root: Path, exact: bool = False) -> Path | None:
    """The folder under `root` holding `name`'s files, or None when none of them is there.

    A folder that holds some but not all of the files raises DataError naming the missing one.
    `exact` looks in `root` itself as well as its named subfolders."""
    about = SPECS[name]
    places = [root / sub for sub in about.subdirs]
    if exact or root != Path("data"):
        places.insert(0, root)
    for place in places:
        if not place.is_dir():
            continue
        present, absent = _files_in(name, place)
        if present and not absent:
            return place
        if present:
            raise DataError(f"{about.title} in {place} is incomplete: {absent[0]} is missing; {about.how_to_get}")
    return None


def _files_in(name: str, folder: Path) -> tuple[list[Path], list[str]]:
    """(files found, names missing) for the data set's standard files in `folder`."""
    present, absent = [], []
    if name == "cifar10":
        for names in (CIFAR_PY, tuple(f"{n}.bin" for n in CIFAR_PY)):
            found = [folder / n for n in names if (folder / n).is_file()]
            if found:
                return found, [n for n in names if not (folder / n).is_file()]
        return [], list(CIFAR_PY)
    for images, labels in IDX_FILES.values():
        for base in (images, labels):
            path = _idx_path(folder, base)
            if path is None:
                absent.append(f"{base}[.gz]")
            else:
                present.append(path)
    return present, absent


def _idx_path(folder: Path, base: str) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None
