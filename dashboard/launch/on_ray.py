"""A launch's runs on a Ray cluster (`--cluster`): each run one Ray task asking for the CPUs its
threads use, placed by Ray on any node, at most `parallel` at once (the rest queued, as on one
machine). Its folder comes back to the launch folder as it grows (dashboard.launch.cluster), so
the board, the terminal, `runs` and `replay` read it as a local run's; the run streams to the
page from its node.

Stops: a Ctrl-C, SIGTERM or SIGHUP to the launcher asks every run to stop (through a small Ray
actor each run's task looks at a few times a second); the run logs it as a local one does, and
its last records come back. A run not stopped within the grace, or a second Ctrl-C, has its task
killed. A node lost mid-run ends its runs `failed: node N was lost`; the others go on."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dashboard.launch.cluster import (FOLLOW_EVERY, NODE_FILE, Relay, carried, reaches, receive, run_on_node,
                                      warm_up)
from dashboard.launch.outlive import Outliver
from dashboard.launch.supervisor import StopRequests, Supervisor, queue
from dashboard.launch.worker import logged, seal_unfinished
from dashboard.runlog import REQUESTS
from trainers.config import ConfigError
from trainers.errors import EXIT_FAILED, EXIT_INTERRUPTED, LivetrainError
from trainers.reporting import RunState

RAY_EXTRA = "pip install 'livetrain[ray]'"
LOCAL = "ray"  # --cluster ray: RAY_ADDRESS, or a Ray of its own on this machine
# Ray Client's head starts a server process per client; on a busy head it can fail to (seen once
# on 2 busy cores: "Starting Ray client server failed"), and a second try starts another
CONNECT_TRIES = 3
CLIENT = "ray"  # --cluster ray://HOST:PORT: the head's Ray Client server (`ray start --ray-client-server-port`)


class ClusterError(LivetrainError):
    """The cluster cannot be used: not reachable, Ray missing, too small for a run."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--cluster needs Ray, which is not installed; install the ray extra: `{RAY_EXTRA}` "
                           "(`make setup` in a clone)") from None
    return ray


def gcs_address(address: str) -> tuple[str, int] | None:
    """The host and port `address` names ("HOST:PORT", the head's GCS; "ray://HOST:PORT", its
    Ray Client server); None for "ray" and "auto"."""
    if address in (LOCAL, "auto"):
        return None
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", CLIENT):
        raise ConfigError(f"--cluster {address}: give the head's HOST:PORT, or ray://HOST:PORT for its Ray "
                          "Client server")
    parsed = urllib.parse.urlsplit(f"//{rest}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None:
        raise ConfigError(f"--cluster {address!r}: give the head's HOST:PORT (e.g. 10.0.0.5:6379), or "
                          f"'{LOCAL}' for $RAY_ADDRESS or a Ray on this machine")
    return parsed.hostname, port


def check_cluster(address: str, configs: Sequence[Any] = (), warm: bool = False) -> None:
    """What a launch checks before it starts anything: each run can train as one Ray task, Ray is
    installed and the head answers (over TCP: Ray's own connect waits on an unreachable head
    for good). `warm`: then connect, and warm the nodes' Ray workers up (`warm_nodes`)."""
    for config in configs:
        if config.nproc > 1:
            raise ConfigError(f"run {config.label} trains on {config.nproc} processes (nproc), and a run on a "
                              "cluster trains on one for now; drop --nproc, or train it without --cluster")
    import_ray()
    target = gcs_address(address)
    client = address.startswith(f"{CLIENT}://")
    if client:
        try:
            import grpc  # noqa: F401 - what Ray Client speaks (ray[client])
        except ImportError:
            raise ClusterError(f"--cluster {address} needs Ray Client, which is not installed; install the ray "
                               f"extra: `{RAY_EXTRA}`") from None
    if target is not None:
        start = f"--ray-client-server-port {target[1]}" if client else f"--port {target[1]}"
        try:
            socket.create_connection(target, timeout=5).close()
        except OSError as exc:
            raise ClusterError(f"--cluster {address}: no Ray head answers at {target[0]}:{target[1]} "
                               f"({exc.strerror or exc}); start one with `ray start --head {start}`, "
                               "or check the address") from None
    if warm:
        warm_nodes(address)


def connect(address: str) -> Any:
    """Ray, connected to the cluster `address` names, as this process's driver."""
    check_cluster(address)
    ray = import_ray()
    given = None if address == LOCAL else address
    for attempt in range(CONNECT_TRIES):
        if ray.is_initialized():
            break
        try:
            ray.init(address=given or os.environ.get("RAY_ADDRESS") or None, logging_level="WARNING",
                     log_to_driver=False)
        except ConnectionAbortedError as exc:  # the head's Ray Client server for us did not start
            if attempt + 1 < CONNECT_TRIES:
                continue
            _cannot_connect(address, exc)
        except (ConnectionError, RuntimeError) as exc:
            _cannot_connect(address, exc)
    return ray


def _cannot_connect(address: str, exc: Exception) -> None:
    said = str(exc).strip().splitlines()
    raise ClusterError(f"--cluster {address}: Ray could not connect ({said[-1] if said else exc}); "
                       "check the cluster, or give the head's HOST:PORT from a node") from None


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's nodes that are alive, as ray.nodes() describes them."""
    return [n for n in ray.nodes() if n["Alive"]]


def on_node(ray: Any, node_id: str, soft: bool) -> Any:
    """The scheduling strategy that places a task on node `node_id` (or elsewhere, when `soft`)."""
    return ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id, soft=soft)


