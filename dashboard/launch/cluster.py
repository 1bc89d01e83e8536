"""Runs on a Ray cluster: a run folder carried from the node that trains it to the launcher's
machine as it grows, whether or not the two share a disk.

A run on a node writes its folder there as it would on one machine (the run log, appended record
by record; the checkpoint, replaced whole after each epoch; error.txt). `follow` watches that
folder and yields what changed, a few times a second, as `Chunk`s: the bytes appended to a file,
or a file replaced (its whole new content). On the launcher's machine `apply` writes each chunk
into the launch folder, so that the board, `livetrain runs` and `replay` read it as they read a
local run's, and a node lost mid-run loses at most what it wrote since its last yield.

`train_on_node` trains a run on a node and yields its folder's changes as they come; `run_on_node`,
a run's Ray task, hands each batch of them to the launch's relay actor (dashboard.launch.on_ray),
from which the launcher takes them, and `receive` writes them in on the launcher's machine. (Not
a Ray streaming task: Ray Client, `ray://`, refuses those.) Nothing here imports Ray at the
top: the caller wraps the task with `ray.remote` (see tests/test_cluster_ray.py, on a real
two-node cluster)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from dashboard.launch.outlive import LAUNCHER_KILLED, alive, seal_when_gone  # noqa: F401 - LAUNCHER_KILLED named here too
from dashboard.runlog import NODE_FILE, REQUESTS  # REQUESTS: the launch's requests to a run, sent on their own

CHUNK_BYTES = 4 << 20  # at most this much of one file in one chunk (a checkpoint is sent whole)
FOLLOW_EVERY = 0.25  # s between two looks at the folder


@dataclass(frozen=True)
class Chunk:
    """What changed in one file of a run folder."""

    path: str  # relative to the folder, '/'-separated
    offset: int  # where `data` goes in the file
    data: bytes
    whole: bool  # the file was created or replaced: `data` is all of it (offset 0)


def _written(name: str) -> bool:
    """A finished file, not one being written (the product writes to `.NAME.PID.tmp`, then renames)."""
    return not (name.startswith(".") and name.endswith(".tmp"))


APPENDED = ".jsonl"  # the files a run only appends to (its log); it replaces every other one whole
TAIL_BYTES = 64  # of an appended file, the last bytes sent: still there, it was appended to, not replaced


class FolderTail:
    """What changed in a folder since the last look: each log's appended bytes, or the whole of a
    file that is new or was replaced. A replaced file may take the inode number its old self
    freed: a log is known replaced when it is shorter or the last bytes sent are not where they
    were, any other file (a checkpoint) when its inode, size or modification time changed. `known`:
    what is in the folder now is there already (carried to it), and only what changes after is told."""

    def __init__(self, root: Path, known: bool = False, skip: tuple[str, ...] = ()) -> None:
        self.root = root
        self.skip = skip  # the names of files not told (what comes the other way)
        self._sent: dict[str, tuple[tuple[int, int, int], int, bytes]] = {}  # path -> (stat, bytes sent, their end)
        if known:
            self.changes()

    def _files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file() and _written(p.name) and p.name not in self.skip)

    def changes(self) -> list[Chunk]:
        # a log's lines as far as they were before the files were listed: a file written before
        # a line (a fork's checkpoint, then the line saying it was made) comes with it or first
        upto = {p: p.stat().st_size for p in self._files() if p.name.endswith(APPENDED)}
        chunks = []
        for path in self._files():
            rel = path.relative_to(self.root).as_posix()
            appended = rel.endswith(APPENDED)
            try:
                with open(path, "rb") as f:
                    stat = os.fstat(f.fileno())
                    seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                    before, sent, end = self._sent.get(rel, ((-1, -1, -1), 0, b""))
                    if not appended:
                        whole = seen != before
                    else:
                        f.seek(sent - len(end))
                        whole = seen[0] != before[0] or stat.st_size < sent or f.read(len(end)) != end
                    if not whole and not appended:
                        continue
                    start = 0 if whole else sent
                    f.seek(start)
                    data = f.read() if not appended else f.read(max(0, min(upto.get(path, 0) - start, CHUNK_BYTES)))
            except FileNotFoundError:  # replaced or removed as we looked: the next look sees it
                continue
            if data or whole:
                chunks.append(Chunk(rel, start, data, whole))
                total = start + len(data)
                end = (end + data)[-TAIL_BYTES:] if not whole else data[-TAIL_BYTES:]
                self._sent[rel] = (seen, total, end)
        return chunks


def follow(root: Path, done: Callable[[], bool], every: float = FOLLOW_EVERY, tail: FolderTail | None = None,
           pause: Callable[[float], Any] = time.sleep) -> Iterator[list[Chunk]]:
    """The changes in `root` as they come (those `tail` has not told yet), until `done()` is true;
    then the last of them. Between two looks, `pause(every)` (one that returns early, such as a
    thread's join, makes the last look sooner)."""
    tail = tail or FolderTail(root)
    while True:
        finished = done()
        chunks = tail.changes()
        if chunks:
            yield chunks
        more = any(len(c.data) == CHUNK_BYTES for c in chunks)  # the rest of a long log
        if finished and not more:
            return
        if not more:
            pause(every)


def apply(root: Path, chunk: Chunk) -> Path:
    """Write `chunk` into the folder `root` (made as needed). A whole file is written aside and
    renamed into place, so that a reader never sees half of a replaced checkpoint."""
    parts = PurePosixPath(chunk.path).parts
    if not parts or any(part in ("", ".", "..") for part in parts) or PurePosixPath(chunk.path).is_absolute():
        raise ValueError(f"a chunk for {chunk.path!r}, outside its run folder")
    path = root.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    if chunk.whole:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(chunk.data)
        os.replace(tmp, path)
    else:
        with open(path, "r+b" if path.exists() else "wb") as f:
            f.seek(chunk.offset)
            f.write(chunk.data)
    return path




def node_shown(run_dir: Path) -> str:
    """The node a run trains on, as the runs table shows it ("host abcd1234": its host and the start
    of its Ray node id, as `ray status` writes it); "" for a run on this machine."""
    try:
        node_id, host = ((run_dir / NODE_FILE).read_text().splitlines() + ["", ""])[:2]
    except OSError:
        return ""
    return f"{host} {node_id[:8]}".strip()


def carried(run_dir: Path) -> list[Chunk]:
    """A run's folder as it is here (a queued run's log; a resumed one's, and its checkpoint),
    whole files, to carry to the node that trains it on; not NODE_FILE, which names the node it trained on before, nor
    the requests sent to it."""
    return [Chunk(path.relative_to(run_dir).as_posix(), 0, path.read_bytes(), True)
            for path in sorted(run_dir.rglob("*"))
            if path.is_file() and _written(path.name) and path.name not in (NODE_FILE, REQUESTS)]


def node_root() -> Path:
    """Where runs on this node keep their folders while they train: one each, named after the
    run and the pid of the Ray worker that trains it."""
    return Path(tempfile.gettempdir()) / "livetrain-on-node"


def node_folder(label: str) -> Path:
    """A folder for a run to train into on this node; first, the folders of tasks that died
    without removing theirs (killed when their launcher was, or cancelled) are removed: what
    they held came back to their launch as they wrote it."""
    root = node_root()
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        pid = old.name.rsplit("-", 2)[-2] if old.name.count("-") >= 2 else ""
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{label}-{os.getpid()}-", dir=root))


def train_on_node(spec: Any, stops: Any = None, carry: Iterable[Chunk] = ()) -> Iterator[list[Chunk]]:
    """A run's Ray task: train `spec` (a WorkerSpec) on a thread, into a launch folder of this
    node's own (the run's folder in it, named as in the launch; a fork it makes goes beside it,
    as in the launch), and yield that folder's changes as they come, paths relative to it; the
    first names the node (NODE_FILE). What the run raises goes to its error.txt, as a local
    worker's does. `carry`: the run's folder as the launch has it (`carried`: a queued run's log,
    a resumed one's log and checkpoint), written there first: the run appends to its log (and
    resumes from its checkpoint), and only what it adds comes back.

    `stops`: the launch's relay actor (dashboard.launch.on_ray), looked at on every pass: the
    requests the launch sent the run since the last look (from the page or `livetrain
    control`) go to the run's requests file, which it reads as a local run does; once the actor
    gives a reason to stop, the run is interrupted between two steps, as a local worker is by a
    stop signal, and logs it."""
    import ray  # there, in a Ray worker

    from dashboard.launch import worker
    from dashboard.launch.worker import ERROR_FILE, run

    worker._stopped_by = ""  # this Ray worker's last task's, if any
    node_id = ray.get_runtime_context().get_node_id()
    box = node_folder(spec.config.label)
    here = box / spec.run_dir.name
    here.mkdir()
    for chunk in carry:
        apply(here, chunk)
    tail = FolderTail(box, known=True, skip=(REQUESTS,))
    (here / NODE_FILE).write_text(f"{node_id}\n{socket.gethostname()}\n")
    local = replace(spec, run_dir=here, launcher=None)

    def train() -> None:
        try:
            run(local)
        except KeyboardInterrupt:  # stopped (see done): logged as interrupted by run()
            pass
        except BaseException:  # noqa: BLE001 - run() logged the status; the details go next to the log
            (here / ERROR_FILE).write_text(traceback.format_exc())

    thread = threading.Thread(target=train, name=f"livetrain-{spec.config.label}")
    thread.start()
    asked, got, look = "", 0, None

    def done() -> bool:
        # never waiting on the relay: Ray lends the CPUs of a task waiting in ray.get to other
        # tasks, and would place a second run on this node's CPU (ray.wait with no timeout is
        # no wait; ray.get of what is ready returns at once)
        nonlocal asked, got, look
        if stops is not None and not asked and thread.is_alive():
            look = look or stops.look.remote(spec.run_dir.name, got)
            if ray.wait([look], timeout=0)[0]:
                try:
                    asked, news = ray.get(look)
                except ray.exceptions.RayError:  # the launcher's node (where the actor lives) is gone: no one asks
                    news = b""
                look = None
                if news:
                    with open(here / REQUESTS, "ab") as requests:
                        requests.write(news)
                    got += len(news)
            if asked:
                worker._stopped_by = asked  # what run() logs the interruption as
                interrupt(thread)
        return not thread.is_alive()

    try:
        yield from follow(box, done, tail=tail, pause=thread.join)  # its end seen at once
    finally:
        if thread.is_alive():  # what it yields can no longer be handed on (its launcher is gone): it stops
            worker._stopped_by = worker._stopped_by or "its launcher is gone"
            interrupt(thread)
            thread.join(30)
        shutil.rmtree(box, ignore_errors=True)  # all of it is in the launch folder by now


def run_on_node(spec: Any, relay: Any, carry: Iterable[Chunk] = ()) -> None:
    """A run's Ray task: `train_on_node`, each batch of changes handed to the launch's relay
    actor in turn (an actor runs one caller's calls in order: they arrive in order). What it
    handed on is looked at without waiting (see train_on_node's `done`): a relay gone, its
    launcher with it, ends the run; at the end it waits for all of it."""
    import ray  # there, in a Ray worker

    sent: list[Any] = []
    for batch in train_on_node(spec, relay, carry):
        sent.append(relay.put.remote(spec.run_dir.name, batch))
        arrived, sent = ray.wait(sent, num_returns=len(sent), timeout=0)
        ray.get(arrived)  # ready: at once; raises if the relay is gone
    ray.get(sent)


def interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt in `thread` (at its next Python step), as a stop signal does in a
    local worker's main thread."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident or 0), ctypes.py_object(KeyboardInterrupt))


class Relay:
    """A Ray actor (`ray.remote(Relay)`) on the launcher's node, between the launch and its runs'
    tasks: why the launch asks its runs to stop ("" while it does not), the requests it sent each
    run (its requests file's lines), and each run's folder changes not yet taken; by the run's
    folder name.

    `launcher`: the launcher's pid, when the actor runs on its machine (detached then, so as to
    outlive it): once that process is gone (killed with SIGKILL, say, when it writes no final
    status and Ray kills its runs' tasks), each run of `specs` whose log has no final status gets
    one, "interrupted: stopped: its launcher was killed", and the actor ends."""

    def __init__(self, launcher: int | None = None, specs: Iterable[Any] = ()) -> None:
        self.reason = ""
        self.requests: dict[str, bytes] = {}
        self.changes: dict[str, list[Any]] = {}
        self.specs: list[Any] = []
        for spec in specs:
            self.watch(spec)
        if launcher is not None:
            threading.Thread(target=self._outlive, args=(launcher,), daemon=True).start()

    def watch(self, spec: Any) -> None:
        """One more run of the launch (a fork) to seal. Its folder, absolute: an actor's working
        folder is not its launcher's."""
        if not spec.run_dir.is_absolute():
            raise ValueError(f"a run folder to seal must be absolute, not {spec.run_dir}")
        self.specs.append(spec)

    def _outlive(self, launcher: int) -> None:
        try:
            seal_when_gone(launcher, lambda: self.specs)
        except BaseException:  # noqa: BLE001 - told in the actor's log (Ray's worker-*.err)
            traceback.print_exc()
        finally:
            os._exit(0)  # a detached actor ends only when it ends itself

    def put(self, name: str, batch: Any) -> None:
        self.changes.setdefault(name, []).append(batch)

    def take(self, name: str) -> list[Any]:
        return self.changes.pop(name, [])

    def ask(self, reason: str) -> None:
        self.reason = self.reason or reason

    def asked(self) -> str:
        return self.reason

    def send(self, name: str, lines: bytes) -> None:
        self.requests[name] = self.requests.get(name, b"") + lines

    def look(self, name: str, got: int) -> tuple[str, bytes]:
        """Why to stop, and the requests for run `name` past the `got` bytes it has."""
        return self.reason, self.requests.get(name, b"")[got:]


def warm_up() -> None:
    """A task that imports what a run's task needs, in the Ray worker that will take one (see
    dashboard.launch.on_ray.warm_nodes)."""
    from dashboard.launch import worker  # noqa: F401 - torch and the trainers with it


def reaches(host: str, port: int) -> str:
    """A task run on each node before a launch starts: why `host:port` (the dashboard) cannot be
    reached from here; "" when it can."""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def receive(chunks: Iterable[list[Chunk]], launch_dir: Path) -> None:
    """Write what a run's task yields into the launch folder here, as it comes, until the task
    ends (what the stream raises, such as Ray's NodeDiedError, is the caller's to tell)."""
    for batch in chunks:
        for chunk in batch:
            apply(launch_dir, chunk)
