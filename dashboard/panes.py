"""HTML for the text panes: the prediction gallery, the disagreement window and the runs table.

Visdom's `images()` draws one caption under a whole grid, so each image is an inline PNG with its
own caption instead. Visdom renders text panes as raw HTML: everything that comes from a user,
a file or a run (labels, class names, reasons) goes through `html.escape`."""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from dashboard.windows import RIGHT, WRONG, colour
from trainers.reporting import RunState, SAMPLES_PER_S, TEST_ACC, TEST_ECE, TEST_LOSS, TRAIN_ACC, TRAIN_LOSS
from trainers.settings import COLUMNS, MODEL_SETTINGS, SHOWN, written

if TYPE_CHECKING:  # images come as tensors; the runs table, which needs no torch, imports this too
    import torch

IMAGE_PX = 56  # 28x28 images shown at twice their size


def png(image: torch.Tensor) -> bytes:
    """Encode a (C, H, W) uint8 image (C = 1 or 3) as PNG, with zlib alone."""
    c, h, w = image.shape
    pixels = image.permute(1, 2, 0).contiguous().numpy().tobytes()
    row = w * c
    raw = b"".join(b"\x00" + pixels[i * row:(i + 1) * row] for i in range(h))  # filter 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    colour_type = 0 if c == 1 else 2
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uris(images: torch.Tensor) -> list[str]:
    """(N, C, H, W) uint8 -> one `data:` URI per image."""
    return ["data:image/png;base64," + base64.b64encode(png(img)).decode("ascii") for img in images.cpu()]


def _figure(uri: str, border: str, caption: str) -> str:
    return (f'<figure style="margin:2px;width:{IMAGE_PX + 34}px;text-align:center">'
            f'<img src="{uri}" width="{IMAGE_PX}" height="{IMAGE_PX}" '
            f'style="image-rendering:pixelated;border:3px solid {border};border-radius:3px">'
            f'<figcaption style="line-height:1.25">{caption}</figcaption></figure>')


def _grid(figures: Sequence[str], heading: str) -> str:
    return (f'<div style="font:11px/1.3 sans-serif;color:#222">{heading}'
            f'<div style="display:flex;flex-wrap:wrap">{"".join(figures)}</div></div>')


def gallery_html(uris: Sequence[str], predicted: Sequence[int], probability: Sequence[float],
                 true: Sequence[int], classes: Sequence[str], x: float) -> str:
    """Test images, each with its predicted class and probability (green right, red wrong) and the true class."""
    figures, right = [], 0
    for uri, p, prob, t in zip(uris, predicted, probability, true):
        ok = p == t
        right += ok
        mark = RIGHT if ok else WRONG
        caption = (f'<b style="color:{mark}">{"&#10003;" if ok else "&#10007;"} {escape(classes[p])}</b> '
                   f'{100 * prob:.0f}%<br><span style="color:#555">true: {escape(classes[t])}</span>')
        figures.append(_figure(uri, mark, caption))
    heading = f"<div>after epoch {x:g}: <b>{right} of {len(figures)}</b> right</div>"
    return _grid(figures, heading)


def mistakes_html(uris: Sequence[str], predicted: Sequence[int], probability: Sequence[float], true: Sequence[int],
                  true_probability: Sequence[float], classes: Sequence[str], x: float) -> str:
    """The test images a run gets most confidently wrong, highest loss first: what it said with
    its probability, and the true class with the probability it gave that."""
    figures = []
    for uri, p, prob, t, true_prob in zip(uris, predicted, probability, true, true_probability):
        caption = (f'<b style="color:{WRONG}">{escape(classes[p])}</b> {100 * prob:.0f}%<br>'
                   f'<span style="color:#555">true: {escape(classes[t])} {_percent(true_prob)}</span>')
        figures.append(_figure(uri, WRONG, caption))
    heading = (f"<div>after epoch {x:g}: the {len(figures)} test images it is most sure of and gets wrong "
               f"(highest loss first)</div>")
    return _grid(figures, heading)


def _percent(p: float) -> str:
    """A probability as a percentage, small ones with their first digits ("0.02%")."""
    return f"{100 * p:.0f}%" if p >= 0.01 else f"{100 * p:.2g}%"


def samples_html(uris: Sequence[str], labels: Sequence[int], classes: Sequence[str], dataset: str) -> str:
    """Training images with their class names (d2l's show_fashion_mnist)."""
    figures = [_figure(uri, "#999", escape(classes[label])) for uri, label in zip(uris, labels)]
    return _grid(figures, f"<div>the first {len(figures)} training images of {escape(dataset)}</div>")


@dataclass
class RunPredictions:
    """One run's latest predictions on the shared sample of test images."""

    label: str
    colour_index: int
    x: float
    predicted: list[int]
    group: tuple[str, int] | None = None  # its seed group's label and colour


