"""A run folder carried from another node of a real Ray cluster to the launcher's machine as it
grows (dashboard.launch.cluster): a head and a second node on this machine, started with Ray's own
commands (tests/ray_cluster.py); a task placed on the second node writes a run folder of its own,
and what arrives here is what it wrote, as it writes it; a real run trained there arrives whole;
the node killed mid-run, what had arrived stays and the stream says which node died."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.launch.cluster import NODE_FILE, Chunk, apply, follow, receive, train_on_node
from dashboard.launch.worker import WorkerSpec
from dashboard.runlog import read
from trainers.config import RunConfig
from tests.helpers import wait_for

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
    receive((ray.get(ref) for ref in task.remote(spec)), spec.run_dir)
    record = read(spec.run_dir)
    assert record.status == "finished" and record.config["label"] == "remote"
    assert [round(r["x"]) for r in record.scalars if "test/acc" in r][-1] == 2
    assert (spec.run_dir / "checkpoint.pt").is_file() and not (spec.run_dir / "error.txt").exists()
    node2 = next(n["NodeID"] for n in ray.nodes() if "node2" in n["Resources"])
    assert (spec.run_dir / NODE_FILE).read_text().splitlines()[0] == node2


def test_a_lost_node_keeps_what_had_arrived(cluster: Any, tmp_path: Path) -> None:
    """The second node killed mid-run: what it had sent stays, and the stream says the node died.
    Runs last: the node stays lost."""
    latch = Latch.remote()
    node2 = next(n["NodeID"] for n in ray.nodes() if "node2" in n["Resources"])
    stream = write_and_follow.options(num_returns="streaming").remote(latch, 50)
    first_line(stream, tmp_path)
    cluster.kill_node2()
    with pytest.raises(ray.exceptions.NodeDiedError, match=f"node ID: {node2}"):
        for ref in stream:
            for chunk in ray.get(ref):
                apply(tmp_path, chunk)
    assert (tmp_path / "log.jsonl").read_bytes() == LINE_0
