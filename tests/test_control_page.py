"""Control from the page, in Debian's headless Chromium: a live launch of three runs, driven by
clicking and typing in its Control pane as a person does (mouse and keyboard events over the
DevTools protocol), then read back from the run logs and the page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboard.runlog import read
from dashboard.server import ServerProcess
from tests.browser import ARTIFACTS, Browser, needs_chromium
from tests.conftest import REPO
from tests.helpers import launch_dir, launched, server_state, traces, training, wait_for
from trainers.checkpoints import CHECKPOINT

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]
LABELS = ("a", "b", "c")


def pane(title: str) -> str:
    """A JavaScript expression for the window titled `title`."""
    return (f"[...document.querySelectorAll('.react-grid-item')].find(p => "
            f"((p.querySelector('.bar div.pull-right') || {{}}).textContent || '') === {title!r})")


CONTROL = pane("Control")
SELECT = f"{CONTROL}.querySelector('select')"


def button(name: str) -> str:
    return f"[...{CONTROL}.querySelectorAll('button')].find(b => b.textContent.trim() === {name!r})"


def field(name: str) -> str:
    return (f"[...{CONTROL}.querySelectorAll('tr')].find(r => r.querySelector('td').textContent === {name!r})"
            ".querySelector('input')")


def requests_text(browser: Browser) -> str:
    return browser.evaluate(f"(({pane('Control: requests')}) || {{textContent: ''}}).textContent") or ""


def status(run_dir: Path) -> str:
    return read(run_dir, keep_scalars=False).status


def until(condition: Any, browser: Browser, runs: Path, timeout: float = 120) -> None:
    """wait_for, saying on a timeout what the page's Requests pane and the launch's control log held."""
    try:
        wait_for(condition, timeout=timeout)
    except AssertionError:
        path = runs / ".livetrain" / "control.jsonl"
        log = path.read_text() if path.is_file() else "(none)"
        raise AssertionError(f"timed out; the page's requests: {requests_text(browser)!r}; control.jsonl: {log}") from None


def lrs(run_dir: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["train/lr"]) for row in read(run_dir).scalars if "train/lr" in row]


@pytest.fixture(scope="module")
def launch(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("control")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "run", "--models", ",".join(f"mlp:{label}" for label in LABELS),
         "--epochs", "400", "--limit", "60000", "--set", "mlp.schedule=constant", "--set", "b.hidden=256", "--set", "c.hidden=128", "--visdom-url",
         visdom_server.config.url, "--env", "control", "--no-keep-serving"],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, tmp
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_person_stops_pauses_resumes_sets_the_lr_and_forks_from_the_page(visdom_server: ServerProcess,
                                                                          launch: Any) -> None:
    proc, tmp = launch
    wait_for(lambda: launched(tmp / "runs"))
    runs = launch_dir(tmp / "runs")
    wait_for(lambda: all(training(runs / label) for label in LABELS))
    with Browser(1600, 1200) as browser:
        browser.open(f"{visdom_server.config.url}/env/control")
        until(lambda: browser.evaluate(f"!!({CONTROL}) && !!({SELECT})"), browser, runs, 120)
        options = browser.evaluate(f"[...{SELECT}.options].map(o => o.textContent)")
        assert options == ["all runs", *LABELS]

        # stop a: it ends "stopped from the page", with a checkpoint of where it was
        browser.choose(SELECT, 1)
        browser.click(button("Stop"))
        until(lambda: status(runs / "a") == "interrupted", browser, runs, 120)
        assert read(runs / "a").states[-1]["reason"].startswith("stopped from the page; its checkpoint at epoch ")
        assert (runs / "a" / CHECKPOINT).is_file()
        browser.click(button("Stop"))  # again: a has ended
        until(lambda: "a: stop — refused: it has ended (interrupted)" in requests_text(browser), browser, runs, 120)

        # pause b, then resume it: no batch logged in between
        browser.choose(SELECT, 2)
        browser.click(button("Pause"))
        until(lambda: status(runs / "b") == "paused", browser, runs, 120)
        browser.click(button("Resume"))
        until(lambda: status(runs / "b") == "running" and len(read(runs / "b").controls) == 2, browser, runs, 120)
        pause, resume = read(runs / "b").controls
        assert pause["action"] == "pause" and resume["action"] == "resume" and pause["step"] == resume["step"]
        steps = [step for step, _ in lrs(runs / "b")]
        assert steps == list(range(1, len(steps) + 1))  # every batch once, none while paused

        # c's lr to 0.5: it changes between two consecutive batches; a bad value is refused
        browser.choose(SELECT, 3)
        browser.click(field("lr"))
        browser.type("0.5")
        until(lambda: any(c["action"] == "set" for c in read(runs / "c").controls), browser, runs, 120)
        (done,) = read(runs / "c").controls
        assert done["applied"] and done["values"] == {"lr": 0.5} and done["source"] == "page"
        until(lambda: lrs(runs / "c")[-1][0] > done["step"] + 1, browser, runs, 120)
        seen = dict(lrs(runs / "c"))
        assert seen[done["step"]] == 1e-3 and seen[done["step"] + 1] == 0.5
        mark = f"c: lr 0.001 → 0.5 at epoch {done['x']:.3g}"  # on c's curves, where it took effect
        until(lambda: mark in traces(server_state(visdom_server.config.url, "control"), "compare-train-loss"),
              browser, runs, 120)
        browser.click(field("lr"))
        browser.type("0.5")  # the same value again: nothing more is asked
        browser.click(field("lr"))
        browser.type("-1")
        wait_for(lambda: "refused: learning rate must be a positive number, not -1.0" in requests_text(browser),
                 timeout=120)
        assert [c["values"] for c in read(runs / "c").controls] == [{"lr": 0.5}]  # applied once, -1 never sent
        text = requests_text(browser)
        assert "c: set lr 0.5 — c applied at batch" in text and "b: resume — b applied at batch" in text
        browser.screenshot(ARTIFACTS / "control.png")

        # fork b with lr 1e-4: a new run, from where b was, named in the runs table and the pane
        browser.choose(SELECT, 2)
        browser.click(field("fork with"))
        browser.type("lr=1e-4")
        browser.click(button("Fork"))
        until(lambda: training(runs / "b-fork1"), browser, runs, 90)
        (forked,) = [c for c in read(runs / "b").controls if c["action"] == "fork"]
        fork = read(runs / "b-fork1")
        assert fork.meta["parent"] == {"run": "b", "x": forked["x"], "step": forked["step"]}
        assert (fork.config["lr"], fork.config["hidden"]) == (1e-4, [256])  # b's model, the lr asked for
        first = fork.scalars[0]  # the next batch; or, forked after an epoch's last batch, that epoch's results
        assert (first["step"] == forked["step"] + 1 and first["x"] > forked["x"]
                or (first["step"], first["x"]) == (forked["step"], forked["x"]) and "test/acc" in first), first
        assert {row["train/lr"] for row in fork.scalars if "train/lr" in row} == {1e-4}
        until(lambda: browser.evaluate(f"[...{SELECT}.options].map(o => o.textContent)") == ["all runs", *LABELS,
                                                                                               "b-fork1"], browser, runs, 120)
        runs_pane = f"(({pane('Runs')}) || {{textContent: ''}}).textContent"
        until(lambda: f"fork of b at epoch {forked['x']:.2f}" in browser.evaluate(runs_pane), browser, runs, 120)
        until(lambda: "b: fork lr 0.0001 into b-fork1 — b applied at batch" in requests_text(browser), browser, runs, 120)
        assert status(runs / "b") == "running"  # the parent goes on

        # all runs: stop; the launch ends
        browser.choose(SELECT, 0)
        browser.click(button("Stop"))
        out, _ = proc.communicate(timeout=120)
        # the page stays up; its Control pane no longer offers what no launcher would hear
        said = f"(({CONTROL}) || {{textContent: ''}}).textContent"
        wait_for(lambda: "This launch ended at " in browser.evaluate(said), timeout=60)
        assert f"livetrain run --resume runs/{runs.name}" in browser.evaluate(said)
        assert not browser.evaluate(f"!!({SELECT})")
    every = (*LABELS, "b-fork1")
    assert [status(runs / label) for label in every] == ["interrupted"] * 4, out
    assert all(read(runs / label).states[-1]["reason"].startswith("stopped from the page") for label in every)
