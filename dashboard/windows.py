"""The one place that names every window, and builds the Visdom messages that draw them.

Compare windows (one per metric) are shared by every run in an env: each run owns one named
trace (two with smoothing) and only ever replaces its own traces, so several processes can
write to one window. A window is created by the first message that finds it missing, with an
append, which the server turns into "create if missing" in one step, so two runs starting
together cannot wipe each other. Per-run windows (gallery, confusion matrix) and the env-wide
panes are written whole.

Every message that writes points or a pane carries a sequence number (`new_seq`), so that a
server can refuse a message older than what it holds: a request that timed out on a frozen
server is still applied when the server thaws, maybe after newer ones."""

from __future__ import annotations

import html
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

from dashboard.protocol import SEQ_KEY
from trainers.reporting import SAMPLES_PER_S, TEST_ACC, TEST_LOSS, TRAIN_ACC, TRAIN_LOSS

# matplotlib's "tab10": distinct, and the same colour for a run in every window
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
RIGHT, WRONG = "#2ca02c", "#d62728"
DEFAULT_ENV = "livetrain"


@dataclass(frozen=True)
class DrawOptions:
    """How runs are drawn, the same for every run of a launch: the Visdom env they share, the
    smoothing of their per-batch traces, and how many points a trace keeps."""

    env: str = DEFAULT_ENV
    smoothing: float | None = None  # EMA weight of an extra smoothed per-batch trace (e.g. 0.9); None: no such trace
    max_points: int = 1000  # per trace on the server
    run_windows: bool = True  # each run's own gallery and confusion matrix (see `run_windows_for`)


RUN_WINDOWS_UP_TO = 8  # runs in one env that still get windows of their own


def run_windows_for(runs: int) -> bool:
    """Whether `runs` runs drawn into one env each get their own gallery and confusion matrix.
    Up to 8 they do (16 windows, next to the 7 shared ones); a sweep of 24 would bury the compare
    windows under 48 more, so a bigger launch draws the shared windows only (the runs table, the
    compare windows, where the runs disagree): every run logs its predictions all the same, and
    `replay` of a few of its runs draws theirs."""
    return runs <= RUN_WINDOWS_UP_TO


@dataclass(frozen=True)
class CompareWindow:
    """A window comparing one metric across runs."""

    metric: str
    win: str
    title: str
    y_title: str
    per_batch: bool  # per-batch series are long and noisy: lines, no markers
    log_y: bool = False  # runs that differ by orders of magnitude (samples/s: softmax vs CNN)


COMPARE_WINDOWS = (
    CompareWindow(TRAIN_LOSS, "compare-train-loss", "Training loss (per batch)", "cross-entropy", True),
    CompareWindow(TRAIN_ACC, "compare-train-acc", "Training accuracy (per batch)", "accuracy", True),
    CompareWindow(TEST_LOSS, "compare-test-loss", "Test loss (per epoch)", "cross-entropy", False),
    CompareWindow(TEST_ACC, "compare-test-acc", "Test accuracy (per epoch)", "accuracy", False),
    CompareWindow(SAMPLES_PER_S, "compare-throughput", "Throughput (training samples/s)", "samples/s", True, log_y=True),
)
COMPARE_BY_METRIC = {w.metric: w for w in COMPARE_WINDOWS}
RUNS_WIN, DISAGREE_WIN = "runs", "disagreement"

# Window sizes. Visdom's page packs windows in the order they were created, in shelves as wide as
# the browser window, then moves each up as far as it goes (into any gap a shorter or narrower
# window left above it). Below the runs table, which has a row of its own, every window has one
# size, so the page is a grid read in creation order at any browser width (2 windows a row at
# 1280 px, 3 at 1600, 4 at 1920) and nothing is moved out of its place.
PANE_HEIGHT = 440
UNIT = 460
FULL_WIDTH = 4000  # wider than any screen: the page cuts it to the browser's width
PLOT_SIZE = {"width": UNIT, "height": PANE_HEIGHT}


_seq_lock = threading.Lock()
_last_seq = 0


def new_seq() -> int:
    """A new message's sequence number: the time it was built, in ns, strictly increasing within
    this process. Messages from the processes that write one window (a run's worker, then the
    launcher redrawing it from its log, or a replay) are ordered by when they were built."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(_last_seq + 1, time.time_ns())
        return _last_seq


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def default_colour_index(label: str) -> int:
    """A run's colour when no launcher assigned one: stable across processes and replays."""
    return zlib.crc32(label.encode("utf-8")) % len(PALETTE)


def trace_name(label: str, smoothed: bool = False) -> str:
    """A run's trace name. Plotly reads legend text as HTML, so the label is escaped."""
    return html.escape(label, quote=False) + (" (smoothed)" if smoothed else "")  # plotly shows &quot; as is


def run_window(kind: str, label: str) -> str:
    """The id of one of a run's own windows ("gallery", "confusion")."""
    return f"{kind}-{zlib.crc32(label.encode('utf-8')):08x}"


def _layout(x_title: str, y_title: str, log_y: bool = False) -> dict[str, Any]:
    return {
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}, **({"type": "log"} if log_y else {})},
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.22},
        "margin": {"l": 60, "r": 20, "t": 20, "b": 40},
    }


def trace(window: CompareWindow, label: str, colour_index: int, xs: list[float], ys: list[float],
          smoothed: bool = False, faded: bool = False) -> dict[str, Any]:
    """A plotly scatter trace for one run in a compare window."""
    line: dict[str, Any] = {"color": colour(colour_index), "width": 2 if smoothed else 1.5}
    return {
        "x": xs, "y": ys, "name": trace_name(label, smoothed), "type": "scatter",
        "mode": "lines" if window.per_batch else "lines+markers",
        "line": line, "opacity": 0.35 if faded else 1.0,
    }


