"""A run's windows that are one module each ("panels"), and their registry.

A panel module declares `PANEL = Panel(...)` (dashboard.panels.base): the run-log record kind it
reads, how it draws its window from those records (live and in a replay, the same function), and
what the window says before the first one. It is registered by one line in PANELS below; a
run's windows take their places on the page in PANELS' order, then SERIES'. The trainer
side computes the records' payloads (trainers.measures, one function each), and every reporter
passes them on through its one generic call, `record(kind, step, x, payload)`: the run log
writes them, the Visdom backend hands them to the panel, a replay reads them back to it.

A panel drawn from a run's per-batch scalars instead (its gradient norms: `SeriesPanel`, the
scalars of one prefix, each a bounded series the backend keeps) is registered in SERIES."""

from __future__ import annotations

from typing import Any

from dashboard.panels import (
    calibration, class_accuracy, confusion, filters, gallery, gradients, mistakes, templates,
)
from dashboard.panels.base import Panel, SeriesPanel

PANELS: tuple[Panel, ...] = (
    gallery.PANEL,
    confusion.PANEL,
    mistakes.PANEL,
    calibration.PANEL,
    class_accuracy.PANEL,
    templates.PANEL,
    filters.PANEL,
)
SERIES: tuple[SeriesPanel, ...] = (
    gradients.PANEL,
)
BY_KIND = {panel.kind: panel for panel in PANELS}


def readers(kind: str) -> list[Panel]:
    """The panels that draw from records of `kind` (as their own kind, or one in their `also`)."""
    return [panel for panel in PANELS if kind == panel.kind or kind in panel.also]


def run_windows(label: str) -> list[str]:
    """A run's own windows, in their order on the page."""
    return [message["win"] for message in run_placeholders("", label)]


def run_placeholders(env: str, label: str) -> list[dict[str, Any]]:
    """Every window of a run before it reports anything, in their order on the page."""
    return [panel.waiting(env, panel.win(label), label) for panel in (*PANELS, *SERIES)]
