"""One diverging run must not flatten everyone else's curves: the loss windows' y range follows
the runs that have not diverged, the diverged one stays drawn, clipped, with a marker and a legend
entry saying so, and a person can still zoom out to all of it (Plotly's autoscale)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dashboard import windows, yrange
from dashboard.runlog import read
from dashboard.server import ServerProcess
from tests.browser import ARTIFACTS, Browser, needs_chromium
from tests.helpers import finish, launch_dir, livetrain, server_state
from trainers.reporting import EPOCH_TRAIN_LOSS, TEST_LOSS, TRAIN_LOSS

LOSS_WINDOWS = (windows.COMPARE_BY_METRIC[TRAIN_LOSS].win, windows.COMPARE_BY_METRIC[TEST_LOSS].win)
DIVERGING = "mlp-lr0.3"
# Click a window's Autoscale button; the y range once Plotly has autoscaled (null after 60 s without)
AUTOSCALED = """new Promise(resolve => {
  const pane = FIND, plot = pane.querySelector('.js-plotly-plot');
  plot.on('plotly_relayout', e => { if ('yaxis.autorange' in e) resolve(plot.layout.yaxis.range); });
  setTimeout(() => resolve(null), 60000);
  pane.querySelector('[data-title="Autoscale"]').click();
})"""


def test_the_range_follows_the_runs_that_did_not_diverge() -> None:
    window = yrange.LossRange((TEST_LOSS, EPOCH_TRAIN_LOSS))
    for x, a, b, c in ((0, 2.3, 2.3, 2.4), (1, 0.9, 3000.0, 0.7), (2, 0.6, 140.0, 0.5)):
        window.take("a", {"x": x, TEST_LOSS: a})
        window.take("b", {"x": x, TEST_LOSS: b})
        window.take("c", {"x": x, TEST_LOSS: c, EPOCH_TRAIN_LOSS: c * 1.1 if x else None})
    view = window.view()
    assert view.y_range is not None
    low, high = view.y_range
    assert low <= 0.5 and 2.4 <= high < 2.7  # the sane runs' values, padded by 5%
    assert view.off_scale == {"b": (1.0, high, 3000.0)}  # where it left the range, and its highest
    # no run diverged: Plotly's own range; a NaN diverges a run where it appears
    calm = yrange.LossRange((TRAIN_LOSS,))
    for run, ys in (("a", [2.3, 1.0, 0.5]), ("b", [2.3, 3.5, 0.6])):  # b's spike stays under 4x its start
        for x, y in enumerate(ys):
            calm.take(run, {"x": x, TRAIN_LOSS: y})
    assert calm.view() == yrange.View(None, {})
    calm.take("b", {"x": 3, TRAIN_LOSS: math.nan})
    assert calm.view().off_scale == {"b": (1.0, calm.view().y_range[1], 3.5)}  # its spike is above a's range
    # a run alone, or every run diverged: Plotly's own range
    alone = yrange.LossRange((TRAIN_LOSS,))
    alone.take("a", {"x": 0, TRAIN_LOSS: 2.3}), alone.take("a", {"x": 1, TRAIN_LOSS: 1e6})
    assert alone.view() == yrange.View(None, {})


def test_a_run_with_another_loss_is_judged_by_its_own_start() -> None:
    """BCE over ten classes starts near 6.9, cross-entropy near 2.3: neither has diverged."""
    window = yrange.LossRange((TRAIN_LOSS,))
    for x, (ce, bce) in enumerate(((2.3, 6.9), (1.2, 3.0), (0.8, 1.5))):
        window.take("ce", {"x": x, TRAIN_LOSS: ce})
        window.take("bce", {"x": x, TRAIN_LOSS: bce})
    assert window.view() == yrange.View(None, {})


@pytest.fixture(scope="module")
def diverging(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An lr sweep of the MLP whose lr 0.3 run diverges (its loss reaches about 5e4)."""
    tmp = tmp_path_factory.mktemp("diverging")
    url = visdom_server.config.url
    code, out, err = finish(livetrain(tmp, "run", "--models", "mlp", "--set", "mlp.lr=1e-3,3e-3,0.3", "--epochs", "2",
                                      "--limit", "3000", "--visdom-url", url, "--env", "diverging"), timeout=400)
    assert code == 0, out + err
    return url, launch_dir(tmp / "runs")


