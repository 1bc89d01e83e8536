"""What gives a cluster launch's logs their final status when its launcher is killed (kill -9):
the launcher writes none then, and Ray kills the runs' tasks. The launch's relay actor does it
when it runs on the launcher's machine (dashboard.launch.cluster.Relay); through Ray Client
(`--cluster ray://`) the relay is on the head, so a small process here does: `Outliver`, started
with the launch, waits for the launcher's pid to end, seals each log that has no final status
("interrupted: stopped: its launcher was killed"), and ends. After a launch that ended well it
finds every log sealed, and only ends.

    python -m dashboard.launch.outlive LAUNCHER_PID SPECS_FILE"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SPECS_FILE = ".outlive-specs.pkl"  # in the launch folder: the runs to seal, forks included
LAUNCHER_LOOK = 1.0  # s between looks for the launcher (the relay's, or the sealing process's)
LAUNCHER_KILLED = "stopped: its launcher was killed"


def alive(pid: int) -> bool:
    """Whether process `pid` is running (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: not ours to remove
        return True
    return True


def seal_when_gone(launcher: int, specs: Callable[[], list[Any]]) -> None:
    """Wait for process `launcher` to end; then give each of `specs()` (WorkerSpecs, folders
    absolute) whose log has no final status LAUNCHER_KILLED (a run with no log yet: nothing)."""
    while alive(launcher):
        time.sleep(LAUNCHER_LOOK)
    from dashboard.launch.worker import seal_unfinished
    from trainers.reporting import RunState

    for spec in specs():
        try:
            seal_unfinished(spec, RunState.INTERRUPTED, LAUNCHER_KILLED, logless=False)
        except OSError:  # its folder gone: nothing to seal
            pass


class Outliver:
    """This launcher's sealing process, for a launch through Ray Client; `add` a fork's spec."""

    def __init__(self, folder: Path, specs: list[Any]) -> None:
        self.file = folder.absolute() / SPECS_FILE
        self.specs = list(specs)
        self._write()
        root = str(Path(__file__).resolve().parents[2])  # where `dashboard` imports from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen([sys.executable, "-m", "dashboard.launch.outlive", str(os.getpid()),
                                         str(self.file)], env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def add(self, spec: Any) -> None:
        self.specs.append(spec)
        self._write()

    def _write(self) -> None:
        partial = self.file.with_name(self.file.name + ".partial")
        partial.write_bytes(pickle.dumps(self.specs))
        os.replace(partial, self.file)


def main(argv: list[str]) -> None:
    launcher, file = int(argv[1]), Path(argv[2])

    def specs() -> list[Any]:
        return pickle.loads(file.read_bytes())  # noqa: S301 - written by this launch's launcher, for this

    try:
        seal_when_gone(launcher, specs)
    finally:
        file.unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv)
