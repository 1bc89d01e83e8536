"""Launching runs side by side: a plan from the command line's words, one worker process per run,
and a supervisor that follows them through their run logs until every one has ended.

`launch.py` only parses options and calls `plan_runs` / `resume_runs`, then `launch`. Everything
the user can get wrong is checked before anything starts or is written (`PlanError`: a usage
error; `LaunchError`: the machine or the server says no), so a bad command loses nothing.

While runs train, the launcher draws the terminal view and (live) the env-wide panes from the run
logs (`Board`); workers draw their own traces. Ctrl-C asks every worker to stop (each logs
"interrupted" and closes within a few seconds); a second Ctrl-C kills them at once. A worker that
dies without a final status (kill -9, a crash) gets one appended to its log by the launcher."""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from dashboard import windows
from dashboard.adapter import DashboardOptions
from dashboard.board import Board
from dashboard.connection import LoginRefused, Unreachable, VisdomConnection, check_access
from dashboard.panes import RunSummary
from dashboard.replay import ReplayError, replay
from dashboard.runlog import INCOMPLETE_MARK, LOG_NAME, RunLog, read
from dashboard.sender import Sender
from dashboard.server import ServerConfig, ServerError, ServerProcess, port_state, probe, spawn
from dashboard.terminal import GoneQuiet, TerminalView, clock
from trainers import data
from trainers.config import ConfigError, RunConfig, threads_per_run
from trainers.loop import CHECKPOINT, read_checkpoint, resolve_device
from trainers.models import MODELS
from trainers.reporting import TEST_ACC
from trainers.worker import ERROR_FILE, EXIT_DISK_FULL, STOP_REASONS, STOP_SIGNALS, WorkerSpec
from trainers.worker import main as worker_main

FINAL_STATES = ("finished", "failed", "interrupted")
STOP_GRACE = 4.5  # seconds a worker gets to log "interrupted" and close before it is killed
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
ENV_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
URL_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")  # a name, an IPv4 or an IPv6 address (no spaces)
# what --set may change per run, and how its value is read
SETTINGS: dict[str, tuple[type, str]] = {
    "lr": (float, "a number"), "epochs": (int, "a whole number"), "batch_size": (int, "a whole number"),
    "optimizer": (str, "a name"), "seed": (int, "a whole number"), "device": (str, "a name"),
    "limit": (int, "a whole number"),
}


class PlanError(Exception):
    """The command line asks for something impossible (a usage error: exit code 2)."""


class LaunchError(Exception):
    """The runs cannot start here: no data, no writable log dir, no server (exit code 1)."""


# ---- the plan ------------------------------------------------------------------------------

def parse_models(words: Sequence[str]) -> list[tuple[str, str]]:
    """(model, label) per run from "softmax,mlp,cnn" or "mlp:fast,mlp:slow" (repeatable).

    A model named once is labelled by its name; repeats without labels become mlp-1, mlp-2, ..."""
    entries: list[tuple[str, str]] = []
    for word in ",".join(words).split(","):
        word = word.strip()
        if not word:
            continue
        model, _, label = word.partition(":")
        model = model.strip().lower()
        if model not in MODELS:
            raise PlanError(f"unknown model {model!r} in --models; choose from {', '.join(MODELS)} "
                            "(e.g. --models softmax,mlp,cnn)")
        entries.append((model, label.strip()))
    if not entries:
        raise PlanError("no model given; e.g. --models softmax,mlp,cnn")
    unlabelled = Counter(model for model, label in entries if not label)
    numbered: Counter[str] = Counter()
    runs = []
    for model, label in entries:
        if not label:
            if unlabelled[model] > 1:
                numbered[model] += 1
                label = f"{model}-{numbered[model]}"
            else:
                label = model
        if not LABEL_RE.fullmatch(label):
            raise PlanError(f"run label {label!r}: use up to 40 letters, digits, '.', '_' or '-'")
        runs.append((model, label))
    twice = [label for label, n in Counter(label for _, label in runs).items() if n > 1]
    if twice:
        raise PlanError(f"two runs are labelled {twice[0]!r}; label each, e.g. --models mlp:fast,mlp:slow")
    return runs


