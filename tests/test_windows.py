"""The windows that explain training, against the real server and in headless Chromium: train vs
test per epoch from an untrained point at x = 0, gradient norms per layer, entropy and the most
confidently wrong images, seed groups as a band, a sweep's parallel coordinates and scatter, the
training samples; and a replay of the logs drawing identical windows. Unit tests of the pieces
(bands, groups, sweep axes) come first."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from dashboard import panes, sweep, windows
from dashboard.panels import gradients, mistakes
from dashboard.downsample import Aligned, BandSeries, Ema
from dashboard.runlog import RunRecord, read
from dashboard.server import ServerProcess
from tests.browser import ARTIFACTS, Browser, needs_chromium
from tests.helpers import (
    assert_windows_match_logs, finish, launch_dir, livetrain, server_state, smoothed_from_log,
)
from trainers.reporting import GRAD_PREFIX, TEST_ACC, TEST_ECE, TEST_ENTROPY, TEST_LOSS, TEST_WEAKEST

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


# ---- the pieces ---------------------------------------------------------------------------------

def test_band_keeps_every_stride_th_position_with_min_mean_max() -> None:
    band = BandSeries(max_points=4)
    for i in range(10):
        band.add(float(i), [i, i + 2.0, i + 4.0])
    assert band.stride == 4 and [p[0] for p in band.points] == [0.0, 4.0, 8.0]
    assert band.points[1] == (4.0, 4.0, 6.0, 8.0)


def test_aligned_matches_points_by_x_and_lets_an_ended_run_go() -> None:
    aligned = Aligned(3)
    for member in range(3):
        aligned.add(member, 0.5, float(member))
    aligned.add(0, 1.0, 10.0)
    aligned.add(1, 1.0, 11.0)
    assert aligned.ready() == [(0.5, [0.0, 1.0, 2.0])]  # run 2 has not logged x = 1 yet
    aligned.end(2)  # it ended (diverged, say): the band goes on with the others
    assert aligned.ready() == [(1.0, [10.0, 11.0])]


def test_seed_groups_are_runs_that_differ_only_by_seed() -> None:
    base = {"model": "mlp", "lr": 0.001, "seed": 0, "threads": 1}
    runs = [("mlp-seed0", base), ("mlp-seed1", {**base, "seed": 1, "threads": 2}), ("mlp-seed2", {**base, "seed": 2}),
            ("cnn", {**base, "model": "cnn"}), ("fast-seed0", {**base, "lr": 0.01}), ("fast-seed1", {**base, "lr": 0.01, "seed": 1}),
            ("twin", {**base, "lr": 0.3}), ("twin'", {**base, "lr": 0.3})]  # one seed twice: not a group
    assert sweep.seed_groups(runs) == [("mlp (3 seeds)", [0, 1, 2]), ("fast (2 seeds)", [4, 5])]


def test_sweep_axes_log_for_decades_ticks_for_categories() -> None:
    runs = [sweep.SweepRun(f"r{i}", i, {"model": "mlp", "lr": lr, "activation": act, "hidden": [64, 32], "seed": 0}, acc)
            for i, (lr, act, acc) in enumerate([(1e-3, "relu", 0.8), (1e-2, "sigmoid", 0.7), (1e-1, "relu", 0.6)])]
    plan = sweep.Plan.of(runs)
    assert plan.settings == ("lr", "activation") and plan.scatter == "lr" and plan.log_x
    lr, activation, accuracy = plan.dimensions(runs)
    assert lr["values"] == pytest.approx([-3, -2, -1]) and lr["ticktext"] == ["0.001", "0.01", "0.1"]
    assert activation["values"] == [0, 1, 0] and activation["ticktext"] == ["relu", "sigmoid"]
    assert accuracy == {"label": "test acc", "values": [0.8, 0.7, 0.6], "range": [0.6, 0.8]}
    assert sweep.Plan.of(runs, prefer="activation").scatter == "activation"  # --scatter activation
    assert sweep.Plan.of(runs, prefer="momentum").scatter == "lr"  # chosen, but it does not vary
    seeded = [sweep.SweepRun(f"r{i}", i, {"seed": i, "activation": act}, 0.5) for i, act in enumerate(["relu", "tanh"])]
    assert sweep.Plan.of(seeded).scatter == "activation" and not sweep.Plan.of(seeded).log_x
    hostile = [sweep.SweepRun("a", 0, {"model": "<b>x</b>.py:M"}, 0.5), sweep.SweepRun("b", 1, {"model": "mlp"}, 0.6)]
    (model, _) = sweep.Plan.of(hostile).dimensions(hostile)
    assert model["ticktext"] == ["&lt;b&gt;x&lt;/b&gt;.py:M", "mlp"]


def test_group_summary_is_mean_and_sample_std_of_finished_runs() -> None:
    html = panes.groups_html([panes.GroupSummary("<i>mlp</i> (3 seeds)", 0, 3, [0.8, 0.82, 0.84])])
    assert "0.8200 &plusmn; 0.0200" in html and "&lt;i&gt;mlp&lt;/i&gt;" in html and "<i>" not in html


HOSTILE = '<b data-injected="1">x</b>'


def test_labels_layers_and_class_names_stay_escaped_in_the_new_windows() -> None:
    for trace in windows.group_traces(windows.COMPARE_BY_METRIC[TEST_ACC], HOSTILE, 0, [(0.0, 1.0, 2.0, 3.0)]):
        assert "<b" not in trace["name"] and trace["name"].startswith("&lt;b")
    grads = gradients.draw("e", gradients.PANEL.win(HOSTILE), HOSTILE, {HOSTILE: ([0.0], [1.0])})
    assert grads["data"][0]["name"].startswith("&lt;b")
    scatter = windows.scatter_message("e", "lr", [(0.1, 0.5, HOSTILE, 0)], log_x=True)
    assert scatter["data"][0]["text"] == ["&lt;b data-injected=\"1\"&gt;x&lt;/b&gt;"]
    uri = panes.data_uris(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))
    for html in (panes.mistakes_html(uri, [0], [0.9], [1], [0.01], [HOSTILE, HOSTILE], 1.0),
                 panes.samples_html(uri, [0], [HOSTILE], HOSTILE),
                 panes.groups_html([panes.GroupSummary(HOSTILE, 0, 2, [])])):
        assert "<b data" not in html and "&lt;b data-injected=" in html


def test_a_replay_of_two_launches_gives_their_runs_distinct_colours() -> None:
    """Each launch numbers its colours from 0; a replay of two keeps the first's and moves the
    second's clashing runs to colours no run has, a seed group's runs still sharing one."""
    from dashboard.replay import replay_colours

    first, second = Path("runs/a"), Path("runs/b")
    assert replay_colours([(first, 0), (first, 1), (first, 1), (second, 0), (second, 1), (second, 2)]) == [
        0, 1, 1, 2, 3, 4]
    assert replay_colours([(first, i) for i in range(12)]) == list(range(12))  # one launch: as it was live
    assert replay_colours([(first, 0), (first, 3), (second, 1)]) == [0, 3, 1]  # no clash: as they were


def test_group_traces_are_a_closed_band_and_a_mean() -> None:
    window = windows.COMPARE_BY_METRIC[TEST_ACC]
    band, mean = windows.group_traces(window, "g", 0, [(0.0, 0.1, 0.2, 0.3), (1.0, 0.5, 0.6, 0.7)])
    assert band["x"] == [0.0, 1.0, 1.0, 0.0] and band["y"] == [0.3, 0.7, 0.5, 0.1] and band["fill"] == "toself"
    assert mean["y"] == [0.2, 0.6] and mean["showlegend"] and not band["showlegend"]


# ---- against the real server --------------------------------------------------------------------

def launch(tmp: Path, url: str, env: str, *args: str) -> Path:
    code, out, err = finish(livetrain(tmp, "run", *args, "--visdom-url", url, "--env", env), timeout=400)
    assert code == 0, out + err
    return launch_dir(tmp / "runs")


@pytest.fixture(scope="module")
def activations(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Seed 001's sigmoid against ReLU, one epoch each."""
    tmp = tmp_path_factory.mktemp("activations")
    url = visdom_server.config.url
    return url, launch(tmp, url, "activations", "--models", "mlp:relu,mlp:sig", "--set",
                       "sig.activation=sigmoid", "--epochs", "1", "--limit", "6000")


