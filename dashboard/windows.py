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

import colorsys
import html
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

from dashboard.protocol import SEQ_KEY
from trainers.reporting import (
    EPOCH_TRAIN_ACC, EPOCH_TRAIN_LOSS, SAMPLES_PER_S, TEST_ACC, TEST_ECE, TEST_ENTROPY, TEST_LOSS, TEST_WEAKEST,
    TRAIN_ACC, TRAIN_LOSS,
)

# matplotlib's "tab10": distinct, and the same colour for a run in every window
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# past ten (a launch holds up to 64 runs and groups): the light twins of tab10 ("tab20"), then
# the dark and the mid shades of "tab20b", so that 40 runs or groups have 40 colours
MORE = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
        "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
        "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
        "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194")
RIGHT, WRONG = "#2ca02c", "#d62728"
DEFAULT_ENV = "livetrain"
DEFAULT_SMOOTHING = 0.6


@dataclass(frozen=True)
class DrawOptions:
    """How runs are drawn, the same for every run of a launch: the Visdom env they share, the
    smoothing of their per-batch traces, and how many points a trace keeps."""

    env: str = DEFAULT_ENV
    # EMA weight of a smoothed trace drawn over each faint raw per-batch trace (TensorBoard's
    # default is 0.6); 0 or None: the raw trace alone
    smoothing: float | None = DEFAULT_SMOOTHING
    max_points: int = 1000  # per trace on the server
    run_windows: bool = True  # each run's own gallery and confusion matrix (see `run_windows_for`)
    in_group: bool = False  # a run of a seed group: its traces faint, its group's mean and band carry it
    scatter: str | None = None  # the setting a sweep's scatter shows (a config field); None: chosen for it


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
    """One metric's traces in a window comparing runs: one trace per run (two with smoothing).
    Two metrics may share a window (train and test per epoch): the second's traces then carry
    its `part` in their names and its dash in their style."""

    metric: str
    win: str
    title: str
    y_title: str
    per_batch: bool  # per-batch series are long and noisy: lines, no markers
    log_y: bool = False  # runs that differ by orders of magnitude (samples/s: softmax vs CNN)
    part: str = ""  # "train": the second metric of a window, named "<label> · train"
    dash: str = "solid"


# Train against test per epoch: one window per quantity (loss, accuracy), each run in its colour
# with its test trace solid (from the untrained model's point at x = 0) and its train trace dotted
# (the epoch's mean, from x = 1). One window for all runs rather than one per run: the gap between
# a run's two lines reads as well, and runs compare in the same axes; per-run windows would add a
# window per run to a page that already has two.
EPOCH_LOSS_TITLE = "Loss per epoch: test solid, train dotted"
EPOCH_ACC_TITLE = "Accuracy per epoch: test solid, train dotted"
COMPARE_WINDOWS = (
    CompareWindow(TRAIN_LOSS, "compare-train-loss", "Training loss (per batch)", "loss", True),
    CompareWindow(TRAIN_ACC, "compare-train-acc", "Training accuracy (per batch)", "accuracy", True),
    CompareWindow(TEST_LOSS, "compare-epoch-loss", EPOCH_LOSS_TITLE, "loss (test: cross-entropy)", False),
    CompareWindow(EPOCH_TRAIN_LOSS, "compare-epoch-loss", EPOCH_LOSS_TITLE, "loss (test: cross-entropy)", False,
                  part="train", dash="dot"),
    CompareWindow(TEST_ACC, "compare-epoch-acc", EPOCH_ACC_TITLE, "accuracy", False),
    CompareWindow(EPOCH_TRAIN_ACC, "compare-epoch-acc", EPOCH_ACC_TITLE, "accuracy", False, part="train", dash="dot"),
    CompareWindow(TEST_ENTROPY, "compare-entropy", "How sure: mean entropy of the test predictions",
                  "bits (log2 10 = 3.32: a uniform guess)", False),
    CompareWindow(TEST_WEAKEST, "compare-weakest", "The weakest class: its test accuracy (each run's worst class)",
                  "accuracy of the worst class", False),
    CompareWindow(TEST_ECE, "compare-ece", "Calibration: expected calibration error (0: as sure as right)",
                  "ECE", False),
    CompareWindow(SAMPLES_PER_S, "compare-throughput", "Throughput (training samples/s)", "samples/s", True, log_y=True),
)
COMPARE_BY_METRIC = {w.metric: w for w in COMPARE_WINDOWS}
# per window id, in page order: the metrics it holds
COMPARE_PARTS = {win: tuple(w for w in COMPARE_WINDOWS if w.win == win)
                 for win in dict.fromkeys(w.win for w in COMPARE_WINDOWS)}
