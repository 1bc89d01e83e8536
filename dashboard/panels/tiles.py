"""Small images of weights (a layer's templates or filters) tiled into one heatmap, for the panels
that draw them (dashboard.panels.templates, .filters): each tile scaled to its own largest
magnitude, in a diverging colour map (red positive, blue negative, white 0), named above it.

A record holds them as trainers.measures.weight_tiles writes them: "names", "shape" [n, h, w],
"scale" (each tile's largest magnitude) and "data" (base64 of n*h*w int8, the weights / scale x 127)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from typing import Any

from dashboard import windows
from dashboard.panels.base import Message
from dashboard.protocol import SEQ_KEY


# blue (negative) - white (0) - red (positive)
DIVERGING = [[0.0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#ffffff"], [0.75, "#f4a582"], [1.0, "#b2182b"]]


GAP = 4  # blank rows above each row of tiles, where their names go (a blank column between two tiles)
# a tile's value for each int8 byte (0-255), to 3 decimals: each of the 255 levels stays distinct,
# and a window's JSON takes a third of the bytes a float's full repr does (the server parses every
# one, each epoch)
LEVELS = [round((b - 256 if b > 127 else b) / 127, 3) for b in range(256)]


def decode(record: dict[str, Any]) -> list[list[list[float]]]:
    """The tiles of `record`, each an h x w list of values in [-1, 1] (its weights / its scale), to
    3 decimals (LEVELS)."""
    n, h, w = record["shape"]
    values = [LEVELS[b] for b in base64.b64decode(record["data"])]
    return [[values[(t * h + r) * w:(t * h + r + 1) * w] for r in range(h)] for t in range(n)]


def latest_drawn(title: Callable[[str, dict[str, Any]], str]) -> Callable[..., Message]:
    """A tiles panel's `draw`: the latest record's tiles, titled `title(label, record)`."""
    def draw(env: str, win: str, label: str, records: list[dict[str, Any]]) -> Message:
        return message(env, win, title(label, records[-1]), records[-1])
    return draw


def message(env: str, win: str, title: str, record: dict[str, Any]) -> Message:
    """One heatmap of every tile of `record`, each under its name: up to 8 in one row, 10 in two
    rows of 5, more in rows of 8."""
    tiles = decode(record)
    n, h, w = record["shape"]
    columns = n if n <= 8 else 5 if n <= 10 else 8
    rows = math.ceil(n / columns)
    z: list[list[float | None]] = [[None] * (columns * (w + 1) - 1) for _ in range(rows * (h + GAP))]
    annotations = []
    for t, tile in enumerate(tiles):
        top, left = (t // columns) * (h + GAP) + GAP, (t % columns) * (w + 1)
        for r, row in enumerate(tile):
            z[top + r][left:left + w] = row
        name = html.escape(str(record["names"][t]), quote=False)
        annotations.append({"x": left + (w - 1) / 2, "y": top - GAP / 2, "text": name, "yanchor": "middle",
                            "showarrow": False,
                            "font": {"size": 10}, "xref": "x", "yref": "y"})
    data = {"z": z, "type": "heatmap", "colorscale": DIVERGING, "zmin": -1, "zmax": 1,
            "zmid": 0, "showscale": False, "hoverongaps": False,
            "hovertemplate": "%{z:.2f} of the tile's largest weight<extra></extra>"}
    axis = {"visible": False, "scaleanchor": "y"}
    layout = {"xaxis": axis, "yaxis": {"visible": False, "autorange": "reversed"}, "annotations": annotations,
              "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "plot_bgcolor": "#fff"}
    return {"eid": env, "win": win, "data": [data], "layout": layout, "opts": {"title": title, **windows.PLOT_SIZE},
            SEQ_KEY: windows.new_seq()}
