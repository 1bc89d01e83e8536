"""A run folder carried from another node of a real Ray cluster to the launcher's machine as it
grows (dashboard.launch.cluster): a head and a second node on this machine, started with Ray's own
commands (tests/ray_cluster.py); a task placed on the second node writes a run folder of its own,
and what arrives here is what it wrote, as it writes it; a real run trained there arrives whole;
the node killed mid-run, what had arrived stays and the stream says which node died."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard import windows
from dashboard.launch.cluster import (LAUNCHER_KILLED, NODE_FILE, Chunk, apply, follow, node_root, node_shown, receive,
                                      train_on_node)
from dashboard.launch.outlive import SPECS_FILE
from dashboard.launch.worker import WorkerSpec
from dashboard.runlog import read
from trainers.checkpoints import CHECKPOINT
from trainers.config import RunConfig
from tests.browser import needs_chromium
from tests.conftest import REPO
from tests.helpers import (assert_windows_match_logs, finish, launch_dir, launched, livetrain, server_state,
                           training, wait_for)

ray = pytest.importorskip("ray", reason="the ray extra is not installed (`make setup` installs it)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.ray_cluster import start_cluster

    # Ray's socket paths must stay short (AF_UNIX: 107 bytes): a short folder of its own
    started = start_cluster(Path(tempfile.mkdtemp(prefix="lt-ray-")))
    try:
        ray.init(address=started.address, logging_level="WARNING", log_to_driver=False)
        wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, timeout=120)
        yield started
    finally:
        ray.shutdown()
        started.stop()
        assert not started.pids()  # no process of the cluster left (its Ray Client servers too)


@ray.remote
class Latch:
    def __init__(self) -> None:
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def is_open(self) -> bool:
        return self.opened


@ray.remote(num_cpus=1, resources={"node2": 1}, max_retries=0)  # a run is never restarted behind one's back
def write_and_follow(latch: Any, lines: int) -> Iterator[list[Chunk]]:
    """On the second node: a run folder of its own (not the launcher's), a line written, then the
    rest once the latch opens; its changes followed as they come."""
    import threading

    node = Path(tempfile.mkdtemp(prefix="node2-run-"))

    def train() -> None:
        with open(node / "log.jsonl", "ab") as log:
            log.write(b'{"line": 0}\n')
            log.flush()
            while not ray.get(latch.is_open.remote()):
                pass
            for i in range(1, lines):
                log.write(b'{"line": %d}\n' % i)
                log.flush()
        (node / "checkpoint.pt").write_bytes(os.urandom(1000))

    thread = threading.Thread(target=train)
    thread.start()
    yield from follow(node, lambda: not thread.is_alive(), every=0.05)
    yield [Chunk("node.txt", 0, ray.get_runtime_context().get_node_id().encode(), True)]


LINE_0 = b'{"line": 0}\n'


def commands(pids: set[int]) -> list[str]:
    found = []
    for pid in pids:
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
        except OSError:  # ended as we looked
            pass
    return found


def first_line(stream: Any, here: Path) -> None:
    """What the node sends until its first line is here (it writes no more until the latch opens)."""
    log = here / "log.jsonl"
    while not log.is_file() or log.read_bytes() != LINE_0:
        for chunk in ray.get(next(stream)):
            apply(here, chunk)


def test_a_folder_on_another_node_arrives_here_as_it_grows(cluster: Any, tmp_path: Path) -> None:
    latch = Latch.remote()
    stream = write_and_follow.options(num_returns="streaming").remote(latch, 50)
    first_line(stream, tmp_path)  # while the run waits: records arrive as it goes, not at its end
    ray.get(latch.open.remote())
    for ref in stream:
        for chunk in ray.get(ref):
            apply(tmp_path, chunk)
    lines = (tmp_path / "log.jsonl").read_bytes().splitlines()
    assert lines == [b'{"line": %d}' % i for i in range(50)]
    assert len((tmp_path / "checkpoint.pt").read_bytes()) == 1000
    node2 = next(n["NodeID"] for n in ray.nodes() if "node2" in n["Resources"])
    assert (tmp_path / "node.txt").read_text() == node2  # it did run on the second node


def test_a_run_trains_on_another_node_and_its_folder_arrives_here(cluster: Any, tmp_path: Path) -> None:
    """A real run (softmax, 512 images, headless) placed on the second node: its log, checkpoint and
    node name arrive in its folder here, and the log reads as a local run's."""
    spec = WorkerSpec(RunConfig("softmax", epochs=2, limit=512, seed=0, threads=1, label="remote"), tmp_path / "remote")
    task = ray.remote(train_on_node).options(num_cpus=1, resources={"node2": 1}, max_retries=0,
                                             num_returns="streaming")
    receive((ray.get(ref) for ref in task.remote(spec)), spec.run_dir.parent)
    record = read(spec.run_dir)
    assert record.status == "finished" and record.config["label"] == "remote"
    assert [round(r["x"]) for r in record.scalars if "test/acc" in r][-1] == 2
    assert (spec.run_dir / "checkpoint.pt").is_file() and not (spec.run_dir / "error.txt").exists()
    node2 = next(n["NodeID"] for n in ray.nodes() if "node2" in n["Resources"])
    assert (spec.run_dir / NODE_FILE).read_text().splitlines()[0] == node2


def node_ids() -> dict[str, str]:
    """Alive node id -> "head" or "node2"."""
    return {n["NodeID"]: ("node2" if "node2" in n["Resources"] else "head") for n in ray.nodes() if n["Alive"]}


def test_a_sweep_on_the_cluster_is_live_on_the_page_and_whole_here(cluster: Any, visdom_server: Any,
                                                                    tmp_path: Path) -> None:
    """`livetrain run --cluster ray://...` (through the head's Ray Client server, as from a laptop):
    6 runs on the two nodes, live against the real server; every window equals its log, each run's
    folder here is complete and says which node trained it, and so does the runs table's node column."""
    url = visdom_server.config.url
    proc = livetrain(tmp_path, "run", "--models", "softmax", "--set", "softmax.lr=0.05,0.1,0.2,0.3,0.4,0.5",
                     "--epochs", "2", "--limit", "512", "--cluster", cluster.client_address, "--visdom-url", url,
                     "--env", "on-ray", "--no-keep-serving")
    code, out, err = finish(proc)
    assert code == 0, out + err + cluster.client_logs()
    runs = launch_dir(tmp_path / "runs")
    run_dirs = sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(run_dirs) == 6 and all(read(d).status == "finished" for d in run_dirs)
    queued = [d for d in run_dirs if read(d, keep_scalars=False).states[0]["state"] == "queued"]
    assert len(queued) == 4  # no --parallel: as many at once as the cluster has CPUs (2)
    assert all((d / "checkpoint.pt").is_file() for d in run_dirs)
    trained_on = {(d / NODE_FILE).read_text().splitlines()[0] for d in run_dirs}
    assert {node_ids()[n] for n in trained_on} == {"head", "node2"}  # Ray placed them on both
    state = server_state(url, "on-ray")
    assert_windows_match_logs(state, run_dirs)
    runs_pane = state[windows.RUNS_WIN]["content"]  # the node column: where each run trained
    assert ">node</th>" in runs_pane and all(node_shown(d) in runs_pane for d in run_dirs)
    assert all(not list(node_root().glob(f"{d.name}-*")) for d in run_dirs)  # the nodes' copies: removed


def test_a_launch_is_refused_when_a_node_cannot_reach_the_dashboard_or_no_node_has_a_gpu(cluster: Any) -> None:
    """What only the cluster can tell, before anything starts: a node asked (a task placed on
    each) cannot reach the dashboard; a run on cuda, and no node with a GPU. One line each."""
    from dashboard.launch.on_ray import ClusterError, preflight
    from tests.ray_cluster import unused_port

    port = unused_port()
    with pytest.raises(ClusterError) as refused:
        preflight(cluster.address, [], f"http://127.0.0.1:{port}")
    said = str(refused.value)
    assert said.startswith(f"the dashboard at http://127.0.0.1:{port} is not reachable from node ") and "\n" not in said
    assert "Connection refused" in said and f"--visdom-url http://{ray.util.get_node_ip_address()}:{port}`" in said
    with pytest.raises(ClusterError, match="^run g asks for a GPU .device cuda., and no node of the cluster has one"):
        preflight(cluster.address, [RunConfig(model="mlp", label="g", device="cuda")], None)


@pytest.mark.parametrize("sig, said, exitcode", [(signal.SIGINT, "stopped by Ctrl-C", 130),
                                                 (signal.SIGTERM, "stopped by SIGTERM", 143)])
def test_ctrl_c_stops_every_run_on_the_cluster(cluster: Any, tmp_path: Path, sig: int, said: str,
                                               exitcode: int) -> None:
    """A Ctrl-C (or a job scheduler's SIGTERM) to the launcher: each run on each node logs "stopped
    by Ctrl-C" (SIGTERM), its last records here, and the cluster's CPUs are free again (no task
    trains on unseen)."""
    proc = livetrain(tmp_path, "run", "--models", "softmax:a,mlp:b", "--epochs", "5000", "--limit", "2000",
                     "--headless", "--cluster", cluster.address, session=True)
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all(training(runs / label) for label in ("a", "b")))
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # a terminal's Ctrl-C reaches the whole group
    else:
        proc.send_signal(sig)  # a scheduler's SIGTERM, to the launcher alone
    code, out, err = finish(proc)
    assert code == exitcode, out + err
    for label in ("a", "b"):
        record = read(runs / label, keep_scalars=False)
        assert record.status == "interrupted" and record.states[-1]["reason"].startswith(said), label
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0)
    assert not [cmd for cmd in commands(cluster.pids()) if "ray::run_on_node" in cmd]  # no task of ours left


