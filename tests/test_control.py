"""Requests to a training run, taken between two batches (trainers.control, trainers.steering):
a stop inside an epoch leaves a checkpoint that resumes exactly; a pause logs nothing and changes
nothing; a set changes the lr (momentum, weight decay) from the next batch, and the checkpoint
carries it; a bad request is refused with why; a request seen twice is applied once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.ddp_ranks import Scripted
from trainers import data
from trainers.checkpoints import CHECKPOINT
from trainers.config import RunConfig
from trainers.control import CONTROL, Request
from trainers.loop import fit
from trainers.reporting import TEST_ACC, LR, TRAIN_LOSS, Recorder, RunState


@pytest.fixture(scope="module")
def fashion() -> data.Dataset:
    return data.load("fashion-mnist")


# dropout on, so that torch's random state matters; 1,000 images in batches of 128: 8 a epoch
CONFIG = RunConfig("mlp", epochs=3, limit=1000, seed=4, threads=1)


def losses(recorder: Recorder) -> list[tuple[int, float]]:
    return [(step, values[TRAIN_LOSS]) for step, _, values in recorder.rows if TRAIN_LOSS in values]


def controls(recorder: Recorder) -> list[dict]:
    return [payload for kind, _, _, payload in recorder.records if kind == CONTROL]


def test_a_stop_inside_an_epoch_resumes_exactly(fashion: data.Dataset, tmp_path: Path) -> None:
    whole = Recorder()
    fit(CONFIG, whole, tmp_path / "whole", dataset=fashion)
    first = Recorder()
    result = fit(CONFIG, first, tmp_path / "run", dataset=fashion,
                 inbox=Scripted({11: [Request("r1", "stop", source="page")]}))
    assert result.status == RunState.INTERRUPTED
    assert result.reason == "stopped from the page; its checkpoint at epoch 1.38 is kept"  # 11 batches: 1 + 384/1000
    assert (tmp_path / "run" / CHECKPOINT).is_file() and losses(first)[-1][0] == 11
    assert controls(first) == [{"id": "r1", "action": "stop", "values": {}, "source": "page", "applied": True}]
    rest = Recorder()
    resumed = fit(CONFIG, rest, tmp_path / "run", resume=True, dataset=fashion)
    assert resumed.status == RunState.FINISHED
    assert losses(first) + losses(rest) == losses(whole)  # bit for bit, dropout and batch order alike
    assert resumed.history == fit(CONFIG, Recorder(), dataset=fashion).history


def test_a_pause_logs_nothing_and_changes_nothing(fashion: data.Dataset) -> None:
    plain = Recorder()
    fit(CONFIG, plain, dataset=fashion)
    paused = Recorder()
    inbox = Scripted({5: [Request("p", "pause", source="page")]},
                     while_paused=[None, None, Request("r", "resume", source="page")])  # two waits, then resume
    result = fit(CONFIG, paused, dataset=fashion, inbox=inbox)
    assert result.status == RunState.FINISHED
    assert losses(paused) == losses(plain)  # the same batches, the same numbers
    assert [s for s in paused.states if s[0] in ("paused", "running")] == [
        ("running", ""), ("paused", "paused (page)"), ("running", "")]
    steps = [step for kind, step, _, _ in paused.records if kind == CONTROL]
    assert steps == [5, 5]  # paused after batch 5, resumed there: no batch logged between


def test_set_changes_the_lr_from_the_next_batch_and_the_checkpoint_keeps_it(fashion: data.Dataset,
                                                                            tmp_path: Path) -> None:
    config = RunConfig("mlp", epochs=3, limit=1000, seed=4, threads=1, schedule="constant")
    first = Recorder()
    fit(config, first, tmp_path / "run", dataset=fashion,
        inbox=Scripted({3: [Request("s", "set", {"lr": 0.005}, "command line")],
                        12: [Request("t", "stop", source="command line")]}))
    lrs = [values[LR] for _, _, values in first.rows if LR in values]
    assert lrs[:3] == [1e-3] * 3 and set(lrs[3:]) == {0.005}  # batches 1-3 at 1e-3, then 0.005
    assert first.states[-1] == ("interrupted", "stopped by `livetrain control`; its checkpoint at epoch 1.51 is kept")
    rest = Recorder()
    fit(config, rest, tmp_path / "run", resume=True, dataset=fashion)
    assert {values[LR] for _, _, values in rest.rows if LR in values} == {0.005}  # carried by the checkpoint


def test_bad_requests_are_refused_with_why_and_a_second_delivery_is_applied_once(fashion: data.Dataset) -> None:
    recorder = Recorder()
    bad = [Request("a", "set", {"lr": -1.0}, "page"), Request("b", "set", {"momentum": 0.5}, "page"),
           Request("c", "resume", source="page"), Request("d", "set", {"epochs": 3.0}, "page"),
           Request("e", "set", {"lr": 0.002}, "page")]
    fit(RunConfig("mlp", epochs=1, limit=1000, threads=1, schedule="constant"), recorder, dataset=fashion,
        inbox=Scripted({2: bad, 4: [Request("e", "set", {"lr": 0.002}, "page")]}))
    said = {c["id"]: (c["applied"], c.get("reason", "")) for c in controls(recorder)}
    assert said == {
        "a": (False, "learning rate must be a positive number, not -1.0"),
        "b": (False, "momentum is SGD's setting, and this run trains with adam"),
        "c": (False, "the run is not paused"),
        "d": (False, "epochs cannot change while a run trains; lr, momentum, weight_decay can"),
        "e": (True, ""),
    }
    assert len(controls(recorder)) == 5  # "e" again after batch 4: not applied twice
    assert torch.tensor([v[LR] for _, _, v in recorder.rows if LR in v][2:]).eq(0.002).all()


def fork_request(ident: str, into: str, values: dict | None = None, stop_parent: bool = False) -> Request:
    return Request(ident, "fork", values or {}, "page", {"into": into, "stop_parent": stop_parent})


@pytest.mark.parametrize("at", [11, 8])  # inside epoch 2; after epoch 1's last batch, before its test
def test_a_fork_with_its_parents_settings_trains_batch_for_batch_as_its_parent(fashion: data.Dataset,
                                                                              tmp_path: Path, at: int) -> None:
    parent = Recorder()
    fit(CONFIG, parent, tmp_path / "mlp", dataset=fashion, inbox=Scripted({at: [fork_request("f", "mlp-fork1")]}))
    kind, step, x, fork = next(r for r in parent.records if r[0] == CONTROL)
    assert (kind, fork["applied"], step, x) == (CONTROL, True, at, {11: 1.384, 8: 1.0}[at])  # 1 + 384/1000
    assert parent.states[-1] == ("finished", "")  # the parent went on
    child = Recorder()
    result = fit(CONFIG, child, tmp_path / "mlp-fork1", resume=True, dataset=fashion)
    assert result.status == RunState.FINISHED
    assert losses(child) == losses(parent)[at:]  # bit for bit, dropout and batch order alike
    assert result.history == fit(CONFIG, Recorder(), dataset=fashion).history
    assert not child.of("samples")  # its traces begin where it forked:
    if at == 8:  # with the epoch's results, the parent's own, at the fork's x
        assert child.rows[0] == next(row for row in parent.rows if row[1] == x and TEST_ACC in row[2])
    else:  # with the next batch
        assert child.rows[0][0] == at + 1 and child.rows[0][1] > x


def test_a_fork_trains_with_its_own_optimizer_lr_and_batch_size_from_the_same_images(fashion: data.Dataset,
                                                                                     tmp_path: Path) -> None:
    fit(CONFIG, Recorder(), tmp_path / "mlp", dataset=fashion,
        inbox=Scripted({3: [fork_request("f", "sgd", stop_parent=True)]}))
    assert (tmp_path / "mlp" / CHECKPOINT).is_file() and (tmp_path / "sgd" / CHECKPOINT).is_file()
    config = RunConfig("mlp", epochs=2, limit=1000, seed=4, threads=1, optimizer="sgd", lr=0.05, batch_size=64,
                       schedule="constant")
    child = Recorder()
    assert fit(config, child, tmp_path / "sgd", resume=True, dataset=fashion).status == RunState.FINISHED
    xs = [x for _, x, values in child.rows if TRAIN_LOSS in values]
    assert xs[0] == pytest.approx(0.384 + 0.064) and xs[-1] == 2.0  # 3 batches of 128 done, then batches of 64
    assert {values[LR] for _, _, values in child.rows if LR in values} == {0.05}


def test_a_fork_that_cannot_write_its_checkpoint_is_refused_and_the_run_goes_on(fashion: data.Dataset,
                                                                              tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the fork's folder would go")
    recorder = Recorder()
    result = fit(RunConfig("mlp", epochs=1, limit=1000, threads=1), recorder, tmp_path / "mlp", dataset=fashion,
                 inbox=Scripted({2: [fork_request("f", "taken"), fork_request("g", "../up")]}))
    assert result.status == RunState.FINISHED
    said = {c["id"]: (c["applied"], c.get("reason", "")) for c in controls(recorder)}
    assert said["f"][0] is False and said["f"][1].startswith("its checkpoint could not be written (")
    assert said["g"] == (False, "a fork goes to a folder beside the run's, not '../up'")


def test_a_fork_on_a_full_disk_is_refused_with_why_and_the_run_goes_on(fashion: data.Dataset, tmp_path: Path,
                                                                      small_disk: Path) -> None:
    """A real full file system (a tmpfs filled up) where the fork's folder is: the fork is refused
    with the disk's words, no partial checkpoint stays, and the run trains on to its end."""
    with open(small_disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(bytes(64 * 1024))
                handle.flush()
        except OSError:
            pass
    (small_disk / "fork").mkdir()
    (tmp_path / "fork").symlink_to(small_disk / "fork")  # beside the run, on the full disk
    recorder = Recorder()
    result = fit(RunConfig("mlp", epochs=1, limit=1000, threads=1), recorder, tmp_path / "mlp", dataset=fashion,
                 inbox=Scripted({2: [fork_request("f", "fork")]}))
    assert result.status == RunState.FINISHED and (tmp_path / "mlp" / CHECKPOINT).is_file()
    (said,) = controls(recorder)
    assert said["applied"] is False and said["reason"].startswith("its checkpoint could not be written (No space left")
    assert list((small_disk / "fork").iterdir()) == []


# ---- the launcher's path: livetrain control -> the launch's inbox -> the run --------------------

def test_a_workers_inbox_reads_what_came_after_its_start_whole_lines_only(tmp_path: Path) -> None:
    from dashboard.launch.control import FileInbox, send

    send(tmp_path, Request("old", "stop"))  # for an earlier process of the run
    inbox = FileInbox(tmp_path)
    assert inbox.wait(0.01) == []
    send(tmp_path, Request("a", "set", {"lr": 0.1}, "page"))
    with open(tmp_path / "requests.jsonl", "a") as handle:
        handle.write('{"id": "b", "action": "pau')  # still being written
    assert [r.id for r in inbox.wait(1.0)] == ["a"]
    with open(tmp_path / "requests.jsonl", "a") as handle:
        handle.write('se"}\n')
    assert [(r.id, r.action) for r in inbox.wait(1.0)] == [("b", "pause")]
    assert inbox.poll() == []  # and nothing between two looks


def test_the_launchers_desk_checks_before_it_sends(tmp_path: Path) -> None:
    from dashboard.launch.control import LAUNCH_LOG, Desk
    from dashboard.runlog import RunRecord

    def record(state: str, **config: object) -> RunRecord:
        rec = RunRecord(tmp_path / "x")
        rec.config = {"model": "mlp", "optimizer": "adam", "nproc": 1, **config}
        rec.states = [{"state": state}]
        return rec

    runs = {name: tmp_path / name for name in ("a", "b", "q", "d", "ddp")}
    for run_dir in runs.values():
        run_dir.mkdir()
    desk = Desk(tmp_path, runs, {"a": record("running"), "b": record("paused"), "q": record("queued"),
                                 "d": record("finished"), "ddp": record("running", nproc=2)})
    said = lambda run, action, values=None: desk.take(  # noqa: E731
        {"id": f"{run}-{action}-{values}", "run": run, "action": action, "values": values or {}})
    assert said("a", "pause").sent == ("a",)
    assert said("a", "set", {"lr": -1.0}).refused == "learning rate must be a positive number, not -1.0"
    assert said("a", "set", {"momentum": 0.5}).refused == "momentum is SGD's setting, and this run trains with adam"
    assert said("b", "pause").sent == ("b",)  # whether it is paused already, the run says (it knows)
    assert said("q", "stop").refused.startswith("it has not started yet (queued)")
    assert said("d", "stop").refused == "it has ended (finished)"
    assert said("ddp", "pause").sent == ("ddp",)  # on several processes too (rank 0 shares it with the others)
    assert said("zz", "stop").refused.startswith("no run 'zz' in this launch")
    assert said("*", "stop").sent == ("a", "b", "ddp")  # every run that can take it
    assert desk.take({"id": "a-pause-None", "run": "a", "action": "pause"}) is None  # the same request again
    assert (runs["a"] / "requests.jsonl").read_text().count("\n") == 2  # the pause and the stop, once each
    assert len((tmp_path / LAUNCH_LOG).read_text().splitlines()) == 9  # every request, with its outcome
    off = Desk(tmp_path, runs, {"a": record("running")}, enabled=False)  # a launch with --no-control
    assert off.take({"run": "a", "action": "pause"}).refused == "this launch was started with --no-control"


def test_the_desk_plans_a_fork_its_label_folder_and_config_checked(tmp_path: Path) -> None:
    from dashboard.launch.control import Desk
    from dashboard.runlog import RunRecord

    record = RunRecord(tmp_path / "mlp")
    record.config, record.states, record.x = {"model": "mlp", "nproc": 1}, [{"state": "running"}], 1.5
    record.controls = [{"id": "s", "action": "set", "values": {"lr": 0.004}, "applied": True}]
    (tmp_path / "mlp").mkdir()
    (tmp_path / "mlp-fork1").mkdir()  # taken (by a run of another kind, say): the next number
    desk = Desk(tmp_path, {"mlp": tmp_path / "mlp"}, {"mlp": record},
                configs={"mlp": RunConfig("mlp", epochs=3, threads=1, label="mlp")})
    fork = lambda ident, values=None, **options: desk.take(  # noqa: E731
        {"id": ident, "run": "mlp", "action": "fork", "values": values or {}, "options": options})
    first = fork("f1", {"batch_size": 64})
    assert first.fork == "mlp-fork2" and first.request.options == {"into": "mlp-fork2", "stop_parent": False}
    planned = desk.forks.pending["f1"].config
    assert (planned.label, planned.batch_size, planned.lr, planned.threads) == ("mlp-fork2", 64, 0.004, 1)
    assert fork("f2", label="slow", stop_parent=True).request.options == {"into": "slow", "stop_parent": True}
    assert desk.forks.pending["f2"].config.lr == 0.004  # the lr in force, set from the page
    assert fork("f3", label="slow").refused == "a run is labelled 'slow' in this launch already; name the fork otherwise"
    assert fork("f4", {"lr": -1.0}).refused == "learning rate must be a positive number, not -1.0"
    assert fork("f5", {"epochs": 1}).refused == "epochs must be more than the 1.50 the run has trained, not 1"
    assert fork("f6", {"seed": 3}).refused.startswith("a fork cannot change seed; it can change epochs, batch-size, optimizer, lr")
    assert fork("f7", label="../x").refused.startswith("run label '../x': ")
    assert desk.take({"id": "f8", "run": "*", "action": "fork"}).refused == "pick one run to fork"
    with open(tmp_path / "mlp" / "requests.jsonl") as handle:
        assert [json.loads(line)["options"]["into"] for line in handle] == ["mlp-fork2", "slow"]
    record.controls.append({"id": "f1", "action": "fork", "applied": True, "step": 9, "x": 1.6})
    record.controls.append({"id": "f2", "action": "fork", "applied": False, "reason": "no space"})
    (tmp_path / "slow").mkdir()
    assert [(f.label, done["x"]) for f, done in desk.forks.settled({"mlp": record})] == [("mlp-fork2", 1.6)]
    assert not desk.forks.pending and not (tmp_path / "slow").exists()  # refused: its empty folder gone


@pytest.mark.slow
def test_livetrain_control_pauses_sets_resumes_forks_and_stops_a_headless_run(tmp_path: Path,
                                                                             visdom_server: Any) -> None:
    """... and a replay of the launch marks the lr change on mlp's curves, as the live page did."""
    from dashboard.runlog import read
    from dashboard.windows import COMPARE_WINDOWS
    from tests.helpers import (
        assert_windows_match_logs, finish, launch_dir, launched, livetrain, server_state, training, traces, wait_for,
    )

    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp,softmax", "--epochs", "1000", "--limit", "6000",
                     "--set", "mlp.schedule=constant")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "mlp") and training(runs / "softmax"))
    # an epoch done by each: every window has its points when the replay below draws them
    wait_for(lambda: all(read(runs / label, keep_scalars=False).confusions for label in ("mlp", "softmax")))

    def control(*words: str) -> tuple[int, str, str]:
        return finish(livetrain(tmp_path, "control", *words), timeout=120)

    code, out, err = control("pause", str(runs / "mlp"))
    assert code == 0 and out.startswith("mlp: pause applied at batch "), out + err
    paused_at = int(out.split("batch ")[1].split(",")[0])
    code, out, err = control("set", str(runs / "mlp"), "lr=0.004")
    assert code == 0 and out.startswith(f"mlp: set applied at batch {paused_at},"), out + err  # while paused
    code, out, err = control("set", str(runs / "mlp"), "lr=-1")
    assert code == 2 and err.strip().startswith("Error: mlp: learning rate must be a positive number"), err
    assert read(runs / "mlp", keep_scalars=False).status == "paused"
    code, out, err = control("resume", str(runs / "mlp"))
    assert code == 0 and f"resume applied at batch {paused_at}," in out, out + err
    code, out, err = control("fork", str(runs / "mlp"), "--set", "lr=1e-4", "--set", "batch-size=64", "--label", "slow")
    assert code == 0 and out.startswith("mlp: fork applied at batch ") and "the fork slow starts from there" in out, err
    code, out, err = control("fork", str(runs / "mlp"), "--set", "seed=3")
    assert code == 2 and err.strip().startswith("Error: 'seed=3': write SETTING=VALUE with one of epochs, batch-size, "
                                                "optimizer, lr, loss, momentum, weight-decay, schedule"), err
    # an epoch done by the fork too (its test results, its confusion matrix), as by its parent
    # above: `livetrain control`, which starts in 0.1 s, would otherwise stop it before that
    wait_for(lambda: training(runs / "slow") and bool(read(runs / "slow", keep_scalars=False).confusions))
    code, out, err = control("stop", str(runs))  # every run of the launch, the fork too
    assert code == 0 and sorted(line.split(":")[0] for line in out.splitlines()) == ["mlp", "slow", "softmax"], out + err
    code, out, err = finish(proc, timeout=120)
    assert code == 1, out + err  # the runs did not finish: they were stopped
    mlp = read(runs / "mlp")
    assert mlp.status == "interrupted" and mlp.states[-1]["reason"].startswith(
        "stopped by `livetrain control`; its checkpoint at epoch ")
    lrs = [(row["step"], row["train/lr"]) for row in mlp.scalars if "train/lr" in row]
    assert {lr for step, lr in lrs if step <= paused_at} == {1e-3} and {lr for step, lr in lrs if step > paused_at} == {0.004}
    steps = [step for step, _ in lrs]
    assert steps == sorted(set(steps))  # no batch twice, none lost while paused
    assert [c["action"] for c in mlp.controls] == ["pause", "set", "resume", "fork", "stop"]
    assert (runs / "mlp" / CHECKPOINT).is_file()
    forked = mlp.controls[3]
    slow = read(runs / "slow")
    assert slow.meta["parent"] == {"run": "mlp", "x": forked["x"], "step": forked["step"]}
    assert (slow.config["lr"], slow.config["batch_size"], slow.config["schedule"]) == (1e-4, 64, "constant")
    assert slow.scalars[0]["x"] == pytest.approx(forked["x"] + 64 / 6000)  # it branches off where mlp was
    assert slow.status == "interrupted" and (runs / "slow" / CHECKPOINT).is_file()
    assert json.loads((runs / ".livetrain" / "launch.json").read_text())["runs"] == ["mlp", "softmax", "slow"]
    code, out, err = control("pause", str(runs / "mlp"))  # the launch has ended
    assert code == 1 and "is not running" in err

    url = visdom_server.config.url
    code, out, err = finish(livetrain(tmp_path, "replay", str(runs), "--visdom-url", url, "--env", "controlled"))
    assert code == 0, out + err
    state = server_state(url, "controlled")
    assert_windows_match_logs(state, [runs / "mlp", runs / "softmax", runs / "slow"], max_points=1000)
    (change,) = [c for c in mlp.controls if c["action"] == "set"]
    for window in (w for w in COMPARE_WINDOWS if not w.part):
        (mark,) = [name for name in traces(state, window.win) if " → " in name]
        assert mark == f"mlp: lr 0.001 → 0.004 at epoch {change['x']:.3g}", window.win


