"""The y range of the loss windows, robust to a run that diverges.

One run of an lr sweep whose loss reaches 5e4 would stretch a loss window's y axis to 50,000 and
flatten every other run into a line at 0 (TensorBoard's answer: "ignore outliers in chart
scaling", on by default). Here the range follows the runs that have not diverged. A diverged run
stays drawn, clipped at the top, with a marker where it leaves the range and a legend entry that
says so; a double-click on the plot (Plotly's autoscale) still shows all of it.

A run has diverged in a window once one of its values there is not a finite number, or passes
DIVERGED times its start (its first value: the untrained model's loss), or the runs' median start
when that is higher. Losses that train well stay under their start; a few noisy batches stay well
under 4x it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dashboard import windows
from trainers.reporting import EPOCH_TRAIN_LOSS, TEST_LOSS, TRAIN_LOSS

DIVERGED = 4.0
PAD = 0.05  # of the range, above and below
RECORDS = 512  # a run's record highs kept (for where it left the range); halved when full

# the loss windows and the metrics each holds
LOSS_WINDOWS: dict[str, tuple[str, ...]] = {
    windows.COMPARE_BY_METRIC[TRAIN_LOSS].win: (TRAIN_LOSS,),
    windows.COMPARE_BY_METRIC[TEST_LOSS].win: (TEST_LOSS, EPOCH_TRAIN_LOSS),
}


@dataclass
class Extent:
    """One run's values in one window: its first, lowest and highest finite ones, whether any was
    not finite, and its record highs (x, y) in order (each higher than all before it)."""

    first: float | None = None
    low: float = math.inf
    high: float = -math.inf
    broken_at: float | None = None  # x of its first value that is not a finite number
    records: list[tuple[float, float]] = field(default_factory=list)

    def add(self, x: float, y: float) -> None:
        if not math.isfinite(y):
            if self.broken_at is None:
                self.broken_at = x
            return
        if self.first is None:
            self.first = y
        self.low = min(self.low, y)
        if y > self.high:
            self.high = y
            self.records.append((x, y))
            if len(self.records) > RECORDS:
                self.records = self.records[::2]

    def left_at(self, top: float) -> float | None:
        """The x where the run first went above `top` (or stopped being a number)."""
        above = next((x for x, y in self.records if y > top), None)
        if self.broken_at is not None and (above is None or self.broken_at < above):
            return self.broken_at
        return above


@dataclass(frozen=True)
class View:
    """What a loss window shows: its y range (None: Plotly's own, when no run diverged or none
    stayed sane) and, per diverged run, where it leaves that range (x, the range's top, its
    highest value)."""

    y_range: tuple[float, float] | None
    off_scale: dict[Hashable, tuple[float, float, float]]


class LossRange:
    """Every run's extent in one loss window, and the range it makes."""

    def __init__(self, metrics: tuple[str, ...]) -> None:
        self.metrics = metrics
        self.runs: dict[Hashable, Extent] = {}

    def take(self, run: Hashable, row: Mapping[str, Any]) -> None:
        """One logged scalars row of `run`."""
        x = row.get("x")
        for metric in self.metrics:
            y = row.get(metric)
            if y is not None and x is not None:
                self.runs.setdefault(run, Extent()).add(float(x), float(y))

    def view(self) -> View:
        started = [e for e in self.runs.values() if e.first is not None]
        if len(started) < 2:
            return View(None, {})
        reference = statistics.median(e.first for e in started if e.first is not None)
        diverged = {run for run, e in self.runs.items()
                    if e.broken_at is not None
                    or (e.first is not None and e.high > DIVERGED * max(e.first, reference))}
        sane = [e for run, e in self.runs.items() if run not in diverged and e.first is not None]
        if not diverged or not sane:
            return View(None, {})
        low, high = min(e.low for e in sane), max(e.high for e in sane)
        pad = PAD * (high - low) or PAD * abs(high) or 1.0
        bottom, top = (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
        off = {}
        for run in diverged:
            extent = self.runs[run]
            x = extent.left_at(top)
            if x is not None:
                off[run] = (x, top, extent.high)
        return View((bottom, top), off)


def layout_message(env: str, win: str, view: View) -> dict[str, Any]:
    """A layout-only update of a loss window: its y axis, fixed to the view's range or left to
    Plotly (autorange)."""
    window = next(w for w in windows.COMPARE_WINDOWS if w.win == win)
    axis: dict[str, Any] = {"title": {"text": window.y_title}}
    if view.y_range is None:
        axis["autorange"] = True
    else:
        axis["range"] = list(view.y_range)
        axis["autorange"] = False
    return {"eid": env, "win": win, "layout": {"yaxis": axis}}


def marker_name(label: str) -> str:
    return windows.trace_name(label) + " ↑ diverged, off the scale"


def marker_trace(label: str, colour_index: int, x: float, top: float, high: float,
                 entry: bool = True) -> dict[str, Any]:
    """A diverged run's marker: a triangle at the top of the range where its line leaves it, in
    its colour and legend group, with a legend entry that says so (`entry`; a seed group's runs,
    which have none of their own, show the marker only)."""
    return {"x": [x], "y": [top], "name": marker_name(label), "type": "scatter", "mode": "markers",
            "marker": {"symbol": "triangle-up", "size": 11, "color": windows.colour(colour_index)}, "cliponaxis": False,
            "text": [f"highest: {high:.3g}"], "hovertemplate": "%{text}<extra></extra>",
            "legendgroup": windows.trace_name(label), "showlegend": entry}
