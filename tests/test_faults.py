"""Faults users meet, through `launch.py` as a process: a job scheduler's SIGTERM, the launcher
killed outright (its workers and its server must not run on unnoticed), and the disk that holds
the run logs filling up mid-run. Plus the full disk injected into a checkpoint write."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard.runlog import LOG_NAME, read
from dashboard.server import ServerProcess
from tests.conftest import REPO, free_port
from tests.helpers import (
    assert_windows_match_logs, finish, launch_dir, launched, livetrain, server_state, training, wait_for,
    worker_of,
)
from trainers import checkpoints, loop
from trainers.config import RunConfig
from dashboard.launch.worker import DiskFull, disk_full

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a reparented child its new parent may never reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def started(tmp_path: Path, labels: tuple[str, ...], *args: str) -> tuple[subprocess.Popen[str], Path]:
    proc = livetrain(tmp_path, "run", "--models", ",".join(labels), "--epochs", "40", "--limit", "6000", *args)
    wait_for(lambda: launched(tmp_path / "runs") or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    runs = launch_dir(tmp_path / "runs")
    wait_for(lambda: all(training(runs / label) for label in labels))
    return proc, runs


@pytest.mark.parametrize("sig, said", [(signal.SIGTERM, "stopped by SIGTERM"),
                                       (signal.SIGHUP, "stopped: the terminal was closed (SIGHUP)")])
def test_sigterm_or_sighup_to_the_launcher_stops_the_runs_as_ctrl_c_does_and_says_so(
        visdom_server: ServerProcess, tmp_path: Path, sig: signal.Signals, said: str) -> None:
    url, env = visdom_server.config.url, f"stopped-{sig.name}"
    proc, runs = started(tmp_path, ("mlp", "cnn"), "--visdom-url", url, "--env", env)
    wait_for(lambda: all(read(runs / label, keep_scalars=False).predictions for label in ("mlp", "cnn")))
    proc.send_signal(sig)
    code, out, err = finish(proc, timeout=60)
    assert code == 128 + sig, out + err
    assert "Traceback" not in err and f"Interrupted ({said})" in out and "--resume" in out
    for label in ("mlp", "cnn"):
        record = read(runs / label)
        assert record.status == "interrupted", label
        assert record.states[-1]["reason"].startswith(said), record.states[-1]
    # the page holds what the logs hold
    assert_windows_match_logs(server_state(url, env), [runs / "mlp", runs / "cnn"], max_points=1000)


def test_a_killed_launcher_leaves_no_worker_or_server_running(tmp_path: Path) -> None:
    for attempt in range(3):  # a port picked free may be taken before the launcher binds it: pick again
        try:
            proc, runs = started(tmp_path, ("mlp", "cnn"), "--port", str(free_port()),
                                 "--env-dir", str(tmp_path / "visdom"), "--no-keep-serving")
            break
        except AssertionError as exc:
            if "in use" not in str(exc) or attempt == 2:
                raise
    workers = {label: worker_of(proc.pid, runs / label) for label in ("mlp", "cnn")}
    servers = [pid for pid in children(proc.pid) if b"dashboard.server" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(servers) == 1
    launcher = proc.pid
    proc.kill()  # kill -9: it can stop nothing itself
    proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in [*workers.values(), *servers]), timeout=20)
    for label in workers:
        record = read(runs / label)
        assert record.status == "interrupted", label
        assert record.states[-1]["reason"].startswith(f"stopped: its launcher (pid {launcher}) died"), record.states
    assert "has ended; stopping" in (tmp_path / "visdom" / "server.log").read_text()


def test_a_killed_launchers_workers_stop_and_their_windows_equal_their_logs(
        visdom_server: ServerProcess, tmp_path: Path) -> None:
    url, env = visdom_server.config.url, "orphans"
    proc, runs = started(tmp_path, ("mlp", "cnn"), "--visdom-url", url, "--env", env)
    wait_for(lambda: all(read(runs / label, keep_scalars=False).predictions for label in ("mlp", "cnn")))
    workers = [worker_of(proc.pid, runs / label) for label in ("mlp", "cnn")]
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=20)
    assert all(read(runs / label).status == "interrupted" for label in ("mlp", "cnn"))
    assert_windows_match_logs(server_state(url, env), [runs / "mlp", runs / "cnn"], max_points=1000)


def test_a_full_disk_ends_the_run_failed_and_says_where(visdom_server: ServerProcess, tmp_path: Path,
                                                        small_disk: Path) -> None:
    url = visdom_server.config.url
    code, out, err = finish(livetrain(tmp_path, "run", "--models", "mlp", "--epochs", "20", "--limit", "2000",
                                      "--log-dir", str(small_disk / "runs"), "--visdom-url", url,
                                      "--env", "full-disk"), timeout=120)
    assert code == 1, out + err
    assert "Traceback" not in err + out
    assert "mlp failed: no space left on the disk holding" in out and str(small_disk) in out, out
    run_dir = launch_dir(small_disk / "runs") / "mlp"
    assert not list(run_dir.glob("*.tmp")), list(run_dir.iterdir())  # no temporary file remains
    record = read(run_dir)
    assert record.skipped == 0 and record.config and record.scalars  # readable up to the failure
    assert record.status == "failed" and "no space left on the disk holding" in record.states[-1]["reason"]
    assert 1 <= record.x < 20  # it trained, and stopped at the full disk
    assert_windows_match_logs(server_state(url, "full-disk"), [run_dir], max_points=1000)


def test_a_checkpoint_on_a_full_disk_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FullDisk:
        def __init__(self, path: Path, mode: str) -> None:
            self.handle = open(path, mode)  # noqa: SIM115

        def __enter__(self) -> "FullDisk":
            return self

        def write(self, data: Any) -> int:
            self.handle.write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __exit__(self, *exc: Any) -> None:
            self.handle.close()

    monkeypatch.setattr(checkpoints, "open", FullDisk, raising=False)
    config = RunConfig("softmax", epochs=1, limit=600).resolved()
    with pytest.raises(OSError) as raised:
        loop.fit(config, _Silent(), tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []  # no checkpoint, no temporary file
    reason = disk_full(raised.value, tmp_path / "run")
    assert isinstance(reason, DiskFull)
    assert reason.strerror == (f"no space left on the disk holding {(tmp_path / 'run').resolve()} (writing "
                               "checkpoint.pt); free some space and resume, or choose another --log-dir")


def test_a_stop_during_the_checkpoint_write_leaves_no_temporary_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM reach the worker as KeyboardInterrupt, maybe while it writes a checkpoint."""
    def stopped(src: Any, dst: Any) -> None:
        assert Path(src).is_file()  # the temporary file is written, about to take the checkpoint's name
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        loop.fit(RunConfig("softmax", epochs=1, limit=600).resolved(), _Silent(), tmp_path / "run")
    assert list((tmp_path / "run").iterdir()) == []


