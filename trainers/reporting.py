"""What a training run reports, and to whom: the small interface trainers call.

The dashboard adapter implements `Reporter` (run log, Visdom, terminal); `Recorder` keeps
everything in memory, for tests and for code that wants the numbers back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Protocol


# Metric names: the one place that defines them. Per batch:
TRAIN_LOSS, TRAIN_ACC, SAMPLES_PER_S, LR = "train/loss", "train/acc", "train/samples_per_s", "train/lr"
# Per epoch (x is a whole number of epochs):
EPOCH_TRAIN_LOSS, EPOCH_TRAIN_ACC = "epoch/train_loss", "epoch/train_acc"
# test/loss is the test cross-entropy of every run, whatever it trains on (comparable numbers);
# a run that trains on another loss also reports that loss on the test set as test/objective
TEST_LOSS, TEST_ACC, TEST_OBJECTIVE = "test/loss", "test/acc", "test/objective"
# the mean entropy of the predicted class distribution over the test set, in bits (log2 K for a
# uniform guess over K classes, 0 for certainty); test metrics are also reported at x = 0, before
# the first step
TEST_ENTROPY = "test/entropy"
# the test accuracy of the class the run gets right least often, and the expected calibration
# error of its confidence (trainers.measures.scalars), from the untrained model's pass on
TEST_WEAKEST, TEST_ECE = "test/weakest", "test/ece"
# every few batches, the L2 norm of each layer's gradient (weight and bias together), as
# GRAD_PREFIX + the layer's name (see trainers.models.layers: "linear1", "conv2d2", ...)
GRAD_PREFIX = "grad/"
# The kinds of the records every run writes besides its scalars (trainers.measures computes them;
# the run log, dashboard.runlog, reads them back by these names)
SAMPLES, GALLERY, PREDICTIONS, CONFUSION, MISTAKES = "samples", "gallery", "predictions", "confusion", "mistakes"
EPOCH_METRICS = (EPOCH_TRAIN_LOSS, EPOCH_TRAIN_ACC, TEST_LOSS, TEST_ACC, TEST_OBJECTIVE, TEST_ENTROPY, TEST_WEAKEST,
                 TEST_ECE)


class RunState(str, Enum):
    """A run's state, as reported and logged; each is equal to the string its log holds."""

    STARTING = "starting"  # planned; nothing logged yet
    QUEUED = "queued"  # waiting for a free worker slot (--parallel)
    RUNNING = "running"
    PAUSED = "paused"  # held between two batches (from the page or `livetrain control`), to resume
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"  # a log that holds no status record

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: str) -> "RunState":
        """The state a log's string names (UNKNOWN for one it does not)."""
        return cls._value2member_map_.get(value, cls.UNKNOWN)  # type: ignore[return-value]

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


def epochs_done(x: float) -> int:
    """The whole epochs a run at `x` (epochs as a fraction) has finished."""
    return int(math.floor(x + 1e-9))


FINAL_STATES = frozenset({RunState.FINISHED, RunState.FAILED, RunState.INTERRUPTED})


class Reporter(Protocol):
    """Receives a run's config, metrics, records and status. x is epochs as a fraction.

    Four calls, after Lightning's Logger: `config` (its log_hyperparams), `scalars` (its
    log_metrics), `record` for everything a window of its own draws (trainers.measures), and
    `status`. Whoever made the reporter closes it."""

    def config(self, config: Mapping[str, Any]) -> None: ...

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        """Called once per batch: keep it cheap. `values` is the reporter's to keep (it may be read
        a moment later): pass a new mapping each call."""

    def record(self, kind: str, step: int, x: float, payload: Mapping[str, Any]) -> None:
        """A record of its own kind at `step` and `x`, its payload JSON values: what a window
        draws (trainers.measures: "predictions", "calibration", ...), or what happened to a
        request made to the run ("control")."""

    def status(self, state: RunState, reason: str = "") -> None: ...


@dataclass
class Recorder:
    """A Reporter that keeps every call in memory."""

    config_values: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[int, float, dict[str, float]]] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)
    records: list[tuple[str, int, float, dict[str, Any]]] = field(default_factory=list)

    def config(self, config: Mapping[str, Any]) -> None:
        self.config_values = dict(config)

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        self.rows.append((step, x, dict(values)))

    def record(self, kind: str, step: int, x: float, payload: Mapping[str, Any]) -> None:
        self.records.append((kind, step, x, dict(payload)))

    def status(self, state: RunState, reason: str = "") -> None:
        self.states.append((state, reason))

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The payloads of every record of `kind`, in order, each with its step and x."""
        return [{"step": step, "x": x, **payload} for k, step, x, payload in self.records if k == kind]

    def series(self, name: str) -> list[float]:
        """Every value reported under `name`, in order."""
        return [values[name] for _, _, values in self.rows if name in values]
