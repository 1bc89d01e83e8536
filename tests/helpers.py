"""Helpers the tests share: what a server holds and what a run log downsamples to, running
`launch.py` as a process, a run's backend drawing into a server, generated data-set files."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dashboard import markers, panels, runlog, windows
from dashboard.connection import VisdomConnection
from dashboard.downsample import Ema, MinMaxSeries
from dashboard.runlog import LOG_NAME
from dashboard.sender import Sender
from dashboard.panels.gallery import GALLERY_SHOWN
from dashboard.visdom_backend import VisdomBackend
from dashboard.windows import DrawOptions
from tests.conftest import REPO
from trainers import data
from trainers.reporting import GRAD_PREFIX, TRAIN_LOSS


# The course notes' own model classes, written as the seeds write them
# seed 001 (an MLP for MNIST; its loop calls data.view(-1, 28*28) before the model)
SEED_001 = """
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super(MLP, self).__init__()
        self.model = nn.Sequential(
            nn.Linear(784, 200),
            nn.ReLU(inplace=True),
            nn.Linear(200, 200),
            nn.ReLU(inplace=True),
            nn.Linear(200, 10),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.model(x)
"""

# seed 004 (a LeNet-style CNN for CIFAR-10's 3x32x32 images)
SEED_004 = """
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x
"""


def breaks_at_fifth_batch(condition: str, said: str) -> str:
    """A model file: `Breaks`, an MLP that raises ValueError(`said`) at its 5th training batch
    where `condition` (Python, in its forward) holds: a run failing for a reason of its own."""
    return f'''import os
from pathlib import Path

from torch import nn


class Breaks(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(num_classes))
        self.calls = 0

    def forward(self, x):
        self.calls += self.training
        if self.training and self.calls == 5 and ({condition}):
            raise ValueError({said!r})
        return self.net(x)
'''


MAX_POINTS = 60  # small, so that per-batch traces are downsampled (past 30 points) and per-epoch ones are not


def server_state(url: str, env: str) -> dict[str, Any]:
    return json.loads(VisdomConnection(url).post("win_data", {"eid": env, "win": None}))


def traces(state: dict[str, Any], win: str) -> dict[str, tuple[list[float], list[float]]]:
    """A compare window's traces by name (the unnamed placeholder left out)."""
    return {d["name"]: (d["x"], d["y"]) for d in state[win]["content"]["data"] if d["name"]}


def changes_of(record: runlog.RunRecord) -> list[markers.Change]:
    """The changes a run's log says were applied to it while it trained (marked on its curves)."""
    changes = markers.Changes()
    changes.config(record.config)
    for item in record.controls:
        changes.take(item["x"], item)
    return changes.made


def drawn_from_log(record: runlog.RunRecord, metric: str, max_points: int = MAX_POINTS) -> MinMaxSeries:
    series = MinMaxSeries(max_points)
    for x, y in zip(*record.series(metric)):
        series.add(x, y)
    return series


def smoothed_from_log(record: runlog.RunRecord, metric: str, weight: float, max_points: int = MAX_POINTS) -> MinMaxSeries:
    """The smoothed trace the run's log gives: its EMA (TensorBoard's, debiased), downsampled."""
    ema, series = Ema(weight), MinMaxSeries(max_points)
    for x, y in zip(*record.series(metric)):
        series.add(x, ema.add(y))
    return series


def assert_windows_match_logs(state: dict[str, Any], run_dirs: list[Path], max_points: int = MAX_POINTS,
                              smoothing: float | None = windows.DEFAULT_SMOOTHING) -> None:
    """Every compare window holds its traces for each run (raw and smoothed per batch; test and
    train per epoch), each exactly what the run log's points give; where a trace was
    downsampled, each bucket shows its raw min and max. Each run's own windows hold its log's
    latest confusion matrix, predictions, mistakes and gradient norms."""
    records = [runlog.read(d) for d in run_dirs]
    labels = [r.meta["label"] for r in records]
    marks = {r.meta["label"]: changes_of(r) for r in records}
    for win, parts in windows.COMPARE_PARTS.items():
        names = [windows.trace_name(label, smoothed, w.part) for label in labels for w in parts
                 for smoothed in ((False, True) if smoothing and w.per_batch else (False,))]
        names += [markers.mark_name(label, change) for label in labels for change in marks[label]]
        assert sorted(traces(state, win)) == sorted(names), win
    for window in windows.COMPARE_WINDOWS:
        held = traces(state, window.win)
        for record in records:
            label = record.meta["label"]
            xs, ys = record.series(window.metric)
            assert xs, (window.metric, label)
            expected = drawn_from_log(record, window.metric, max_points)
            assert held[windows.trace_name(label, part=window.part)] == expected.points(), (window.win, label)
            if smoothing and window.per_batch:
                smooth = smoothed_from_log(record, window.metric, smoothing, max_points)
                assert held[windows.trace_name(label, True)] == smooth.points(), (window.win, label)
            drawn = dict(zip(*held[windows.trace_name(label, part=window.part)]))
            logged = dict(zip(xs, ys))
            assert all(logged[x] == y for x, y in drawn.items())  # only logged points are drawn
            for start in range(0, len(ys), expected.size):  # and every bucket's extremes are
                chunk = ys[start:start + expected.size]
                assert min(chunk) in drawn.values() and max(chunk) in drawn.values()
    for record in records:
        label = record.meta["label"]
        heat = state[windows.run_window("confusion", label)]["content"]["data"][0]
        assert heat["z"] == record.confusions[-1]["matrix"] and heat["x"][0] == "T-shirt/top"
        gallery = state[windows.run_window("gallery", label)]["content"]
        assert gallery.count("<figure") == GALLERY_SHOWN and f"after epoch {record.predictions[-1]['x']:g}" in gallery
        mistakes = state[windows.run_window("mistakes", label)]["content"]
        assert mistakes.count("<figure") == len(record.mistakes[-1]["predicted"]) > 0
        assert f"after epoch {record.mistakes[-1]['x']:g}" in mistakes
        grads = {d["name"]: (d["x"], d["y"]) for d in state[windows.run_window("gradients", label)]["content"]["data"]}
        layers = [k[len(GRAD_PREFIX):] for k in record.scalars[-1] if k.startswith(GRAD_PREFIX)] or \
            sorted({k[len(GRAD_PREFIX):] for row in record.scalars for k in row if k.startswith(GRAD_PREFIX)})
        assert sorted(grads) == sorted(layers), label
        for layer, points in grads.items():
            assert points == drawn_from_log(record, GRAD_PREFIX + layer, max_points).points(), (label, layer)
        for panel in panels.PANELS:  # each window of its own module: what its draw makes of the log's records
            logged = record.other.get(panel.kind)
            if not logged:  # a model it does not apply to (templates of a CNN): waiting, or never placed
                assert state.get(panel.win(label), {"type": "text"})["type"] == "text", (panel.kind, label)
                continue
            kept = [record.other[kind][-1] for kind in panel.also if kind in record.other]
            kept += logged if panel.history else logged[-1:]
            expected = panel.draw("", panel.win(label), label, [{k: v for k, v in r.items() if k != "time"} for r in kept])
            held = state[panel.win(label)]
            assert windows.pane_content(held) == windows.message_content(expected), (panel.kind, label)
            assert held["title"] == expected["opts"]["title"], (panel.kind, label)


def livetrain(cwd: Path, *args: str, session: bool = False, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`launch.py ARGS` as a process (with `env` added to its environment); `session`: in a
    process group of its own, as a terminal starts a command (then `os.killpg(proc.pid, SIGINT)`
    is a Ctrl-C in that terminal: every process of the group gets it)."""
    return subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=session,
                            env={**os.environ, **env} if env else None)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def launched(log_dir: Path) -> bool:
    """A launch's folder exists in `log_dir` (the launcher's write test, a file, is not one)."""
    return log_dir.is_dir() and any(p.is_dir() for p in log_dir.iterdir())


def launch_dir(log_dir: Path) -> Path:
    (only,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return only


def wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def training(run_dir: Path) -> bool:
    """The run has logged per-batch points."""
    path = run_dir / LOG_NAME
    return path.is_file() and b'"kind":"scalars"' in path.read_bytes()


def parent_pid(pid: int) -> int:
    """A process's parent, from /proc (OSError or ValueError once it is gone)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def gone(pids: list[int]) -> bool:
    """Whether every process of `pids` has ended (a zombie counts as ended)."""
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return False
    return True


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if parent_pid(int(entry.name)) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def worker_of(launcher: int, run_dir: Path) -> int:
    """The worker process of `launcher` that has `run_dir`'s log open: its child, or its fork
    server's child when runs are queued (see dashboard.launch.supervisor)."""
    log = str(run_dir / LOG_NAME)
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = parent_pid(int(entry.name))
            except (OSError, ValueError):
                continue
    for pid, parent in parents.items():
        if parent != launcher and parents.get(parent) != launcher:
            continue
        try:
            if any(os.readlink(fd) == log for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no worker of {launcher} writes {log}")


def held(url: str, env: str, win: str) -> dict[str, tuple[list[float], list[float]]]:
    state = json.loads(VisdomConnection(url).post("win_data", {"eid": env, "win": None}))
    return {d["name"]: (d["x"], d["y"]) for d in state[win]["content"]["data"] if d["name"]}


def stream(backend: VisdomBackend, sender: Sender, flushes: int, per_flush: int, start: int = 0) -> int:
    rng = random.Random(start)
    step = start
    for _ in range(flushes):
        for _ in range(per_flush):
            step += 1
            backend.scalars(step, step / 100, {TRAIN_LOSS: rng.random()})
        assert sender.flush(), sender.last_error
    return step


def drawing(url: str, env: str, label: str, **options: Any) -> tuple[VisdomConnection, Sender, VisdomBackend]:
    """A run's backend drawing into `env` at `url` through its own connection and sender;
    `options` are the rest of its DrawOptions (max_points, smoothing)."""
    connection = VisdomConnection(url)
    sender = Sender(connection)
    return connection, sender, VisdomBackend(sender, DrawOptions(env, **options), label)


def expected(backend: VisdomBackend) -> dict[str, tuple[list[float], list[float]]]:
    return {d["name"]: (d["x"], d["y"]) for d in backend.trace_data(TRAIN_LOSS)}


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, gz: bool = False,
              cut: int = 0) -> Path:
    """An IDX file of unsigned bytes as MNIST ships them; `cut` drops bytes off the end."""
    magic = 0x0800 + array.ndim if magic is None else magic
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut]
    if gz:
        raw, path = gzip.compress(raw), path.with_name(path.name + ".gz")
    path.write_bytes(raw)
    return path