@pytest.mark.slow
def test_a_fork_queues_while_parallel_has_no_free_slot_and_starts_when_one_frees(tmp_path: Path) -> None:
    from dashboard.runlog import read
    from tests.helpers import finish, launch_dir, launched, livetrain, training, wait_for

    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp:a,mlp:b", "--epochs", "1000", "--limit", "3000",
                     "--parallel", "2")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "a") and training(runs / "b"))
    code, out, err = finish(livetrain(tmp_path, "control", "fork", str(runs / "a")), timeout=120)
    assert code == 0 and "the fork a-fork1 starts from there" in out, out + err
    wait_for(lambda: (runs / "a-fork1" / "log.jsonl").is_file() and read(runs / "a-fork1").states)
    assert read(runs / "a-fork1").status == "queued"  # a and b hold the two slots
    code, out, err = finish(livetrain(tmp_path, "control", "stop", str(runs / "a")), timeout=120)
    assert code == 0, out + err
    wait_for(lambda: training(runs / "a-fork1"))  # a's slot, freed
    code, out, err = finish(livetrain(tmp_path, "control", "stop", str(runs)), timeout=120)
    assert code == 0 and sorted(line.split(":")[0] for line in out.splitlines()) == ["a-fork1", "b"], out + err
    finish(proc, timeout=120)
    fork = read(runs / "a-fork1")
    assert [s["state"] for s in fork.states] == ["queued", "running", "interrupted"]
    assert fork.meta["parent"]["run"] == "a"


