"""Worker processes: one per run, at most `parallel` alive at once (the rest queued, their logs
saying so), stopped on Ctrl-C, SIGTERM or SIGHUP (the signal passed on, so the logs say what
stopped them), killed when they do not stop, and their logs sealed when they died without a
final status."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dashboard.launch.worker import ERROR_FILE, EXIT_DISK_FULL, STOP_REASONS, STOP_SIGNALS, WorkerSpec, log_of, logged, seal
from dashboard.launch.preload import PRELOAD_VAR, data_sets
from dashboard.launch.ranks import worker_main as ranks_main
from dashboard.launch.worker import main as worker_main
from dashboard.runlog import INCOMPLETE_MARK
from trainers.config import RunConfig
from trainers.reporting import FINAL_STATES, RunState


STOP_GRACE = 4.5  # seconds a worker gets to log "interrupted" and close before it is killed
GRACE_VAR = "LIVETRAIN_STOP_GRACE"  # another grace, in seconds (tests set a long one)


class StopRequests:
    """Counts SIGINT/SIGTERM/SIGHUP while installed: the first asks the runs to stop, the second kills them."""

    def __init__(self) -> None:
        self.count = 0
        self.first: int = signal.SIGINT  # the signal of the first request (Ctrl-C until one came)
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.count:
            self.first = signum
        self.count += 1

    @property
    def reason(self) -> str:
        """What the run logs say stopped them: "stopped by Ctrl-C", "stopped by SIGTERM"..."""
        return STOP_REASONS[self.first]

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process it stopped: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
        return 128 + int(self.first)

    @contextmanager
    def installed(self) -> Iterator["StopRequests"]:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._saved[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)


def death_reason(exitcode: int | None, stopping: str, run_dir: Path | None = None) -> tuple[RunState, str]:
    """The final status of a worker that ended without logging one (`stopping`: what stopped the
    launch, e.g. "stopped by SIGTERM"; "" while nothing did)."""
    if exitcode == EXIT_DISK_FULL:
        said = ""
        if run_dir is not None:
            try:
                said = (run_dir / ERROR_FILE).read_text().strip().splitlines()[0]
            except (OSError, IndexError):
                pass
        return RunState.FAILED, said or f"no space left on the disk holding {run_dir}; free some space and resume"
    if stopping:
        return RunState.INTERRUPTED, f"{stopping} before it could log it"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return RunState.FAILED, f"the worker process was killed ({name})"
    return RunState.FAILED, f"the worker process exited with code {exitcode} (details in {ERROR_FILE}, if any)"


class Supervisor:
    """Starts one worker process per spec, at most `parallel` at once, and watches them until
    all have ended (or, once stopping, until the started ones have: queued runs never start)."""

    def __init__(self, specs: Sequence[WorkerSpec], stops: StopRequests, parallel: int | None = None) -> None:
        self.specs = list(specs)
        self.stops = stops
        self.parallel = max(1, parallel or len(self.specs))
        self.procs: list[Any] = []  # one per started spec, in the specs' order
        self.stop_sent_at: float | None = None
        self.grace = float(os.environ.get(GRACE_VAR) or STOP_GRACE)
        self._ctx: Any = None

    def start(self) -> None:
        """Start the first `parallel` runs; log the rest as queued. Call before any thread starts:
        it forks (or starts the fork server that later workers come from)."""
        method = start_method([spec.config for spec in self.specs], queued=len(self.specs) > self.parallel)
        self._ctx = worker_context(method, [spec.config for spec in self.specs])
        for spec in self.specs[self.parallel:]:
            queue(spec)
        self._start_next(self.parallel)

    def add(self, spec: WorkerSpec) -> None:
        """A run that joins the launch while it trains (a fork): started as a slot frees, like a
        queued run (logged as queued until then). The launcher has threads by now, so it is not
        forked from the launcher: it comes from a fork server, started now if there is none."""
        self.specs.append(spec)
        if self._ctx is not None and self._ctx.get_start_method() == "fork":
            self._ctx = worker_context("forkserver", [spec.config])
        if len(self.alive()) >= self.parallel or len(self.procs) < len(self.specs) - 1:
            queue(spec)

    def _start_next(self, count: int) -> None:
        sys.stdout.flush()  # a forked child must not inherit (and later repeat) buffered output
        sys.stderr.flush()
        # the launcher's stop handler stays installed throughout: the workers ignore the
        # terminal's Ctrl-C themselves (dashboard.launch.worker.take_signals), so that the
        # launcher decides what it means
        for spec in self.specs[len(self.procs):len(self.procs) + count]:
            target = ranks_main if spec.config.nproc > 1 else worker_main  # see dashboard.launch.ranks
            spec = replace(spec, launcher=os.getpid())  # watched by the worker, wherever it comes from
            for attempt in (1, 2):
                proc = self._ctx.Process(target=target, args=(spec,), name=f"livetrain-{spec.config.label}")
                try:
                    proc.start()
                    break
                except (OSError, EOFError):
                    # the fork server died before it forked the worker: a Ctrl-C in its first
                    # milliseconds, before it ignores SIGINT (see worker_context), which stopped
                    # the launch too; then the run stays unstarted. Otherwise a new server is
                    # started (once)
                    if self.stopping:
                        return
                    if attempt == 2:
                        raise
            self.procs.append(proc)

    @property
    def stopping(self) -> bool:
        return self.stops.count > 0

    def alive(self) -> list[Any]:
        return [p for p in self.procs if p.exitcode is None]

    def step(self, timeout: float = 0.5) -> bool:
        """Act on stop requests, start queued runs as slots free, wait up to `timeout` for a worker
        to end. False once all have (once stopping: all started ones)."""
        alive = self._fill()
        if not alive:
            return False
        if self._stop_now():
            for proc in alive:  # the signal says what stopped the launch (see dashboard.launch.worker)
                _signal(proc, STOP_SIGNALS[self.stops.first])
        if self._kill_now():
            for proc in alive:
                _signal(proc, signal.SIGKILL)
        multiprocessing.connection.wait([p.sentinel for p in alive], timeout)
        return self._going()

    def _fill(self) -> list[Any]:
        """Start queued runs as slots free (none once stopping); the runs alive then."""
        alive = self.alive()
        if not self.stopping and len(alive) < self.parallel and len(self.procs) < len(self.specs):
            self._start_next(self.parallel - len(alive))
            alive = self.alive()
        return alive

    def _stop_now(self) -> bool:
        """True once, when the first stop request came: ask the runs to stop now."""
        if self.stops.count and self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic()
            return True
        return False

    def _kill_now(self) -> bool:
        """A second request, or the runs asked to stop are past their grace."""
        return self.stops.count > 1 or (self.stop_sent_at is not None
                                        and time.monotonic() - self.stop_sent_at > self.grace)

    def _going(self) -> bool:
        return bool(self.alive()) or (not self.stopping and len(self.procs) < len(self.specs))

    def exitcodes(self) -> list[int | None]:
        """Per spec: its worker's exit code; None for a run that never started."""
        for proc in self.procs:
            proc.join(timeout=5)
        codes = [p.exitcode for p in self.procs]
        return codes + [None] * (len(self.specs) - len(codes))


