"""First-layer filters: what a convolutional network's first layer has learned to detect.

The kernels of its first convolution (the CNN's and LeNet's conv1), each drawn as a small image
(a colour input: the mean over its channels), red where a bright pixel excites the filter and
blue where it inhibits it: from the random start at epoch 0 to edge, bar and blob detectors.
Drawn each epoch from the "filters" record (trainers.measures.filters); a model whose first
layer is not a convolution has none."""

from __future__ import annotations

from typing import Any

from dashboard.panels.base import Panel, waiting_window
from dashboard.panels.tiles import latest_drawn

KIND = "filters"


def title(label: str, record: dict[str, Any] | None = None) -> str:
    if record is None:
        return f"{label}: first-layer filters"
    n, h, w = record["shape"]
    return f"{label}: first-layer filters ({record['layer']}: {n} of {h}x{w}), epoch {record['x']:g}"


PANEL = Panel(KIND, "filters", latest_drawn(title), waiting_window(
    title, "The first convolution's kernels appear as images once the untrained model is tested, for a model "
    "whose first layer is a convolution (CNN, LeNet)."))
