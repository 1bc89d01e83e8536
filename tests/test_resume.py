"""Resuming an earlier launch: nothing past a checkpoint drawn twice, a launch still training
refused, the finished runs shown in the colours they had, the threads shared anew."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from dashboard import windows
from dashboard.launch.plan import LaunchError
from dashboard.launch.resume import SUPERSEDED, LaunchLock, resume_runs, supersede
from dashboard.launch.run import LaunchOptions, worker_specs
from dashboard.runlog import LOG_NAME, RunLog, read
from dashboard.server import ServerProcess
from tests.helpers import (
    breaks_at_fifth_batch, finish, launch_dir, launched, livetrain, server_state, training, wait_for,
)
from trainers import measures
from trainers.config import RunConfig, threads_per_run
from trainers.reporting import TEST_LOSS, TRAIN_LOSS


def logged_run(run_dir: Path, xs: list[float], label: str = "mlp", colour: int = 1, threads: int = 1) -> None:
    log = RunLog(run_dir, meta={"label": label, "colour": colour, "env": "e"})
    log.config(RunConfig("mlp", label=label, epochs=3, threads=threads).resolved().to_dict())
    log.status("running")
    log.record("samples", 0, 0.0, measures.samples(torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
                                                   torch.tensor([0, 1]), tuple("abcdefghij")))
    for step, x in enumerate(xs):
        log.scalars(step, x, {TRAIN_LOSS: 1.0 / (step + 1)})
        if x == int(x) and x > 0:
            log.record("confusion", step, x, {"matrix": torch.eye(10, dtype=torch.int64).tolist(),
                                              "classes": list("abcdefghij")})
    log.status("interrupted", "stopped by Ctrl-C")
    log.close()


def test_supersede_moves_what_a_resumed_run_logs_again(tmp_path: Path) -> None:
    logged_run(tmp_path / "mlp", [0.0, 0.5, 1.0, 1.5, 2.0, 2.3, 2.6])
    with open(tmp_path / "mlp" / LOG_NAME, "a") as handle:
        handle.write('{"kind": "scalars", "x": 2.7, "step"')  # a line cut by a kill
    before = (tmp_path / "mlp" / LOG_NAME).read_text().splitlines()
    assert supersede(tmp_path / "mlp", 2.0) == 3  # x 2.3 and 2.6, and the cut line
    record = read(tmp_path / "mlp")
    assert record.series(TRAIN_LOSS)[0] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [c["x"] for c in record.confusions] == [1.0, 2.0] and record.samples is not None
    assert [s["state"] for s in record.states] == ["running", "interrupted"]  # what happened stays
    moved = (tmp_path / "mlp" / SUPERSEDED).read_text().splitlines()
    assert sorted(moved + (tmp_path / "mlp" / LOG_NAME).read_text().splitlines()) == sorted(before)  # none lost
    # a run that never finished an epoch starts over: everything drawn at an x goes, samples too
    logged_run(tmp_path / "cnn", [0.0, 0.2, 0.4])
    assert supersede(tmp_path / "cnn", None) == 4
    record = read(tmp_path / "cnn")
    assert record.series(TRAIN_LOSS)[0] == [] and record.samples is None and record.config
    assert supersede(tmp_path / "cnn", None) == 0  # nothing left to move


def test_resume_keeps_colours_shows_finished_runs_and_shares_threads_anew(tmp_path: Path) -> None:
    logged_run(tmp_path / "a", [0.0, 1.0, 2.0, 3.0], label="a", colour=0)
    log = RunLog(tmp_path / "a")
    log.status("finished")
    log.close()
    logged_run(tmp_path / "b", [0.0, 0.5], label="b", colour=1, threads=1)
    runs = resume_runs(tmp_path)
    assert [(r.config.label, r.done, r.colour, r.config.threads) for r in runs] == [
        ("a", True, 0, None), ("b", False, 1, None)]
    specs = worker_specs(runs, LaunchOptions(None, windows.DrawOptions("e")))
    assert [s.colour_index for s in specs] == [0, 1]
    assert specs[1].config.threads == threads_per_run(1)  # the cores, for the one run that trains


def test_a_moved_model_file_says_where_it_was_expected(tmp_path: Path) -> None:
    model = tmp_path / "gone.py"
    log = RunLog(tmp_path / "runs" / "Net", meta={"label": "Net"})
    log.config({**RunConfig("mlp", label="Net").resolved().to_dict(), "model": f"{model}:Net"})
    log.status("interrupted")
    log.close()
    with pytest.raises(LaunchError) as caught:
        resume_runs(tmp_path / "runs")
    said = str(caught.value)
    assert said == (f"cannot resume {tmp_path / 'runs' / 'Net'}: its model came from {model}, which is not there now; "
                    "put the file back there (the run's model is named by that path)")
    assert "give PATH.py" not in said  # --models cannot be given with --resume


def test_the_lock_refuses_a_resume_while_the_launch_runs(tmp_path: Path) -> None:
    held = LaunchLock(tmp_path).hold()
    held.mark()
    with pytest.raises(LaunchError, match="is still training"):
        LaunchLock(tmp_path).take()
    held.release()
    LaunchLock(tmp_path).take().release()


# a run that fails in its first epoch while the file BREAK lies beside its model's file
BREAKS = breaks_at_fifth_batch('(Path(__file__).parent / "BREAK").exists()', "broke at its 5th batch")


@pytest.mark.slow
def test_a_launch_still_training_cannot_be_resumed(tmp_path: Path) -> None:
    proc = livetrain(tmp_path, "run", "--headless", "--models", "softmax,mlp", "--epochs", "50", "--limit", "6000")
    try:
        wait_for(lambda: launched(tmp_path / "runs"))
        runs = launch_dir(tmp_path / "runs")
        wait_for(lambda: training(runs / "softmax") and training(runs / "mlp"))
        code, out, err = finish(livetrain(tmp_path, "run", "--resume", str(runs), "--headless"))
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"Error: {runs} is still training (its launcher, pid {proc.pid}, or one of its workers")
        assert not (runs / "mlp" / SUPERSEDED).exists() and "(resumed)" not in out
    finally:
        proc.send_signal(signal.SIGINT)
        finish(proc, timeout=60)
    assert read(runs / "mlp").status == "interrupted"


@pytest.mark.slow
def test_interrupted_then_resumed_draws_each_x_once(visdom_server: ServerProcess, tmp_path: Path) -> None:
    """softmax finishes, mlp is stopped in a later epoch, Breaks fails in its first. The resume
    draws each run's points once (no trace doubles back: x only grows), in the colours they had,
    the finished softmax still shown; Breaks starts over at x = 0 on the same trace."""
    url = visdom_server.config.url
    (tmp_path / "breaks.py").write_text(BREAKS)
    (tmp_path / "BREAK").write_text("")
    proc = livetrain(tmp_path, "run", "--models", "softmax,mlp,breaks.py:Breaks", "--epochs", "1",
                     "--set", "mlp.epochs=3", "--limit", "3000", "--set", "mlp.limit=20000",
                     "--visdom-url", url, "--env", "resumed")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all((runs / label / LOG_NAME).is_file() for label in ("softmax", "mlp", "Breaks"))
             and read(runs / "Breaks").status == "failed" and read(runs / "softmax").status == "finished"
             and (runs / "mlp" / "checkpoint.pt").is_file() and read(runs / "mlp", keep_scalars=False).x > 1.2)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=60)
    assert code == 130, out + err
    stopped_at = read(runs / "mlp").x
    done = torch.load(runs / "mlp" / "checkpoint.pt", weights_only=True)["epochs_done"]

    (tmp_path / "BREAK").unlink()
    code, out, err = finish(livetrain(tmp_path, "run", "--resume", str(runs), "--visdom-url", url, "--no-keep-serving"))
    assert code == 0, out + err
    assert "softmax (finished), mlp (resumed), Breaks" in out
    state = server_state(url, "resumed")
    for label, colour in (("softmax", 0), ("mlp", 1), ("Breaks", 2)):
        record = read(runs / label)
        assert record.meta["colour"] == colour and record.status == "finished", label
        xs = record.series(TRAIN_LOSS)[0]
        assert xs == sorted(set(xs)), label  # each x once, in order, in the log
        for window in windows.COMPARE_WINDOWS:
            for trace in state[window.win]["content"]["data"]:
                if trace.get("legendgroup") == label and trace["x"]:
                    assert trace["x"] == sorted(trace["x"]), (window.win, label)  # no trace doubles back
                    assert trace["line"]["color"] == windows.colour(colour), (window.win, label)
    if stopped_at > done:  # it had logged past its checkpoint: those records were moved aside
        moved = [json.loads(line) for line in (runs / "mlp" / SUPERSEDED).read_text().splitlines()]
        assert moved and all(r["x"] > done for r in moved)
        assert max(r["x"] for r in moved) == pytest.approx(stopped_at)
    breaks = read(runs / "Breaks")  # started over: one untrained point at x = 0, then its batches
    assert breaks.series(TEST_LOSS)[0] == [0.0, 1.0] and (runs / "Breaks" / SUPERSEDED).is_file()
    assert "softmax" in state[windows.RUNS_WIN]["content"]  # the finished run stays in the runs table


def test_seed_groups_and_lone_runs_get_distinct_colours_in_launch_order(tmp_path: Path) -> None:
    """8 lrs x 8 seeds: each lr's group one colour of its own (the first run's colour cycled
    through ten would give 8 groups 5 colours); a run outside any group has its own too."""
    from dashboard.launch.plan import PlannedRun
    from dashboard.sweep import seed_groups

    configs = [RunConfig("softmax-nn", lr=lr, seed=seed, label=f"lr{lr}-seed{seed}")
               for lr in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0) for seed in range(8)]
    configs.append(RunConfig("mlp", label="alone"))
    runs = [PlannedRun(c, tmp_path / c.label) for c in configs]
    groups = seed_groups([(c.label, c.to_dict()) for c in configs])
    assert len(groups) == 8
    specs = worker_specs(runs, LaunchOptions(None, windows.DrawOptions("e")), groups)
    per_group = [{specs[i].colour_index for i in members} for _, members in groups]
    assert all(len(c) == 1 for c in per_group)  # a group: one colour
    assert [c.pop() for c in per_group] + [specs[-1].colour_index] == list(range(9))
