"""The env-wide views of a set of runs, drawn from their run logs as the logs grow.

The runs pane (every run's configuration, status and latest metrics) and the disagreement window
(sample test images on which the runs' latest predictions differ) need all runs at once, which
no single worker has. The `Board` follows the run logs on disk, the source of truth, so the same
code serves a live launch (the launcher polls it) and a replay (the logs are already complete).
It also creates the shared compare windows first, so that the page keeps one order."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

from dashboard import panes, windows
from dashboard.connection import VisdomConnection
from dashboard.runlog import LogFollower, RunRecord
from dashboard.sender import Sender
from trainers.reporting import RunState

RUNS_PANE_WIDTH = windows.FULL_WIDTH  # a row of its own
DISAGREE_SIZE = (windows.UNIT, windows.PANE_HEIGHT)
DISAGREE_SHOWN = 12  # three rows of four images at that size, with three runs' answers each


def runs_pane_height(runs: int) -> int:
    """Tall enough for a header and `runs` rows without a scroll bar (up to 12 rows)."""
    return 80 + 22 * min(max(runs, 1), 12)


def run_label(record: RunRecord, fallback: str) -> str:
    return str(record.meta.get("label") or record.config.get("label") or fallback)


def run_colour(record: RunRecord, label: str) -> int:
    """The colour index the run was drawn with live (or the default for its label)."""
    return int(record.meta.get("colour", windows.default_colour_index(label)))


def summary(record: RunRecord, label: str) -> panes.RunSummary:
    last = record.states[-1] if record.states else {}
    return panes.RunSummary(
        label=label, colour_index=run_colour(record, label),
        config=record.config, status=last.get("state", RunState.STARTING), reason=last.get("reason", ""),
        x=record.x, latest=dict(record.latest), started=record.started, updated=record.updated)


class Board:
    """Follows run logs; draws the runs pane and the disagreement window through `sender` (if any)."""

    def __init__(self, sender: Sender | None, draw: windows.DrawOptions) -> None:
        self.sender = sender
        self.env = draw.env
        self.smoothing = draw.smoothing  # the runs' (for the style of the traces the board creates)
        self.run_windows = draw.run_windows  # whether to place each run's gallery and matrix
        self.followers: dict[Path, LogFollower] = {}
        self.labels: dict[Path, str | None] = {}  # None: the label in the run's log
        self._placed: list[tuple[str, int]] = []  # (label, colour) of the runs added with a label
        self._uris: dict[str, list[str]] = {}  # per data set: the sample images as data URIs
        self._lock = threading.Lock()  # poll (the caller's thread) against drawing (the sender's)
        self._panes = windows.SentPanes(self.env)  # the runs pane and disagreement as last sent
        if sender is not None:
            # the runs pane is written whole, so it also creates the env; then the compare windows
            sender.register(windows.RUNS_WIN, self._send_runs)
            for window in windows.COMPARE_WINDOWS:
                sender.register("frame:" + window.win, self._frame_sender(window))
            sender.register(windows.DISAGREE_WIN, self._send_disagreement)
            sender.add_check(self._panes.differing)  # their sender keys are their window ids

    def add(self, run_dir: Path, label: str | None = None, colour_index: int | None = None) -> None:
        """Follow one more run (its log may not exist yet). With its label known, its own windows
        are placed now, in the order runs are added (see `windows.run_placeholders`), and so are
        its (empty) traces in the compare windows, so that every legend lists the runs in that
        order."""
        if run_dir not in self.followers:
            self.followers[run_dir] = LogFollower(run_dir, keep_scalars=False)
            self.labels[run_dir] = label
            if label is not None:
                colour = windows.default_colour_index(label) if colour_index is None else colour_index
                self._placed.append((label, colour))
            if label is not None and self.sender is not None and self.run_windows:
                self.sender.register(f"placeholders:{run_dir}", self._placeholder_sender(label))

    def _placeholder_sender(self, label: str) -> Any:
        placed = False

        def send(connection: VisdomConnection) -> None:
            nonlocal placed
            if placed:  # once: sent again after an outage, it would wipe what the worker drew
                return
            for message in windows.run_placeholders(self.env, label):
                # only where the run's own window is not there yet (the board may reach a server
                # that was down at the start only after the worker drew it)
                if connection.post("win_exists", {"eid": self.env, "win": message["win"]}) != "true":
                    connection.post("events", message)
            placed = True
        return send

    def poll(self) -> bool:
        """Read what the logs gained; redraw what changed. True when anything did."""
        changed = predictions = False
        with self._lock:
            for follower in self.followers.values():
                before = len(follower.record.predictions)
                if follower.poll():
                    changed = True
                    predictions |= len(follower.record.predictions) != before
        if changed and self.sender is not None:
            self.sender.mark(windows.RUNS_WIN)
            if predictions:
                self.sender.mark(windows.DISAGREE_WIN)
        return changed

    def label(self, run_dir: Path) -> str:
        return self.labels[run_dir] or run_label(self.followers[run_dir].record, run_dir.name)

    def summaries(self) -> list[panes.RunSummary]:
        return [summary(f.record, self.label(d)) for d, f in self.followers.items()]

    def disagreement(self) -> tuple[list[str], list[int], list[str], list[panes.RunPredictions]]:
        """(image URIs, true classes, class names, each run's latest predictions) for the runs on the
        data set most runs use."""
        ready = [(d, f.record) for d, f in self.followers.items()
                 if f.record.predictions and f.record.gallery is not None]
        if not ready:
            return [], [], [], []
        dataset = Counter(r.config.get("dataset") for _, r in ready).most_common(1)[0][0]
        ready = [(d, r) for d, r in ready if r.config.get("dataset") == dataset]
        first = ready[0][1]
        if dataset not in self._uris:
            self._uris[dataset] = panes.data_uris(first.gallery)
        runs = [panes.RunPredictions(self.label(d), run_colour(r, self.label(d)), r.predictions[-1]["x"],
                                     r.predictions[-1]["predicted"]) for d, r in ready]
        return self._uris[dataset], first.predictions[-1]["true"], first.classes, runs

    # ---- drawing (sender thread) ----
    def _send_runs(self, connection: VisdomConnection) -> None:
        with self._lock:
            content = panes.runs_html(self.summaries())
            height = runs_pane_height(len(self.followers))
        self._panes.post(connection, windows.text_message(self.env, windows.RUNS_WIN, "Runs", content,
                                                         RUNS_PANE_WIDTH, height))

    def _frame_sender(self, window: windows.CompareWindow) -> Any:
        def send(connection: VisdomConnection) -> None:
            connection.post("update", windows.placeholder_message(self.env, window))
            smoothed = bool(self.smoothing) and window.per_batch
            for label, colour in list(self._placed):
                # empty traces in the run's style (the worker's: see `windows.run_traces`), which
                # its worker fills
                for trace in windows.run_traces(window, label, colour, ([], []), ([], []) if smoothed else None):
                    connection.post("update", windows.trace_message(self.env, window, trace, create=True))
        return send

    def _send_disagreement(self, connection: VisdomConnection) -> None:
        with self._lock:
            content = panes.disagreement_html(*self.disagreement(), limit=DISAGREE_SHOWN)
        self._panes.post(connection, windows.text_message(self.env, windows.DISAGREE_WIN,
                                                         "Where the runs disagree (sample test images)",
                                                         content, *DISAGREE_SIZE))
