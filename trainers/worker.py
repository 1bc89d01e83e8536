"""The process entry of one training run: build its dashboard from a spec and train.

A worker reports only to `dashboard.Dashboard` (the run log, and Visdom when a URL is set); the
launcher follows the run logs for the terminal and the env-wide panes. Whatever ends the run
(finished, diverged, an exception, Ctrl-C) is written to the run log as its final status.

`main` is the entry of a launcher's worker process: it is stopped by the launcher (SIGTERM or
SIGINT), never straight by the terminal's Ctrl-C (the launcher starts it with SIGINT ignored),
it prints nothing (the launcher's terminal view shows the run), and its exit code says how the
run ended: 0 finished, 1 failed (the traceback, if any, goes to the run dir's error.txt),
130 interrupted."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from dashboard.adapter import Dashboard, DashboardOptions
from trainers.config import RunConfig
from trainers.loop import RunResult, fit


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    config: RunConfig
    run_dir: Path
    dashboard: DashboardOptions = field(default_factory=DashboardOptions)
    colour_index: int | None = None
    resume: bool = False


def run(spec: WorkerSpec) -> RunResult:
    """Train one run, reporting to its dashboard; the final status always reaches the run log."""
    config = spec.config.resolved()
    dash = Dashboard(spec.run_dir, config.label, spec.dashboard, spec.colour_index)
    try:
        return fit(config, dash, spec.run_dir, resume=spec.resume)
    except KeyboardInterrupt:
        dash.status("interrupted", "stopped by Ctrl-C; the checkpoint of the last finished epoch is kept")
        raise
    except Exception as exc:
        dash.status("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        dash.close()


EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
ERROR_FILE = "error.txt"


def _stop_on(signum: int, frame: object) -> None:
    # the first stop request interrupts training; later ones must not cut the final log writes short
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(spec: WorkerSpec) -> None:
    """A launcher's worker process: train, then exit with the run's outcome (see the module doc)."""
    signal.signal(signal.SIGTERM, _stop_on)
    signal.signal(signal.SIGHUP, _stop_on)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _stop_on)
    code = EXIT_FAILED
    try:
        result = run(spec)
        code = 0 if result.status == "finished" else EXIT_FAILED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
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
