"""One run's windows in Visdom: its traces in the compare windows, its gallery and confusion matrix.

Implements trainers' `Reporter`. Calls from the training thread fold the new values into bounded
series under a lock (a few microseconds) and return; the `Sender` thread draws them. The state
held here is bounded (at most `max_points` per trace, the latest gallery and matrix) and is
everything needed to redraw the run's windows from nothing after the server comes back."""

from __future__ import annotations

import threading
from typing import Any, Mapping

import torch

from dashboard import panes, windows
from dashboard.connection import MISSING_WINDOW, VisdomConnection
from dashboard.downsample import Ema, MinMaxSeries
from dashboard.runlog import compact_probabilities
from dashboard.sender import Sender

GALLERY_SHOWN = 24  # images in a run's gallery; the rest of the sample feeds the disagreement window


class VisdomBackend:
    """Draws one run (label) into one Visdom env."""

    def __init__(self, sender: Sender, env: str, label: str, colour_index: int | None = None,
                 max_points: int = 1000, smoothing: float | None = None) -> None:
        self.sender = sender
        self.env = env
        self.label = label
        self.colour_index = windows.default_colour_index(label) if colour_index is None else colour_index
        self.smoothing = smoothing
        self._lock = threading.Lock()
        self._series = {w.metric: MinMaxSeries(max_points) for w in windows.COMPARE_WINDOWS}
        self._smoothed = {w.metric: (Ema(smoothing), MinMaxSeries(max_points))
                          for w in windows.COMPARE_WINDOWS if w.per_batch and smoothing}
        self._images: torch.Tensor | None = None  # the gallery's images, PNG-encoded once by the sender
        self._uris: list[str] = []
        self._gallery: dict[str, Any] | None = None
        self._confusion: dict[str, Any] | None = None
        self.gallery_win = windows.run_window("gallery", label)
        self.confusion_win = windows.run_window("confusion", label)
        # the gallery goes first: a whole-window message, it also creates the env on a fresh server
        sender.register(self.gallery_win, self._send_gallery)
        # one sender may serve several runs (a replay): keys name the run
        self._keys = {w.metric: f"{windows.run_window('traces', label)}:{w.metric}" for w in windows.COMPARE_WINDOWS}
        for window in windows.COMPARE_WINDOWS:
            sender.register(self._keys[window.metric], self._trace_sender(window), changed=False)
        sender.register(self.confusion_win, self._send_confusion, changed=False)

    # ---- Reporter, called from the training thread ----
    def config(self, config: Mapping[str, Any]) -> None:
        pass  # shown in the runs pane, which the Board draws

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        changed = []
        with self._lock:
            for metric, y in values.items():
                series = self._series.get(metric)
                if series is None or y is None:
                    continue
                y = float(y)
                series.add(x, y)
                if metric in self._smoothed:
                    ema, smooth = self._smoothed[metric]
                    smooth.add(x, ema.add(y))
                changed.append(metric)
        for metric in changed:
            self.sender.mark(self._keys[metric])

    def predictions(self, x: float, images: torch.Tensor, predicted: torch.Tensor,
                    probability: torch.Tensor, true: torch.Tensor, classes: tuple[str, ...]) -> None:
        shown = slice(0, GALLERY_SHOWN)
        with self._lock:
            if self._images is None:
                self._images = images[shown].cpu().clone()
            self._gallery = dict(x=float(x), predicted=predicted[shown].tolist(),
                                 probability=compact_probabilities(probability[shown]),
                                 true=true[shown].tolist(), classes=list(classes))
        self.sender.mark(self.gallery_win)

    def confusion(self, x: float, matrix: torch.Tensor, classes: tuple[str, ...]) -> None:
        with self._lock:
            self._confusion = dict(x=float(x), matrix=matrix.tolist(), classes=list(classes))
        self.sender.mark(self.confusion_win)

    def status(self, state: str, reason: str = "") -> None:
        pass  # shown in the runs pane

    def close(self) -> None:
        pass  # the sender is shared with its owner, which closes it

    # ---- what the server should hold, and drawing it (sender thread) ----
    def trace_data(self, metric: str) -> list[dict[str, Any]]:
        """The plotly traces this run has in `metric`'s compare window (raw, then smoothed)."""
        window = windows.COMPARE_BY_METRIC[metric]
        with self._lock:
            xs, ys = self._series[metric].points()
            smooth = self._smoothed[metric][1].points() if metric in self._smoothed else None
        data = [windows.trace(window, self.label, self.colour_index, xs, ys, faded=smooth is not None)]
        if smooth is not None:
            data.append(windows.trace(window, self.label, self.colour_index, *smooth, smoothed=True))
        return data

    def _trace_sender(self, window: windows.CompareWindow) -> Any:
        def send(connection: VisdomConnection) -> None:
            for data in self.trace_data(window.metric):
                if connection.post("update", windows.trace_message(self.env, window, data, create=False)) == MISSING_WINDOW:
                    connection.post("update", windows.trace_message(self.env, window, data, create=True))
        return send

    def gallery_html(self) -> str:
        with self._lock:
            g = self._gallery
            if g is None or self._images is None:
                return '<div style="font:13px sans-serif;color:#555">Predictions appear after the first epoch.</div>'
            if not self._uris:
                self._uris = panes.data_uris(self._images)
            return panes.gallery_html(self._uris, g["predicted"], g["probability"], g["true"], g["classes"], g["x"])

    def _send_gallery(self, connection: VisdomConnection) -> None:
        title = f"{self.label}: test images, predicted (true)"
        connection.post("events", windows.text_message(self.env, self.gallery_win, title, self.gallery_html(), 600, 560))

    def _send_confusion(self, connection: VisdomConnection) -> None:
        with self._lock:
            c = self._confusion
        if c is not None:
            title = f"{self.label}: confusion matrix, epoch {c['x']:g}"
            connection.post("events", windows.heatmap_message(self.env, self.confusion_win, title, c["matrix"], c["classes"]))
