"""A run folder carried from a Ray node to the launcher's machine as it grows (dashboard.launch.cluster),
on folders here; tests/test_cluster_ray.py carries one from another node of a real Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dashboard.launch.cluster import CHUNK_BYTES, NODE_FILE, Chunk, FolderTail, apply, carried, follow


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def carry(tail: FolderTail, to: Path) -> list[Chunk]:
    chunks = tail.changes()
    for chunk in chunks:
        apply(to, chunk)
    return chunks


def test_appended_bytes_and_replaced_files_are_carried(tmp_path: Path) -> None:
    node, here = tmp_path / "node", tmp_path / "here"
    (node / "sub").mkdir(parents=True)
    tail = FolderTail(node)
    assert tail.changes() == []
    log = node / "log.jsonl"
    log.write_bytes(b'{"kind": "config"}\n{"kind": "scal')  # a record cut as it is written
    (node / ".checkpoint.pt.123.tmp").write_bytes(b"half")  # being written: not carried
    first = carry(tail, here)
    assert [(c.path, c.offset, c.whole) for c in first] == [("log.jsonl", 0, True)]
    with open(log, "ab") as f:
        f.write(b'ars", "step": 1}\n')
    os.replace(node / ".checkpoint.pt.123.tmp", node / "checkpoint.pt")
    (node / "sub" / "error.txt").write_text("Traceback ...\n")
    second = carry(tail, here)
    assert [(c.path, c.offset, c.whole) for c in second] == [
        ("checkpoint.pt", 0, True), ("log.jsonl", 33, False), ("sub/error.txt", 0, True)]
    assert carry(tail, here) == []  # nothing new
    new = node / ".checkpoint.pt.124.tmp"  # the next epoch's checkpoint, smaller, replaces it
    new.write_bytes(b"v2")
    os.replace(new, node / "checkpoint.pt")
    assert [(c.path, c.data) for c in carry(tail, here)] == [("checkpoint.pt", b"v2")]
    assert files(here) == files(node)


def test_a_file_replaced_on_its_old_inode_is_carried_whole(tmp_path: Path) -> None:
    """A file written aside and renamed into place may take the inode number its old self freed
    (it did, here, on a checkpoint: resumed, the launch's copy was damaged). The same inode,
    the same size: rewritten in place here, as that looks to the tail."""
    node, here = tmp_path / "node", tmp_path / "here"
    node.mkdir()
    tail = FolderTail(node)
    (node / "checkpoint.pt").write_bytes(b"epoch 1 weights")
    (node / "log.jsonl").write_bytes(b'{"x": 1}\n' * 10)
    carry(tail, here)
    ns = (node / "checkpoint.pt").stat().st_mtime_ns
    with open(node / "checkpoint.pt", "r+b") as f:
        f.write(b"epoch 2 weights")
    os.utime(node / "checkpoint.pt", ns=(ns + 1, ns + 1))  # a coarse clock: at least a tick later
    with open(node / "log.jsonl", "r+b") as f:  # a log cut back and written again, longer
        f.write(b'{"y": 2}\n' * 11)
    assert [(c.path, c.whole) for c in carry(tail, here)] == [("checkpoint.pt", True), ("log.jsonl", True)]
    assert files(here) == files(node)


def test_a_line_never_comes_before_a_file_written_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork's checkpoint is written, then its parent's log says it was: the line may not reach
    the launch before the file (the launcher would start the fork without its checkpoint). Here
    both are written between the tail's listing of the folder and its reads."""
    node, here = tmp_path / "node", tmp_path / "here"
    (node / "parent").mkdir(parents=True)
    (node / "parent" / "log.jsonl").write_bytes(b'{"step": 1}\n')
    tail = FolderTail(node)
    carry(tail, here)
    listed, calls = FolderTail._files, []

    def writer_between(self: FolderTail) -> list[Path]:
        files = listed(self)
        calls.append(1)
        if len(calls) == 2:  # once the files to read are listed: the checkpoint, then the line
            (node / "fork").mkdir()
            (node / "fork" / "checkpoint.pt").write_bytes(b"weights")
            with open(node / "parent" / "log.jsonl", "ab") as log:
                log.write(b'{"fork": "applied"}\n')
        return files

    monkeypatch.setattr(FolderTail, "_files", writer_between)
    first = carry(tail, here)
    assert b"applied" not in b"".join(c.data for c in first) or (here / "fork" / "checkpoint.pt").is_file()
    carry(tail, here)
    assert files(here) == files(node)


def test_a_long_log_comes_in_chunks_and_follow_ends_with_the_last(tmp_path: Path) -> None:
    node, here = tmp_path / "node", tmp_path / "here"
    node.mkdir()
    (node / "log.jsonl").write_bytes(b"")
    tail = FolderTail(node)
    carry(tail, here)
    (node / "log.jsonl").write_bytes(b"x" * (CHUNK_BYTES * 2 + 5))
    done = iter([False, True, True, True])
    sent = [c for chunks in follow(node, lambda: next(done), every=0) for c in chunks]
    # follow's own tail saw the log new (whole) at first sight, then the rest of it; a tail that had
    # seen it empty gets parts
    assert [(c.offset, len(c.data), c.whole) for c in sent] == [
        (0, CHUNK_BYTES, True), (CHUNK_BYTES, CHUNK_BYTES, False), (2 * CHUNK_BYTES, 5, False)]
    parts = []
    while chunks := tail.changes():
        parts += [(c.offset, len(c.data), c.whole) for c in chunks]
        for chunk in chunks:
            apply(here, chunk)
    assert parts == [(0, CHUNK_BYTES, False), (CHUNK_BYTES, CHUNK_BYTES, False), (2 * CHUNK_BYTES, 5, False)]
    assert files(here) == files(node)


def test_a_resumed_run_carries_its_folder_and_sends_back_only_what_it_adds(tmp_path: Path) -> None:
    """`carried`: the folder as it is here, whole, but the node it trained on before; on the node,
    a tail that knows it tells only what the run appends or replaces after."""
    here, node = tmp_path / "here", tmp_path / "node"
    here.mkdir()
    (here / "log.jsonl").write_bytes(b"1\n2\n")
    (here / "checkpoint.pt").write_bytes(b"weights")
    (here / NODE_FILE).write_text("lost-node\n")
    (here / ".checkpoint.pt.9.tmp").write_bytes(b"half")
    chunks = carried(here)
    assert sorted(c.path for c in chunks) == ["checkpoint.pt", "log.jsonl"] and all(c.whole for c in chunks)
    for chunk in chunks:
        apply(node, chunk)
    tail = FolderTail(node, known=True)
    assert tail.changes() == []
    with open(node / "log.jsonl", "ab") as log:
        log.write(b"3\n")
    assert tail.changes() == [Chunk("log.jsonl", 4, b"3\n", False)]


@pytest.mark.parametrize("path", ["../escape", "/etc/x", "a/../../b", ""])
def test_a_chunk_outside_its_folder_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="outside its run folder"):
        apply(tmp_path, Chunk(path, 0, b"x", True))
    assert list(tmp_path.iterdir()) == []


