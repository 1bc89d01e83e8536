"""The confusion matrix after each epoch: rows the true class, columns the predicted one, class
names on both axes. Drawn from the latest "confusion" record (trainers.measures.confusion)."""

from __future__ import annotations

from typing import Any

from dashboard import windows
from dashboard.panels.base import Message, Panel, waiting_window
from trainers.reporting import CONFUSION


def title(label: str, x: float | None = None) -> str:
    return f"{label}: confusion matrix" + (f", epoch {x:g}" if x is not None else "")


def draw(env: str, win: str, label: str, records: list[dict[str, Any]]) -> Message:
    record = records[-1]
    return windows.heatmap_message(env, win, title(label, record["x"]), record["matrix"], record["classes"])


PANEL = Panel(CONFUSION, "confusion", draw, waiting_window(title, "The confusion matrix appears after the first epoch."))