# each window once, in page order (the first of the metrics sharing it stands for it)
COMPARE_PANES = tuple(parts[0] for parts in COMPARE_PARTS.values())
RUNS_WIN, DISAGREE_WIN, SAMPLES_WIN = "runs", "disagreement", "training-samples"
PARCOORDS_WIN, SCATTER_WIN = "sweep-parcoords", "sweep-scatter"

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
    """The colour of a launch's `index`th run or group: 40 distinct ones, then a hue of its own
    for each further one (the golden angle apart, so that neighbours never look alike)."""
    if index < len(PALETTE) + len(MORE):
        return (PALETTE + MORE)[index]
    r, g, b = colorsys.hls_to_rgb((index * 0.381966) % 1, 0.42 if index % 2 else 0.58, 0.55)
    return "#" + "".join(f"{round(255 * c):02x}" for c in (r, g, b))


def default_colour_index(label: str) -> int:
    """A run's colour when no launcher assigned one: stable across processes and replays."""
    return zlib.crc32(label.encode("utf-8")) % len(PALETTE)


def trace_name(label: str, smoothed: bool = False, part: str = "") -> str:
    """A run's trace name. Plotly reads legend text as HTML, so the label is escaped."""
    return (html.escape(label, quote=False)  # plotly shows &quot; as is
            + (f" · {part}" if part else "") + (" (smoothed)" if smoothed else ""))


def run_window(kind: str, label: str) -> str:
    """The id of one of a run's own windows ("gallery", "confusion")."""
    return f"{kind}-{zlib.crc32(label.encode('utf-8')):08x}"


def plot_layout(x_title: str, y_title: str, log_y: bool = False) -> dict[str, Any]:
    return {
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}, **({"type": "log"} if log_y else {})},
        "showlegend": True,
        # above the plot, a row of entries from the left: clear of the x axis' title
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom",
                   "font": {"size": 11}, "traceorder": "normal"},  # normal: entries flow in rows
        "margin": {"l": 60, "r": 20, "t": 20, "b": 40},
    }


def trace(window: CompareWindow, label: str, colour_index: int, xs: list[float], ys: list[float],
          smoothed: bool = False, faded: bool = False, member: bool = False) -> dict[str, Any]:
    """A plotly scatter trace for one run in a compare window. A run's traces in one window are
    one legend group with one entry (its raw or test trace, named by the run's label): a click on
    it shows or hides all of them. A `member` of a seed group is drawn faint, with no entry."""
    line: dict[str, Any] = {"color": colour(colour_index), "width": 1 if member else 2 if smoothed else 1.5,
                            "dash": window.dash}
    return {
        "x": xs, "y": ys, "name": trace_name(label, smoothed, window.part), "type": "scatter",
        "mode": "lines" if window.per_batch or member else "lines+markers",
        "line": line, "opacity": 0.25 if member else 0.3 if faded else 1.0,
        "legendgroup": trace_name(label), "showlegend": not (smoothed or window.part or member),
    }


def run_traces(window: CompareWindow, label: str, colour_index: int, points: tuple[list[float], list[float]],
               smoothed_points: tuple[list[float], list[float]] | None = None,
               member: bool = False) -> list[dict[str, Any]]:
    """A run's traces in a compare window: its points (faded when a smoothed trace goes with
    them), then the smoothed ones. The style is fixed when a trace is created: later updates
    change only its points."""
    data = [trace(window, label, colour_index, *points, faded=smoothed_points is not None, member=member)]
    if smoothed_points is not None:
        data.append(trace(window, label, colour_index, *smoothed_points, smoothed=True, member=member))
    return data


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def band_name(group: str, window: CompareWindow) -> str:
    return trace_name(group, part=window.part) + " (band)"


def group_traces(window: CompareWindow, group: str, colour_index: int,
                 points: list[tuple[float, float, float, float]]) -> list[dict[str, Any]]:
    """A seed group's traces in a compare window: its band, from the lowest to the highest of its
    runs' values at each x (one closed shape: the highs left to right, then the lows back), and
    its mean line, strong, with the group's legend entry."""
    xs = [p[0] for p in points]
    shade = colour(colour_index)
    band = {"x": xs + xs[::-1], "y": [p[3] for p in points] + [p[1] for p in reversed(points)],
            "name": band_name(group, window), "type": "scatter", "mode": "lines", "fill": "toself",
            "fillcolor": _rgba(shade, 0.2), "line": {"color": shade, "width": 0}, "hoverinfo": "skip",
            "legendgroup": trace_name(group), "showlegend": False}
    mean = {"x": xs, "y": [p[2] for p in points], "name": trace_name(group, part=window.part), "type": "scatter",
            "mode": "lines" if window.per_batch else "lines+markers",
            "line": {"color": shade, "width": 2.5, "dash": window.dash},
            "legendgroup": trace_name(group), "showlegend": not window.part}
    return [band, mean]


def trace_message(env: str, window: CompareWindow, data: dict[str, Any], create: bool,
                  seq: int | None = None) -> dict[str, Any]:
    """Replace one run's trace, or (create=True) append it, creating the window when missing.
    With `seq`, a server of ours refuses it if the trace holds a newer message."""
    message: dict[str, Any] = {"eid": env, "win": window.win, "name": data["name"], "append": create, "data": [data]}
    if seq is not None:
        message[SEQ_KEY] = seq
    if create:
        message["layout"] = plot_layout("epoch", window.y_title, window.log_y)
        message["opts"] = {"title": window.title, **PLOT_SIZE}
    return message


