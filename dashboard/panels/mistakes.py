"""The test images a run gets most confidently wrong after each epoch (highest loss first): what
it said with its probability, and the true class with the probability it gave that. Drawn from
the latest "mistakes" record (trainers.measures.mistakes)."""

from __future__ import annotations

from typing import Any

from dashboard import panes, windows
from dashboard.panels.base import Message, Panel, waiting_window
from dashboard.panels.gallery import uris
from trainers.reporting import MISTAKES


def title(label: str) -> str:
    return f"{label}: most confidently wrong (test)"


def draw(env: str, win: str, label: str, records: list[dict[str, Any]]) -> Message:
    m = records[-1]
    content = panes.mistakes_html(uris(m, len(m["predicted"])), m["predicted"],
                                  m["probability"], m["true"], m["true_probability"], m["classes"], m["x"])
    return windows.text_message(env, win, title(label), content, windows.UNIT, windows.PANE_HEIGHT)


PANEL = Panel(MISTAKES, "mistakes", draw,
              waiting_window(title, "The test images it gets most confidently wrong appear after the first epoch."))