def warm_nodes(address: str) -> None:
    """Connect, and start on every CPU of every node a Ray worker importing what a run needs
    (torch, the trainers: seconds), while the launch goes on with its own checks; the runs'
    tasks then find them ready (Ray gives a job's idle workers its next tasks)."""
    ray = connect(address)
    task = ray.remote(warm_up)
    for node in alive_nodes(ray):
        for _ in range(int(node["Resources"].get("CPU", 0))):
            task.options(num_cpus=1, scheduling_strategy=on_node(ray, node["NodeID"], soft=True)).remote()


ANSWER_WITHIN = 120  # s: for each node's answer to the dashboard check (a Ray worker starting on a busy node)


def preflight(address: str, configs: Sequence[Any], url: str | None) -> int:
    """The checks that need the cluster itself, before anything starts: it has a node with a CPU
    (a run's threads are cut to its largest node's CPUs, see RaySupervisor), and one with a GPU
    for a run on cuda; every node reaches the dashboard at `url` (None: headless). A
    ClusterError for the first that fails; else the cluster's CPUs, all nodes together."""
    ray = connect(address)
    nodes = alive_nodes(ray)
    cpus = sum(int(n["Resources"].get("CPU", 0)) for n in nodes)
    if not any(n["Resources"].get("CPU") for n in nodes):
        raise ClusterError(f"the cluster at {address} has no node with a CPU to train on; start a node with CPUs "
                           "(`ray start --address HEAD:PORT --num-cpus N`)")
    for config in configs:
        if config.device == "cuda" and not any(n["Resources"].get("GPU") for n in nodes):
            raise ClusterError(f"run {config.label} asks for a GPU (device cuda), and no node of the cluster has "
                               "one; add a node with a GPU, or give device auto or cpu")
    if url is None:
        return cpus
    parsed = urllib.parse.urlsplit(url)
    target = (parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80))
    task = ray.remote(reaches)
    answers = {node["NodeID"]: task.options(num_cpus=0, scheduling_strategy=on_node(ray, node["NodeID"], soft=False))
               .remote(*target) for node in nodes}
    here = ray.util.get_node_ip_address()
    for node in nodes:
        name = f"{node['NodeManagerHostname']} ({node['NodeID'][:8]}, {node['NodeManagerAddress']})"
        try:
            why = ray.get(answers[node["NodeID"]], timeout=ANSWER_WITHIN)
        except ray.exceptions.GetTimeoutError:
            why = f"the node ran no task within {ANSWER_WITHIN} s"
        except ray.exceptions.RayError as exc:
            why = f"{type(exc).__name__}"
        if why:
            raise ClusterError(f"the dashboard at {url} is not reachable from node {name}: {why}; serve it on an "
                               f"address the nodes reach (`--host 0.0.0.0`) and pass `--visdom-url "
                               f"http://{here}:{target[1]}`, or train with --headless")
    return cpus


