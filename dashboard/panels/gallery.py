"""The prediction gallery: test images, each with what the run predicts (green right, red wrong),
its probability and the true class, after each epoch.

Drawn from the latest "predictions" record (trainers.measures.predictions) over the images of
the latest "gallery" record (the fixed sample of test images, the same for every run on a data
set, logged as the run starts). The window shows the first GALLERY_SHOWN; the whole sample feeds
the page's "where the runs disagree" window (dashboard.board)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dashboard import panes, windows
from dashboard.panels.base import Message, Panel, waiting_window
from dashboard.runlog import decode_images
from trainers.reporting import GALLERY, PREDICTIONS

GALLERY_SHOWN = 16  # images in the window (4 rows of 4)


def title(label: str) -> str:
    return f"{label}: test images, predicted (true)"


def uris(record: dict[str, Any], count: int) -> list[str]:
    """The first `count` of a record's images as data URIs (PNG), encoded once."""
    first = decode_images(record)[:count].contiguous()
    return _encoded(first.numpy().tobytes(), tuple(first.shape))


@lru_cache(maxsize=256)
def _encoded(raw: bytes, shape: tuple[int, ...]) -> list[str]:
    import torch

    return panes.data_uris(torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape))


def draw(env: str, win: str, label: str, records: list[dict[str, Any]]) -> Message:
    shown, p = slice(0, GALLERY_SHOWN), records[-1]
    gallery = next((r for r in records if r["kind"] == GALLERY), None)
    if gallery is None:  # a log cut before its gallery
        return windows.text_message(env, win, title(label), windows.waiting_html("No test images were logged."),
                                    windows.UNIT, windows.PANE_HEIGHT)
    content = panes.gallery_html(uris(gallery, GALLERY_SHOWN), p["predicted"][shown],
                                 p["probability"][shown], p["true"][shown], gallery["classes"], p["x"])
    return windows.text_message(env, win, title(label), content, windows.UNIT, windows.PANE_HEIGHT)


PANEL = Panel(PREDICTIONS, "gallery", draw, waiting_window(title, "Predictions appear after the first epoch."),
              also=(GALLERY,))