def run_traces(window: CompareWindow, label: str, colour_index: int, points: tuple[list[float], list[float]],
               smoothed_points: tuple[list[float], list[float]] | None = None) -> list[dict[str, Any]]:
    """A run's traces in a compare window: its points (faded when a smoothed trace goes with
    them), then the smoothed ones. The style is fixed when a trace is created: later updates
    change only its points."""
    data = [trace(window, label, colour_index, *points, faded=smoothed_points is not None)]
    if smoothed_points is not None:
        data.append(trace(window, label, colour_index, *smoothed_points, smoothed=True))
    return data


def trace_message(env: str, window: CompareWindow, data: dict[str, Any], create: bool,
                  seq: int | None = None) -> dict[str, Any]:
    """Replace one run's trace, or (create=True) append it, creating the window when missing.
    With `seq`, a server of ours refuses it if the trace holds a newer message."""
    message: dict[str, Any] = {"eid": env, "win": window.win, "name": data["name"], "append": create, "data": [data]}
    if seq is not None:
        message[SEQ_KEY] = seq
    if create:
        message["layout"] = _layout("epoch", window.y_title, window.log_y)
        message["opts"] = {"title": window.title, **PLOT_SIZE}
    return message


def placeholder_message(env: str, window: CompareWindow) -> dict[str, Any]:
    """Create a compare window before any run reports, so windows appear in this order."""
    empty = {"x": [], "y": [], "name": "", "type": "scatter", "mode": "lines", "showlegend": False}
    return {"eid": env, "win": window.win, "name": "", "append": True, "data": [empty],
            "layout": _layout("epoch", window.y_title, window.log_y), "opts": {"title": window.title, **PLOT_SIZE}}


def text_message(env: str, win: str, title: str, content: str, width: int, height: int,
                 seq: int | None = None) -> dict[str, Any]:
    """A whole text pane (its HTML must already be escaped where it holds outside text), numbered
    now unless `seq` is given."""
    return {"eid": env, "win": win, "data": [{"content": content, "type": "text"}],
            "opts": {"title": title, "width": width, "height": height},
            SEQ_KEY: new_seq() if seq is None else seq}


def gallery_message(env: str, label: str, content: str, seq: int | None = None) -> dict[str, Any]:
    """A run's prediction gallery, whole."""
    return text_message(env, run_window("gallery", label), f"{label}: test images, predicted (true)", content,
                        UNIT, PANE_HEIGHT, seq)


def confusion_title(label: str, x: float | None = None) -> str:
    return f"{label}: confusion matrix" + (f", epoch {x:g}" if x is not None else "")


def waiting_html(text: str) -> str:
    return f'<div style="font:13px sans-serif;color:#555">{html.escape(text)}</div>'


GALLERY_WAITING = waiting_html("Predictions appear after the first epoch.")
CONFUSION_WAITING = waiting_html("The confusion matrix appears after the first epoch.")


def run_placeholders(env: str, label: str) -> list[dict[str, Any]]:
    """A run's gallery and confusion-matrix windows before it reports anything, so that the page
    places them in run order, each gallery beside its matrix (the run's worker then fills them).
    Numbered 0: older than anything a run draws, so a placeholder never replaces it."""
    return [gallery_message(env, label, GALLERY_WAITING, seq=0),
            text_message(env, run_window("confusion", label), confusion_title(label), CONFUSION_WAITING,
                         UNIT, PANE_HEIGHT, seq=0)]


def heatmap_message(env: str, win: str, title: str, matrix: list[list[int]], classes: list[str]) -> dict[str, Any]:
    """A confusion matrix: rows the true class, columns the predicted one, class names on both axes."""
    names = [html.escape(c, quote=False) for c in classes]
    data = {"z": matrix, "x": names, "y": names, "type": "heatmap", "colorscale": "Blues", "reversescale": True,  # white 0, dark blue the most
            "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>"}
    layout = {"xaxis": {"title": {"text": "predicted"}, "tickangle": -45},
              "yaxis": {"title": {"text": "true"}, "autorange": "reversed"},
              "margin": {"l": 90, "r": 20, "t": 20, "b": 90}}
    return {"eid": env, "win": win, "data": [data], "layout": layout, "opts": {"title": title, **PLOT_SIZE},
            SEQ_KEY: new_seq()}


class SentPanes:
    """Whole panes (text, heatmap) as last sent to one env, to check what a server holds."""

    def __init__(self, env: str) -> None:
        self.env = env
        self._sent: dict[str, Any] = {}  # win -> its content as sent

    def post(self, connection: Any, message: dict[str, Any]) -> None:
        """Send a whole-pane message on `connection` (a `VisdomConnection`) and remember it."""
        connection.post("events", message)
        self._sent[message["win"]] = _message_content(message)

    def differing(self, connection: Any) -> list[str]:
        """The windows whose content on the server is not what was last sent."""
        differ = []
        for win, sent in list(self._sent.items()):
            pane = connection.pane(self.env, win)
            if pane is None or _pane_content(pane) != sent:
                differ.append(win)
        return differ


def _message_content(message: dict[str, Any]) -> Any:
    """What a whole-pane message puts in its pane: a text pane's HTML, a heatmap's values."""
    data = message["data"][0]
    return data["content"] if data["type"] == "text" else data.get("z")


def _pane_content(pane: dict[str, Any]) -> Any:
    if pane.get("type") == "text":
        return pane.get("content")
    data = (pane.get("content") or {}).get("data") or [{}]
    return data[0].get("z")
