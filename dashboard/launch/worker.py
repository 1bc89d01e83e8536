"""The process entry of one training run: build its dashboard from a spec and train.

A worker reports only to `dashboard.Dashboard` (the run log, and Visdom when a URL is set); the
launcher follows the run logs for the terminal and the env-wide panes. Whatever ends the run
(finished, diverged, an exception, Ctrl-C) is written to the run log as its final status.

`main` is the entry of a launcher's worker process: it is stopped by the launcher, never straight
by the terminal's Ctrl-C (it ignores SIGINT: the launcher decides what a Ctrl-C means). The
launcher passes on what stopped it as the signal it sends (STOP_SIGNALS), so the run log says
"stopped by Ctrl-C", "by SIGTERM" or "the terminal was closed". A worker whose launcher died
(kill -9, out of memory) notices (see watch_launcher), stops, and logs that. It prints nothing (the
launcher's terminal view shows the run), and its exit code says how the run ended: 0 finished,
1 failed (the traceback, if any, goes to the run dir's error.txt), 3 failed for want of disk
space, 130 interrupted."""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dashboard.adapter import Dashboard, DashboardOptions
from dashboard.launch.control import FileInbox
from dashboard.launch.resume import hold_launch_lock
from dashboard.runlog import LOG_NAME, RunLog, RunRecord, read
from trainers.config import RunConfig
from trainers.errors import EXIT_DISK_FULL, EXIT_FAILED, EXIT_INTERRUPTED
from trainers.loop import RunResult, fit
from trainers.reporting import FINAL_STATES, RunState


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    config: RunConfig
    run_dir: Path
    dashboard: DashboardOptions = field(default_factory=DashboardOptions)
    colour_index: int | None = None
    resume: bool = False
    control: bool = True  # False (--no-control): the run looks for no requests
    parent: dict | None = None  # a fork's: {"run": its parent's label, "x": where it forked, "step": the batch}
    launcher: int | None = None  # the launcher's pid (set as it starts the worker): watched, see watch_launcher


KEPT = "the checkpoint of the last finished epoch is kept"
STOPPED_BY_CTRL_C = "stopped by Ctrl-C"


class DiskFull(OSError):
    """The disk holding a run's folder has no space left (its message says which, and what to do)."""


def disk_full(exc: BaseException, run_dir: Path) -> DiskFull | None:
    """`exc` as a DiskFull with a one-line reason, when it is one (ENOSPC, EDQUOT); else None."""
    if isinstance(exc, DiskFull):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(exc.errno, f"no space left on the disk holding {run_dir.resolve()} (writing "
                        f"{Path(exc.filename).name if exc.filename else 'the run log'}); free some space "
                        "and resume, or choose another --log-dir")
    return None


def log_of(spec: WorkerSpec) -> RunLog:
    """The run's log opened to append to it (by the launcher, or a worker whose ranks trained),
    with the run's dashboard meta."""
    return RunLog(spec.run_dir, meta=meta_of(spec))


def meta_of(spec: WorkerSpec) -> dict:
    """What the run's log says of it beside its config: its label, colour, env (and a fork's parent)."""
    meta = {"label": spec.config.label, "colour": spec.colour_index, "env": spec.dashboard.draw.env}
    return {**meta, "parent": dict(spec.parent)} if spec.parent else meta


def logged(spec: WorkerSpec) -> RunRecord | None:
    """What the run's log holds so far (its latest values only); None before it has one."""
    return read(spec.run_dir, keep_scalars=False) if (spec.run_dir / LOG_NAME).is_file() else None


def seal(spec: WorkerSpec, state: str, reason: str, record: RunRecord | None) -> None:
    """Append the run's final status (and its config, when `record`, the log as read, has none)."""
    log = log_of(spec)
    try:
        if record is None or not record.config:
            log.config(spec.config.to_dict())
        log.status(state, reason)
    finally:
        log.close()


def seal_unfinished(spec: WorkerSpec, state: str, reason: str, logless: bool = True) -> None:
    """Give the run's log a final status unless it has one; a run with no log yet gets one too
    (its config and the status), unless not `logless`."""
    record = logged(spec)
    if record is None and not logless:
        return
    if record is None or record.status not in FINAL_STATES:
        seal(spec, state, reason, record)