def test_cluster_bad_input_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """--cluster: an address that is none, a head that does not answer (Ray's own connect would
    wait for good), Ray not installed: one line each, saying what to do, nothing started."""
    import sys

    from click.testing import CliRunner

    import launch
    from tests.ray_cluster import unused_port

    def run(*args: str, models: str = "softmax") -> tuple[int, str]:
        result = CliRunner().invoke(launch.cli, ["run", "--models", models, "--headless", "--dry-run", *args])
        return result.exit_code, result.output.strip()

    port = unused_port()
    code, said = run("--cluster", f"127.0.0.1:{port}")
    assert code == 1 and said.startswith(f"Error: --cluster 127.0.0.1:{port}: no Ray head answers at 127.0.0.1:{port}")
    assert f"`ray start --head --port {port}`" in said and "\n" not in said
    code, said = run("--cluster", f"ray://127.0.0.1:{port}")
    assert code == 1 and said.startswith(f"Error: --cluster ray://127.0.0.1:{port}: no Ray head answers at ")
    assert f"`ray start --head --ray-client-server-port {port}`" in said
    code, said = run("--cluster", "http://head:10001")
    assert code == 2 and "give the head's HOST:PORT, or ray://HOST:PORT for its Ray Client server" in said
    code, said = run("--cluster", "ray", "--nproc", "2", models="mlp")
    assert code == 2 and "\n" not in said and said.startswith(
        "Error: run mlp trains on 2 processes (nproc), and a run on a cluster trains on one for now; drop --nproc, "
        "or train it without --cluster")
    code, said = run("--cluster", "head-without-port")
    assert code == 2 and said.startswith("Error: --cluster 'head-without-port': give the head's HOST:PORT")
    monkeypatch.setitem(sys.modules, "grpc", None)  # Ray without its client (ray[client])
    code, said = run("--cluster", "ray://head:10001")
    assert code == 1 and said == ("Error: --cluster ray://head:10001 needs Ray Client, which is not installed; "
                                  "install the ray extra: `pip install 'livetrain[ray]'`")
    monkeypatch.setitem(sys.modules, "ray", None)  # as where the extra is not installed
    code, said = run("--cluster", "ray")
    assert code == 1 and said == ("Error: --cluster needs Ray, which is not installed; install the ray extra: "
                                  "`pip install 'livetrain[ray]'` (`make setup` in a clone)")


@pytest.mark.parametrize("failures, connected", [(2, True), (3, False)])
def test_a_ray_client_server_that_fails_to_start_is_tried_again(monkeypatch: pytest.MonkeyPatch, failures: int,
                                                               connected: bool) -> None:
    """The head starts one Ray Client server per client, and on a busy head one can fail to start:
    the launcher tries again (3 tries in all), then says so in one line."""
    from dashboard.launch import on_ray

    class FakeRay:  # ray's module as connect() uses it
        tries = 0

        def is_initialized(self) -> bool:
            return self.tries > failures

        def init(self, **_: Any) -> None:
            self.tries += 1
            if self.tries <= failures:
                raise ConnectionAbortedError("Initialization failure from server:\nTraceback (most recent call last):\n"
                                             "RuntimeError: Starting Ray client server failed. See x.err")

    fake = FakeRay()
    monkeypatch.setattr(on_ray, "check_cluster", lambda address: None)
    monkeypatch.setattr(on_ray, "import_ray", lambda: fake)
    if connected:
        assert on_ray.connect("ray://head:10001") is fake and fake.tries == 3
    else:
        with pytest.raises(on_ray.ClusterError) as caught:
            on_ray.connect("ray://head:10001")
        assert fake.tries == 3 and str(caught.value) == (
            "--cluster ray://head:10001: Ray could not connect (RuntimeError: Starting Ray client server failed. "
            "See x.err); check the cluster, or give the head's HOST:PORT from a node")