def check_nodes(address: str, configs: Sequence[Any], server: Any) -> int:
    """`preflight`, for a launch's check: a server this launch started is waited for first (a node
    asks it), and stopped when the launch is refused. The cluster's CPUs: how many runs train at
    once unless --parallel says."""
    started = server.started if server is not None else None
    try:
        if started is not None:
            started.wait_ready()
        return preflight(address, configs, server.url if server is not None else None)
    except BaseException:
        if started is not None:
            started.stop()
        raise


@dataclass
class RemoteRun:
    """A run's task and the thread that takes in what it sends; `exitcode` as a worker's, once it ended."""

    spec: Any
    task: Any = None  # its ObjectRef
    thread: threading.Thread | None = None
    exitcode: int | None = None
    node: str = ""
    forwarded: int = 0  # the bytes of its requests file here sent on to it

    def requests(self) -> bytes:
        """The whole lines its requests file here gained since the last call (the launch's
        requests to it, from the page or `livetrain control`; see dashboard.launch.control)."""
        try:
            with open(self.spec.run_dir / REQUESTS, "rb") as f:
                f.seek(self.forwarded)
                lines = f.read()
        except OSError:
            return b""
        lines = lines[:lines.rfind(b"\n") + 1]
        self.forwarded += len(lines)
        return lines

    def join(self, timeout: float | None = None) -> None:
        """As a worker process's: until what it sent is all here (Supervisor.exitcodes)."""
        if self.thread is not None:
            self.thread.join(timeout)


EXIT_OF = {RunState.FINISHED: 0, RunState.INTERRUPTED: EXIT_INTERRUPTED}
WATCH_EVERY = 1.0  # s: how often a waiting run's node is looked at


class NodeLost(Exception):
    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