def placeholder_message(env: str, window: CompareWindow) -> dict[str, Any]:
    """Create a compare window before any run reports, so windows appear in this order."""
    empty = {"x": [], "y": [], "name": "", "type": "scatter", "mode": "lines", "showlegend": False}
    return {"eid": env, "win": window.win, "name": "", "append": True, "data": [empty],
            "layout": plot_layout("epoch", window.y_title, window.log_y), "opts": {"title": window.title, **PLOT_SIZE},
            SEQ_KEY: 0}  # older than anything: it never replaces what a run drew


def text_message(env: str, win: str, title: str, content: str, width: int, height: int,
                 seq: int | None = None) -> dict[str, Any]:
    """A whole text pane (its HTML must already be escaped where it holds outside text), numbered
    now unless `seq` is given."""
    return {"eid": env, "win": win, "data": [{"content": content, "type": "text"}],
            "opts": {"title": title, "width": width, "height": height},
            SEQ_KEY: new_seq() if seq is None else seq}


def waiting_html(text: str) -> str:
    return f'<div style="font:13px sans-serif;color:#555">{html.escape(text)}</div>'


SAMPLES_WAITING = waiting_html("Training images appear when the first run starts.")
SWEEP_WAITING = waiting_html("Each run joins this plot when it finishes.")


def samples_message(env: str, dataset: str, content: str) -> dict[str, Any]:
    title = f"Training samples ({dataset})" if dataset else "Training samples"
    return text_message(env, SAMPLES_WIN, title, content, UNIT, PANE_HEIGHT)


PARCOORDS_TITLE = "Sweep: each finished run's settings and its final test accuracy"


def parcoords_message(env: str, dimensions: list[dict[str, Any]], accuracy: list[float]) -> dict[str, Any]:
    """A Plotly parallel-coordinates figure: one line per run through `dimensions` (each a
    label, values, and for categories or log scales the tick values and texts), coloured by
    its final test accuracy. Visdom has no pane for it; its generic plot message draws any figure."""
    data = {"type": "parcoords", "dimensions": dimensions,
            "line": {"color": accuracy, "colorscale": "Viridis", "showscale": True,
                     "colorbar": {"title": {"text": "test acc"}, "x": 1.12, "thickness": 12}}}
    layout = {"margin": {"l": 70, "r": 110, "t": 50, "b": 30}}  # room for the last axis's ticks, then the bar
    return {"eid": env, "win": PARCOORDS_WIN, "data": [data], "layout": layout,
            "opts": {"title": PARCOORDS_TITLE, **PLOT_SIZE}, SEQ_KEY: new_seq()}


def scatter_title(setting: str) -> str:
    return f"Sweep: {setting} against final test accuracy"


def scatter_message(env: str, setting: str, points: list[tuple[Any, float, str, int]], log_x: bool) -> dict[str, Any]:
    """One marker per finished run: (its value of `setting`, its final test accuracy, its label,
    its colour index), on a log x axis for a setting spanning decades."""
    data = {"x": [p[0] for p in points], "y": [p[1] for p in points], "type": "scatter", "mode": "markers",
            "text": [html.escape(p[2], quote=False) for p in points], "name": "runs",
            "marker": {"size": 10, "color": [colour(p[3]) for p in points]},
            "hovertemplate": "%{text}<br>" + html.escape(setting) + " %{x}<br>test acc %{y:.4f}<extra></extra>"}
    layout = {"xaxis": {"title": {"text": html.escape(setting)},
                        **({"type": "log", "exponentformat": "e"} if log_x else {})},  # 1e-04, not 100µ
              "yaxis": {"title": {"text": "final test accuracy"}},
              "margin": {"l": 60, "r": 20, "t": 20, "b": 50}, "showlegend": False}
    return {"eid": env, "win": SCATTER_WIN, "data": [data], "layout": layout,
            "opts": {"title": scatter_title(setting), **PLOT_SIZE}, SEQ_KEY: new_seq()}


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
        self._sent[message["win"]] = message_content(message)

    def differing(self, connection: Any) -> list[str]:
        """The windows whose content on the server is not what was last sent."""
        differ = []
        for win, sent in list(self._sent.items()):
            pane = connection.pane(self.env, win)
            if pane is None or pane_content(pane) != sent:
                differ.append(win)
        return differ


_PLOTTED = ("x", "y", "z", "dimensions")  # what a plot's traces hold, to compare


def message_content(message: dict[str, Any]) -> Any:
    """What a whole-pane message puts in its pane: a text pane's HTML, a plot's traces' values."""
    data = message["data"]
    if data[0]["type"] == "text":
        return data[0]["content"]
    return [{k: d.get(k) for k in _PLOTTED} for d in data]


def pane_content(pane: dict[str, Any]) -> Any:
    if pane.get("type") == "text":
        return pane.get("content")
    data = (pane.get("content") or {}).get("data") or []
    return [{k: d.get(k) for k in _PLOTTED} for d in data]