class _Silent:
    """A Reporter that keeps nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def test_the_run_log_after_a_failed_write_starts_a_new_line(tmp_path: Path) -> None:
    from dashboard.runlog import RunLog

    log = RunLog(tmp_path, meta={"label": "a"})
    log.config({"model": "mlp"})
    real = log._file

    class Failing:
        def write(self, text: str) -> int:
            real.write(text[: len(text) // 2])  # half a line reached the disk
            real.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            real.flush()

    log._file = Failing()  # type: ignore[assignment]
    with pytest.raises(OSError):
        log.status("running")
    log._file = real
    log.status("failed", "disk full")
    log.close()
    record = read(tmp_path)
    assert record.skipped == 1 and record.status == "failed" and record.config == {"model": "mlp"}
    assert (tmp_path / LOG_NAME).read_text().endswith('"reason":"disk full"}\n')


def test_a_closed_terminal_stops_the_runs_and_says_so(tmp_path: Path) -> None:
    """The launcher in a real terminal (a pty it controls), which is then closed: the kernel hangs
    it up (SIGHUP to the launcher and its workers, and every later write fails); the runs stop,
    their logs say the terminal was closed, and the launcher exits 129."""
    import pty

    env = {**os.environ, "COLUMNS": "120"}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the launcher, with the pty as its controlling terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, str(REPO / "launch.py"), "run", "--headless", "--models",
                                   "mlp,cnn", "--epochs", "40", "--limit", "6000"], env)
    seen = bytearray()
    try:
        def read_some() -> None:
            ready, _, _ = select.select([terminal], [], [], 0.2)
            if ready:
                seen.extend(os.read(terminal, 65536))

        def training_all() -> bool:
            read_some()
            found = list((tmp_path / "runs").glob("*/*/log.jsonl"))
            return len(found) == 2 and all(training(p.parent) for p in found)

        wait_for(training_all)
    finally:
        os.close(terminal)  # the terminal window is closed
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the launcher did not end within 60 s of its terminal closing")
        time.sleep(0.1)
    status = done[1]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGHUP, (status, bytes(seen[-500:]))
    runs = launch_dir(tmp_path / "runs")
    for label in ("mlp", "cnn"):
        record = read(runs / label)
        assert record.status == "interrupted", label
        assert record.states[-1]["reason"].startswith("stopped: the terminal was closed (SIGHUP)"), record.states
