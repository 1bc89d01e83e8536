"""The page as a person sees it, in Debian's headless Chromium, while real runs stream into the
real server: every window there, drawn, in a tidy grid; the compare windows with one trace per
run in one colour per run; galleries of decoded images with their labels; the page updating
without a reload. A screenshot of it is saved in artifacts/browser/. Also: labels that hold HTML
(a run log from elsewhere) show as text, never as markup."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from dashboard import panels, windows, yrange
from dashboard.panels import gradients, mistakes
from dashboard.connection import Unreachable
from dashboard.server import ServerProcess
from dashboard.terminal import columns
from dashboard.windows import DrawOptions
from tests.browser import ARTIFACTS, Browser, needs_chromium, overlaps
from tests.conftest import REPO
from tests.helpers import server_state

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]

LABELS = ("softmax", "mlp", "cnn")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
COMPARE_TITLES = {w.title: w for w in windows.COMPARE_PANES}  # each window's first metric stands for it
SHARED = 1 + len(COMPARE_TITLES) + 2  # the runs table, the compare windows, training samples, disagreement
CONTROL = 2  # a live launch's Control pane and its requests (a replay has none: nothing to control)
OWN = len(panels.run_windows("x"))  # each run's own windows: gallery, matrix, mistakes, gradients, the panels


def trace_names(title: str, labels: tuple[str, ...] | list[str], groups: tuple[str, ...] = ()) -> list[str]:
    """The traces a compare window holds: per run, each metric's (raw, and smoothed per batch),
    then per seed group its band and mean."""
    parts = windows.COMPARE_PARTS[COMPARE_TITLES[title].win]
    names = [windows.trace_name(label, smoothed, w.part) for label in labels for w in parts
             for smoothed in ((False, True) if w.per_batch else (False,))]
    return names + [n for g in groups for w in parts for n in (windows.band_name(g, w), windows.trace_name(g, part=w.part))]


def server_windows(url: str, env: str) -> dict[str, Any]:
    try:
        return server_state(url, env)
    except Unreachable:  # no such env yet (visdom answers 500)
        return {}


def every_run_has_tested(url: str, env: str) -> bool:
    """True once every run has drawn its confusion matrix (it finished an epoch)."""
    state = server_windows(url, env)
    return all(state.get(windows.run_window("confusion", label), {}).get("type") == "plot" for label in LABELS)


def page_complete(state: dict[str, Any]) -> bool:
    panes = {p["title"]: p for p in state.get("panes", [])}
    galleries = [p for t, p in panes.items() if t.endswith("test images, predicted (true)")]
    return (len(panes) == SHARED + CONTROL + OWN * len(LABELS)
            and all(panes.get(t, {}).get("traces") and len(panes[t]["traces"]) == len(trace_names(t, LABELS))
                    for t in COMPARE_TITLES)
            and len(galleries) == len(LABELS) and all(g["images"] == g["figures"] > 0 for g in galleries))


def logged_traces(run_dirs: list[Path]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Per compare window (by title): every run's traces as its log gives them, bounded as drawn
    (1,000 points a trace; per batch, the raw trace and its smoothed one)."""
    from dashboard.runlog import read
    from tests.helpers import drawn_from_log, smoothed_from_log

    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for record in (read(d) for d in run_dirs):
        label = record.meta["label"]
        for window in windows.COMPARE_WINDOWS:
            traces = out.setdefault(next(t for t, w in COMPARE_TITLES.items() if w.win == window.win), {})
            traces[windows.trace_name(label, part=window.part)] = drawn_from_log(record, window.metric, 1000).points()
            if window.per_batch:
                traces[windows.trace_name(label, True)] = smoothed_from_log(
                    record, window.metric, windows.DEFAULT_SMOOTHING, 1000).points()
    return out


def page_traces(browser: Browser) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """The compare windows' traces as the page holds them (names as plotly shows them)."""
    import html

    shown = browser.traces()
    return {title: {html.escape(name, quote=False): (xy[0], xy[1]) for name, xy in (shown.get(title) or {}).items()}
            for title in COMPARE_TITLES}


def first_difference(page: dict[str, Any], expected: dict[str, Any]) -> str:
    for title, traces in expected.items():
        for name, values in traces.items():
            if page.get(title, {}).get(name) != values:
                got = page.get(title, {}).get(name)
                return f"{title}: {name}: page has {len(got[0]) if got else 'no'} points, the log {len(values[0])}"
    return "the page holds traces the logs do not"