def make_mnist(folder: Path, n_train: int = 50, n_test: int = 20, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = data.IDX_FILES[split]
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / images_name, images, gz=gz)
        write_idx(folder / labels_name, labels, gz=gz)
        arrays[split] = (images, labels)
    return arrays


def make_cifar(folder: Path, per_batch: int = 6, binary: bool = False, seed: int = 0) -> np.ndarray:
    """CIFAR-10's python (pickled dict) or binary layout; returns the test images (N, 3, 32, 32)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    test_images = None
    for name in data.CIFAR_PY:
        images = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        if binary:
            records = np.concatenate([labels.astype(np.uint8)[:, None], images], axis=1)
            (folder / f"{name}.bin").write_bytes(records.tobytes())
        else:
            batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": images}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        test_images = images
    (folder / ("batches.meta.txt" if binary else "batches.meta")).write_bytes(b"meta")
    assert test_images is not None
    return test_images.reshape(-1, 3, 32, 32)


def broken(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "broken"
    arrays = make_mnist(folder, gz=False)
    images, labels = arrays["train"]
    target = folder / "train-images-idx3-ubyte"
    if how == "truncated":
        write_idx(target, images, cut=100)
    elif how == "wrong-magic":
        write_idx(target, images, magic=0x0803 + 0x1000)
    elif how == "mismatched-count":
        write_idx(folder / "train-labels-idx1-ubyte", labels[:-3])
    elif how == "missing":
        target.unlink()
    elif how == "damaged-gzip":
        target.unlink()
        good = gzip.compress(write_idx(target, images).read_bytes())
        target.unlink()
        (folder / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    elif how == "bad-label":
        bad = labels.copy()
        bad[4] = 12
        write_idx(folder / "train-labels-idx1-ubyte", bad)
    elif how == "wrong-size":
        write_idx(target, np.zeros((50, 32, 32), dtype=np.uint8))
    return folder
