"""Gradient norms per layer: whether every layer still learns. One trace per layer, first to last,
on a log axis, where a vanishing gradient shows as a first layer decades below the last (the
course's sigmoid MLP against its ReLU twin). Drawn from the run's scalars "grad/LAYER", the L2
norm of each layer's gradient every few batches (trainers.loop.gradient_norms), each layer kept
as a bounded min/max series."""

from __future__ import annotations

import html

from dashboard import windows
from dashboard.panels.base import Message, SeriesPanel, waiting_window
from dashboard.protocol import SEQ_KEY
from trainers.reporting import GRAD_PREFIX

# the layers of a run, first to last, from dark to light (viridis), apart from the runs' colours
LAYER_COLOURS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#b5de2b", "#fde725")


def title(label: str) -> str:
    return f"{label}: gradient norm per layer"


def draw(env: str, win: str, label: str, layers: dict[str, tuple[list[float], list[float]]]) -> Message:
    data = [{"x": xs, "y": ys, "name": html.escape(name, quote=False), "type": "scatter", "mode": "lines",
             "line": {"color": LAYER_COLOURS[min(i, len(LAYER_COLOURS) - 1)], "width": 1.5}}
            for i, (name, (xs, ys)) in enumerate(layers.items())]
    layout = windows.plot_layout("epoch", "gradient L2 norm", log_y=True)
    return {"eid": env, "win": win, "data": data, "layout": layout,
            "opts": {"title": title(label), **windows.PLOT_SIZE}, SEQ_KEY: windows.new_seq()}


PANEL = SeriesPanel(GRAD_PREFIX, "gradients", draw,
                    waiting_window(title, "The layers' gradient norms appear with the first batch."))
