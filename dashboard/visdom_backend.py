"""One run's windows in Visdom: its traces in the compare windows, and the windows of its own
modules (dashboard.panels: its gallery, confusion matrix, ..., gradient norms).

Implements trainers' `Reporter`. Calls from the training thread queue the new values under a lock
and return; the `Sender` thread folds them into bounded series and draws them. The state
held here is bounded (at most `max_points` per trace, each panel's latest record or its bounded
history) and is
everything needed to redraw the run's windows from nothing after the server comes back."""

from __future__ import annotations

import threading
from typing import Any, Mapping, NamedTuple

from dashboard import markers, panels, windows
from dashboard.connection import VisdomConnection
from dashboard.downsample import Ema, MinMaxSeries
from dashboard.sender import Sender
from dashboard.protocol import MISSING_WINDOW, SEQ_KEY, SPLICED
from trainers.control import CONTROL
from trainers.reporting import RunState

FOLD_AT = 256  # queued points the training thread folds into the series itself


class VisdomBackend:
    """Draws one run (label) into one Visdom env."""

    def __init__(self, sender: Sender, draw: windows.DrawOptions, label: str, colour_index: int | None = None) -> None:
        self.sender = sender
        self.env = env = draw.env
        self.label = label
        self.colour_index = windows.default_colour_index(label) if colour_index is None else colour_index
        self.smoothing = smoothing = draw.smoothing
        max_points = draw.max_points
        self._lock = threading.Lock()
        self._series = {w.metric: MinMaxSeries(max_points) for w in windows.COMPARE_WINDOWS}
        self._smoothed = {w.metric: (Ema(smoothing), MinMaxSeries(max_points))
                          for w in windows.COMPARE_WINDOWS if w.per_batch and smoothing}
        # the series panels' series (by panel, then key: the scalar's name past the prefix), how
        # many values each panel took, and (outages, that count) when last drawn (sender thread)
        self._keyed: dict[str, dict[str, MinMaxSeries]] = {panel.name: {} for panel in panels.SERIES}
        self._keyed_version = {panel.name: 0 for panel in panels.SERIES}
        self._keyed_drawn = {panel.name: (-1, 0) for panel in panels.SERIES}
        self._placed: set[str] = set()  # the series panels whose placeholder went (sender thread only)
        self._max_points = max_points
        self._incoming: list[tuple[float, Mapping[str, float]]] = []  # points not yet in the series
        self._versions = {w.metric: 0 for w in windows.COMPARE_WINDOWS}  # points added per metric
        self._changes = markers.Changes()  # what the page or `livetrain control` changed: marked on its curves
        # per (metric, trace index): what was last sent (sender thread only)
        self._held: dict[tuple[str, int], Held] = {}
        self._panes = windows.SentPanes(env)  # the panels' windows as last sent
        self.tails_sent = 0  # traces sent as their new tail only
        self.run_windows = draw.run_windows
        self.in_group = draw.in_group
        # one sender may serve several runs (a replay): keys name the run
        self._traces_key = windows.run_window("traces", label)
        if self.run_windows:  # first: whole windows, which also create the env on a fresh server
            for series_panel in panels.SERIES:
                sender.register(series_panel.win(label), self._series_sender(series_panel))
        sender.register(self._traces_key, self._send_traces, changed=False)
        if self.run_windows:
            for panel in panels.PANELS:  # a window of its own module each: its key is its window
                sender.register(panel.win(label), self._panel_sender(panel), changed=False)
        self._panel_records: dict[str, list[dict[str, Any]]] = {}  # by kind, as the panel keeps them
        sender.add_check(self.check)

    # ---- Reporter, called from the training thread ----
    def config(self, config: Mapping[str, Any]) -> None:
        # shown in the runs pane, which the Board draws; kept here to say what a change changed
        with self._lock:
            self._changes.config(config)

    def scalars(self, step: int, x: float, values: Mapping[str, float]) -> None:
        self.add_points([(x, dict(values))])

    def add_points(self, points: list[tuple[float, Mapping[str, float]]]) -> None:
        """Queue points (x, values) for the next flush. A live `Dashboard` passes each batch of
        scalars its run log writes (a few a second), so nothing here runs per training step."""
        # only queued here, on the training thread; the sender thread folds them into the series
        # in bulk (and the training thread itself every FOLD_AT points, which bounds the queue
        # while the server is away)
        with self._lock:
            self._incoming.extend(points)
            full = len(self._incoming) >= FOLD_AT
        if full:
            self._fold()
        self.sender.mark(self._traces_key)
        if self.run_windows:
            for series_panel in panels.SERIES:  # drawn only when a value came (see _series_sender)
                self.sender.mark(series_panel.win(self.label))

    def _fold(self) -> None:
        """Add the queued points to the series."""
        with self._lock:
            incoming, self._incoming = self._incoming, []
            for x, values in incoming:
                for metric, y in values.items():
                    if y is None:
                        continue
                    series = self._series.get(metric)
                    if series is None:
                        if self.run_windows:
                            self._take_keyed(metric, x, float(y))
                        continue
                    y = float(y)
                    series.add(x, y)
                    if metric in self._smoothed:
                        ema, smooth = self._smoothed[metric]
                        smooth.add(x, ema.add(y))
                    self._versions[metric] += 1

    def _take_keyed(self, metric: str, x: float, y: float) -> None:
        """A scalar of a series panel's prefix, into its series (under the lock)."""
        for panel in panels.SERIES:
            if metric.startswith(panel.prefix):
                keyed = self._keyed[panel.name]
                key = metric[len(panel.prefix):]
                if key not in keyed:
                    keyed[key] = MinMaxSeries(self._max_points)
                keyed[key].add(x, y)
                self._keyed_version[panel.name] += 1

    def status(self, state: RunState, reason: str = "") -> None:
        pass  # shown in the runs pane

    def record(self, kind: str, step: int, x: float, payload: Mapping[str, Any]) -> None:
        """A panel's record (dashboard.panels), for its window; or a request's outcome (the runs
        pane and the control pane show them, drawn by the Board): a change applied is marked on
        the run's curves."""
        drawn = panels.readers(kind) if self.run_windows else []
        if drawn:
            with self._lock:
                kept = self._panel_records.setdefault(kind, [])
                if not any(panel.history and panel.kind == kind for panel in drawn):
                    kept.clear()
                kept.append({"kind": kind, "step": step, "x": x, **payload})
            for panel in drawn:
                self.sender.mark(panel.win(self.label))
        if kind != CONTROL:
            return
        with self._lock:
            changed = self._changes.take(x, payload)
        if changed:
            self.sender.mark(self._traces_key)

    # ---- what the server should hold, and drawing it (sender thread) ----
    def trace_data(self, metric: str) -> list[dict[str, Any]]:
        """The plotly traces this run has in `metric`'s compare window (raw, then smoothed)."""
        window = windows.COMPARE_BY_METRIC[metric]
        self._fold()
        with self._lock:
            xs, ys = self._series[metric].points()
            smooth = self._smoothed[metric][1].points() if metric in self._smoothed else None
            changes = list(self._changes.made) if markers.marked(window) and xs else []
        traces = windows.run_traces(window, self.label, self.colour_index, (xs, ys), smooth, self.in_group)
        return traces + [markers.mark_trace(self.label, self.colour_index, change, smooth or (xs, ys))
                         for change in changes]

    def _send_traces(self, connection: VisdomConnection) -> None:
        """Draw every trace that changed since it was last drawn: as its new tail, all in one
        request, where the server still holds the rest (our server); else whole, one request each.
        Each message is numbered (`windows.new_seq`); a tail names the message it extends."""
        self._fold()
        with self._lock:
            versions = dict(self._versions)
            changes = len(self._changes.made)
        changed = []  # (window, (metric, trace index), plotly trace, version, seq)
        for window in windows.COMPARE_WINDOWS:
            version = versions[window.metric]
            if not version:
                continue  # no points yet: no trace
            version += changes if markers.marked(window) else 0  # both only grow: a new sum is a change
            for index, data in enumerate(self.trace_data(window.metric)):
                held = self._held.get((window.metric, index))
                if held is None or (held.outages, held.version) != (connection.outages, version):
                    changed.append((window, (window.metric, index), data, version, windows.new_seq()))
        tails = {key: self._tail(connection, window, key, data, seq) for window, key, data, _, seq in changed}
        tails = {key: tail for key, tail in tails.items() if tail is not None}
        answers = connection.splice(self.env, list(tails.values())) if tails else None
        spliced = {key for key, answer in zip(tails, answers or ()) if answer == SPLICED}
        self.tails_sent += len(spliced)
        for window, key, data, version, seq in changed:
            if key not in spliced:
                replace = windows.trace_message(self.env, window, data, create=False, seq=seq)
                if connection.post("update", replace) == MISSING_WINDOW:
                    connection.post("update", windows.trace_message(self.env, window, data, create=True, seq=seq))
            self._held[key] = Held(connection.outages, version, data["name"], data["x"], data["y"], seq)

    def _tail(self, connection: VisdomConnection, window: windows.CompareWindow, key: tuple[str, int],
              data: dict[str, Any], seq: int) -> dict[str, Any] | None:
        """The splice that turns the trace as last sent into `data`, or None when it must go whole
        (never sent, or sent before an outage, or the buckets merged since)."""
        held = self._held.get(key)
        if held is None or held.outages != connection.outages:
            return None
        xs, ys = data["x"], data["y"]
        # the last bucket (up to two points) may have changed; the rest stays until the buckets
        # merge (the whole trace changes then, once per doubling)
        start = max(0, len(held.xs) - 2)
        if len(xs) < start or xs[:start] != held.xs[:start] or ys[:start] != held.ys[:start]:
            return None
        return {"win": window.win, "name": data["name"], "from": start, "base": held.seq, SEQ_KEY: seq,
                "x": xs[start:], "y": ys[start:]}

    def check(self, connection: VisdomConnection) -> list[str]:
        """Read back this run's windows from the server and compare them with what was last sent;
        what differs is forgotten, so that it goes again, whole (its keys are returned, for the
        sender to mark). The sender calls this after an
        outage: requests that timed out then may have been applied late, over newer ones (a stock
        Visdom server applies them; ours refuses older messages)."""
        marked: list[str] = []
        by_window: dict[str, list[tuple[str, int]]] = {}
        for key in self._held:
            by_window.setdefault(windows.COMPARE_BY_METRIC[key[0]].win, []).append(key)
        for win, keys in by_window.items():
            pane = connection.pane(self.env, win)
            plot = pane is not None and pane.get("type") == "plot"
            held_traces = {t.get("name"): t for t in pane["content"]["data"]} if plot else {}
            for key in keys:
                held, there = self._held[key], held_traces.get(self._held[key].name)
                if there is None or there.get("x") != held.xs or there.get("y") != held.ys:
                    del self._held[key]
                    if self._traces_key not in marked:
                        marked.append(self._traces_key)
        differing = self._panes.differing(connection)
        for panel in panels.SERIES:
            if panel.win(self.label) in differing:
                self._keyed_drawn[panel.name] = (-1, 0)  # drawn again whatever its version
        return marked + differing

    def keyed_series(self, panel: panels.SeriesPanel) -> dict[str, tuple[list[float], list[float]]]:
        """Per key, the points its trace in the series panel's window holds."""
        self._fold()
        with self._lock:
            return {key: series.points() for key, series in self._keyed[panel.name].items()}

    def _series_sender(self, panel: panels.SeriesPanel) -> Any:
        def send(connection: VisdomConnection) -> None:
            """The window whole when a value came since it was last drawn, or an outage came (the
            server may have lost it; the pane's check compares what it holds)."""
            self._fold()  # marked with every batch of scalars: most passes find no new value
            with self._lock:
                drawn = (connection.outages, self._keyed_version[panel.name])
            if drawn == self._keyed_drawn[panel.name]:
                return
            keyed = self.keyed_series(panel)
            win = panel.win(self.label)
            if not keyed and win not in self._placed:  # its placeholder, once (a run not on a Board's page)
                connection.post("events", panel.waiting(self.env, win, self.label))
                self._placed.add(win)
            if keyed:
                self._panes.post(connection, panel.draw(self.env, win, self.label, keyed))
                self._keyed_drawn[panel.name] = drawn
        return send

    def _panel_sender(self, panel: panels.Panel) -> Any:
        def send(connection: VisdomConnection) -> None:
            with self._lock:
                records = list(self._panel_records.get(panel.kind, ()))
                before = [self._panel_records[kind][-1] for kind in panel.also if self._panel_records.get(kind)]
            if records:
                self._panes.post(connection, panel.draw(self.env, panel.win(self.label), self.label, before + records))
        return send


class Held(NamedTuple):
    """A trace as last sent: after which outage, at which version, its points and its number."""

    outages: int
    version: int
    name: str
    xs: list[float]
    ys: list[float]
    seq: int