def test_control_pauses_sets_resumes_forks_and_stops_runs_on_the_cluster(cluster: Any, tmp_path: Path) -> None:
    """`livetrain control` (the page's path from the launcher on) on runs trained by the nodes:
    the launcher passes each request on to the run's node, the run applies it and its log says
    so here; a fork made on a node comes here with its checkpoint and trains on the cluster."""
    proc = livetrain(tmp_path, "run", "--models", "mlp:a,softmax:b", "--epochs", "1000", "--limit", "2000",
                     "--set", "a.schedule=constant", "--headless", "--cluster", cluster.address)
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all(training(runs / label) for label in ("a", "b")))

    def control(*words: str) -> tuple[int, str, str]:
        return finish(livetrain(tmp_path, "control", *words), timeout=120)

    code, out, err = control("pause", str(runs / "a"))
    assert code == 0 and out.startswith("a: pause applied at batch "), out + err
    paused_at = int(out.split("batch ")[1].split(",")[0])
    assert read(runs / "a", keep_scalars=False).status == "paused"
    code, out, err = control("set", str(runs / "a"), "lr=0.004")
    assert code == 0 and out.startswith(f"a: set applied at batch {paused_at},"), out + err
    code, out, err = control("resume", str(runs / "a"))
    assert code == 0 and f"resume applied at batch {paused_at}," in out, out + err
    code, out, err = control("fork", str(runs / "a"), "--set", "lr=1e-4", "--label", "slow", "--stop-parent")
    assert code == 0 and "the fork slow starts from there" in out, out + err
    wait_for(lambda: training(runs / "slow") and (runs / "slow" / NODE_FILE).is_file())  # on the CPU a freed
    code, out, err = control("stop", str(runs))
    assert code == 0 and sorted(line.split(":")[0] for line in out.splitlines()) == ["b", "slow"], out + err
    code, out, err = finish(proc)
    assert code == 1 and "Traceback" not in out + err, out + err
    a, slow = read(runs / "a"), read(runs / "slow")
    assert [c["action"] for c in a.controls] == ["pause", "set", "resume", "fork"]
    lrs = {row["train/lr"] for row in a.scalars if "train/lr" in row and row["step"] > paused_at}
    assert lrs == {0.004}
    forked = a.controls[3]
    assert slow.meta["parent"] == {"run": "a", "x": forked["x"], "step": forked["step"]}
    assert slow.config["lr"] == 1e-4 and slow.scalars[0]["x"] > forked["x"]  # it went on from a's point
    assert slow.status == "interrupted"
    sent = [json.loads(line)["action"] for line in (runs / "a" / "requests.jsonl").read_text().splitlines()]
    assert sent == ["pause", "set", "resume", "fork"]  # the launcher's, not overwritten by the node's copy