@pytest.mark.slow
def test_with_login_only_a_logged_in_page_can_control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Visdom closes an anonymous page's socket when its login is on: such a page sends no event;
    the launcher (logged in) still hears a logged-in page's."""
    import json

    import websocket

    from dashboard.connection import VisdomConnection
    from dashboard.runlog import read
    from dashboard.server import ServerConfig, start_background
    from tests.conftest import free_port
    from tests.helpers import finish, launch_dir, launched, livetrain, training, wait_for

    monkeypatch.setenv("VISDOM_USERNAME", "ada")
    monkeypatch.setenv("VISDOM_PASSWORD", "s3cret")
    server = start_background(ServerConfig(port=free_port(), env_dir=tmp_path / "visdom", login=True))
    url = server.config.url
    try:
        proc = livetrain(tmp_path, "run", "--models", "mlp", "--epochs", "1000", "--limit", "3000", "--visdom-url", url,
                         "--env", "locked", "--no-keep-serving")
        wait_for(lambda: launched(tmp_path / "runs"))
        runs = launch_dir(tmp_path / "runs")
        wait_for(lambda: training(runs / "mlp"))
        socket_url = url.replace("http", "ws") + "/socket"

        def event(ws: Any, field: int, value: str) -> None:
            ws.send(json.dumps({"cmd": "forward_to_vis", "data": {
                "event_type": "PropertyUpdate", "propertyId": field, "value": value, "target": "control",
                "eid": "locked"}}))

        anonymous = websocket.create_connection(socket_url, origin=url, timeout=10)
        with pytest.raises(websocket.WebSocketConnectionClosedException):  # closed by the server at once:
            assert anonymous.recv() == ""  # its close frame, not a "register" message: the page gets no
            anonymous.recv()  # session, so nothing it sends is forwarded
        page = VisdomConnection(url)  # a logged-in page: the login cookie
        page.login()
        cookie = "; ".join(f"{k}={v}" for k, v in page.cookies().items())
        ws = websocket.create_connection(socket_url, origin=url, timeout=10, header=[f"Cookie: {cookie}"])
        assert json.loads(ws.recv())["command"] == "register"
        def listening() -> bool:  # the pane has its controls once the launcher hears the page
            pane = json.loads(page.post("win_data", {"eid": "locked", "win": None})).get("control")
            return pane is not None and any(f.get("name") == "run" for f in pane["content"])

        wait_for(listening)
        event(ws, 0, "1")  # the run mlp
        event(ws, 2, "clicked")  # Pause
        wait_for(lambda: read(runs / "mlp", keep_scalars=False).status == "paused", timeout=60)
        event(ws, 1, "clicked")  # Stop
        code, out, err = finish(proc, timeout=120)
        assert [c["action"] for c in read(runs / "mlp").controls] == ["pause", "stop"], out + err
        ws.close()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_a_launcher_stopped_or_killed_stops_its_paused_runs_and_forks_too(tmp_path: Path, how: str) -> None:
    """A paused run waits between two batches for a request; SIGTERM to its launcher, or the
    launcher killed, stops it there as it stops a training one: its log ends with a status. So
    does a fork's, whose worker comes from a fork server started for it (its parent is that
    server, not the launcher)."""
    import signal

    from dashboard.launch.control import ask
    from dashboard.runlog import read
    from tests.helpers import children, finish, gone, launch_dir, launched, livetrain, training, wait_for

    proc = livetrain(tmp_path, "run", "--headless", "--models", "mlp,softmax", "--epochs", "1000", "--limit", "3000")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: training(runs / "mlp") and training(runs / "softmax"))
    ask(runs, "mlp", "pause", {})
    ask(runs, "softmax", "fork", {"lr": 0.05}, options={"label": "branch"})
    wait_for(lambda: read(runs / "mlp", keep_scalars=False).status == "paused" and training(runs / "branch"))
    everyone = [proc.pid, *children(proc.pid), *(grandchild for child in children(proc.pid)
                                                 for grandchild in children(child))]
    labels = ("mlp", "softmax", "branch")
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc, timeout=60)
        assert code == 143 and "Traceback" not in out + err, out + err
        for label in labels:
            record = read(runs / label, keep_scalars=False)
            assert record.status == "interrupted" and record.states[-1]["reason"].startswith("stopped by SIGTERM")
    else:
        launcher = proc.pid
        proc.kill()
        proc.wait()
        wait_for(lambda: all(read(runs / label, keep_scalars=False).status == "interrupted" for label in labels),
                 timeout=30)
        for label in labels:
            reason = read(runs / label, keep_scalars=False).states[-1]["reason"]
            assert reason.startswith(f"stopped: its launcher (pid {launcher}) died"), (label, reason)
    wait_for(lambda: gone(everyone), timeout=30)  # the fork server and the fork's worker too


