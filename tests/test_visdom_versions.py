"""The page equals the run logs on each Visdom livetrain serves, in Debian's headless Chromium:
livetrain's server on visdom 0.2.4 (this venv, Python 3.11), livetrain's server on visdom 0.3 and
a stock visdom 0.3 server (`python -m visdom.server`), both from a Python 3.12 venv of their own
(`make visdom03`: .venv-visdom03; visdom 0.3 needs Python >= 3.12, the server needs no torch).

On each: a live launch whose page is open from the launch's first window on, so that what the
server sends while the runs train (0.3's window_update diffs on the stock server; whole panes and
spliced tails on ours) is what the page draws; a Stop clicked in the page's Control pane; then
every compare window, on the page and on the server, value for value what the logs give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboard.connection import Unreachable, VisdomConnection
from dashboard.protocol import SPLICE_PATH
from dashboard.runlog import read
from dashboard.server import ServerConfig, ServerProcess, spawn
from dashboard.windows import PANE_HEIGHT, UNIT
from tests.browser import ARTIFACTS, PROBE, Browser, message_hook, needs_chromium, overlaps
from tests.conftest import REPO, free_port
from tests.helpers import assert_windows_match_logs, launch_dir, launched, server_state, training, wait_for
from tests.test_browser import first_difference, logged_traces, page_traces
from tests.test_control_page import CONTROL, SELECT, button, pane
from trainers.reporting import EPOCH_TRAIN_LOSS

pytestmark = [pytest.mark.slow, needs_chromium]

PYTHON03 = REPO / ".venv-visdom03" / "bin" / "python"
SERVERS = ("livetrain on visdom 0.2.4", "livetrain on visdom 0.3", "stock visdom 0.3")
LABELS = ("a", "b")


def visdom_of(python: Path | str) -> str:
    return subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('visdom'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def python_for(kind: str) -> str:
    if kind.endswith("0.2.4"):
        return sys.executable
    if not PYTHON03.is_file():
        reason = "no visdom 0.3 venv (.venv-visdom03): `make visdom03` makes it, with a Python >= 3.12"
        if os.environ.get("LIVETRAIN_REQUIRE_VISDOM03"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(PYTHON03)


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The server under test, started as a user would start it, and stopped after."""
    kind, python = request.param, python_for(request.param)
    env_dir = tmp_path / "visdom-env"
    env_dir.mkdir()
    if kind.startswith("livetrain"):
        server = spawn(ServerConfig(port=0, env_dir=env_dir), python=python)
    else:  # visdom's own entry point: it checks its page files, which `make visdom03` installed
        config = ServerConfig(port=free_port(), env_dir=env_dir)
        log_path = env_dir / "server.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen([python, "-u", "-m", "visdom.server", "-port", str(config.port), "-env_path",
                                        f"{env_dir}/", "-bind_local"], cwd=env_dir, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = ServerProcess(config, process, log_path)
    try:
        server.wait_ready(60)
        if kind.startswith("stock"):  # its page files all in place: it starts without the internet
            log = server.log_path.read_text()
            assert "Checking for scripts" in log and "Downloading" not in log, log
        yield kind, python, server
    finally:
        server.stop()


def envs(url: str) -> list[str]:
    return json.loads(VisdomConnection(url).post("env_state", {}))