def test_a_run_that_raises_on_the_cluster_fails_alone_with_its_traceback_here(cluster: Any, tmp_path: Path) -> None:
    """A user's model that raises at its 5th batch, trained on the cluster: its run fails with the
    error as its reason, the traceback comes back in its error.txt, the other run finishes."""
    from tests.helpers import breaks_at_fifth_batch

    (tmp_path / "breaks.py").write_text(breaks_at_fifth_batch("True", "broke at its 5th batch"))
    code, out, err = finish(livetrain(tmp_path, "run", "--headless", "--models", "breaks.py:Breaks,softmax",
                                      "--epochs", "1", "--limit", "1024", "--cluster", cluster.address))
    assert code == 1 and "Traceback" not in out + err, out + err
    runs = launch_dir(tmp_path / "runs")
    assert read(runs / "Breaks").states[-1]["reason"] == "ValueError: broke at its 5th batch"
    assert "raise ValueError" in (runs / "Breaks" / "error.txt").read_text()  # its traceback, from its node
    assert read(runs / "softmax").status == "finished"


@needs_chromium
def test_a_stop_clicked_on_the_page_stops_the_runs_on_the_cluster(cluster: Any, visdom_server: Any,
                                                                  tmp_path: Path) -> None:
    """In a real browser: the runs table names each run's node, and Stop clicked in the Control
    pane reaches both runs on their nodes; each logs it, and the table says so."""
    from tests.browser import ARTIFACTS, Browser
    from tests.test_control_page import CONTROL, SELECT, button, pane

    url = visdom_server.config.url
    proc = livetrain(tmp_path, "run", "--models", "softmax:a,mlp:b", "--epochs", "5000", "--limit", "2000",
                     "--cluster", cluster.address, "--visdom-url", url, "--env", "ray-page", "--no-keep-serving")
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all(training(runs / label) and (runs / label / NODE_FILE).is_file() for label in ("a", "b")))
    with Browser(1600, 1200) as browser:
        browser.open(f"{url}/env/ray-page")
        runs_table = f"({pane('Runs')}).querySelector('table')"
        wait_for(lambda: browser.evaluate(f"!!({CONTROL}) && !!({SELECT}) && !!({runs_table})"))
        wait_for(lambda: all(node_shown(runs / label) in browser.evaluate(f"{runs_table}.textContent")
                             for label in ("a", "b")))
        browser.choose(SELECT, 0)  # all runs
        browser.click(button("Stop"))
        code, out, err = finish(proc)
        assert code == 1 and "Traceback" not in out + err, out + err
        for label in ("a", "b"):
            assert read(runs / label, keep_scalars=False).states[-1]["reason"].startswith("stopped from the page")
        wait_for(lambda: browser.evaluate(f"{runs_table}.textContent").count("stopped from the page") == 2)
        browser.screenshot(ARTIFACTS / "cluster-page.png")