@pytest.fixture(scope="module")
def seeds(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("seeds")
    url = visdom_server.config.url
    return url, launch(tmp, url, "seeds", "--models", "mlp", "--seeds", "0,1,2", "--epochs", "2", "--limit", "3000")


@pytest.fixture(scope="module")
def lr_sweep(visdom_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("sweep")
    url = visdom_server.config.url
    return url, launch(tmp, url, "sweep", "--models", "softmax", "--set", "softmax.lr=0.01,0.1,1",
                       "--epochs", "1", "--limit", "3000")


def records(folder: Path) -> list[RunRecord]:
    return [read(d) for d in sorted(p for p in folder.iterdir() if (p / "log.jsonl").is_file())]


def by_name(state: dict[str, Any], win: str) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in state[win]["content"]["data"] if d.get("name")}


@pytest.mark.slow
def test_train_vs_test_gradients_entropy_and_mistakes_live(activations: tuple[str, Path]) -> None:
    url, folder = activations
    state = server_state(url, "activations")
    runs = records(folder)
    assert_windows_match_logs(state, [r.path.parent for r in runs], max_points=1000)
    for record in runs:
        label = record.meta["label"]
        name = windows.trace_name(label)
        # the per-epoch windows: test from the untrained point at x = 0, train from epoch 1
        for metric, win in ((TEST_LOSS, "compare-epoch-loss"), (TEST_ACC, "compare-epoch-acc"),
                            (TEST_ENTROPY, "compare-entropy"), (TEST_WEAKEST, "compare-weakest"),
                            (TEST_ECE, "compare-ece")):
            assert by_name(state, win)[name]["x"] == [0.0, 1.0], (win, label)
        assert by_name(state, "compare-epoch-acc")[windows.trace_name(label, part="train")]["x"] == [1.0]
        assert by_name(state, "compare-epoch-acc")[windows.trace_name(label, part="train")]["line"]["dash"] == "dot"
        untrained = record.scalars[0]
        assert untrained["x"] == 0.0 and untrained["step"] == 0 and untrained[TEST_ACC] < 0.3
        entropy = record.series(TEST_ENTROPY)[1]
        assert entropy[-1] < entropy[0]  # surer after an epoch
        grads = by_name(state, windows.run_window("gradients", label))
        assert list(grads) == ["linear1", "linear2", "linear3"]
        assert state[windows.run_window("gradients", label)]["content"]["layout"]["yaxis"]["type"] == "log"
        mistakes = state[windows.run_window("mistakes", label)]
        assert mistakes["content"].count("<figure") == 8 and "true:" in mistakes["content"]
    relu, sig = (next(r for r in runs if r.config["activation"] == a) for a in ("relu", "sigmoid"))
    first_layer = {r.config["activation"]: r.series(GRAD_PREFIX + "linear1")[1][-1] for r in (relu, sig)}
    assert first_layer["sigmoid"] < first_layer["relu"] / 3, first_layer  # vanishing, read from the log
    # every window has titled axes
    for win, pane in state.items():
        layout = (pane.get("content") or {}).get("layout") if pane["type"] == "plot" else None
        if layout and "xaxis" in layout and layout["xaxis"].get("visible", True):  # weight tiles: no axes
            assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"], win
    samples = state[windows.SAMPLES_WIN]
    assert samples["title"] == "Training samples (fashion-mnist)" and samples["content"].count("<figure") == 16
    for record in runs:  # logged before the first step, so the page has them before an epoch ends
        kinds = [json.loads(line)["kind"] for line in record.path.read_text().splitlines()]
        assert kinds.index("samples") < kinds.index("scalars") < kinds.index("predictions")
    assert all(c in samples["content"] for c in ("Ankle boot", "T-shirt/top"))


@pytest.mark.slow
def test_a_group_of_three_seeds_is_one_band_of_their_min_and_max(seeds: tuple[str, Path]) -> None:
    url, folder = seeds
    state = server_state(url, "seeds")
    runs = records(folder)
    assert [r.meta["colour"] for r in runs] == [0, 0, 0]  # the group's colour
    group = "mlp (3 seeds)"
    for window in windows.COMPARE_WINDOWS:
        held = by_name(state, window.win)
        band, mean = held[windows.band_name(group, window)], held[windows.trace_name(group, part=window.part)]
        xs = mean["x"]
        n = len(xs)
        assert band["x"] == xs + xs[::-1] and n > 0, window.win
        if window.per_batch:  # of the runs' smoothed values, at every stride-th x they share
            logged = [dict(zip(*smoothed_from_log(r, window.metric, windows.DEFAULT_SMOOTHING, 10**9).points()))
                      for r in runs]
        else:
            logged = [dict(zip(*r.series(window.metric))) for r in runs]
        highs, lows = band["y"][:n], band["y"][n:][::-1]
        for x, high, low, y in zip(xs, highs, lows, mean["y"]):
            values = [points[x] for points in logged]
            assert (low, high) == (min(values), max(values)), (window.win, x)
            assert y == pytest.approx(statistics.fmean(values), rel=1e-12)
        if not window.per_batch:
            assert xs == sorted(logged[0]), window.win  # every epoch (and x = 0 for test metrics)
        # the single runs are still there, faint and without a legend entry of their own
        for record in runs:
            single = held[windows.trace_name(record.meta["label"], part=window.part)]
            assert single["opacity"] == 0.25 and not single["showlegend"]
    finals = [r.series(TEST_ACC)[1][-1] for r in runs]
    summary = f"{statistics.fmean(finals):.4f} &plusmn; {statistics.stdev(finals):.4f}"
    assert f"mlp (3 seeds): test acc <b>{summary}</b>" in state[windows.RUNS_WIN]["content"]
    assert windows.PARCOORDS_WIN not in state  # nothing but the seed varies: no sweep


@pytest.mark.slow
def test_a_sweep_draws_parallel_coordinates_and_a_scatter(lr_sweep: tuple[str, Path]) -> None:
    url, folder = lr_sweep
    state = server_state(url, "sweep")
    runs = records(folder)
    final = {r.config["lr"]: r.series(TEST_ACC)[1][-1] for r in runs}
    (figure,) = state[windows.PARCOORDS_WIN]["content"]["data"]
    assert figure["type"] == "parcoords"
    lr, accuracy = figure["dimensions"]
    assert lr["label"] == "lr" and lr["ticktext"] == ["0.01", "0.1", "1"]
    lrs = [10 ** v for v in lr["values"]]
    assert len(lrs) == 3 and [final[min(final, key=lambda k: abs(k - x))] for x in lrs] == accuracy["values"]
    assert figure["line"]["color"] == accuracy["values"]
    (scatter,) = state[windows.SCATTER_WIN]["content"]["data"]
    assert sorted(zip(scatter["x"], scatter["y"])) == sorted(final.items())
    assert state[windows.SCATTER_WIN]["content"]["layout"]["xaxis"]["type"] == "log"
    assert state[windows.SCATTER_WIN]["title"] == "Sweep: lr against final test accuracy"


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """What a window shows, without what differs between two drawings of it (its env, and the
    times and numbers in messages)."""
    out = {}
    for win, pane in state.items():
        content = pane["content"]
        if pane["type"] == "plot":
            content = [{k: v for k, v in d.items() if k != "uid"} for d in content["data"] if d.get("name") != ""]
        out[win] = (pane["title"], pane["type"], content)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("env", ["activations", "seeds", "sweep"])
def test_replay_draws_identical_windows(env: str, activations: tuple[str, Path], seeds: tuple[str, Path],
                                        lr_sweep: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = {"activations": activations, "seeds": seeds, "sweep": lr_sweep}[env]
    code, out, err = finish(livetrain(tmp_path, "replay", str(folder), "--env", f"{env}-again", "--visdom-url", url))
    assert code == 0, out + err
    live, again = comparable(server_state(url, env)), comparable(server_state(url, f"{env}-again"))
    for win in ("control", "control-requests"):  # a live launch's control: a replay has nothing to control
        live.pop(win, None)
    assert sorted(live) == sorted(again)
    for win in live:
        if win != windows.RUNS_WIN:  # the runs pane's times differ
            assert live[win] == again[win], win


@pytest.mark.slow
def test_scatter_shows_the_setting_chosen(activations: tuple[str, Path], tmp_path: Path) -> None:
    """`--scatter seed` on a replay of the sigmoid/ReLU launch (whose repeats differ in seed too):
    the seed, not the activation the scatter would pick, against each run's final accuracy."""
    url, folder = activations
    code, out, err = finish(livetrain(tmp_path, "replay", str(folder), "--env", "by-seed", "--scatter", "seed",
                                      "--visdom-url", url))
    assert code == 0, out + err
    state = server_state(url, "by-seed")
    assert state[windows.SCATTER_WIN]["title"] == "Sweep: seed against final test accuracy"
    (points,) = state[windows.SCATTER_WIN]["content"]["data"]
    assert sorted(zip(points["x"], points["y"])) == sorted((r.config["seed"], r.series(TEST_ACC)[1][-1])
                                                           for r in records(folder))
    default = server_state(url, "activations")[windows.SCATTER_WIN]["title"]
    assert default == "Sweep: activation against final test accuracy"


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("env", ["seeds", "sweep", "activations"])
def test_new_windows_in_a_real_browser(env: str, activations: tuple[str, Path], seeds: tuple[str, Path],
                                       lr_sweep: tuple[str, Path]) -> None:
    url, folder = {"activations": activations, "seeds": seeds, "sweep": lr_sweep}[env]
    labels = [r.meta["label"] for r in records(folder)]
    expected = len(server_state(url, env))
    with Browser(1280, 1000) as browser:
        browser.open(f"{url}/env/{env}")
        state = browser.settled(lambda s: len(s.get("panes", [])) == expected, timeout=90)
        browser.screenshot(ARTIFACTS / f"windows-{env}.png")
        parcoords = browser.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')].filter(p => p.data && p.data[0] && "
            "p.data[0].type === 'parcoords').map(p => [p.data[0].dimensions.length, "
            "p.querySelectorAll('.axis').length])")
    found = {p["title"]: p for p in state["panes"]}
    for pane in state["panes"]:
        tiles = pane["heatmap"] is not None and not pane["heatmap"].get("x")  # weights as images: no axes
        if pane["traces"] is not None and pane["axes"] and pane["title"] != windows.PARCOORDS_TITLE and not tiles:
            assert all(pane["axes"]), pane["title"]  # both axes titled
    loss = found[windows.EPOCH_LOSS_TITLE]
    if env == "seeds":
        assert loss["legend"] == ["mlp (3 seeds)"]  # one entry: the group; its runs faint beneath
        names = [t["name"] for t in loss["traces"]]
        assert names.count(windows.band_name("mlp (3 seeds)", windows.COMPARE_BY_METRIC[TEST_LOSS])) == 1
    else:
        # one entry per run (test solid, train dotted); the sweep's lr 1 softmax (its test loss
        # 10 against 1.3) is off the scale, and its marker says so (see dashboard.yrange)
        off = ["softmax-lr1 ↑ diverged, off the scale"] if env == "sweep" else []
        assert sorted(loss["legend"]) == sorted(labels + off)
        assert len(loss["traces"]) == 2 * len(labels) + len(off)
    # parallel coordinates, each axis drawn: lr and test acc; seed (repeats of a model get seeds
    # of their own), activation and test acc; none for seeds alone
    assert parcoords == {"sweep": [[2, 2]], "activations": [[3, 3]], "seeds": []}[env]
    if env == "sweep":
        assert len(found["Sweep: lr against final test accuracy"]["traces"]) == 1
    samples = found["Training samples (fashion-mnist)"]
    assert samples["figures"] == samples["images"] == 16
    assert set(samples["captions"]) <= set(CLASSES)
    for record in records(folder):
        label = record.meta["label"]
        assert found[mistakes.title(label)]["images"] == 8
        layers = [k[len(GRAD_PREFIX):] for k in record.scalars[1] if k.startswith(GRAD_PREFIX)]
        assert found[gradients.title(label)]["legend"] == layers == (
            ["linear1"] if env == "sweep" else ["linear1", "linear2", "linear3"])


def test_ema_matches_tensorboards_debiased_smoothing() -> None:
    ema = Ema(0.6)
    assert ema.add(1.0) == 1.0  # no pull towards 0 at the start
    assert ema.add(0.0) == pytest.approx(0.6 * 0.4 / (1 - 0.36))
    assert math.isnan(Ema(0.6).add(float("nan")))


def test_a_sweep_is_one_model_with_settings_varied_not_the_demo() -> None:
    def run(model: str, **config: Any) -> sweep.SweepRun:
        return sweep.SweepRun(model, 0, {"model": model, "dataset": "fashion-mnist", "seed": 0, **config}, None)

    assert not sweep.Plan.is_sweep([run("softmax", lr=0.1), run("mlp", lr=0.001), run("cnn", lr=0.001)])
    assert not sweep.Plan.is_sweep([run("mlp", seed=0), run("mlp", seed=1)])
    assert sweep.Plan.is_sweep([run("mlp", activation="relu"), run("mlp", activation="sigmoid"), run("cnn")])


def test_the_sweep_plots_gain_each_run_as_it_finishes(visdom_server: ServerProcess, tmp_path: Path) -> None:
    """The board's parallel coordinates and scatter, against the real server: nothing but a
    placeholder until a run finishes, then one line per finished run, redrawn as each finishes.
    (The run logs are written here through RunLog, as a worker writes them.)"""
    from dashboard.board import Board
    from dashboard.connection import VisdomConnection
    from dashboard.runlog import RunLog
    from dashboard.sender import Sender
    from trainers.reporting import RunState

    url, env = visdom_server.config.url, "sweep-growing"
    lrs = (0.01, 0.1, 1.0)
    sender = Sender(VisdomConnection(url))
    board = Board(sender, windows.DrawOptions(env))
    logs = []
    for i, lr in enumerate(lrs):
        config = {"model": "mlp", "dataset": "fashion-mnist", "lr": lr, "seed": 0, "label": f"lr{lr}"}
        board.add(tmp_path / f"lr{lr}", f"lr{lr}", i, config=config)
        log = RunLog(tmp_path / f"lr{lr}", meta={"label": f"lr{lr}", "colour": i})
        log.config(config)
        log.status(RunState.RUNNING)
        logs.append(log)
    board.poll()
    assert sender.flush()
    assert server_state(url, env)[windows.PARCOORDS_WIN]["type"] == "text"  # its place, before any finished
    for done, (log, lr) in enumerate(zip(logs, lrs), 1):
        log.scalars(1, 1.0, {TEST_ACC: 0.5 + lr / 10})
        log.status(RunState.FINISHED)
        log.close()
        board.poll()
        assert sender.flush()
        state = server_state(url, env)
        (figure,) = state[windows.PARCOORDS_WIN]["content"]["data"]
        assert figure["dimensions"][-1]["values"] == [0.5 + x / 10 for x in lrs[:done]]
        assert state[windows.SCATTER_WIN]["content"]["data"][0]["x"] == list(lrs[:done])
    # a pane changed behind the board's back (a late request, another writer) is found by the
    # sender's check and drawn again
    VisdomConnection(url).post("events", windows.text_message(env, windows.SCATTER_WIN, "other", "not ours", 10, 10))
    assert sender.check()
    assert server_state(url, env)[windows.SCATTER_WIN]["content"]["data"][0]["x"] == list(lrs)
