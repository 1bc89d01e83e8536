"""Run logs written by earlier versions of livetrain still replay, with the same windows.

tests/fixtures/log-format-1 holds two run logs of format 1 (the first, before the format was
numbered: see its make.py) and the windows a replay of them drew when they were written."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from dashboard.replay import replay
from dashboard.server import ServerProcess
from dashboard.windows import DrawOptions, RUNS_WIN
from tests.helpers import server_state

FIXTURE = Path(__file__).parent / "fixtures" / "log-format-1"
VOLATILE = ("contentID", "livetrain_seq", "i")  # a window's random id, message number and creation index
# what visdom 0.3 adds to every pane it holds: its change count, a person's comment on it, a caption
VISDOM_03 = ("version", "comment")


LEGEND = ("legend", "showlegend", "annotations")  # where a legend goes changed since (dashboard.legend)


def rounded(z: list) -> list:
    """A heatmap's values to 3 decimals: weight tiles are sent so since (dashboard.panels.tiles)."""
    return [[v if v is None else round(v, 3) for v in row] for row in z]


def comparable(state: dict) -> dict:
    out = {win: {k: v for k, v in pane.items() if k not in VOLATILE + VISDOM_03} for win, pane in state.items()}
    for pane in out.values():
        if isinstance(pane.get("content"), dict) and pane["content"].get("caption", "") is None:
            pane["content"] = {k: v for k, v in pane["content"].items() if k != "caption"}
        if isinstance(pane.get("content"), dict) and "layout" in pane["content"]:
            pane["content"] = {**pane["content"], "layout": {k: v for k, v in pane["content"]["layout"].items()
                                                             if k not in LEGEND},
                               "data": [{**d, "z": rounded(d["z"])} if "z" in d else d
                                        for d in pane["content"]["data"]]}
    return out


def test_a_format_1_log_replays_with_the_windows_it_drew(visdom_server: ServerProcess, tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "runs", ignore=shutil.ignore_patterns("*.py", "*.gz"))
    replay([tmp_path / "runs"], visdom_server.config.url, DrawOptions("fixture"))
    held = comparable(server_state(visdom_server.config.url, "fixture"))
    drawn = comparable(json.loads(gzip.open(FIXTURE / "windows.json.gz", "rt").read()))
    assert set(drawn) <= set(held)  # every window it drew (windows added since may show too, empty for it)
    for win in drawn:
        if win != RUNS_WIN:  # its columns may grow; its rows are checked below
            assert held[win] == drawn[win], win
    runs = held[RUNS_WIN]["content"]
    assert ">mlp<" in runs and ">cnn<" in runs and runs.count("finished") == 2