@pytest.mark.parametrize("served", SERVERS, indirect=True)
def test_the_page_equals_the_logs_on_each_visdom(served: Any, tmp_path: Path) -> None:
    kind, python, server = served
    url = server.config.url
    assert visdom_of(python) == ("0.2.4" if kind.endswith("0.2.4") else "0.3.0")
    # livetrain's own endpoint answers on its server; a stock one answers anything but a list of
    # answers (0.3: its catch-all page handler, 500), and the workers then send whole traces
    try:
        spliced = VisdomConnection(url).post(SPLICE_PATH.lstrip("/"), {"eid": "probe", "splices": []})
    except Unreachable as exc:
        spliced = str(exc)
    assert (spliced == "[]") == kind.startswith("livetrain"), spliced
    if kind.startswith("livetrain"):  # a serving process: none of torch, nor 0.3's t-SNE with scipy
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert not any(f"/{lib}/" in maps for lib in ("torch", "sklearn", "scipy", "openTSNE")), maps[-500:]
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "run", "--models", "softmax:a,mlp:b", "--epochs", "5000",
         "--limit", "2000", "--visdom-url", url, "--env", "versions", "--no-keep-serving"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    name = kind.replace(" ", "-")
    try:
        wait_for(lambda: "versions" in envs(url) or proc.poll() is not None)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with Browser(1600, 1200) as browser:
            browser.open(f"{url}/env/versions")  # from the launch's first window on: the rest comes live
            wait_for(lambda: launched(tmp_path / "runs"))
            runs = launch_dir(tmp_path / "runs")
            # an epoch done by each, so that every compare window has its points to compare (a busy
            # machine may leave the MLP inside its first epoch when the runs start)
            wait_for(lambda: all(training(runs / label) and read(runs / label).series(EPOCH_TRAIN_LOSS)[0]
                                 for label in LABELS))
            wait_for(lambda: browser.evaluate(f"!!({CONTROL}) && !!({SELECT})"))
            browser.choose(SELECT, 0)  # all runs
            browser.click(button("Stop"))
            wait_for(lambda: all(read(runs / label, keep_scalars=False).status == "interrupted" for label in LABELS))
            out, _ = proc.communicate(timeout=120)
            assert "stopped from the page" in read(runs / "a").states[-1]["reason"], out
            run_dirs = [runs / label for label in LABELS]
            expected = logged_traces(run_dirs)
            assert all(expected.values())
            try:
                wait_for(lambda: page_traces(browser) == expected, timeout=60)
            except AssertionError:
                raise AssertionError(f"{kind}: {first_difference(page_traces(browser), expected)}") from None
            # the runs table, a reason under each status, whole inside its window
            runs_table = f"({pane('Runs')}).querySelector('table')"
            wait_for(lambda: browser.evaluate(f"{runs_table}.textContent").count("stopped from the page") == 2)
            assert browser.evaluate(f"{runs_table}.getBoundingClientRect().bottom <= "
                                    f"({pane('Runs')}).getBoundingClientRect().bottom")
            browser.screenshot(ARTIFACTS / f"versions-{name}.png")
            if kind.startswith("livetrain"):  # every window at its size (0.3 widens one to fit its title)
                assert overlaps(browser.evaluate(PROBE)["panes"]) == []
        assert_windows_match_logs(server_state(url, "versions"), run_dirs, max_points=1000)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def full_rows(panes: list[dict[str, Any]], per_row: int) -> bool:
    """Whether the windows under the runs table stand `per_row` a row, but the last row."""
    rows: dict[int, int] = {}
    for p in panes[1:]:
        rows[round(p["y"])] = rows.get(round(p["y"]), 0) + 1
    return all(n == per_row for _, n in sorted(rows.items())[:-1])