def runs_drawn(state: dict[str, Any], win: str) -> dict[str, list[float]]:
    """Each run's values in a window, all its traces together (raw and smoothed, test and train)."""
    out: dict[str, list[float]] = {}
    for d in state[win]["content"]["data"]:
        if d["name"] and "diverged" not in d["name"]:
            out.setdefault(d["legendgroup"], []).extend(y for y in d["y"] if y is not None)
    return out


@pytest.mark.slow
def test_a_diverging_run_leaves_the_others_readable(diverging: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = diverging
    assert max(read(folder / DIVERGING).series(TRAIN_LOSS)[1]) > 1000  # it did diverge
    state = server_state(url, "diverging")
    for win in LOSS_WINDOWS:
        axis = state[win]["content"]["layout"]["yaxis"]
        low, high = axis["range"]
        assert axis["autorange"] is False and axis["title"]["text"].startswith("loss")
        drawn = runs_drawn(state, win)
        assert sorted(drawn) == sorted(["mlp-lr1e-3", "mlp-lr3e-3", DIVERGING])
        for label, ys in drawn.items():
            if label != DIVERGING:  # every finite run's curve spans at least half of the y range
                assert max(ys) - min(ys) >= 0.5 * (high - low), (win, label, min(ys), max(ys), low, high)
            else:  # still drawn, above the range
                assert max(ys) > 10 * high
        (marker,) = [d for d in state[win]["content"]["data"] if "diverged" in d["name"]]
        assert marker["name"] == f"{DIVERGING} ↑ diverged, off the scale" and marker["showlegend"]
        assert marker["y"] == [high] and marker["legendgroup"] == DIVERGING
    # a replay draws the same range and marker
    code, out, err = finish(livetrain(tmp_path, "replay", str(folder), "--env", "diverging-again", "--visdom-url", url))
    assert code == 0, out + err
    again = server_state(url, "diverging-again")
    for win in LOSS_WINDOWS:
        assert again[win]["content"]["layout"]["yaxis"] == state[win]["content"]["layout"]["yaxis"]
        assert [d for d in again[win]["content"]["data"] if "diverged" in d["name"]] == \
            [d for d in state[win]["content"]["data"] if "diverged" in d["name"]]


@pytest.mark.slow
@needs_chromium
def test_in_the_browser_the_legend_says_so_and_autoscale_shows_all(diverging: tuple[str, Path]) -> None:
    url, folder = diverging
    highest = max(read(folder / DIVERGING).series(TRAIN_LOSS)[1])
    title = windows.COMPARE_BY_METRIC[TRAIN_LOSS].title
    find = f"[...document.querySelectorAll('.react-grid-item')].find(p => p.textContent.includes({title!r}))"
    with Browser(1280, 1000) as browser:
        browser.open(f"{url}/env/diverging")
        state = browser.settled(lambda s: any(p["title"] == title and p["traces"] for p in s.get("panes", [])))
        browser.screenshot(ARTIFACTS / "diverging.png")
        loss = next(p for p in state["panes"] if p["title"] == title)
        assert f"{DIVERGING} ↑ diverged, off the scale" in loss["legend"]
        before = browser.evaluate(f"{find}.querySelector('.js-plotly-plot').layout.yaxis.range")
        assert before[1] < 10
        # what a person clicks to see everything: the plot's "Autoscale" button
        # Plotly may apply it later (behind a redraw it has pending): wait on its relayout event
        after = browser.evaluate(AUTOSCALED.replace("FIND", find))
        assert after is not None, "no relayout within 60 s of the click on Autoscale"
        assert after[1] >= highest
