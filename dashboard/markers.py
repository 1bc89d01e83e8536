"""Marks on a run's curves where someone changed it while it trained: a `set` from the page or
`livetrain control` (lr, momentum, weight decay). Each change is one small trace in each of the
run's compare windows (but a window's second part, "· train"): a diamond on the run's curve at the
x where the change took effect, in the run's colour, named (plotly shows the name on hover) by what
changed, e.g. "mlp: lr 0.1 → 0.5 at epoch 1.25".

A trace's name is fixed when it is created (Visdom's update changes only its points), so each
change is a trace of its own; its y follows the curve as the points around it arrive."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any, NamedTuple

from dashboard import windows
from trainers.control import SETTABLE, changed

class Change(NamedTuple):
    """A change applied to a run: at `x` (epochs), what it was and what it became."""

    x: float
    text: str  # "lr 0.1 → 0.5"


def describe(before: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """"lr 0.1 → 0.5, momentum 0 → 0.9": each setting from what was in force to its new value."""
    return ", ".join(f"{name.replace('_', ' ')} {_number(before.get(name))} → {_number(value)}"
                     for name, value in values.items())


class Changes:
    """The changes applied to one run, from its config and its requests' outcomes, in order."""

    def __init__(self) -> None:
        self.in_force: dict[str, Any] = {}  # the lr, momentum and weight decay it trains with
        self.made: list[Change] = []

    def config(self, config: Mapping[str, Any]) -> None:
        self.in_force = {name: config.get(name) for name in SETTABLE}

    def take(self, x: float, outcome: Mapping[str, Any]) -> bool:
        """Take a request's outcome (a "control" record's payload); True when it changed the run."""
        values = changed(outcome)
        if not values:
            return False
        self.made.append(Change(float(x), describe(self.in_force, values)))
        self.in_force.update(values)
        return True


def _number(value: Any) -> str:
    return "?" if value is None else f"{float(value):.4g}"


def marked(window: windows.CompareWindow) -> bool:
    """Whether a window's metric carries the marks (a window's second part does not: one mark per window)."""
    return not window.part


def y_at(xs: list[float], ys: list[float], x: float) -> float:
    """The curve's y at x: between its two points around x, on the line joining them; before the
    first or after the last point, that point's y."""
    i = bisect.bisect_left(xs, x)
    if i == 0:
        return ys[0]
    if i == len(xs):
        return ys[-1]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y1 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def mark_name(label: str, change: Change) -> str:
    return f"{windows.trace_name(label)}: {change.text} at epoch {change.x:.3g}"


def mark_trace(label: str, colour_index: int, change: Change, points: tuple[list[float], list[float]]) -> dict[str, Any]:
    """The trace marking one change on a run's curve (`points`: the curve's, non-empty)."""
    shade = windows.colour(colour_index)
    return {"x": [change.x], "y": [y_at(*points, change.x)], "name": mark_name(label, change), "type": "scatter",
            "mode": "markers", "marker": {"symbol": "diamond", "size": 11, "color": shade,
                                          "line": {"color": "#222222", "width": 1}},
            "legendgroup": windows.trace_name(label), "showlegend": False}
