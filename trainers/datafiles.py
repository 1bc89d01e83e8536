"""The standard files of each data set, read and checked: IDX files (MNIST, Fashion-MNIST; gzip
or raw) and CIFAR-10's binary records or python pickles. Any problem is a one-line `DataError`
naming the file and the fix."""

from __future__ import annotations

import gzip
import io
import pickle
import zlib
from pathlib import Path

import numpy as np

from trainers.datasets import DataError

CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzip or raw); check its header against its size."""
    data = read_bytes(path)
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated: {len(data)} bytes is shorter than an IDX header")
    magic = int.from_bytes(data[:4], "big")
    want = 0x0800 + ndim
    if magic != want:
        kind = "image" if ndim == 3 else "label"
        raise DataError(f"{path} is not an IDX {kind} file (magic number {magic:#010x}, expected {want:#010x})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {state}: its header promises {dims[0]} items ({expected} bytes) "
            f"but it holds {len(data)} bytes; get a fresh copy"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}")
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is a damaged gzip file ({exc}); get a fresh copy")


def check_labels(labels: np.ndarray, path: Path, classes: int = 10) -> None:
    if labels.size and int(labels.max()) >= classes:
        raise DataError(f"{path} has label {int(labels.max())}, outside 0-{classes - 1}")


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = read_bytes(path)
    if not data or len(data) % CIFAR_RECORD:
        raise DataError(f"{path} is truncated: {len(data)} bytes is not a whole number of 3073-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].copy()
    check_labels(labels, path)
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batch dicts and numpy arrays, and nothing that could run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"), ("codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = read_bytes(path)
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}); get a fresh copy")
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch (no dict inside)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} is not a CIFAR-10 batch (no data or labels)")
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path} holds {data.dtype} data of shape {data.shape}, not (N, 3072) bytes")
    if data.shape[0] != labels.shape[0]:
        raise DataError(f"{path} has {data.shape[0]} images but {labels.shape[0]} labels")
    check_labels(labels, path)
    return data.reshape(-1, 3, 32, 32), labels
