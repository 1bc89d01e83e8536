"""Calibration: how far a run's confidence can be trusted (a reliability diagram per run).

Its test predictions are put in CALIBRATION_BINS bins by their confidence (the predicted class's
probability); for each bin the window draws its accuracy as a bar, and the bin's mean confidence
as a point at (mean confidence, accuracy); a perfectly calibrated model's points lie on the
diagonal. Its title gives the expected calibration error (ECE): the images-weighted mean of
|accuracy - confidence| over the bins. An MSE run and a cross-entropy run of equal accuracy show
how differently honest they are about their confidence. Drawn from each epoch's "calibration"
record (trainers.measures.calibration), the untrained model's at epoch 0 first."""

from __future__ import annotations

from typing import Any

from dashboard import windows
from dashboard.panels.base import Message, Panel, waiting_window
from dashboard.protocol import SEQ_KEY

KIND = "calibration"


def title(label: str, record: dict[str, Any] | None = None) -> str:
    if record is None:
        return f"{label}: calibration"
    return f"{label}: calibration, epoch {record['x']:g} (ECE {record['ece']:.3f})"


def draw(env: str, win: str, label: str, records: list[dict[str, Any]]) -> Message:
    record = records[-1]
    bins = record["bins"]  # per bin: [images, mean confidence, accuracy] (None where it is empty)
    width = 1 / len(bins)
    edges = [(i * width, (i + 1) * width) for i in range(len(bins))]
    hover = [f"confidence {lo:.1f}-{hi:.1f}: {n:,} images" + (
        f"<br>mean confidence {c:.3f}, accuracy {a:.3f}" if n else "") for (lo, hi), (n, c, a) in zip(edges, bins)]
    bars = {"x": [(lo + hi) / 2 for lo, hi in edges], "y": [a for _, _, a in bins], "type": "bar", "width": width,
            "name": "accuracy", "marker": {"color": windows.colour(0), "opacity": 0.6}, "hovertext": hover,
            "hovertemplate": "%{hovertext}<extra></extra>"}
    points = {"x": [c for n, c, _ in bins if n], "y": [a for n, _, a in bins if n], "type": "scatter",
              "mode": "markers", "name": "mean confidence", "marker": {"color": windows.WRONG, "size": 8},
              "hovertemplate": "mean confidence %{x:.3f}<br>accuracy %{y:.3f}<extra></extra>"}
    diagonal = {"x": [0, 1], "y": [0, 1], "type": "scatter", "mode": "lines", "name": "calibrated",
                "line": {"color": "#888", "dash": "dash"}, "hoverinfo": "skip"}
    layout = {"xaxis": {"title": {"text": "confidence (the predicted class's probability)"}, "range": [0, 1]},
              "yaxis": {"title": {"text": "accuracy"}, "range": [0, 1]}, "bargap": 0.05,
              "legend": {"orientation": "h", "y": -0.2}, "margin": {"l": 60, "r": 20, "t": 20, "b": 80}}
    return {"eid": env, "win": win, "data": [bars, points, diagonal], "layout": layout,
            "opts": {"title": title(label, record), **windows.PLOT_SIZE}, SEQ_KEY: windows.new_seq()}


PANEL = Panel(KIND, "calibration", draw,
              waiting_window(title, "The reliability diagram appears once the untrained model is tested."))
