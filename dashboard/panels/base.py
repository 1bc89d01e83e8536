"""What a panel module declares: one window of each run, drawn from run-log records of its own kind
(`Panel`) or from scalars of its own prefix (`SeriesPanel`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dashboard import windows

Message = dict[str, Any]  # a whole Visdom window, as posted to /events


@dataclass(frozen=True)
class Panel:
    """One window per run (see dashboard.panels).

    - `kind`: the run-log records it reads, written by `Reporter.record(kind, step, x, payload)`
      (the trainer side computes the payload: trainers.measures);
    - `name`: its window's, per run (`windows.run_window(name, label)`);
    - `draw(env, win, label, records)`: the whole window from the run's records of its kind so
      far, each {"kind", "step", "x", **payload}, oldest first (all of them when `history`, else
      the latest alone), after the latest record of each kind in `also` that came: the same
      code live (dashboard.visdom_backend) and in a replay; called once one of its kind came;
    - `waiting(env, win, label)`: the window before its first record (numbered 0: older than
      anything drawn, so it never replaces it)."""

    kind: str
    name: str
    draw: Callable[[str, str, str, list[dict[str, Any]]], Message]
    waiting: Callable[[str, str, str], Message]
    history: bool = False
    also: tuple[str, ...] = ()

    def win(self, label: str) -> str:
        return windows.run_window(self.name, label)


@dataclass(frozen=True)
class SeriesPanel:
    """One window per run drawn from its scalars rather than records (see dashboard.panels).

    - `prefix`: the scalars it reads, every `prefix + key` a run logs (per batch, now and then),
      each key one trace, kept as a bounded min/max series (`DrawOptions.max_points`);
    - `name`: its window's, per run (`windows.run_window(name, label)`);
    - `draw(env, win, label, series)`: the whole window from {key: (xs, ys)}, the keys in the
      order they first came: the same code live and in a replay; called once a value came;
    - `waiting(env, win, label)`: the window before its first value."""

    prefix: str
    name: str
    draw: Callable[[str, str, str, dict[str, tuple[list[float], list[float]]]], Message]
    waiting: Callable[[str, str, str], Message]

    def win(self, label: str) -> str:
        return windows.run_window(self.name, label)


def waiting_window(title: Callable[[str], str], text: str) -> Callable[[str, str, str], Message]:
    """A panel's `waiting`: a text window titled `title(label)` that says `text`."""
    def waiting(env: str, win: str, label: str) -> Message:
        return windows.text_message(env, win, title(label), windows.waiting_html(text), windows.UNIT,
                                    windows.PANE_HEIGHT, seq=0)
    return waiting