def queue(spec: WorkerSpec) -> None:
    """Log a run as queued (its config and a "queued" status), so that the terminal and the runs
    pane show it before it starts; its worker appends to the same log."""
    log = log_of(spec)
    try:
        log.config(spec.config.to_dict())
        log.status(RunState.QUEUED)
    finally:
        log.close()


def start_method(configs: Sequence[RunConfig], queued: bool = False) -> str:
    """How worker processes start: "fork" on the CPU, so they begin training at once with torch
    already imported (3 processes importing it at once take 2-3 s on 2 cores); "spawn" when a
    run may use CUDA, which cannot be used in a child forked after the parent asked about it.
    The launcher forks before it starts any thread of its own; when runs are `queued`, later
    workers start after its threads have, so they come from a fork server started first
    ("forkserver": a process of its own, single-threaded, with torch imported once)."""
    if any(c.device != "cpu" for c in configs) and torch.cuda.is_available():
        return "spawn"
    return "forkserver" if queued else "fork"


def worker_context(method: str, configs: Sequence[RunConfig]) -> Any:
    """The multiprocessing context workers start from. A fork server (queued runs) is one process,
    started before any thread of the launcher's, with torch imported and the runs' data sets
    loaded once: the workers it forks share them (see dashboard.launch.preload)."""
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["dashboard.launch.preload", "dashboard.launch.worker", "dashboard.launch.ranks"])
        os.environ[PRELOAD_VAR] = data_sets([(c.dataset, c.data_dir) for c in configs])
        # it ignores SIGINT first thing (its first preload module): the launcher keeps its own
        # handler meanwhile (ignoring it here would let another thread of the launcher's take a
        # Ctrl-C of that moment and drop it); a Ctrl-C before then ends the server, and the
        # launcher copes (see _start_next). It imports and loads in the background, and the
        # launcher waits for it only when it starts the first worker
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            os.environ.pop(PRELOAD_VAR, None)
    return ctx


def _signal(proc: Any, sig: int) -> None:
    try:
        os.kill(proc.pid, sig)
    except (ProcessLookupError, TypeError):
        pass


def seal_logs(specs: Sequence[WorkerSpec], exitcodes: Sequence[int | None],
              stopping: str) -> dict[str, tuple[str, str]]:
    """Give every run whose worker ended without a final status one (its log is never rewritten,
    only appended to). Such a worker's sender died with it, so its last points may not have
    reached the server: its windows are marked incomplete, to be redrawn from its log.
    Returns, by label, the (state, reason) of the runs whose logs could not take it (a full disk)."""
    unwritten = {}
    for spec, code in zip(specs, exitcodes):
        record = logged(spec)
        if record is not None and record.status in FINAL_STATES:
            continue
        state, reason = death_reason(code, stopping, spec.run_dir)
        if record is not None and record.status == RunState.QUEUED:  # never started
            state, reason = RunState.INTERRUPTED, f"{stopping or 'stopped'} while it was queued; resume to train it"
        try:
            seal(spec, state, reason, record)
            if spec.dashboard.visdom_url is not None:
                (spec.run_dir / INCOMPLETE_MARK).touch()
        except OSError:
            unwritten[spec.config.label] = (state, reason)
    return unwritten