@pytest.mark.parametrize("through", ["node", "ray-client"])
def test_kill_9_of_the_launcher_stops_every_run_on_the_cluster(cluster: Any, tmp_path: Path, through: str) -> None:
    """The launcher killed with SIGKILL: Ray kills the tasks it owned (at once; through Ray Client
    once the client's reconnect grace is over: 5 s here, 30 by default); the cluster's CPUs are
    free, no task of ours is left; the launch's relay actor, on the launcher's machine (through
    Ray Client, the launcher's sealing process: dashboard.launch.outlive), gives each log its
    final status and ends; and the next run on a node removes the folders the killed tasks left."""
    address = cluster.address if through == "node" else cluster.client_address
    proc = livetrain(tmp_path, "run", "--models", "softmax:a,mlp:b", "--epochs", "5000", "--limit", "2000",
                     "--headless", "--cluster", address, session=True, env={"RAY_CLIENT_RECONNECT_GRACE_PERIOD": "5"})
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all(training(runs / label) and (runs / label / NODE_FILE).is_file() for label in ("a", "b")))
    left = [p for p in node_root().iterdir() if p.name.startswith(("a-", "b-"))]
    assert len(left) == 2
    assert len([cmd for cmd in commands(cluster.pids()) if "ray::run_on_node" in cmd]) == 2  # Ray's titles
    proc.kill()
    proc.wait()
    wait_for(lambda: ray.available_resources().get("CPU") == 2.0)
    assert not [cmd for cmd in commands(cluster.pids()) if "ray::run_on_node" in cmd]
    wait_for(lambda: all(read(runs / label, keep_scalars=False).status == "interrupted" for label in ("a", "b")))
    assert all(read(runs / label, keep_scalars=False).states[-1]["reason"] == LAUNCHER_KILLED for label in ("a", "b"))
    wait_for(lambda: not [cmd for cmd in commands(cluster.pids()) if "ray::Relay" in cmd])  # it ended
    wait_for(lambda: not (runs / SPECS_FILE).exists())  # and the sealing process did
    code, out, err = finish(livetrain(tmp_path, "runs", "--log-dir", str(runs)))
    assert code == 0 and out.count("interrupted") == 2, out + err
    spec = WorkerSpec(RunConfig("softmax", epochs=1, limit=256, seed=0, threads=1, label="next"), tmp_path / "next")
    receive(ray.get(list(ray.remote(train_on_node).options(num_returns="streaming").remote(spec))), spec.run_dir.parent)
    assert not [p for p in left if p.exists()]