def compared(runs: Sequence[RunPredictions], true: Sequence[int],
             most: int = 8) -> tuple[list[RunPredictions], str]:
    """The answers the pane lists per image, at most `most`, and a line that says which: past
    `most` runs, a seed group answers as one (the answer most of its runs give); past `most`
    answers still, the best and the worst on the sample, by their accuracy on it."""
    if len(runs) <= most:
        return list(runs), ""
    units: dict[Any, list[RunPredictions]] = {}
    for r in runs:
        units.setdefault(r.group or r.label, []).append(r)
    merged = [members[0] if len(members) == 1 or key != members[0].group else RunPredictions(
        key[0], key[1], min(r.x for r in members),
        [Counter(answers).most_common(1)[0][0] for answers in zip(*(r.predicted for r in members))])
        for key, members in units.items()]
    groups = sum(isinstance(key, tuple) for key in units)
    said = f"{len(runs)} runs" + (f", each of their {groups} seed groups as one (its runs' most common answer)"
                                  if groups else "")
    if len(merged) <= most:
        return merged, said
    ranked = sorted(merged, key=lambda u: -sum(p == t for p, t in zip(u.predicted, true)))  # most right first
    best, worst = ranked[:most // 2], ranked[len(ranked) - (most - most // 2):]
    return best + worst, f"{said}: the {len(best)} best and the {len(worst)} worst on these images"


def disagreement_html(uris: Sequence[str], true: Sequence[int], classes: Sequence[str],
                      runs: Sequence[RunPredictions], limit: int = 18) -> str:
    """The test images on which the runs' latest predictions differ, with each run's answer
    (or, for many runs, each group's, or the best and worst: see `compared`).

    Images where some run is right and another wrong come first, then those with the most
    distinct answers; ties keep the sample's order."""
    if len(runs) < 2:
        return '<div style="font:13px sans-serif;color:#555">Waiting for a second run to finish an epoch.</div>'
    runs, said = compared(runs, true)
    n = min(len(r.predicted) for r in runs)
    disputed = []
    for i in range(n):
        answers = [r.predicted[i] for r in runs]
        if len(set(answers)) > 1:
            some_right = any(a == true[i] for a in answers)
            disputed.append((not some_right, -len(set(answers)), i))
    disputed.sort()
    legend = " ".join(f'<span style="color:{colour(r.colour_index)}">&#9632;</span> {escape(r.label)} '
                      f'(epoch {r.x:g})' for r in runs)
    heading = ((f"<div>{escape(said)}</div>" if said else "") + f"<div>{legend}</div>"
               + f"<div>The runs disagree on <b>{len(disputed)} of {n}</b> sample test images"
               + (f"; the first {min(limit, len(disputed))}:" if disputed else ".") + "</div>")
    figures = []
    for _, _, i in disputed[:limit]:
        lines = []
        for r in runs:
            p = r.predicted[i]
            mark = RIGHT if p == true[i] else WRONG
            lines.append(f'<span style="color:{colour(r.colour_index)}">&#9632;</span> '
                         f'<span style="color:{mark}">{escape(classes[p])}</span>')
        caption = "<br>".join(lines) + f'<br><span style="color:#555">true: {escape(classes[true[i]])}</span>'
        figures.append(_figure(uris[i], "#999", caption))
    return _grid(figures, heading)


@dataclass
class RunSummary:
    """What the runs pane and the terminal show for one run."""

    label: str
    colour_index: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    status: str = RunState.STARTING
    reason: str = ""
    x: float = 0.0
    latest: dict[str, float] = field(default_factory=dict)
    started: float | None = None
    updated: float | None = None
    parent: tuple[str, float] | None = None  # a fork's: its parent's label and the x it forked at
    node: str = ""  # the cluster node it trains on ("" on this machine)


@dataclass
class GroupSummary:
    """A seed group in the runs pane: its runs, and the final test accuracy of those finished."""

    label: str
    colour_index: int
    runs: int
    accuracies: list[float]


def groups_html(groups: Sequence[GroupSummary]) -> str:
    """Each seed group's final test accuracy as mean ± standard deviation (the sample's, n - 1)
    over its finished runs, below the runs table."""
    if not groups:
        return ""
    lines = []
    for g in groups:
        n = len(g.accuracies)
        if n == 0:
            said = "no run finished yet"
        else:
            mean = math.fsum(g.accuracies) / n
            std = math.sqrt(math.fsum((a - mean) ** 2 for a in g.accuracies) / (n - 1)) if n > 1 else 0.0
            said = f"test acc <b>{mean:.4f} &plusmn; {std:.4f}</b> (mean &plusmn; std of {n} of {g.runs} runs)"
        lines.append(f'<div><span style="color:{colour(g.colour_index)}">&#9632;</span> {escape(g.label)}: {said}</div>')
    return f'<div style="font:12px sans-serif;margin-top:6px">{"".join(lines)}</div>'


STATUS_COLOURS = {RunState.FINISHED: RIGHT, RunState.FAILED: WRONG, RunState.INTERRUPTED: "#ff7f0e",
                  RunState.RUNNING: "#1f77b4", RunState.PAUSED: "#9467bd"}


def _setting(value: Any) -> str:
    """A setting as a person writes it: three significant digits (an lr of 1e-05 and 3e-05 differ)."""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return _number(value)


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return escape(str(value))


# what the runs pane says under a model's name (trainers.settings' SHOWN; "input": a user's model
# trained on flat images)
SHOWN_SETTINGS = (*MODEL_SETTINGS, *(name for name in SHOWN if name not in MODEL_SETTINGS), "input")


def model_html(config: dict[str, Any]) -> str:
    """The model's name, its preset if it came from one, and its own settings in small print."""
    name = escape(str(config.get("model", "")))
    if config.get("preset"):
        name += f' <span style="color:#555">({escape(str(config["preset"]))})</span>'
    said = []
    for key in SHOWN_SETTINGS:
        value = config.get(key)
        if value is None:
            continue
        said.append(f"{key.replace('_', '-')} {escape(written(value))}")
    return name + (f'<br><span style="color:#555;font-size:11px">{"; ".join(said)}</span>' if said else "")


# a run's reason under its status, on two lines of small print for the usual one (in a table of
# unwrapped cells, a wrapped one would otherwise be a word wide: a row five lines tall)
REASON_STYLE = "color:#555;font-size:11px;white-space:normal;display:inline-block;min-width:240px;max-width:320px"


def runs_height(count: int, runs: Sequence[RunSummary]) -> int:
    """The runs pane's height: a header and `count` rows without a scroll bar (up to 12 rows). A row
    is two lines (the model's settings under its name), 12 px more with a reason under its status."""
    rows = min(max(count, 1), 12)
    return max(100, 30 + 34 * rows + 12 * min(sum(1 for r in runs if r.reason), rows))


def runs_html(runs: Sequence[RunSummary]) -> str:
    """A table: one row per run with its configuration, status and latest metrics."""
    head = ["run", "model", "status", "epoch", "train loss", "train acc", "test loss (CE)", "test acc", "ECE",
            "samples/s",
            *(column for column, _ in COLUMNS)]  # then a column per setting declared with one
    on_nodes = any(r.node for r in runs)  # a launch on a cluster (--cluster): where each run trains
    head[3:3] = ["node"] if on_nodes else []
    cell = 'style="padding:2px 6px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap"'
    rows = []
    for r in runs:
        c = r.config
        epochs = c.get("epochs")
        status = (f'<b style="color:{STATUS_COLOURS.get(r.status, "#555")}">{escape(r.status)}</b>'
                  + (f'<br><span style="{REASON_STYLE}">{escape(r.reason)}</span>' if r.reason else ""))
        forked = (f'<br><span style="color:#555;font-size:11px">fork of {escape(r.parent[0])} at epoch '
                  f'{r.parent[1]:.2f}</span>' if r.parent else "")
        values = [
            f'<span style="color:{colour(r.colour_index)}">&#9632;</span> {escape(r.label)}{forked}',
            model_html(c), status, *([escape(r.node)] if on_nodes else []),
            f"{r.x:.2f} / {escape(str(epochs))}" if epochs else f"{r.x:.2f}",
            _number(r.latest.get(TRAIN_LOSS)), _number(r.latest.get(TRAIN_ACC), 3),
            _number(r.latest.get(TEST_LOSS)), _number(r.latest.get(TEST_ACC)), _number(r.latest.get(TEST_ECE), 3),
            _number(r.latest.get(SAMPLES_PER_S)), *(_setting(c.get(name)) for _, name in COLUMNS),
        ]
        rows.append("<tr>" + "".join(f"<td {cell}>{v}</td>" for v in values) + "</tr>")
    header = "<tr>" + "".join(f"<th {cell}>{h}</th>" for h in head) + "</tr>"
    return (f'<table style="border-collapse:collapse;font:12px sans-serif">{header}{"".join(rows)}</table>'
            if rows else '<div style="font:13px sans-serif;color:#555">No runs yet.</div>')


def forked_from(meta: Mapping[str, Any]) -> tuple[str, float] | None:
    """(the parent's label, the x it forked at) from a run log's meta; None for a run that is no fork."""
    parent = meta.get("parent")
    if isinstance(parent, Mapping) and isinstance(parent.get("run"), str) and isinstance(parent.get("x"), (int, float)):
        return parent["run"], float(parent["x"])
    return None
