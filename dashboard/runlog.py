"""Run logs: one append-only JSON-lines file per run, always written, the source of truth.

Each line is one record with a "kind":
- "config":      the run's configuration
- "scalars":     step, x (epochs as a fraction), time, and one column per metric, so that
                 `pandas.read_json(path, lines=True)` gives a table with a column per metric
- "gallery":     the test images of the prediction grid, once per run (uint8, base64)
- "predictions": x, time, and per gallery image the predicted class, its probability, the true class
- "confusion":   x, time, the confusion matrix (rows true class, columns predicted)
- "status":      running / finished / failed / interrupted, with a reason

Every record is written with one `write` and flushed, so a crash loses at most the line being
written; the reader keeps every complete record of a file cut mid-line.
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

LOG_NAME = "log.jsonl"


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: those are written as null."""
    value = float(value)
    return value if math.isfinite(value) else None


class RunLog:
    """Writes one run's records to `run_dir/log.jsonl`; implements trainers' Reporter."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / LOG_NAME
        self._file = open(self.path, "a", encoding="utf-8")
        self._gallery: bytes | None = None

    def _write(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n")
        self._file.flush()

    def config(self, config: Mapping[str, Any]) -> None:
        self._write("config", config=dict(config))

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        self._write("scalars", step=int(step), x=float(x), **{k: _finite(v) for k, v in values.items()})

    def predictions(self, x: float, images: torch.Tensor, predicted: torch.Tensor,
                    probability: torch.Tensor, true: torch.Tensor, classes: tuple[str, ...]) -> None:
        raw = images.to(torch.uint8).contiguous().cpu().numpy().tobytes()
        if raw != self._gallery:  # the gallery's images are fixed for a run: store them once
            self._write("gallery", shape=list(images.shape), classes=list(classes),
                        images=base64.b64encode(raw).decode("ascii"))
            self._gallery = raw
        self._write("predictions", x=float(x), predicted=predicted.tolist(),
                    probability=[round(float(p), 4) for p in probability], true=true.tolist())

    def confusion(self, x: float, matrix: torch.Tensor, classes: tuple[str, ...]) -> None:
        self._write("confusion", x=float(x), matrix=matrix.tolist())

    def status(self, state: str, reason: str = "") -> None:
        self._write("status", state=state, reason=reason)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


@dataclass
class RunRecord:
    """What a run log holds, read back."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    scalars: list[dict[str, Any]] = field(default_factory=list)
    gallery: torch.Tensor | None = None  # (N, C, H, W) uint8
    classes: list[str] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    confusions: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # lines that were not a complete record (a cut last line)

    @property
    def status(self) -> str:
        return self.states[-1]["state"] if self.states else "unknown"

    def series(self, name: str) -> tuple[list[float], list[float]]:
        """(x, value) of every logged value of metric `name`."""
        rows = [r for r in self.scalars if r.get(name) is not None]
        return [r["x"] for r in rows], [r[name] for r in rows]


def read(path: Path) -> RunRecord:
    """Read a run log (or the run dir holding one), keeping every complete record."""
    if path.is_dir():
        path = path / LOG_NAME
    record = RunRecord(path)
    with open(path, "rb") as handle:
        for line in handle:
            try:
                item = json.loads(line)
            except ValueError:  # a line cut by a crash, or garbage: not a record
                record.skipped += 1
                continue
            if not isinstance(item, dict):
                record.skipped += 1
                continue
            kind = item.get("kind")
            if kind == "config":
                record.config = item["config"]
            elif kind == "scalars":
                record.scalars.append(item)
            elif kind == "gallery":
                raw = base64.b64decode(item["images"])
                record.gallery = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(item["shape"])
                record.classes = item["classes"]
            elif kind == "predictions":
                record.predictions.append(item)
            elif kind == "confusion":
                record.confusions.append(item)
            elif kind == "status":
                record.states.append(item)
            else:
                record.skipped += 1
    return record
