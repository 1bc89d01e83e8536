"""Weight templates: what a fully connected first layer looks for, as images.

For the softmax regression (`softmax`, `softmax-nn`) the layer is the whole model: each class's
weights (a column of W) drawn as an image of the input's shape, red where a bright pixel raises
the class's score and blue where it lowers it. This is the picture that explains what a linear
classifier learns: a blurred prototype of each class. For a model with more layers (the MLP),
the 16 units of its first layer with the largest weight norm. Drawn each epoch (the untrained
model's at epoch 0 first) from the "templates" record (trainers.measures.templates); a model
whose first layer is not fully connected has none."""

from __future__ import annotations

from typing import Any

from dashboard.panels.base import Panel, waiting_window
from dashboard.panels.tiles import latest_drawn

KIND = "templates"


def title(label: str, record: dict[str, Any] | None = None) -> str:
    if record is None:
        return f"{label}: weight templates"
    what = "each class's weights" if record.get("classes") else f"{record['layer']}'s strongest units"
    return f"{label}: weight templates ({what}), epoch {record['x']:g}"


PANEL = Panel(KIND, "templates", latest_drawn(title), waiting_window(
    title, "Each class's (or first-layer unit's) weights appear as images once the untrained model is tested, "
    "for a model whose first layer is fully connected (softmax, MLP)."))