def run(spec: WorkerSpec) -> RunResult:
    """Train one run, reporting to its dashboard; the final status reaches the run log (unless the
    disk is full: then DiskFull is raised, its reason left for the launcher to tell). A run on
    several processes has its own (dashboard.launch.ranks.train_on_ranks)."""
    config = spec.config.resolved()
    dash = Dashboard(spec.run_dir, config.label, spec.dashboard, spec.colour_index,
                     parent=spec.parent)
    try:
        return fit(config, dash, spec.run_dir, resume=spec.resume,
                   inbox=FileInbox(spec.run_dir) if spec.control else None)
    except KeyboardInterrupt:
        dash.status(RunState.INTERRUPTED, f"{_stopped_by or STOPPED_BY_CTRL_C}; {KEPT}")
        raise
    except Exception as exc:
        full = disk_full(exc, spec.run_dir)
        try:
            dash.status(RunState.FAILED, full.strerror if full else f"{type(exc).__name__}: {exc}")
        except OSError as again:
            if full or disk_full(again, spec.run_dir):
                raise full or disk_full(again, spec.run_dir) from None  # type: ignore[misc]
            raise
        if full:
            raise full from None
        raise
    finally:
        try:
            dash.close()
        except OSError as exc:  # pending scalars on a full disk: what was written stays readable
            if not disk_full(exc, spec.run_dir):
                raise


ERROR_FILE = "error.txt"
# what a launcher sends its workers for what stopped it (SIGINT itself is ignored by workers, so
# that the terminal's Ctrl-C reaches the launcher alone), and what their logs then say
STOP_SIGNALS = {signal.SIGINT: signal.SIGUSR1, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGHUP}
STOP_REASONS = {
    signal.SIGUSR1: STOPPED_BY_CTRL_C,
    signal.SIGINT: STOPPED_BY_CTRL_C,
    signal.SIGTERM: "stopped by SIGTERM",
    signal.SIGHUP: "stopped: the terminal was closed (SIGHUP)",
}
_stopped_by = ""  # why this process was asked to stop (see _stop_on)
LAUNCHER_CHECK = 0.5  # s between looks at whether the launcher is still there


def stopped_by() -> str:
    """Why this process was asked to stop ("stopped by Ctrl-C"...); "" while it was not."""
    return _stopped_by


def _stop_on(signum: int, frame: object) -> None:
    # the first stop request interrupts training; later ones must not cut the final log writes short
    global _stopped_by
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    _stopped_by = _stopped_by or STOP_REASONS.get(signum, f"stopped by {signal.Signals(signum).name}")
    raise KeyboardInterrupt


def watch_launcher(launcher: int, every: float = LAUNCHER_CHECK) -> threading.Thread:
    """A daemon thread that stops this process (as a stop signal would) once `launcher` is gone:
    killed with SIGKILL or by the kernel's out-of-memory killer, the launcher cannot stop its
    workers, which would train on unseen to the end. The launcher is this process's parent, or
    its grandparent (a worker from a fork server, whose server outlives the launcher while any
    worker of its lives): on Linux a pidfd of it says when it ends; elsewhere, it is looked for
    every `every` s."""
    pidfd, gone = None, False
    try:
        pidfd = os.pidfd_open(launcher)
    except ProcessLookupError:
        gone = True
    except (AttributeError, OSError):  # no pidfds here (not Linux, or an old kernel)
        pass

    def there() -> bool:
        if os.getppid() == launcher:
            return True
        try:
            os.kill(launcher, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def watch() -> None:
        global _stopped_by
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the launcher has ended
        elif not gone:
            while there():
                time.sleep(every)
        _stopped_by = _stopped_by or f"stopped: its launcher (pid {launcher}) died"
        os.kill(os.getpid(), signal.SIGUSR2)

    thread = threading.Thread(target=watch, name="launcher-watch", daemon=True)
    thread.start()
    return thread


def take_signals() -> None:
    """A worker's signals: the stop signals its launcher sends stop it (`_stop_on`); the
    terminal's Ctrl-C, which reaches every process of the launch, is the launcher's to act on,
    so the worker ignores SIGINT (it may have been born with the launcher's handler, or Python's)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _stop_on)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # as earlier launchers left it: blocked


def main(spec: WorkerSpec, train: Callable[[WorkerSpec], RunResult] = run) -> None:
    """A launcher's worker process: `train`, then exit with the run's outcome (see the module doc)."""
    take_signals()
    watch_launcher(spec.launcher or os.getppid())
    lock = hold_launch_lock(spec.run_dir)  # noqa: F841 - held (shared) until this process exits
    code = EXIT_FAILED
    try:
        result = train(spec)
        code = 0 if result.status == RunState.FINISHED else EXIT_FAILED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except DiskFull as exc:
        code = EXIT_DISK_FULL
        try:
            (spec.run_dir / ERROR_FILE).write_text(f"{exc.strerror}\n")
        except OSError:
            pass
    except BaseException:  # noqa: BLE001 - logged as failed by run(); the details go next to the log
        try:
            spec.run_dir.mkdir(parents=True, exist_ok=True)
            (spec.run_dir / ERROR_FILE).write_text(traceback.format_exc())
        except OSError:
            pass
    # the run log is closed and complete: skip the interpreter's teardown of torch (about a second),
    # so that a stopped run frees its launcher at once
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