def parse_setting(text: str) -> tuple[str, str, Any]:
    """("mlp", "lr", 0.05) from "mlp.lr=0.05"."""
    match = re.fullmatch(r"\s*([^.=\s]+)\.([A-Za-z_-]+)\s*=\s*(.*?)\s*", text)
    if not match:
        raise PlanError(f"--set {text!r}: write RUN.SETTING=VALUE, e.g. --set mlp.lr=0.05")
    target, key, raw = match.group(1), match.group(2).replace("-", "_").lower(), match.group(3)
    if key not in SETTINGS:
        names = ", ".join(k.replace("_", "-") for k in SETTINGS)
        raise PlanError(f"--set {text!r}: no setting {match.group(2)!r}; use one of {names}")
    kind, what = SETTINGS[key]
    try:
        value = kind(raw) if kind is not str else raw.lower()
        if kind is str and not value:
            raise ValueError
    except ValueError:
        raise PlanError(f"--set {text!r}: {key.replace('_', '-')} must be {what}, not {raw!r}") from None
    return target, key, value


def plan_runs(models: Sequence[str], settings: Sequence[str], **common: Any) -> list[RunConfig]:
    """One checked RunConfig per run: `common` options (dataset, epochs, lr, ...) for all, then
    --set overrides, by model name (every run of it) and then by label (that run only)."""
    runs = parse_models(models)
    labels = {label for _, label in runs}
    model_names = {model for model, _ in runs}
    values: dict[str, dict[str, Any]] = {label: {} for label in labels}
    parsed = [(text, *parse_setting(text)) for text in settings]
    for text, target, _, _ in parsed:
        if target not in labels and target not in model_names:
            raise PlanError(f"--set {text!r}: no run {target!r} in this launch; its runs are "
                            f"{', '.join(label for _, label in runs)}")
    for by_label in (False, True):
        for _, target, key, value in parsed:
            for model, label in runs:
                if (label == target) if by_label else (model == target and target not in labels):
                    values[label][key] = value
    configs = []
    for model, label in runs:
        given = {k: v for k, v in common.items() if v is not None} | values[label]
        try:
            configs.append(RunConfig(model=model, label=label, **given).resolved())
        except ConfigError as exc:
            raise PlanError(f"run {label!r}: {exc}") from None
    return configs


def resume_runs(launch_dir: Path, epochs: int | None = None) -> list[tuple[RunConfig, Path, bool]]:
    """(config, run dir, has a checkpoint) for each run of an earlier launch that has epochs left."""
    run_dirs = sorted(p.parent for p in launch_dir.glob(f"*/{LOG_NAME}"))
    if not run_dirs and (launch_dir / LOG_NAME).is_file():
        run_dirs = [launch_dir]  # one run's own folder
    if not run_dirs:
        raise LaunchError(f"no run logs in {launch_dir}; pass a folder made by `livetrain run` "
                          "(`livetrain runs` lists them)")
    todo, done = [], []
    for run_dir in run_dirs:
        record = read(run_dir, keep_scalars=False)
        if not record.config:
            raise LaunchError(f"{run_dir / LOG_NAME} has no config record, so it cannot be resumed; "
                              "start a new run instead")
        config = RunConfig.from_dict(record.config)
        if record.meta.get("label"):
            config = replace(config, label=str(record.meta["label"]))
        if epochs is not None:
            config = replace(config, epochs=epochs)
        if record.status == "finished" and config.epochs <= _epochs_done(record.x):
            done.append(config.label)
            continue
        checkpoint = run_dir / CHECKPOINT
        try:
            config = config.resolved()
            if checkpoint.is_file():
                read_checkpoint(checkpoint, config)  # damaged: said now, not by the run's worker
        except ConfigError as exc:
            raise LaunchError(f"cannot resume {run_dir}: {str(exc).removeprefix('cannot resume: ')}") from None
        todo.append((config, run_dir, checkpoint.is_file()))
    if not todo:
        raise LaunchError(f"every run in {launch_dir} has finished its epochs ({', '.join(done)}); "
                          "pass --epochs with a larger number to train them further")
    return todo


def _epochs_done(x: float) -> int:
    return int(math.floor(x + 1e-9))


