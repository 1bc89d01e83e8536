"""A run's windows that are one module each ("panels"), and their registry.

A panel module declares `PANEL = Panel(...)` (dashboard.panels.base): the run-log record kind it
reads, how it draws its window from those records (live and in a replay, the same function), and
what the window says before the first one. It is registered by one line in PANELS below; its
window takes its place on the page after the run's other windows, in PANELS' order. The trainer
side computes the records' payloads (trainers.measures, one function each), and every reporter
passes them on through its one generic call, `record(kind, step, x, payload)`: the run log
writes them, the Visdom backend hands them to the panel, a replay reads them back to it."""

from __future__ import annotations

from typing import Any

from dashboard import windows
from dashboard.panels import calibration, class_accuracy, filters, templates
from dashboard.panels.base import Panel

PANELS: tuple[Panel, ...] = (
    calibration.PANEL,
    class_accuracy.PANEL,
    templates.PANEL,
    filters.PANEL,
)
BY_KIND = {panel.kind: panel for panel in PANELS}


def run_windows(label: str) -> list[str]:
    """A run's own windows, in their order on the page."""
    return [message["win"] for message in run_placeholders("", label)]


def run_placeholders(env: str, label: str) -> list[dict[str, Any]]:
    """Every window of a run before it reports anything, in their order on the page."""
    return windows.run_placeholders(env, label) + [panel.waiting(env, panel.win(label), label) for panel in PANELS]