def test_a_lost_node_fails_its_run_and_the_others_go_on(cluster: Any, tmp_path: Path) -> None:
    """The second node killed mid-run (its raylet and what it started): the run it trained ends
    `failed: node N was lost` within seconds, what it had logged kept; the other trains on until
    stopped. `--resume` then finishes both on the node left, from their checkpoints (carried to
    it). Runs last: the node stays lost."""
    # its output to a file: Ray's driver writes a node's death to stderr at length, and a pipe
    # that no one reads while the test waits would fill and hold the launcher up
    output = open(tmp_path / "output.txt", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "run", "--models", "softmax:a,softmax:b",
                             "--epochs", "5000", "--limit", "2000", "--headless", "--cluster", cluster.address],
                            cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(lambda: launched(tmp_path / "runs"))
    runs = launch_dir(tmp_path / "runs")
    # each trained an epoch, and its checkpoint has come here (the resume below goes on from it)
    wait_for(lambda: all(training(runs / label) and (runs / label / NODE_FILE).is_file()
                         and (runs / label / CHECKPOINT).is_file() for label in ("a", "b")))
    placed = {label: node_ids()[(runs / label / NODE_FILE).read_text().splitlines()[0]] for label in ("a", "b")}
    assert sorted(placed.values()) == ["head", "node2"], placed  # one CPU each: one run on each node
    lost = next(label for label, node in placed.items() if node == "node2")
    other = next(label for label in placed if label != lost)
    logged_before = len(read(runs / lost).scalars)
    cluster.kill_node2()
    wait_for(lambda: read(runs / lost, keep_scalars=False).status == "failed")
    record = read(runs / lost)
    assert record.states[-1]["reason"].startswith("node ") and record.states[-1]["reason"].endswith(" was lost")
    assert len(record.scalars) >= logged_before  # what had arrived stays
    steps = len(read(runs / other).scalars)
    wait_for(lambda: len(read(runs / other).scalars) > steps)  # the other goes on
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)
    code = proc.wait(timeout=240)
    output.close()
    said = (tmp_path / "output.txt").read_text()
    assert code != 0 and "Traceback" not in said, said
    assert read(runs / other, keep_scalars=False).status == "interrupted"
    # resumed on the node left (the head): each from its last checkpoint, to a few epochs more
    epochs = 2 + max(int(read(runs / label, keep_scalars=False).x) for label in ("a", "b"))
    # --parallel 1: this machine's 2 cores for one run, on nodes of 1 CPU each: cut to 1 thread
    proc = livetrain(tmp_path, "run", "--resume", str(runs), "--epochs", str(epochs), "--headless",
                     "--parallel", "1", "--cluster", cluster.address)
    code, out, err = finish(proc)
    assert code == 0, out + err
    assert "a (resumed), b (resumed)" in out, out  # from their checkpoints, not from the start
    for label in ("a", "b"):
        record = read(runs / label)
        assert record.status == "finished" and record.x == epochs, (label, record.status, record.x)
        assert record.config["threads"] == 1
        assert node_ids()[(runs / label / NODE_FILE).read_text().splitlines()[0]] == "head"
    assert "failed" in [s["state"] for s in read(runs / lost, keep_scalars=False).states]  # its loss stays told
