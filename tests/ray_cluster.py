"""A real Ray cluster on this machine, for the tests: a head (with its Ray Client server) and a
second node (two raylets on this machine's address, one CPU each; the second has the resource
"node2" to place a task on it), started with Ray's own commands (`ray start`), its session
files in a folder of the test's. Stopped by the pids of what it started, never with `ray stop`
(which stops every Ray process on the machine, a user's too)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
NODE2 = "node2"  # the second node's resource


def unused_port() -> int:
    """A port nothing listens on now (Ray's servers bind without SO_REUSEADDR: not free_port's)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rpartition(")")[2].split()[1]), cmdline)
    return found


def _with_descendants(roots: set[int], processes: dict[int, tuple[int, str]]) -> set[int]:
    found, grew = set(roots), True
    while grew:
        more = {pid for pid, (parent, _) in processes.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


@dataclass
class LocalCluster:
    address: str  # what ray.init(address=...) and `--cluster` take
    temp_dir: Path
    client_address: str = ""  # the head's Ray Client server: ray://HOST:PORT

    def pids(self, marker: str | None = None) -> set[int]:
        """The processes of this cluster (those whose command line names its folder or its head's
        GCS port, such as its Ray Client servers, and what they started); with `marker`, only
        those whose command line also holds it, and theirs."""
        port = self.address.rpartition(":")[2]
        ours = re.compile(rf"{re.escape(str(self.temp_dir))}|--address=\S+:{port}(\s|$)")
        processes = _processes()
        roots = {pid for pid, (_, cmd) in processes.items()
                 if ours.search(cmd) and (marker is None or marker in cmd) and pid != os.getpid()}
        return _with_descendants(roots, processes)

    def client_logs(self) -> str:
        """The end of each of the head's Ray Client server logs (why one did not start)."""
        return "".join(f"\n== {f.name}:\n{f.read_text(errors='replace')[-1500:]}"
                       for f in sorted(self.temp_dir.glob("session_*/logs/ray_client_server*.err")))

    def kill(self, pids: set[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_node2(self) -> None:
        """The second node lost: its raylet and everything it started, killed."""
        self.kill(self.pids(f"--static_resource_list={NODE2},"))

    def stop(self) -> None:
        for _ in range(3):  # what a dying process starts as it goes, too
            pids = self.pids()
            if not pids:
                return
            self.kill(pids)
            time.sleep(0.5)


def start_cluster(temp_dir: Path) -> LocalCluster:
    """A head and a second node, as a user starts them; raises with Ray's output if either fails."""
    port, client = unused_port(), unused_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = LocalCluster(f"127.0.0.1:{port}", temp_dir, f"ray://127.0.0.1:{client}")
    commands = (
        [str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
         "--temp-dir", str(temp_dir), "--disable-usage-stats", "--ray-client-server-port", str(client)],
        [str(RAY), "start", "--address", cluster.address, "--num-cpus", "1", "--resources", f'{{"{NODE2}": 1}}',
         "--disable-usage-stats"],
    )
    try:
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command[:3])} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    except BaseException:
        cluster.stop()
        raise
    return cluster