def test_the_pane_has_its_controls_only_while_the_launcher_hears_the_page(tmp_path: Path) -> None:
    """A click the server forwards before the launcher listens reaches nobody: until then (and
    after the launcher's socket is lost) the pane shows no control to click."""
    from dashboard.launch.control import Desk
    from dashboard.launch.page import ControlPane

    class Marks:
        def __init__(self) -> None:
            self.marked: list[str] = []

        def mark(self, key: str) -> None:
            self.marked.append(key)

    desk = Desk(tmp_path, {"mlp": tmp_path / "mlp"}, {})
    pane, sender = ControlPane("env", ["mlp"], desk, {}), Marks()

    def names() -> list[str]:
        return [f["name"] for f in pane.message()["data"][0]["content"]]

    assert names() == ["control"]
    pane.hearing(True, sender)
    assert names() == ["run", "stop", "pause", "resume", "lr", "momentum", "weight decay", "fork with", "fork label",
                       "stop the parent", "fork"]
    pane.event(0, "1")  # the run mlp picked; a fork's settings typed, then Fork clicked
    assert pane.event(7, "lr=fast") is None and pane.event(9, True) is None
    refused = pane.event(10, "clicked")
    assert (refused.run, refused.refused, refused.usage) == ("mlp", "lr must be a number, not 'fast'", True)
    assert pane.stop_parent is True  # refused: what was typed stays, to be corrected
    pane.hearing(False, sender)
    assert names() == ["control"] and sender.marked == ["control", "control"]
    # the launch has ended: no control, in its place what has happened and how to train on
    pane.hearing(True, sender)
    pane.end(tmp_path / "runs" / "2026-12-04T101502", sender)
    (shown,) = pane.message()["data"]
    assert shown["type"] == "text" and sender.marked[-2:] == ["control", "control-requests"]
    assert "refused: lr must be a number" in pane.requests_message()["data"][0]["content"]  # the requests stay
    quiet = ControlPane("env", ["mlp"], Desk(tmp_path, {"mlp": tmp_path / "mlp"}, {}), {})
    quiet.end(tmp_path, sender)
    assert "No request was made while the launch ran." in quiet.requests_message()["data"][0]["content"]
    assert "This launch ended at " in shown["content"] and "nothing here to stop, pause, change or fork now" in \
        shown["content"] and f"livetrain run --resume {tmp_path / 'runs' / '2026-12-04T101502'}" in shown["content"]