def points(state: dict[str, Any], title: str, label: str) -> int:
    pane = next(p for p in state["panes"] if p["title"] == title)
    return next(t["points"] for t in pane["traces"] if t["name"] == label)


@pytest.fixture(scope="module")
def launch(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three real runs launched from the command line, drawing into `visdom_server`."""
    log_dir = tmp_path_factory.mktemp("browser-runs")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "run", "--models", ",".join(LABELS), "--limit", "12000", "--epochs", "4",
         "--visdom-url", visdom_server.config.url, "--env", "browser", "--log-dir", str(log_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, log_dir
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_the_live_page_in_a_real_browser(visdom_server: ServerProcess, launch: Any) -> None:
    proc, log_dir = launch
    url = visdom_server.config.url
    deadline = time.monotonic() + 180
    while not every_run_has_tested(url, "browser"):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "no run finished its first epoch within 3 min"
        time.sleep(0.5)

    with Browser(1600, 1200) as browser:
        browser.open(f"{url}/env/browser")
        state = browser.settled(page_complete)
        assert proc.poll() is None, "the runs ended before the page was looked at: not a live check"
        browser.screenshot(ARTIFACTS / "live.png")

        panes = {p["title"]: p for p in state["panes"]}
        assert state["connected"]  # the page's websocket to the server: the "online" button
        # a tidy grid: no window over another, nothing off the right edge
        assert overlaps(state["panes"]) == []
        assert state["scrollWidth"] <= state["innerWidth"]
        assert state["panes"][0]["title"] == "Runs"  # the table first, on a row of its own
        assert all(p["y"] >= state["panes"][0]["y"] + state["panes"][0]["h"] for p in state["panes"][1:])
        # every compare window: each run's traces (raw and smoothed, or test and train), each run
        # in one colour everywhere, one legend entry per run, axes named
        colours: dict[str, set[str]] = {label: set() for label in LABELS}
        for title, window in COMPARE_TITLES.items():
            pane = panes[title]
            assert sorted(t["name"] for t in pane["traces"]) == sorted(trace_names(title, LABELS)), title
            assert all(t["points"] > 0 for t in pane["traces"]), title
            assert pane["legend"] == list(LABELS), title  # every legend in the launch's run order
            legend, axis = pane["boxes"]["legend"], pane["boxes"]["g-xtitle"]
            assert legend["y"] + legend["h"] <= axis["y"] and pane["area"] >= 0.6 * pane["h"], title  # above
            assert pane["axes"] == ["epoch", window.y_title], title
            for t in pane["traces"]:
                colours[t["name"].split(" ")[0]].add(t["colour"])
        assert all(len(c) == 1 for c in colours.values()) and len({c.pop() for c in colours.values()}) == len(LABELS)
        # galleries: decoded images, each captioned with its prediction, probability and true class
        for label in LABELS:
            gallery = panes[f"{label}: test images, predicted (true)"]
            assert gallery["figures"] == gallery["images"] == 16
            assert all(("✓" in c or "✗" in c) and "%" in c and "true: " in c for c in gallery["captions"])
            assert "after epoch" in gallery["text"]
            heat = next(p for t, p in panes.items() if t.startswith(f"{label}: confusion matrix, epoch"))
            assert heat["heatmap"] == {"x": CLASSES, "rows": 10} and heat["axes"] == ["predicted", "true"]
        # the windows of their own module (dashboard.panels), drawn by the browser as plots
        for label in LABELS:
            reliability = next(p for t, p in panes.items() if t.startswith(f"{label}: calibration, epoch"))
            assert [t["name"] for t in reliability["traces"]] == ["accuracy", "mean confidence", "calibrated"]
            assert reliability["axes"] == ["confidence (the predicted class's probability)", "accuracy"]
            per_class = next(p for t, p in panes.items() if t.startswith(f"{label}: test accuracy per class; weakest"))
            assert [t["name"] for t in per_class["traces"]] == CLASSES and all(t["points"] for t in per_class["traces"])
        for prefix in ("softmax: weight templates (each class's weights), epoch",
                       "mlp: weight templates (linear1's strongest units), epoch", "cnn: first-layer filters (conv2d1: "):
            tiles = next(p for t, p in panes.items() if t.startswith(prefix))
            assert tiles["heatmap"] and tiles["heatmap"]["rows"] > 0, prefix
        assert "cnn: weight templates" in panes and "softmax: first-layer filters" in panes  # they do not apply: waiting
        disagree = panes["Where the runs disagree (sample test images)"]
        assert disagree["images"] == disagree["figures"] > 0 and "sample test images" in disagree["text"]

        # live: the open page gains points as the runs go on, with no reload
        title = windows.COMPARE_BY_METRIC["train/loss"].title
        before = points(state, title, "cnn")
        deadline = time.monotonic() + 60
        while points(browser.probe(), title, "cnn") <= before:
            assert time.monotonic() < deadline, "the open page did not update while the CNN trained"
            time.sleep(0.5)

        assert proc.wait(240) == 0, proc.stdout.read() if proc.stdout else ""
        # after the runs: once the page has drawn what came last, each compare window's traces
        # hold, value for value, what the runs' logs downsample to (raw and smoothed; test and train)
        run_dirs = [d.parent for d in log_dir.glob("*/*/log.jsonl")]
        expected = logged_traces(run_dirs)
        deadline = time.monotonic() + 60
        while (page := page_traces(browser)) != expected:
            assert time.monotonic() < deadline, first_difference(page, expected)
            time.sleep(0.25)
        browser.screenshot(ARTIFACTS / "finished.png")


# px: Visdom's grid (100 columns of fractional width) draws a column's windows a few pixels apart
# from row to row: at 1920 px, at x = 950, 951 and 952, and once 1420 in some rows, 1424 in the first
SUBPIXEL = 6.0


def snapped(positions: list[float]) -> list[float]:
    """The distinct positions, those within SUBPIXEL of the one before taken as that one (panes of
    one column sat at x = 950, 951 and 952 at 1920 px)."""
    found: list[float] = []
    for position in sorted(positions):
        if not found or position - found[-1] > SUBPIXEL:
            found.append(position)
    return found


@pytest.mark.parametrize("width, per_row", [(1280, 2), (1920, 4)])
def test_the_page_is_a_grid_at_other_widths(visdom_server: ServerProcess, launch: Any, width: int,
                                            per_row: int) -> None:
    """A laptop's and a large screen's width: the same windows, in rows of 2 and 4, none over another."""
    proc, _ = launch
    proc.wait(300)
    with Browser(width, 1000) as browser:
        browser.open(f"{visdom_server.config.url}/env/browser")
        state = browser.settled(page_complete)
        browser.screenshot(ARTIFACTS / f"finished-{width}.png")
    assert overlaps(state["panes"]) == [] and state["scrollWidth"] <= state["innerWidth"]
    runs, *rest = state["panes"]
    assert runs["title"] == "Runs" and runs["w"] > width - 60  # the table across the page
    assert len(snapped([p["x"] for p in rest])) == per_row
    ys = snapped([p["y"] for p in rest])
    rows: dict[float, list[str]] = {}
    for p in sorted(rest, key=lambda p: p["x"]):
        rows.setdefault(next(y for y in ys if abs(p["y"] - y) <= SUBPIXEL), []).append(p["title"])
    assert all(len(rows[y]) == per_row for y in sorted(rows)[:-1])  # full rows, but the last
    order = [t for y in sorted(rows) for t in rows[y]]
    assert order.index("softmax: test images, predicted (true)") < order.index("mlp: test images, predicted (true)")


HOSTILE = '<b data-injected="1">x</b><img data-injected="1" src="nowhere" onerror="document.title=1">'


def test_labels_holding_html_show_as_text(visdom_server: ServerProcess, launch: Any, tmp_path: Path) -> None:
    """A run log from elsewhere may label its run with anything: replayed, it shows as text."""
    proc, log_dir = launch
    proc.wait(300)
    run_dir = next(log_dir.glob("*/mlp"))
    hostile_dir = tmp_path / "hostile"
    hostile_dir.mkdir()
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["run"]["label"] = first["config"]["label"] = HOSTILE
    (hostile_dir / "log.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    result = subprocess.run([sys.executable, "launch.py", "replay", str(hostile_dir), "--env", "hostile",
                             "--visdom-url", visdom_server.config.url], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

    with Browser(1280, 1000) as browser:
        browser.open(f"{visdom_server.config.url}/env/hostile")
        state = browser.settled(lambda s: any(p["traces"] for p in s.get("panes", []))
                                and any(p["images"] for p in s["panes"]))
        browser.screenshot(ARTIFACTS / "hostile.png")
        assert sum(p["injected"] for p in state["panes"]) == 0  # no element made from the label
        assert browser.evaluate("document.title") != "1"  # and no script of it ran
        runs = next(p for p in state["panes"] if p["title"] == "Runs")
        assert HOSTILE in runs["text"]  # the label's text, as written
        assert any(p["title"].startswith(HOSTILE) for p in state["panes"])  # window titles
        loss = next(p for p in state["panes"] if p["title"] == windows.COMPARE_BY_METRIC["train/loss"].title)
        assert [t["name"] for t in loss["traces"]] == trace_names(loss["title"], [HOSTILE])
        assert HOSTILE in loss["legend"]  # plotly reads the escaped name back to the label's text
        # and in the newer windows: the per-epoch legend, the gradient and mistakes windows' titles
        epoch = next(p for p in state["panes"] if p["title"] == windows.EPOCH_LOSS_TITLE)
        assert epoch["legend"] == [HOSTILE]
        assert {gradients.title(HOSTILE), mistakes.title(HOSTILE)} <= {p["title"] for p in state["panes"]}


def test_the_page_reconnects_by_itself_after_a_server_restart(launch: Any, tmp_path: Path) -> None:
    """Visdom's page stays offline after its server restarts; ours reconnects within seconds and
    shows what the new server holds, with no reload."""
    from dashboard.replay import replay
    from dashboard.server import ServerConfig, start_background
    from tests.conftest import free_port

    proc, log_dir = launch
    proc.wait(300)
    runs = next(p for p in log_dir.iterdir() if p.is_dir())
    config = ServerConfig(port=free_port(), env_dir=tmp_path / "visdom")
    first = start_background(config)
    replay([runs / "softmax"], first.config.url, DrawOptions("reconnect"))
    loss = windows.COMPARE_BY_METRIC["train/loss"].title

    def traces_in_loss(state: dict[str, Any]) -> list[str]:
        pane = next((p for p in state.get("panes", []) if p["title"] == loss), None)
        return sorted(t["name"] for t in pane["traces"]) if pane and pane["traces"] else []

    second = None
    try:
        with Browser(1280, 1000) as browser:
            browser.open(f"{config.url}/env/reconnect")
            state = browser.settled(lambda s: traces_in_loss(s) == ["softmax", "softmax (smoothed)"])
            assert state["connected"]
            first.process.kill()
            first.process.wait()
            deadline = time.monotonic() + 15
            while browser.probe()["connected"]:
                assert time.monotonic() < deadline, "the page never noticed the server was gone"
                time.sleep(0.25)
            second = start_background(config)  # a new, empty server on the same port
            replay([runs], second.config.url, DrawOptions("reconnect"))  # all three runs this time
            state = browser.settled(lambda s: s["connected"] and traces_in_loss(s) == sorted(trace_names(loss, LABELS)),
                                    timeout=30)
            browser.screenshot(ARTIFACTS / "reconnected.png")
    finally:
        first.stop()
        if second is not None:
            second.stop()


def lines(pane: dict[str, Any]) -> list[dict[str, Any]]:
    """A compare window's traces but for the markers of diverged runs (see `dashboard.yrange`)."""
    return [t for t in pane["traces"] if not t["name"].endswith(yrange.marker_name(""))]


def test_a_64_run_sweep_page_stays_readable(visdom_server: ServerProcess, tmp_path: Path) -> None:
    """The launch limit: 8 learning rates x 8 seeds of softmax-nn, 4 at a time on 2 cores. The page
    holds the shared windows only (see `windows.run_windows_for`), each compare window with its 64
    runs' traces, in a tidy grid; the 8 seed groups in 8 colours, with a legend that leaves the
    plot at least 60% of its window's height and clear of the x axis' title; the disagreement
    pane answers per group; the runs table lists all 64."""
    env, url = "sweep64", visdom_server.config.url
    rates = ("0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1", "3")
    result = subprocess.run(
        [sys.executable, "launch.py", "run", "--models", "softmax-nn", "--set", "softmax-nn.lr=" + ",".join(rates),
         "--seeds", ",".join(map(str, range(8))), "--epochs", "1", "--limit", "300", "--parallel", "4",
         "--visdom-url", url, "--env", env, "--log-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "All 64 run(s) finished" in result.stdout
    shared = SHARED + CONTROL + 2  # and the sweep's two plots
    labels = [f"softmax-nn-lr{lr}-seed{s}" for lr in rates for s in range(8)]
    groups = tuple(f"softmax-nn-lr{lr} (8 seeds)" for lr in rates)
    with Browser(1600, 1200) as browser:
        browser.open(f"{url}/env/{env}")
        state = browser.settled(lambda s: len(s.get("panes", [])) == shared and all(
            len(lines(p)) == len(trace_names(p["title"], labels, groups))
            for p in s["panes"] if p["title"] in COMPARE_TITLES), timeout=120)
        browser.screenshot(ARTIFACTS / "sweep-64.png")
    assert overlaps(state["panes"]) == [] and state["scrollWidth"] <= state["innerWidth"]
    panes = {p["title"]: p for p in state["panes"]}
    assert not [t for t in panes if "confusion matrix" in t or "test images, predicted" in t]
    runs = panes["Runs"]["text"]
    assert runs.count("finished") == 64 and "softmax-nn-lr3-seed7" in runs
    for title in COMPARE_TITLES:  # each seed group in a colour of its own, its runs faint
        pane = panes[title]
        assert sorted(t["name"] for t in lines(pane)) == sorted(trace_names(title, labels, groups))
        assert len({t["colour"] for t in lines(pane)}) == 8
        # 8 long group names would take 8 legend rows: a line says where the colours are told instead
        assert pane["legend"] == [] and pane["notes"] == ["hover for names; colours: Runs table"]
        assert pane["area"] >= 0.6 * pane["h"], (title, pane["area"], pane["h"])
    groups_told = runs[runs.index(groups[0] + ":"):]  # below the runs table, each group's accuracy
    assert all(g + ": test acc" in groups_told for g in groups)
    disagree = next(p for t, p in panes.items() if t.startswith("Where the runs disagree"))
    assert "64 runs, each of their 8 seed groups as one" in disagree["text"]
    assert all(c.count("true:") == 1 for c in disagree["captions"])
    assert all(g in disagree["text"] for g in groups) and "seed0" not in disagree["text"]
    assert disagree["captions"] and all(c.count("\u25a0") == 8 for c in disagree["captions"])  # a square a group


def test_a_launch_labelled_in_chinese(visdom_server: ServerProcess, tmp_path: Path) -> None:
    """The course's readers name their runs in their language: a live launch labelled in Chinese,
    in an env named in Chinese, shows the labels in the runs table, the legends, the window
    titles and the terminal (aligned by display width); a replay draws the same windows."""
    url, env = visdom_server.config.url, "中文实验"
    labels = ["基线", "多层感知机-模型"]
    result = subprocess.run(
        [sys.executable, "launch.py", "run", "--models", f"softmax:{labels[0]},mlp:{labels[1]}", "--epochs", "1",
         "--limit", "2000", "--visdom-url", url, "--env", env, "--log-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"/env/{urllib.parse.quote(env)}" in result.stdout  # the page's address, as a browser takes it
    # the terminal: a line per run and epoch, "epoch" in one column whatever the label's width
    rows = [row for row in result.stdout.splitlines() if "  epoch " in row]
    assert {row.split("  epoch")[0].rstrip() for row in rows} == set(labels)
    assert len({columns(row.split("epoch")[0]) for row in rows}) == 1
    launch_dir = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name != "visdom")
    assert sorted(p.name for p in launch_dir.iterdir() if (p / "log.jsonl").is_file()) == sorted(labels)  # runs' folders
    replayed = subprocess.run([sys.executable, "launch.py", "replay", str(launch_dir), "--env", "回放",
                               "--visdom-url", url], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert replayed.returncode == 0, replayed.stderr
    live, again = server_state(url, env), server_state(url, "回放")
    for window in windows.COMPARE_PANES:
        assert [(d["name"], d["x"], d["y"]) for d in live[window.win]["content"]["data"] if d["name"]] == \
            [(d["name"], d["x"], d["y"]) for d in again[window.win]["content"]["data"] if d["name"]], window.win

    with Browser(1600, 1200) as browser:
        for shown in (env, "回放"):
            browser.open(f"{url}/env/{urllib.parse.quote(shown)}")
            expected = SHARED + OWN * len(labels) + (CONTROL if shown == env else 0)
            state = browser.settled(lambda s: len(s.get("panes", [])) == expected and all(
                len(p["traces"] or ()) == len(trace_names(p["title"], labels))
                for p in s["panes"] if p["title"] in COMPARE_TITLES))
            browser.screenshot(ARTIFACTS / f"chinese-{'live' if shown == env else 'replay'}.png")
            panes = {p["title"]: p for p in state["panes"]}
            assert all(label in panes["Runs"]["text"] for label in labels)
            for title in COMPARE_TITLES:
                assert panes[title]["legend"] == labels, title
            for label in labels:
                assert f"{label}: test images, predicted (true)" in panes
                assert gradients.title(label) in panes
