"""The terminal view: one line per run (epoch, progress, loss, accuracy, samples/s, ETA).

On a terminal the lines are redrawn in place; into a file or a pipe (CI logs, `nohup`) a run's
line is printed only when its epoch or status changes, so the output stays readable."""

from __future__ import annotations

import shutil
import sys
import time
import unicodedata
from collections import Counter
from typing import Sequence, TextIO

from dashboard.panes import RunSummary
from trainers.reporting import RunState, SAMPLES_PER_S, TEST_ACC, TRAIN_ACC, TRAIN_LOSS

BAR = 12


def clock(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _num(value: float, digits: int) -> str:
    """Fixed decimals for ordinary values, exponent notation for a run blowing up."""
    return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3e}"


def columns(text: str) -> int:
    """The terminal columns `text` takes: 2 for a wide character (CJK), 0 for a combining mark or
    a format character, 1 for the rest."""
    return sum(_columns(ch) for ch in text)


def _columns(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def pad(text: str, width: int) -> str:
    """`text` with spaces after it up to `width` columns."""
    return text + " " * max(0, width - columns(text))


def cut(text: str, width: int) -> str:
    """The longest start of `text` that fits in `width` columns."""
    used = 0
    for i, ch in enumerate(text):
        used += _columns(ch)
        if used > width:
            return text[:i]
    return text


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell (in terminal columns)."""
    widths = [max(columns(row[i]) for row in [header, *body]) for i in range(len(header))]
    return ["  ".join(pad(cell, w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body]]


def line(run: RunSummary, width: int = 12, now: float | None = None) -> str:
    """One run's progress line; its label padded to `width` columns (never cut: a sweep's runs
    differ in their label's end)."""
    epochs = run.config.get("epochs") or 0
    done = min(run.x / epochs, 1.0) if epochs else 0.0
    filled = int(round(done * BAR))
    parts = [pad(run.label, width),
             f"epoch {min(int(run.x) + 1, epochs):>2}/{epochs:<2}" if epochs else "epoch  -/- ",
             f"[{'#' * filled}{'.' * (BAR - filled)}] {100 * done:3.0f}%"]
    latest = run.latest
    if TRAIN_LOSS in latest:
        parts.append(f"loss {_num(latest[TRAIN_LOSS], 4)}")
    if TRAIN_ACC in latest:
        parts.append(f"acc {latest[TRAIN_ACC]:.3f}")
    if TEST_ACC in latest:
        parts.append(f"test acc {latest[TEST_ACC]:.4f}")
    if SAMPLES_PER_S in latest:
        parts.append(f"{latest[SAMPLES_PER_S]:>7,.0f} samples/s")
    now = time.time() if now is None else now
    if run.status == RunState.RUNNING and run.started and 0 < done < 1:
        elapsed = (run.updated or now) - run.started
        parts.append(f"ETA {clock(elapsed * (1 - done) / done)}")
    status = run.status + (f": {run.reason}" if run.reason else "")
    parts.append(status)
    return "  ".join(parts)


# which runs a terminal too short for all of them shows first
_SHOWN_FIRST = (RunState.RUNNING, RunState.PAUSED, RunState.FAILED, RunState.INTERRUPTED, RunState.STARTING,
                RunState.QUEUED)


def fitting(runs: Sequence[RunSummary], rows: int) -> tuple[list[RunSummary], list[str]]:
    """The runs to draw in `rows` lines, in their order, and the line that counts the others: all
    of them when they fit; else the running ones first (then failed, stopped, queued, finished)."""
    if len(runs) <= rows:
        return list(runs), []
    rank = {state: i for i, state in enumerate(_SHOWN_FIRST)}
    order = sorted(range(len(runs)), key=lambda i: (rank.get(runs[i].status, len(rank)), i))
    keep = sorted(order[:rows - 1])
    hidden = [runs[i] for i in order[rows - 1:]]
    counts = ", ".join(f"{n} {state}" for state, n in Counter(str(r.status) for r in hidden).items())
    return [runs[i] for i in keep], [f"... and {len(hidden)} more: {counts}"]


class GoneQuiet:
    """A text stream that goes quiet once writing to it fails: a closed terminal (EIO), a closed
    pipe (EPIPE). What the launcher prints is for a person; the runs and their logs go on."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except (OSError, ValueError):
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.gone = True

    def isatty(self) -> bool:
        try:
            return not self.gone and self.stream.isatty()
        except (OSError, ValueError):
            return False


class TerminalView:
    """Draws the runs' lines to `stream`, in place when it is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self._drawn = 0
        self._printed: dict[str, tuple[int, str]] = {}
        self.closed = False

    def draw(self, runs: Sequence[RunSummary]) -> None:
        if self.closed:
            return
        width = max([columns(r.label) for r in runs] + [4])
        try:
            if self.live:
                # each line cut to the terminal's width, and no more lines than it has rows: a
                # wrapped or scrolled line would break the redraw
                size = shutil.get_terminal_size()
                shown = fitting(runs, max(size.lines - 1, 2))
                out = "\x1b[F" * self._drawn  # back to the first line drawn last time
                out += "".join("\x1b[2K" + cut(text, max(size.columns - 1, 20)) + "\n"
                               for text in [line(r, width) for r in shown[0]] + shown[1])
                self.stream.write(out)
                self._drawn = len(shown[0]) + len(shown[1])
            else:
                for r in runs:
                    key = (int(r.x), r.status)
                    if self._printed.get(r.label) != key:
                        self._printed[r.label] = key
                        self.stream.write(line(r, width) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away or the pipe closed: training goes on
            self.closed = True
