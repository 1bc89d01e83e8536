"""Run logs: one append-only JSON-lines file per run, always written, the source of truth.

Each line is one record with a "kind" and its time:
- "config":      the run's configuration, its label and colour on the page ("run"), and the
                 log's format (LOG_FORMAT; a log without one is of format 1)
- "scalars":     step, x (epochs as a fraction), and one column per metric, so that
                 `pandas.read_json(path, lines=True)` gives a table with a column per metric
- "status":      running / paused / finished / failed / interrupted, with a reason
- any other:     step, x and a payload, written by `Reporter.record`; kept as read, by kind, in
                 `RunRecord.other` (the requests' outcomes in `RunRecord.controls`):
  - "samples":     training images (uint8, base64) with their labels, before the first step
  - "gallery":     the sample of test images whose predictions follow, as a run starts
  - "predictions": per gallery image the predicted class, its probability, the true class
  - "confusion":   the confusion matrix (rows true class, columns predicted) and the classes
  - "mistakes":    the test images most confidently wrong (uint8, base64), each with its
                   predicted class and probability, its true class and the probability given to it
  - "control":     what happened to a request made to the run (trainers.control): its id,
                   action, values, source, whether it was applied, and if not why
  - what a window of its own reads (dashboard.panels, trainers.measures: "calibration"...)

Format 1 (before 2026-12-05) wrote no step in "samples", "gallery", "predictions", "confusion"
and "mistakes", no x in the first two, and no classes in "confusion": the reader fills them in
(the step and x of the scalars row before, the classes of the gallery), so that every format
reaches the windows the same.

Every record but the per-batch scalars is written with one `write` and flushed at once. Per-batch
scalars are written in batches, at most WRITE_EVERY seconds apart (and before any other record, and
at close): a write and flush per batch cost the training thread a measurable share of a short step
(see docs/benchmarks.md). The per-batch call only queues (time, step, x, values);
the batch is encoded when written, each line filled into a template made once per set of metric
names, and then handed to `on_scalars` (a live `Dashboard`'s windows): nothing more per batch.
A value that is not a number is left out of the log and raises ValueError from the call that
writes its batch, after everything else. A process killed outright (SIGKILL) loses at most its
last quarter second of batch scalars; whatever else ends it closes the log first. The reader
keeps every complete record of a file cut mid-line.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from trainers.control import CONTROL, changed
from trainers.reporting import CONFUSION, GALLERY, MISTAKES, PREDICTIONS, SAMPLES, Reporter, RunState

if TYPE_CHECKING:  # torch is imported where images are decoded: reading a log needs none
    import torch

LOG_NAME = "log.jsonl"
INCOMPLETE_MARK = "windows-incomplete"  # in a run dir: the Visdom server missed the run's last updates
REQUESTS = "requests.jsonl"  # in a run dir: the requests its launch sent it (dashboard.launch.control)
NODE_FILE = "node.txt"  # in a run dir trained on a cluster: the node's id and host (dashboard.launch.cluster)
_ROW_FIELDS = {"kind", "step", "x", "time"}
_OWN_KINDS = {"config", "scalars", "status"}
LOG_FORMAT = 2  # the format this version writes (see above); it reads every format up to it
WRITE_EVERY = 0.25  # seconds: the longest per-batch scalars wait to be written


def _number(value: Any) -> str:
    """A number as JSON writes it (`repr` of the float); NaN and infinity, which JSON lacks, as null."""
    value = float(value)
    return repr(value) if math.isfinite(value) else "null"


def _scalars_template(keys: tuple[str, ...]) -> str:
    """A scalars line with `%` slots for time, step, x and each metric: the line json.dumps would
    write, at a fraction of its cost."""
    names = "".join("," + json.dumps(str(k)).replace("%", "%%") + ":%s" for k in keys)
    return '{"kind":"scalars","time":%s,"step":%d,"x":%s' + names + "}\n"


def metric_values(row: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of a logged scalars row (its other fields left out, nulls dropped)."""
    return {k: v for k, v in row.items() if k not in _ROW_FIELDS and v is not None}