def check_machine(configs: Sequence[RunConfig]) -> None:
    """What only this machine can say: the device exists and every data set is on disk, whole."""
    for config in configs:
        try:
            resolve_device(config.device)
        except ConfigError as exc:
            raise LaunchError(str(exc)) from None
    for dataset, data_dir in sorted({(c.dataset, c.data_dir or "") for c in configs}):
        if data_dir and not Path(data_dir).is_dir():
            raise LaunchError(f"--data-dir {data_dir} is not a folder; give the folder that holds the data "
                              "sets, or leave it out to use ./data and the system's copy")
        try:
            # read and check every file now (a damaged one is one error here, not one per run);
            # forked workers find the data already loaded. One thread: no OpenMP pool before the fork
            torch.set_num_threads(1)
            loaded = data.load(dataset, data_dir or None)
        except data.DataError as exc:
            raise LaunchError(str(exc)) from None
        for config in configs:
            if (config.dataset, config.data_dir or "") == (dataset, data_dir):
                try:
                    config.check_sizes(len(loaded.train))
                except ConfigError as exc:
                    raise PlanError(f"run {config.label!r}: {exc}") from None


def check_env(env: str) -> str:
    if not ENV_RE.fullmatch(env):
        raise PlanError(f"env name {env!r}: use up to 64 letters, digits, '.', '_' or '-'")
    return env


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not URL_HOST_RE.fullmatch(parts.hostname):
        raise PlanError(f"--visdom-url {url!r}: write it like http://HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise PlanError(f"--visdom-url {url!r}: the port is not a number from 1 to 65535") from None
    return url.rstrip("/")


def prepare_log_dir(log_dir: Path) -> None:
    """Make sure run logs can be written under `log_dir` (created if missing)."""
    hint = "choose another folder with --log-dir"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LaunchError(f"cannot use {log_dir} as the log dir: it is a file; {hint}") from None
    except OSError as exc:
        raise LaunchError(f"cannot create the log dir {log_dir}: {exc.strerror}; {hint}") from None
    probe_file = log_dir / f".write-test-{os.getpid()}"
    try:
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as exc:
        raise LaunchError(f"cannot write run logs in {log_dir}: {exc.strerror}; {hint}") from None


def new_launch_dir(log_dir: Path) -> Path:
    """A fresh folder for this launch's runs, named by the time it started."""
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    for n in range(1, 1000):
        folder = log_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise LaunchError(f"cannot make a new folder in {log_dir}; clean it up or choose another --log-dir")


# ---- the server ----------------------------------------------------------------------------

@dataclass
class Server:
    """Where the live windows go, and the server process when this launch started it."""

    url: str
    started: ServerProcess | None = None


def find_server(visdom_url: str | None, config: ServerConfig, start: bool) -> Server:
    """The Visdom server to draw into: `visdom_url` (which must answer), or the local one, reused
    when it answers, else started (unless `start` is False). A started one may still be booting:
    call `started.wait_ready()`."""
    if visdom_url is not None:
        state = probe(visdom_url, timeout=3.0)
        if state != "visdom":
            what = "nothing answers" if state == "none" else "no Visdom server answers"
            raise LaunchError(f"{what} at {visdom_url}; start one there (`livetrain server`), fix --visdom-url, "
                              "or leave it out to use a local server")
        _check_access(visdom_url)
        return Server(visdom_url)
    try:
        if port_state(config) == "visdom":
            _check_access(config.url)
            return Server(config.url)
    except ServerError as exc:
        raise LaunchError(f"{exc}, or pass --visdom-url of a running Visdom server") from None
    if not start:
        raise LaunchError(f"no Visdom server answers at {config.url} and --no-server was given; "
                          "start one with `livetrain server`, or drop --no-server or add --headless")
    try:
        return Server(config.url, spawn(config))
    except (ServerError, OSError) as exc:
        raise LaunchError(f"cannot start the Visdom server: {exc}") from None


def _check_access(url: str) -> None:
    try:
        check_access(url)
    except LoginRefused as exc:
        raise LaunchError(str(exc)) from None
    except Unreachable as exc:
        raise LaunchError(f"the Visdom server at {url} did not take a request ({exc}); check it, or pass "
                          "--headless to train without it") from None


# ---- supervising the workers ---------------------------------------------------------------

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


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Children started inside ignore the terminal's Ctrl-C (Python keeps an inherited SIG_IGN);
    the launcher stops them itself, so that it decides what a Ctrl-C means."""
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def death_reason(exitcode: int | None, stopping: str | bool, run_dir: Path | None = None) -> tuple[str, str]:
    """The final status of a worker that ended without logging one (`stopping`: what stopped the
    launch, e.g. "stopped by SIGTERM", or False)."""
    if exitcode == EXIT_DISK_FULL:
        said = ""
        if run_dir is not None:
            try:
                said = (run_dir / ERROR_FILE).read_text().strip().splitlines()[0]
            except (OSError, IndexError):
                pass
        return "failed", said or f"no space left on the disk holding {run_dir}; free some space and resume"
    if stopping:
        how = stopping if isinstance(stopping, str) else "stopped"
        return "interrupted", f"{how} before it could log it"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return "failed", f"the worker process was killed ({name})"
    return "failed", f"the worker process exited with code {exitcode} (details in {ERROR_FILE}, if any)"


class Supervisor:
    """Starts one worker process per spec and watches them until all have ended."""

    def __init__(self, specs: Sequence[WorkerSpec], stops: StopRequests) -> None:
        self.specs = list(specs)
        self.stops = stops
        self.procs: list[Any] = []
        self.stop_sent_at: float | None = None

    def start(self) -> None:
        ctx = multiprocessing.get_context(start_method([spec.config for spec in self.specs]))
        sys.stdout.flush()  # a forked child must not inherit (and later repeat) buffered output
        sys.stderr.flush()
        with _sigint_ignored():
            for spec in self.specs:
                proc = ctx.Process(target=worker_main, args=(spec,), name=f"livetrain-{spec.config.label}")
                proc.start()
                self.procs.append(proc)

    @property
    def stopping(self) -> bool:
        return self.stops.count > 0

    def alive(self) -> list[Any]:
        return [p for p in self.procs if p.exitcode is None]

    def step(self, timeout: float = 0.5) -> bool:
        """Act on stop requests, wait up to `timeout` for a worker to end. False once all have."""
        alive = self.alive()
        if not alive:
            return False
        if self.stops.count and self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic()
            for proc in alive:  # the signal says what stopped the launch (see trainers.worker)
                _signal(proc, STOP_SIGNALS[self.stops.first])
        if self.stops.count > 1 or (self.stop_sent_at is not None
                                    and time.monotonic() - self.stop_sent_at > STOP_GRACE):
            for proc in alive:
                _signal(proc, signal.SIGKILL)
        multiprocessing.connection.wait([p.sentinel for p in alive], timeout)
        return bool(self.alive())

    def exitcodes(self) -> list[int | None]:
        for proc in self.procs:
            proc.join(timeout=5)
        return [p.exitcode for p in self.procs]


def start_method(configs: Sequence[RunConfig]) -> str:
    """How worker processes start: "fork" on the CPU, so they begin training at once with torch
    already imported (3 processes importing it at once take 2-3 s on 2 cores); "spawn" when a
    run may use CUDA, which cannot be used in a child forked after the parent asked about it.
    The launcher forks before it starts any thread of its own."""
    if any(c.device != "cpu" for c in configs) and torch.cuda.is_available():
        return "spawn"
    return "fork"


def _signal(proc: Any, sig: int) -> None:
    try:
        os.kill(proc.pid, sig)
    except (ProcessLookupError, TypeError):
        pass


def seal_logs(specs: Sequence[WorkerSpec], exitcodes: Sequence[int | None],
              stopping: str | bool) -> dict[str, tuple[str, str]]:
    """Give every run whose worker ended without a final status one (its log is never rewritten,
    only appended to). Such a worker's sender died with it, so its last points may not have
    reached the server: its windows are marked incomplete, to be redrawn from its log.
    Returns, by label, the (state, reason) of the runs whose logs could not take it (a full disk)."""
    unwritten = {}
    for spec, code in zip(specs, exitcodes):
        record = read(spec.run_dir, keep_scalars=False) if (spec.run_dir / LOG_NAME).is_file() else None
        if record is not None and record.status in FINAL_STATES:
            continue
        state, reason = death_reason(code, stopping, spec.run_dir)
        try:
            log = RunLog(spec.run_dir, meta={"label": spec.config.label, "colour": spec.colour_index,
                                             "env": spec.dashboard.env})
            try:
                if record is None or not record.config:
                    log.config(spec.config.to_dict())
                log.status(state, reason)
            finally:
                log.close()
            if spec.dashboard.visdom_url is not None:
                (spec.run_dir / INCOMPLETE_MARK).touch()
        except OSError:
            unwritten[spec.config.label] = (state, reason)
    return unwritten


# ---- one launch, start to end --------------------------------------------------------------

@dataclass
class Outcome:
    """How a launch ended."""

    launch_dir: Path
    runs: list[RunSummary] = field(default_factory=list)
    interrupted: bool = False
    stopped_by: str = ""  # what interrupted it: "stopped by Ctrl-C", "stopped by SIGTERM"...
    interrupted_code: int = 130  # 128 + the signal that interrupted it

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return self.interrupted_code
        return 0 if self.runs and all(r.status == "finished" for r in self.runs) else 1

    def failed(self) -> list[RunSummary]:
        return [r for r in self.runs if r.status != "finished"]


@dataclass
class LaunchOptions:
    """The run-wide choices: where the windows go (None: headless) and how they are drawn."""

    server: Server | None
    env: str
    smoothing: float | None = None
    max_points: int = 1000
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    poll: float = 0.5  # seconds between terminal redraws / board polls


def worker_specs(runs: Sequence[tuple[RunConfig, Path, bool]], options: LaunchOptions) -> list[WorkerSpec]:
    threads = threads_per_run(len(runs))
    dash = DashboardOptions(visdom_url=options.server.url if options.server else None, env=options.env,
                            max_points=options.max_points, smoothing=options.smoothing)
    specs = []
    for index, (config, run_dir, resume) in enumerate(runs):
        if config.threads is None and config.device != "cuda":
            config = replace(config, threads=threads)
        specs.append(WorkerSpec(config, run_dir, dash, colour_index=index, resume=resume))
    return specs


def launch(runs: Sequence[tuple[RunConfig, Path, bool]], launch_dir: Path, options: LaunchOptions) -> Outcome:
    """Train `runs` (config, run dir, resume) side by side until each has ended; returns how."""
    out = options.stream
    specs = worker_specs(runs, options)
    server = options.server
    sender = Sender(VisdomConnection(server.url), name="visdom-board") if server else None
    board = Board(sender, options.env, options.smoothing)
    for spec in specs:
        board.add(spec.run_dir, spec.config.label, spec.colour_index)
    view = TerminalView(out)
    stops = StopRequests()
    outcome = Outcome(launch_dir)
    with stops.installed():
        supervisor = Supervisor(specs, stops)
        if server is not None and server.started is not None:
            try:
                server.started.wait_ready(abort=lambda: stops.count > 0)
            except ServerError as exc:
                out.write(f"Warning: {exc}; training goes on, and the run logs can be replayed later.\n")
                server.started = None
        if sender is not None and not stops.count:
            # the env-wide windows first, so that the page opens with the runs table and the
            # compare windows on top, whatever the workers draw next
            sender.flush()
            sender.connection.close()  # the workers are forked next: no open socket for them to inherit
        if not stops.count:  # a Ctrl-C while the server was starting: start nothing
            supervisor.start()  # forks: before the launcher starts any thread
        if sender is not None:
            sender.start()
        while True:
            running = supervisor.step(options.poll)
            board.poll()
            view.draw(board.summaries())
            if not running:
                break
        unwritten = seal_logs(specs, supervisor.exitcodes(), stops.reason if supervisor.stopping else False)
        board.poll()
        view.draw(board.summaries())
        if sender is not None:
            sender.mark(windows.RUNS_WIN)  # the final statuses, including sealed ones
            delivered = sender.close(wait=0.5 if stops.count > 1 else 3.0)
            missed = [s for s in specs if (s.run_dir / INCOMPLETE_MARK).exists()]
            if (missed or not delivered) and stops.count < 2 and server is not None:
                _redraw(out, specs, launch_dir, server.url, options)
        outcome.interrupted = supervisor.stopping
        outcome.stopped_by, outcome.interrupted_code = stops.reason, stops.exit_code
    outcome.runs = [replace(r, status=unwritten[r.label][0], reason=unwritten[r.label][1]) if r.label in unwritten else r
                    for r in board.summaries()]
    return outcome


@dataclass
class RunRequest:
    """A `run` (or `demo`) command, parsed: new runs, or the runs of an earlier launch to resume."""

    configs: list[RunConfig] = field(default_factory=list)
    resume_dir: Path | None = None
    resume_epochs: int | None = None
    log_dir: Path = Path("runs")
    headless: bool = False
    visdom_url: str | None = None
    server: ServerConfig = field(default_factory=ServerConfig)
    start_server: bool = True
    env: str | None = None  # default: one env per launch, named after its folder
    keep_serving: bool = True  # after the runs, keep a server this command started up until Ctrl-C
    smoothing: float | None = None
    max_points: int = 1000


def run(request: RunRequest, out: TextIO | None = None) -> int:
    """Check everything, start the server if needed, train, report; the exit code.

    Raises PlanError / LaunchError before anything is started or written."""
    out = GoneQuiet(out or sys.stdout)  # type: ignore[assignment]  # a closed terminal stops no run
    if request.resume_dir is not None:
        runs = resume_runs(request.resume_dir, request.resume_epochs)
        configs = [config for config, _, _ in runs]
    else:
        configs = list(request.configs)
    if request.env is not None:
        check_env(request.env)
    check_machine(configs)
    if request.resume_dir is None:
        prepare_log_dir(request.log_dir)
    server = None
    if not request.headless:
        url = check_url(request.visdom_url) if request.visdom_url else None
        server = find_server(url, request.server, request.start_server)
    try:
        if request.resume_dir is None:
            launch_dir = new_launch_dir(request.log_dir)
            runs = [(config, launch_dir / config.label, False) for config in configs]
            env = request.env or f"livetrain_{launch_dir.name}"
        else:
            launch_dir = request.resume_dir
            env = request.env or _logged_env(runs) or f"livetrain_{launch_dir.name}"
        options = LaunchOptions(server, env, request.smoothing, request.max_points, out)
        _announce(out, runs, launch_dir, server, env)
        started = time.monotonic()
        outcome = launch(runs, launch_dir, options)
        _report(out, outcome, time.monotonic() - started)
        if server is not None and server.started is not None and request.keep_serving and not outcome.interrupted:
            _serve_until_stopped(out, server, env)
        return outcome.exit_code
    finally:
        if server is not None and server.started is not None:
            server.started.stop()


def _logged_env(runs: Sequence[tuple[RunConfig, Path, bool]]) -> str | None:
    record = read(runs[0][1], keep_scalars=False)
    env = record.meta.get("env")
    return str(env) if env and ENV_RE.fullmatch(str(env)) else None


def page_url(server: Server, env: str) -> str:
    return f"{server.url}/env/{urllib.parse.quote(env)}"


def _announce(out: TextIO, runs: Sequence[tuple[RunConfig, Path, bool]], launch_dir: Path,
              server: Server | None, env: str) -> None:
    first = runs[0][0]
    names = ", ".join(config.label + (" (resumed)" if resume else "") for config, _, resume in runs)
    out.write(f"livetrain: {len(runs)} run(s) on {first.dataset}: {names}\n")
    out.write(f"Run logs:  {launch_dir}\n")
    if server is None:
        out.write("Headless: no Visdom server; replay the logs into one later with "
                  f"`livetrain replay {launch_dir}`\n")
    else:
        note = " (server started by this command)" if server.started is not None else ""
        out.write(f"Dashboard: {page_url(server, env)}{note}\n")
    out.write("Ctrl-C stops the runs (a second Ctrl-C kills them).\n\n")
    out.flush()


def _report(out: TextIO, outcome: Outcome, seconds: float) -> None:
    runs = outcome.runs
    took = clock(seconds)
    out.write("\n")
    if outcome.interrupted:
        out.write(f"Interrupted ({outcome.stopped_by}) after {took}: run logs and the checkpoints of finished epochs are kept in "
                  f"{outcome.launch_dir}; continue with `livetrain run --resume {outcome.launch_dir}`\n")
    elif not outcome.failed():
        out.write(f"All {len(runs)} run(s) finished in {took}; logs in {outcome.launch_dir}\n")
    else:
        out.write(f"{len(outcome.failed())} of {len(runs)} run(s) did not finish ({took}):\n")
        for run_summary in outcome.failed():
            reason = f": {run_summary.reason}" if run_summary.reason else ""
            out.write(f"  {run_summary.label} {run_summary.status}{reason}\n")
        out.write(f"Logs in {outcome.launch_dir}\n")
    out.flush()


def _serve_until_stopped(out: TextIO, server: Server, env: str) -> None:
    assert server.started is not None
    out.write(f"The page stays up at {page_url(server, env)}; Ctrl-C stops the server.\n")
    out.flush()
    stops = StopRequests()
    with stops.installed():
        while not stops.count and server.started.process.poll() is None:
            time.sleep(0.2)
    out.write("Visdom server stopped.\n")


def _redraw(out: TextIO, specs: Sequence[WorkerSpec], launch_dir: Path, url: str, options: LaunchOptions) -> None:
    """The server missed the runs' last updates (down or frozen as they ended): if it answers now,
    draw every run again from its log, so that the page ends complete; else say how to later."""
    try:
        done = replay([spec.run_dir for spec in specs], url, options.env, options.max_points, options.smoothing)
        out.write(f"The Visdom server missed the runs' last updates; redrew {len(done.labels)} run(s) "
                  "from their logs.\n")
    except ReplayError:
        out.write(f"The Visdom server missed updates and does not answer now; once it does, "
                  f"`livetrain replay {launch_dir} --env {options.env}` redraws the runs.\n")
    out.flush()


# ---- past runs -----------------------------------------------------------------------------

@dataclass
class PastRun:
    label: str
    model: str
    dataset: str
    epochs: str
    test_acc: float | None
    status: str
    duration: float | None
    path: Path
    started: float


def past_runs(log_dir: Path) -> list[PastRun]:
    """Every run logged under `log_dir` (a launch's folder or a folder of them), oldest first."""
    rows = []
    for path in sorted(set(log_dir.glob(f"*/{LOG_NAME}")) | set(log_dir.glob(f"*/*/{LOG_NAME}"))):
        record = read(path, keep_scalars=False)
        if not record.config:
            continue
        status = record.status
        if status not in FINAL_STATES:
            quiet = time.time() - path.stat().st_mtime
            status = "running" if quiet < 120 else "stopped (no final status)"
        elif record.states and record.states[-1].get("reason") and status == "failed":
            status = "failed: " + str(record.states[-1]["reason"])
        total = record.config.get("epochs")
        duration = (record.updated - record.started) if record.started and record.updated else None
        rows.append(PastRun(
            label=str(record.meta.get("label") or record.config.get("label") or path.parent.name),
            model=str(record.config.get("model", "?")), dataset=str(record.config.get("dataset", "?")),
            epochs=f"{_epochs_done(record.x)}/{total}" if total else "?",
            test_acc=record.latest.get(TEST_ACC), status=status, duration=duration,
            path=path.parent, started=record.started or 0.0))
    return sorted(rows, key=lambda r: (r.started, str(r.path)))


def runs_table(rows: Sequence[PastRun], status_width: int = 48) -> str:
    """The `runs` command's table."""
    def hms(seconds: float | None) -> str:  # always h:mm:ss, so that the column lines up
        if seconds is None:
            return "-"
        seconds = int(seconds)
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    header = ("label", "model", "dataset", "epochs", "test acc", "status", "duration", "path")
    body = [(r.label, r.model, r.dataset, r.epochs, "-" if r.test_acc is None else f"{r.test_acc:.4f}",
             r.status if len(r.status) <= status_width else r.status[: status_width - 3] + "...",
             hms(r.duration), str(r.path)) for r in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body]]
    return "\n".join(lines)