class RaySupervisor(Supervisor):
    """`Supervisor`'s part, for runs on a Ray cluster: the same calls, and the same slots,
    stops and grace."""

    def __init__(self, specs: Sequence[Any], stops: StopRequests, parallel: int | None, address: str) -> None:
        super().__init__(specs, stops, parallel)
        self.address = address
        self.procs: list[RemoteRun] = []  # type: ignore[assignment]
        self._ended = threading.Event()
        self._ray: Any = None
        self._cpus = 1  # the largest node's CPUs, once started
        self._relay: Any = None
        self._outliver: Outliver | None = None
        self._task: Any = None

    def start(self) -> None:
        self._ray = ray = connect(self.address)
        # on the launcher's own node: lost with another node, it would take every run down with it
        here = on_node(ray, ray.get_runtime_context().get_node_id(), soft=False)
        # on this machine (not so through Ray Client): it outlives a launcher killed, to seal its logs
        mine = not ray.util.client.ray.is_connected()  # Ray Client: the head's node is not this machine
        self._relay = ray.remote(Relay).options(num_cpus=0, scheduling_strategy=here,
                                                lifetime="detached" if mine else None).remote(
            os.getpid() if mine else None, [absolute(spec) for spec in self.specs])
        # through Ray Client, a process here seals the logs if this launcher is killed
        self._outliver = None if mine else Outliver(self.specs[0].run_dir.parent, [absolute(s) for s in self.specs])
        self._task = ray.remote(run_on_node)
        self._cpus = max((int(n["Resources"].get("CPU", 0)) for n in alive_nodes(ray)), default=0) or 1
        for spec in self.specs[self.parallel:]:
            queue(spec)
        self._start_next(self.parallel)

    def add(self, spec: Any) -> None:
        self.specs.append(spec)
        queue(spec)
        self._relay.watch.remote(absolute(spec))
        if self._outliver is not None:
            self._outliver.add(absolute(spec))

    def _start_next(self, count: int) -> None:
        for spec in self.specs[len(self.procs):len(self.procs) + count]:
            if (spec.config.threads or 1) > self._cpus:  # this machine's share of its cores: no node has as many
                spec = replace(spec, config=replace(spec.config, threads=self._cpus))
            run = RemoteRun(spec)
            try:  # those sent to an earlier process of the run were for it
                run.forwarded = (spec.run_dir / REQUESTS).stat().st_size
            except OSError:
                pass
            # never retried: a run lost with its node is told, and resumed when asked
            # its folder as it is here goes with it: a resumed run's checkpoint, a queued one's log
            # (which says it was queued), appended to there as here
            carry = carried(spec.run_dir) if spec.run_dir.is_dir() else []
            run.task = self._task.options(num_cpus=spec.config.threads or 1,
                                          num_gpus=1 if spec.config.device == "cuda" else 0,
                                          max_retries=0).remote(spec, self._relay, carry)
            run.thread = threading.Thread(target=self._take_in, args=(run,), name=f"ray-{spec.config.label}",
                                          daemon=True)
            run.thread.start()
            self.procs.append(run)

    def _chunks(self, run: RemoteRun) -> Iterator[Any]:
        """What the run's task hands the relay, as it comes, until the task ended (then what it
        raised is raised: its node lost, cancelled, its worker dead). Waiting, it looks at the
        run's node every WATCH_EVERY s: Ray waits without end on a task of a lost node."""
        ray, name, looked = self._ray, run.spec.run_dir.name, time.monotonic()
        while True:
            ended = bool(ray.wait([run.task], timeout=FOLLOW_EVERY)[0])
            yield from ray.get(self._relay.take.remote(name))  # after its end: all it handed on
            if ended:
                ray.get(run.task)
                return
            if time.monotonic() - looked > WATCH_EVERY:
                self._check_node(run)
                looked = time.monotonic()

    def _check_node(self, run: RemoteRun) -> None:
        """Raise NodeLost when the node the run trains on (its NODE_FILE says) is not alive."""
        if not run.node:
            run.node = node_id_of(run.spec.run_dir)
        if run.node and not any(n["NodeID"] == run.node for n in alive_nodes(self._ray)):
            raise NodeLost(run.node)

    def _take_in(self, run: RemoteRun) -> None:
        ray = self._ray
        try:
            receive(self._chunks(run), run.spec.run_dir.parent)
            record = logged(run.spec)
            run.exitcode = EXIT_OF.get(record.status if record else "", EXIT_FAILED)
        except (NodeLost, ray.exceptions.NodeDiedError) as exc:
            node = exc.node if isinstance(exc, NodeLost) else (run.node or _node_of(str(exc)))
            seal_unfinished(run.spec, RunState.FAILED, f"node {node[:12] or '?'} was lost")
            run.exitcode = EXIT_FAILED
        except ray.exceptions.RayError as exc:  # killed after the grace, or its worker died
            if not self.stopping:
                seal_unfinished(run.spec, RunState.FAILED, f"its Ray task ended: {type(exc).__name__}")
            run.exitcode = EXIT_INTERRUPTED if self.stopping else EXIT_FAILED
        finally:
            if run.exitcode is None:
                run.exitcode = EXIT_FAILED
            self._ended.set()

    def step(self, timeout: float = 0.5) -> bool:
        alive = self._fill()
        if not alive:
            return False
        for run in alive:
            lines = run.requests()
            if lines:
                self._relay.send.remote(run.spec.run_dir.name, lines)
        if self._stop_now():
            self._relay.ask.remote(self.stops.reason)
        if self._kill_now():
            for run in alive:
                self._ray.cancel(run.task, force=True)
        self._ended.wait(timeout)
        self._ended.clear()
        return self._going()


def absolute(spec: Any) -> Any:
    """`spec` with its run folder absolute (for a process with another working folder)."""
    return replace(spec, run_dir=spec.run_dir.absolute())


def _node_of(message: str) -> str:
    """The node id in a NodeDiedError's message ("... node ID: abc..., ...")."""
    _, _, tail = message.partition("node ID: ")
    return tail.split(".")[0].split(",")[0].strip() if tail else ""


def node_id_of(run_dir: Path) -> str:
    """The Ray node a run trains on, from the NODE_FILE its task wrote ("" before it came)."""
    try:
        return (run_dir / NODE_FILE).read_text().split("\n", 1)[0].strip()
    except OSError:
        return ""
