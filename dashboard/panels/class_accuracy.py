"""Accuracy per class: which classes a run gets right, and which it still confuses, epoch by epoch.

One trace per class, from the untrained model's test pass (epoch 0) on, of the share of that
class's test images predicted right; the weakest class at the latest epoch is drawn thicker and
named in the title (on Fashion-MNIST it is "Shirt", the class the course's readers ask about).
Drawn from each epoch's "class_accuracy" record (trainers.measures.class_accuracy)."""

from __future__ import annotations

import html
from typing import Any

from dashboard import windows
from dashboard.panels.base import Message, Panel, waiting_window
from dashboard.protocol import SEQ_KEY

KIND = "class_accuracy"


def weakest(record: dict[str, Any]) -> tuple[str, float] | None:
    """The class with the lowest accuracy in `record`, and that accuracy (None: no class had images)."""
    scored = [(acc, name) for name, acc in zip(record["classes"], record["acc"]) if acc is not None]
    return (min(scored)[1], min(scored)[0]) if scored else None


def title(label: str, record: dict[str, Any] | None = None) -> str:
    low = weakest(record) if record is not None else None
    if record is None or low is None:
        return f"{label}: test accuracy per class"
    return f"{label}: test accuracy per class; weakest after epoch {record['x']:g}: {low[0]} {low[1]:.3f}"


def draw(env: str, win: str, label: str, records: list[dict[str, Any]]) -> Message:
    latest = records[-1]
    low = weakest(latest)
    xs = [r["x"] for r in records]
    data = []
    for k, name in enumerate(latest["classes"]):
        thick = low is not None and name == low[0]
        data.append({"x": xs, "y": [r["acc"][k] if k < len(r["acc"]) else None for r in records],
                     "name": html.escape(name, quote=False), "type": "scatter", "mode": "lines+markers",
                     "line": {"color": windows.colour(k), "width": 4 if thick else 1.5},
                     "hovertemplate": f"{html.escape(name, quote=False)}<br>epoch %{{x:g}}: %{{y:.3f}}<extra></extra>"})
    layout = {"xaxis": {"title": {"text": "epoch"}}, "yaxis": {"title": {"text": "test accuracy"}, "range": [0, 1]},
              "margin": {"l": 60, "r": 20, "t": 20, "b": 40}}
    return {"eid": env, "win": win, "data": data, "layout": layout,
            "opts": {"title": title(label, latest), **windows.PLOT_SIZE},  # a text node on the page: not HTML
            SEQ_KEY: windows.new_seq()}


PANEL = Panel(KIND, "class-accuracy", draw,
              waiting_window(title, "Each class's test accuracy appears once the untrained model is tested."),
              history=True)