@pytest.mark.filterwarnings("ignore::DeprecationWarning:visdom")  # its client's logger.warn
@pytest.mark.parametrize("served", SERVERS, indirect=True)
def test_a_narrowed_page_stays_a_grid_as_windows_are_redrawn_and_added(served: Any) -> None:
    """A person narrows the browser window (1280 to 1000 px) while runs draw: windows redrawn at
    the size they were sent with, as every live update redraws one, then a new window. Visdom's
    page (0.2.4 and 0.3) turns a redrawn window's width into grid columns anew, a hair wider than
    it placed it with, so each overlaps its neighbour, and the next window created pushes every one
    down to a row of its own; livetrain's server adds a script that keeps the columns
    (dashboard/page_scripts.py). On the stock server the staircase shows: the test sees what it
    guards against. (Windows of livetrain's size, sent with visdom's own client: no env reload
    comes between, which on 0.2.4 would repack the page and hide the fault.)"""
    import visdom

    kind, _, server = served
    host, port = server.config.url.rsplit(":", 1)
    vis = visdom.Visdom(server=host, port=int(port), env="narrowed", raise_exceptions=True, use_incoming_socket=False)
    size = {"width": UNIT, "height": PANE_HEIGHT}

    def draw(win: str, text: str) -> None:
        vis.text(text, win=win, opts={**size, "title": win})

    vis.text("the runs", win="runs", opts={"width": 4000, "height": 100, "title": "Runs"})
    for i in range(8):
        draw(f"window {i}", "drawn")
    with Browser(1280, 1000) as browser:
        browser.open(f"{server.config.url}/env/narrowed")
        before = browser.settled(lambda s: len(s.get("panes", [])) == 9)["panes"]
        right = max(before[1:], key=lambda p: p["x"])
        browser.call("Emulation.setDeviceMetricsOverride", width=1000, height=1000, deviceScaleFactor=1, mobile=False)
        # the grid takes the new width 200 ms after the last resize event: its columns narrow, and
        # a window of the right column moves (by a pixel, as columns are scaled to the width)
        wait_for(lambda: next(p["x"] for p in browser.probe()["panes"] if p["title"] == right["title"]) != right["x"],
                 timeout=30)
        for i in range(8):
            draw(f"window {i}", "redrawn")
        redrawn = ("[...document.querySelectorAll('.react-grid-item')]"
                   ".filter(e => /redrawn$/.test(e.textContent)).length")
        wait_for(lambda: browser.evaluate(redrawn) == 8, timeout=30)
        draw("new", "added")
        state = browser.settled(lambda s: len(s.get("panes", [])) == 10)
        browser.screenshot(ARTIFACTS / f"narrowed-{kind.replace(' ', '-')}.png")
    where = [(p["title"], p["x"], p["y"]) for p in state["panes"]]
    if kind.startswith("stock"):  # a staircase: windows alone in their rows
        assert not full_rows(state["panes"], 2), where
    else:
        assert overlaps(state["panes"]) == [] and full_rows(state["panes"], 2), where


# Counts, in the page, each message of its socket that draws the window "big": set before the
# page's own scripts, so that it sees every message as it comes, before livetrain's scripts do.
COUNT_BIG = message_hook("window.__big = [];", """if (head.indexOf('"id": "big"') !== -1) {
  window.__big.push(String(JSON.parse(evt.data).content).split(':')[0]);
}""")


@pytest.mark.filterwarnings("ignore::DeprecationWarning:visdom")  # its client's logger.warn
@pytest.mark.parametrize("served", SERVERS, indirect=True)
def test_a_page_that_draws_slower_than_the_runs_write_gets_the_newest_state(served: Any) -> None:
    """A page that cannot keep up (here: paused in the debugger) while a window is redrawn 30
    times, 100 KB each, and then another window drawn. Visdom sends every message at once; the
    page, when it catches up, draws all 30 before the last window (on a busy machine, measured: 5 MB
    waiting in the sockets, the page 40 s behind). livetrain's server sends only as far ahead as
    the page acknowledges (dashboard/page_flow.py): the page gets the few sent before it stopped,
    then the newest version and the last window."""
    import visdom

    kind, _, server = served
    host, port = server.config.url.rsplit(":", 1)
    vis = visdom.Visdom(server=host, port=int(port), env="slow", raise_exceptions=True, use_incoming_socket=False)
    vis.text("start", win="big", opts={"title": "big"})
    with Browser(1280, 1000) as browser:
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=COUNT_BIG)
        browser.open(f"{server.config.url}/env/slow")
        browser.settled(lambda s: len(s.get("panes", [])) == 1)
        browser.call("Debugger.enable")
        browser.call("Debugger.pause")  # the page's next script (a message's handler, a timer) stops there
        for i in range(30):
            vis.text(f"v{i}:" + "x" * 100_000, win="big", opts={"title": "big"})
        vis.text("last", win="last", opts={"title": "last"})
        browser.call("Debugger.resume")
        shows = ("[...document.querySelectorAll('.react-grid-item')].map(e => e.textContent)"
                 ".some(t => t.includes('last')) && [...document.querySelectorAll('.react-grid-item')]"
                 ".some(e => e.textContent.includes('v29:'))")
        wait_for(lambda: browser.evaluate(shows), timeout=120)
        taken = [v for v in browser.evaluate("window.__big") if v != "start"]
    assert taken[-1] == "v29" and taken == sorted(taken, key=lambda v: int(v[1:])), taken  # never an older state
    if kind.startswith("stock"):
        assert len(taken) == 30, taken
    else:
        assert len(taken) <= 8, taken  # 100 KB each: 3 in flight when it stopped, then the newest
