"""Getting a data set when online: `livetrain data get NAME`, through torchvision's own
downloaders (their mirrors, checksums and unpacking), into the folder the loader searches.

Nothing else in livetrain downloads: training only reads what is on disk. `mirror` replaces
torchvision's list of mirrors with one base URL (a local copy of the same files, which must
pass the same checksums); offline, the error names the folder to put the files in instead."""

from __future__ import annotations

import contextlib
import io
import os
import socket
from pathlib import Path

from trainers import data
from trainers.datafiles import DataError

TIMEOUT = 30.0  # s without an answer before a download gives up (urllib's default is forever)


def target_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where `data get` puts a data set: --data-dir, $LIVETRAIN_DATA, else ./data (the loader
    searches each, in torchvision's own layout below it)."""
    return Path(data_dir or os.environ.get(data.DATA_ENV) or "data")


def get(name: str, data_dir: str | os.PathLike[str] | None = None, mirror: str | None = None) -> tuple[Path, bool]:
    """(the folder holding `name`, whether it was downloaded now); already on this machine, it is
    left as it is. Raises DataError when the download fails or its files do not load."""
    spec = data.SPECS.get(name)
    if spec is None:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(data.DATASETS)}")
    root = target_root(data_dir)
    try:
        return data.locate(name, root), False
    except DataError:
        pass
    folder = root / spec.subdirs[0]  # torchvision's layout, the loader's first place to look
    try:
        _fetch(name, root, mirror)
    except Exception as exc:  # noqa: BLE001 - urllib, checksum and archive errors come as many kinds
        reason = " ".join(str(exc).split()) or type(exc).__name__
        where = f"{mirror} " if mirror else ""
        raise DataError(f"could not download {spec.title} from {where}({_short(reason)}); offline, put its files "
                        f"in {folder} yourself ({_files(name)}), or try again online") from None
    return data.load_from(name, folder).source, True


def _fetch(name: str, root: Path, mirror: str | None) -> None:
    """torchvision's download of `name` into `root`, without loading the data set afterwards."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, data.SPECS[name].torchvision_class)
    downloader = cls.__new__(cls)  # only its download(): the loader reads the files itself
    downloader.root = str(root)
    if mirror:
        base = mirror.rstrip("/") + "/"
        if name == "cifar10":
            downloader.url = base + cls.filename
        else:
            downloader.mirrors = [base]
    saved = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            downloader.download()
    finally:
        socket.setdefaulttimeout(saved)


def _files(name: str) -> str:
    return ("cifar-10-batches-py: data_batch_1..5, test_batch" if name == "cifar10"
            else "train- and t10k- images-idx3-ubyte and labels-idx1-ubyte, .gz or not")


def _short(reason: str, limit: int = 160) -> str:
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."
