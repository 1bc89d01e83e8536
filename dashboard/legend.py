"""The legend of a compare window, where a launch's runs and seed groups are named: above the
plot while it takes a few rows (see `windows.plot_layout`), and past that none, for a legend of 64
runs or 8 long group names would squeeze the plot to a strip. Then the window says so, and where
the colours are told: the Runs table, whose rows and groups each start with their colour."""

from __future__ import annotations

from typing import Any, Sequence

WIDTH, ROWS = 380, 3  # px a row of the legend has in a compare window; the rows it may take


def rows(names: Sequence[str]) -> int:
    """About how many rows the legend above a compare window takes for these entries (11 px
    type: 6.2 px a character, and 40 px for the line's sample)."""
    taken, used = 0, float(WIDTH)
    for name in names:
        width = 40 + 6.2 * len(name)
        if used + width > WIDTH:
            taken, used = taken + 1, 0.0
        used += width
    return taken


def message(env: str, win: str, names: Sequence[str]) -> dict[str, Any]:
    """A layout-only update of a compare window for its legend's entries: the legend while it
    takes at most ROWS rows; past that none, for it would squeeze the plot, and a line
    that says where the colours are told (the Runs table) and that a line names its run on hover."""
    shown = rows(names) <= ROWS
    note = {"text": "hover for names; colours: Runs table",
            "xref": "paper", "yref": "paper", "x": 0, "y": 1.01, "xanchor": "left", "yanchor": "bottom",
            "showarrow": False, "font": {"size": 10, "color": "#555"}}
    return {"eid": env, "win": win, "layout": {"showlegend": shown, "annotations": [] if shown else [note]}}