def _cut(path: Path) -> bool:
    """True when the file's last line has no newline (its writer was killed mid-line)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        if handle.tell() == 0:
            return False
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


class RunLog:
    """Writes one run's records to `run_dir/log.jsonl`; implements trainers' Reporter.

    `meta` (the run's label and colour on the dashboard) is stored with the config."""

    def __init__(self, run_dir: Path, meta: Mapping[str, Any] | None = None) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / LOG_NAME
        self._file = open(self.path, "a", encoding="utf-8")
        if _cut(self.path):  # a process killed mid-write: start on a line of our own
            self._file.write("\n")
        self._failed = False  # a write failed (a full disk): the next record starts a new line
        self.meta = dict(meta or {})
        self._pending: list[tuple[float, int, float, Mapping[str, float]]] = []  # scalars not yet written, as passed
        self._written = time.monotonic()
        self._templates: dict[tuple[str, ...], str] = {}  # per set of metric names: a scalars line to fill in
        # called with [(x, values), ...] after each batch of scalars is written (the live windows)
        self.on_scalars: Callable[[list[tuple[float, Mapping[str, float]]]], None] | None = None

    def _write(self, kind: str, **fields: Any) -> None:
        error = self._write_pending(flush=False)
        record = {"kind": kind, "time": round(time.time(), 3), **fields}
        self._put(json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n", flush=True)
        if error is not None:
            raise error

    def _put(self, text: str, flush: bool) -> None:
        """Write (and flush) `text`; after a failed write (a full disk), on a line of its own, so
        that a line cut short by it spoils no later record."""
        try:
            if self._failed:
                self._file.write("\n")
                self._failed = False
            self._file.write(text)
            if flush:
                self._file.flush()
        except OSError:
            self._failed = True
            raise

    def _write_pending(self, flush: bool = True) -> ValueError | None:
        """Write the pending scalars; the error of any that were not numbers is returned, for the
        caller to raise once its own record is written too (nothing good is held back by a bad one)."""
        pending, self._pending = self._pending, []
        self._written = time.monotonic()
        if not pending:
            return None
        lines, points, error = [], [], None
        for t, step, x, values in pending:
            try:
                keys = tuple(values)
                template = self._templates.get(keys)
                if template is None:
                    template = self._templates[keys] = _scalars_template(keys)
                x = float(x)
                if not math.isfinite(x):
                    raise ValueError(f"x is {x}")
                lines.append(template % (repr(round(t, 3)), int(step), repr(x), *map(_number, values.values())))
                points.append((x, values))
            except (TypeError, ValueError) as exc:  # not a number: the others are still written
                error = error or ValueError(f"scalars of step {step} not logged ({exc}): report numbers")
        self._put("".join(lines), flush)
        if points and self.on_scalars is not None:
            self.on_scalars(points)
        return error

    def config(self, config: Mapping[str, Any]) -> None:
        self._write("config", config=dict(config), run=self.meta, format=LOG_FORMAT)

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        # the least work here, on the training thread right after a step (cold caches: every
        # bytecode counts); the values are read and checked when the batch is written
        self._pending.append((time.time(), step, x, values))
        if time.monotonic() - self._written >= WRITE_EVERY:
            error = self._write_pending()
            if error is not None:
                raise error

    def status(self, state: RunState, reason: str = "") -> None:
        self._write("status", state=state, reason=reason)

    def record(self, kind: str, step: int, x: float, payload: Mapping[str, Any]) -> None:
        if kind in _OWN_KINDS:
            raise ValueError(f"{kind!r} records are written by their own method")
        self._write(kind, step=step, x=x, **payload)

    def close(self) -> None:
        if not self._file.closed:
            try:
                error = self._write_pending()
            except OSError:  # a full disk: what was written stays, the file is closed all the same
                try:
                    self._file.close()
                except OSError:
                    pass
                raise
            self._file.close()
            if error is not None:
                raise error


def decode_images(item: Mapping[str, Any]) -> torch.Tensor:
    """The uint8 images (N, C, H, W) of a record (trainers.measures.images)."""
    import torch

    raw = base64.b64decode(item["images"], validate=True)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(item["shape"])


@dataclass
class Samples:
    """A run's training samples: (N, C, H, W) uint8 images, their labels and the class names."""

    images: torch.Tensor
    labels: list[int]
    classes: list[str]


@dataclass
class RunRecord:
    """What a run log holds, read back."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    format: int = 1  # the log's (LOG_FORMAT when this version wrote it)
    scalars: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)  # what happened to each request made to it
    # the records of every other kind, by kind, as read (a live follower: the latest of each)
    other: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)  # records read, per kind
    skipped: int = 0  # lines that were not a complete record (a cut last line)
    keep_scalars: bool = True  # False: keep only each metric's latest value and each kind's latest record
    on_scalars: Callable[[dict[str, Any]], None] | None = None  # called with each scalars row as read
    latest: dict[str, float] = field(default_factory=dict)
    x: float = 0.0
    step: int = 0  # of the latest scalars row
    started: float | None = None
    updated: float | None = None
    _decoded: dict[str, tuple[int, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        return self.states[-1]["state"] if self.states else RunState.UNKNOWN

    @property
    def predictions(self) -> list[dict[str, Any]]:
        return self.other.get(PREDICTIONS, [])

    @property
    def confusions(self) -> list[dict[str, Any]]:
        return self.other.get(CONFUSION, [])

    @property
    def mistakes(self) -> list[dict[str, Any]]:
        return self.other.get(MISTAKES, [])

    @property
    def gallery(self) -> torch.Tensor | None:
        """The latest gallery's images (N, C, H, W) uint8."""
        return self._images(GALLERY)

    @property
    def classes(self) -> list[str]:
        return list(self.other[GALLERY][-1]["classes"]) if GALLERY in self.other else []

    @property
    def samples(self) -> Samples | None:
        images = self._images(SAMPLES)
        if images is None:
            return None
        item = self.other[SAMPLES][-1]
        return Samples(images, [int(v) for v in item["labels"]], [str(c) for c in item["classes"]])

    def _images(self, kind: str) -> torch.Tensor | None:
        """The images of the latest record of `kind`, decoded once."""
        if kind not in self.other:
            return None
        item = self.other[kind][-1]
        held = self._decoded.get(kind)
        if held is None or held[0] != id(item):
            held = self._decoded[kind] = (id(item), decode_images(item))
        return held[1]

    def add_line(self, line: bytes | str) -> None:
        """Take one line of the log; anything that is not a complete record is counted in `skipped`."""
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a record")
            self._add(item)
        except (ValueError, KeyError, TypeError, RuntimeError):  # a line cut by a crash, or garbage
            self.skipped += 1

    def _add(self, item: dict[str, Any]) -> None:
        kind = item["kind"]
        if kind == "config":
            self.config, self.meta = dict(item["config"]), dict(item.get("run") or {})
            self.format = int(item.get("format", 1))
            self.started = self.started or item.get("time")
        elif kind == "scalars":
            self.x, self.step = float(item["x"]), int(item["step"])
            self.latest.update(metric_values(item))
            if self.keep_scalars:
                self.scalars.append(item)
            if self.on_scalars is not None:
                self.on_scalars(item)
        elif kind == "status":
            if item["state"] == RunState.RUNNING and self.states and self.states[-1]["state"] == RunState.QUEUED:
                self.started = item.get("time", self.started)  # its time runs from its start, not its queueing
            self.states.append(item)
        elif kind == CONTROL:
            self.controls.append(item)
        else:  # what a window draws (dashboard.panels), or a kind this version does not draw
            if kind in (GALLERY, SAMPLES):
                decode_images(item)  # a record that does not decode is not kept
            if "step" not in item:  # format 1
                item["step"] = self.step
                item.setdefault("x", self.x)
                if kind == CONFUSION and "classes" not in item:
                    item["classes"] = self.classes
            kept = self.other.setdefault(str(kind), [])
            if not self.keep_scalars:
                kept.clear()
            kept.append(item)
        self.counts[kind] += 1
        self.updated = item.get("time", self.updated)

    def in_force(self) -> dict[str, Any]:
        """Its config with what requests changed while it trained (the latest applied `set` of
        each setting): the lr, momentum and weight decay it trains with now."""
        in_force = dict(self.config)
        for item in self.controls:
            in_force.update(changed(item))
        return in_force

    def series(self, name: str) -> tuple[list[float], list[float]]:
        """(x, value) of every logged value of metric `name`."""
        rows = [r for r in self.scalars if r.get(name) is not None]
        return [r["x"] for r in rows], [r[name] for r in rows]


def run_dirs(folder: Path, depth: int = 2) -> list[Path]:
    """The run folders at `folder`, sorted: itself when it holds a run log; else its subfolders
    that do (a launch's folder); else, with `depth` 2, theirs (a log dir of launches)."""
    if (folder / LOG_NAME).is_file():
        return [folder]
    for level in range(1, depth + 1):
        found = sorted(p.parent for p in folder.glob("*/" * level + LOG_NAME))
        if found:
            return found
    return []


def read(path: Path, keep_scalars: bool = True) -> RunRecord:
    """Read a run log (or the run dir holding one), keeping every complete record
    (`keep_scalars=False`: only each metric's latest value, for a quick summary)."""
    if path.is_dir():
        path = path / LOG_NAME
    record = RunRecord(path, keep_scalars=keep_scalars)
    with open(path, "rb") as handle:
        for line in handle:
            record.add_line(line)
    return record


class LogFollower:
    """Reads a run log as it grows: each `poll` takes the lines completed since the last one."""

    def __init__(self, path: Path, keep_scalars: bool = False) -> None:
        self.path = path if path.name == LOG_NAME else path / LOG_NAME  # a run dir, maybe not made yet
        self.record = RunRecord(self.path, keep_scalars=keep_scalars)
        self._offset = 0
        self._tail = b""

    def poll(self) -> bool:
        """True when new records arrived."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return False
        if not chunk:
            return False
        self._offset += len(chunk)
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()  # an incomplete last line waits for the rest
        for line in lines:
            self.record.add_line(line)
        return bool(lines)


def feed(record: RunRecord, reporter: Reporter) -> None:
    """Send a logged run's records to `reporter`, each kind in the order it was logged."""
    reporter.config(record.config)
    for row in record.scalars:
        reporter.scalars(row["step"], row["x"], metric_values(row))
    for item in record.controls + [item for items in record.other.values() for item in items]:
        reporter.record(item["kind"], item["step"], item["x"], {k: v for k, v in item.items() if k not in _ROW_FIELDS})
    for state in record.states:
        reporter.status(RunState.of(state["state"]), state.get("reason", ""))
