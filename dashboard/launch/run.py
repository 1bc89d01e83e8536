"""One launch, start to end: the workers started and watched, the terminal view and the board
drawn from their logs, the page redrawn from the logs if the server missed their end, the report."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from dashboard import sweep, windows
from dashboard.adapter import DashboardOptions
from dashboard.board import Board
from dashboard.connection import VisdomConnection
from dashboard.launch.control import Desk
from dashboard.launch.forks import Fork
from dashboard.launch.page import CONTROL_WIN, REQUESTS_WIN, ControlPane, PageEvents
from dashboard.launch.replaying import redraw
from dashboard.launch.plan import (
    PER_LAUNCH, PlannedRun, check_devices, check_env, check_url, is_fit_name, load_data, new_launch_dir,
    prepare_log_dir, prepare_to_fork,
)
from dashboard.launch.resume import (
    LaunchLock, add_to_launch_order, resume_runs, resumes_at, supersede, write_launch_order,
)
from dashboard.launch.servers import Server, find_server, page_url, serve_until_stopped
from dashboard.launch.supervisor import StopRequests, Supervisor, seal_logs
from dashboard.launch.worker import WorkerSpec
from dashboard.panes import RunSummary
from dashboard.runlog import INCOMPLETE_MARK, LogFollower, feed, read
from dashboard.sender import Sender
from dashboard.server import ServerConfig, ServerError
from dashboard.terminal import GoneQuiet, TerminalView, clock
from dashboard.visdom_backend import VisdomBackend
from trainers.config import RunConfig, machine_cores, threads_per_run
from trainers.errors import LivetrainError
from trainers.reporting import RunState

DESK_POLL = 0.05  # s between the launcher's looks at its inbox of requests


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
        return 0 if self.runs and all(r.status == RunState.FINISHED for r in self.runs) else 1

    def failed(self) -> list[RunSummary]:
        return [r for r in self.runs if r.status != RunState.FINISHED]


@dataclass
class LaunchOptions:
    """The run-wide choices: where the windows go (None: headless) and how they are drawn."""

    server: Server | None
    draw: windows.DrawOptions
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    poll: float = 0.5  # seconds between terminal redraws / board polls
    parallel: int | None = None  # workers alive at once, the rest queued; None: all at once
    control: bool = True  # the runs take requests (the page's Control pane, `livetrain control`)
    cluster: str | None = None  # the Ray cluster the runs train on (--cluster); None: this machine


def worker_specs(runs: Sequence[PlannedRun], options: LaunchOptions,
                 groups: Sequence[tuple[str, list[int]]] = ()) -> list[WorkerSpec]:
    """Each run's worker: its threads, and its colour and style (a seed group's runs, `groups`,
    share one colour and are drawn faint). Colours go to what the page tells apart, the groups
    and the runs outside them, in launch order, so that groups never share one while the
    palette has colours left (8 lr groups of 8 seeds: 8 colours, not 5)."""
    # the cores shared among the processes alive at once: a run on N ranks counts N (its ranks
    # share its threads, see dashboard.launch.ranks.rank_threads)
    todo = [run for run in runs if not run.done]  # a resumed launch's finished runs train no more
    threads = threads_per_run(sum(run.config.nproc for run in todo[:options.parallel or len(todo)]))
    dash = DashboardOptions(visdom_url=options.server.url if options.server else None, draw=options.draw)
    member = replace(dash, draw=replace(options.draw, in_group=True))
    first_of = {i: members[0] for _, members in groups for i in members}
    shown = {unit: n for n, unit in enumerate(sorted({first_of.get(i, i) for i in range(len(runs))}))}
    colours = [shown[first_of.get(i, i)] if run.colour is None else run.colour  # resumed: as before
               for i, run in enumerate(runs)]
    specs = []
    for index, run in enumerate(runs):
        config = run.config
        if config.threads is None and config.device != "cuda":
            config = replace(config, threads=threads * config.nproc)
        specs.append(WorkerSpec(config, run.run_dir, member if index in first_of else dash,
                                colour_index=colours[first_of.get(index, index)], resume=run.resume,
                                control=options.control))
    return specs


def logged_config(config: RunConfig) -> dict[str, Any]:
    """The config as its run will log it (with the model's defaults filled in)."""
    try:
        return config.resolved().to_dict()
    except LivetrainError:  # refused by its worker, which says why
        return config.to_dict()


def launch(runs: Sequence[PlannedRun], launch_dir: Path, options: LaunchOptions) -> Outcome:
    """Train `runs` side by side until each has ended; returns how."""
    out = options.stream
    # the configs the runs will log (but their threads, which the launch sets), and so their
    # seed groups (see `sweep.seed_groups`), as a replay of their logs finds them
    logged = [logged_config(run.config) for run in runs]
    groups = sweep.seed_groups([(run.config.label, config) for run, config in zip(runs, logged)])
    every = worker_specs(runs, options, groups)
    specs = [spec for spec, run in zip(every, runs) if not run.done]  # the runs that train
    server = options.server
    sender = Sender(VisdomConnection(server.url), name="visdom-board") if server else None
    # requests to the runs (`livetrain control`, the page's Control pane): the launcher takes
    # them on every pass of its loop below, the page's as they come
    followers = {s.config.label: LogFollower(s.run_dir, keep_scalars=False) for s in every}
    records = {label: follower.record for label, follower in followers.items()}
    desk = Desk(launch_dir, {s.config.label: s.run_dir for s in every}, records, enabled=options.control,
                configs={s.config.label: s.config for s in every})
    pane = ControlPane(options.draw.env, list(records), desk, records) if sender and options.control else None
    board = Board(sender, options.draw, after_runs=[(CONTROL_WIN, lambda c: c.post("events", pane.message())),
                                                   (REQUESTS_WIN, pane.send_requests)] if pane else ())
    group_of = {i: label for label, members in groups for i in members}
    for index, (spec, run) in enumerate(zip(every, runs)):
        board.add(spec.run_dir, spec.config.label, spec.colour_index, group_of.get(index), logged[index],
                  follower=followers[spec.config.label])
        if run.done and sender is not None:  # a resumed launch's finished run: drawn from its log
            feed(read(spec.run_dir), VisdomBackend(sender, spec.dashboard.draw, spec.config.label, spec.colour_index))
    view = TerminalView(out)
    stops = StopRequests()
    outcome = Outcome(launch_dir)
    spec_of = {spec.config.label: spec for spec in every}

    def join(fork: Fork, done: dict[str, Any]) -> None:
        """A fork its parent applied joins the launch: a run like the others, from the parent's point."""
        parent = spec_of[fork.parent]
        draw = replace(parent.dashboard.draw, in_group=False)
        spec = WorkerSpec(fork.config, fork.run_dir, replace(parent.dashboard, draw=draw), resume=True,
                          colour_index=1 + max(s.colour_index or 0 for s in spec_of.values()), control=options.control,
                          parent={"run": fork.parent, "x": done["x"], "step": done["step"]})
        spec_of[fork.label] = spec
        follower = followers[fork.label] = LogFollower(fork.run_dir, keep_scalars=False)
        records[fork.label] = follower.record
        add_to_launch_order(launch_dir, fork.run_dir.name)
        supervisor.add(spec)
        board.add(fork.run_dir, fork.label, spec.colour_index, None, logged_config(fork.config), follower=follower)
        desk.add(fork.label, fork.run_dir, fork.config)
        if pane is not None and sender is not None:
            pane.add(fork.label, sender)

    with stops.installed():
        if options.cluster is not None:
            from dashboard.launch.on_ray import RaySupervisor

            supervisor = RaySupervisor(specs, stops, options.parallel, options.cluster)
        else:
            supervisor = Supervisor(specs, stops, options.parallel)
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
        events = None
        if sender is not None:
            sender.start()
        if pane is not None and sender is not None and not stops.count:
            events = PageEvents(VisdomConnection(server.url), options.draw.env,
                                pane.asked,
                                lambda listening: pane.hearing(listening, sender)).start()
        next_draw = 0.0
        while True:
            # short passes, so that a request in the inbox goes on at once; the logs are read and
            # the terminal drawn every options.poll s
            running = supervisor.step(min(DESK_POLL, options.poll))
            clicked = pane is not None and pane.waiting()  # the page's events, taken here
            asked, due = desk.pending() or clicked, time.monotonic() >= next_draw or not running
            forking = bool(desk.forks.pending)  # a parent's log says when it applied the fork: read it at once
            # a request is checked against the runs' logs as they are now, not as last read
            if (asked or due or forking) and board.poll() and pane is not None and sender is not None:
                pane.logs_changed(sender)
            for fork, done in desk.forks.settled(records) if forking else ():
                join(fork, done)
                running = True  # its worker starts at the next pass (even if its parent has just stopped)
            if clicked and pane is not None and sender is not None:
                pane.take_asked(sender)
            if asked and desk.poll() and pane is not None and sender is not None:
                sender.mark(REQUESTS_WIN)
            if due:
                next_draw = time.monotonic() + options.poll
                view.draw(board.summaries())
            if not running:
                break
        if events is not None:  # the page's socket
            events.close()
        specs = supervisor.specs  # with the forks that joined
        unwritten = seal_logs(specs, supervisor.exitcodes(), stops.reason if supervisor.stopping else "")
        board.poll()
        view.draw(board.summaries())
        if sender is not None:
            sender.mark(windows.RUNS_WIN)  # the final statuses, including sealed ones
            if pane is not None:  # no launcher hears the page now: the Control pane says so
                pane.end(launch_dir, sender)
            delivered = sender.close(wait=0.5 if stops.count > 1 else 3.0)
            missed = [s for s in specs if (s.run_dir / INCOMPLETE_MARK).exists()]
            if (missed or not delivered) and stops.count < 2 and server is not None:
                redraw(out, [s.run_dir for s in specs], launch_dir, server.url, options.draw,
                       [pane.message()] if pane is not None else [])
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
    resume_nproc: int | None = None  # resume every run on this many processes (None: as logged)
    log_dir: Path = Path("runs")
    headless: bool = False
    visdom_url: str | None = None
    server: ServerConfig = field(default_factory=ServerConfig)
    start_server: bool = True
    # how the runs are drawn; its env PER_LAUNCH (the default) means one env per launch, named
    # after its folder (a resumed launch: the env its runs logged)
    draw: windows.DrawOptions = windows.DrawOptions(env=PER_LAUNCH)
    keep_serving: bool = True  # after the runs, keep a server this command started up until Ctrl-C
    control: bool = True  # False (--no-control): no Control pane, and `livetrain control` is refused
    parallel: int | None = None  # workers alive at once, the rest queued; None: default_parallel()
    cluster: str | None = None  # --cluster: the Ray cluster the runs train on; None: this machine


@dataclass
class Checked:
    """A request that passed every check: its env checked, the runs of the launch it resumes (None
    for new runs), the configs that train, the server it draws into (None: headless), its locks."""

    request: RunRequest
    resumed: list[PlannedRun] | None
    configs: list[RunConfig]
    server: Server | None
    locks: list[LaunchLock] = field(default_factory=list)


def check(request: RunRequest, dry_run: bool = False) -> Checked:
    """Every check a launch makes before it starts or writes anything; a LivetrainError (its kind
    carries the exit code) for the first that fails. `dry_run` (`--dry-run`) makes the same checks
    and changes nothing: it takes no lock, creates no log dir and starts no server."""
    resumed, locks = None, []
    if request.resume_dir is not None:
        resumed = resume_runs(request.resume_dir, request.resume_epochs, request.resume_nproc)
        for folder in dict.fromkeys(run.run_dir.parent for run in resumed):  # refused while it trains
            if dry_run:
                LaunchLock(folder).refuse_if_held()
            else:
                locks.append(LaunchLock(folder).take())
        configs = [run.config for run in resumed if not run.done]
    else:
        configs = list(request.configs)
    if request.draw.env != PER_LAUNCH:
        request = replace(request, draw=replace(request.draw, env=check_env(request.draw.env)))
    check_devices(configs)
    if request.cluster is not None:
        from dashboard.launch.on_ray import check_cluster, check_nodes

        check_cluster(request.cluster, configs, warm=not dry_run)
    if not dry_run and request.cluster is None:  # on a cluster no worker is forked here
        prepare_to_fork()
    load_data(configs)
    if request.resume_dir is None:
        prepare_log_dir(request.log_dir, dry_run)
    server = None
    if not request.headless:
        url = check_url(request.visdom_url) if request.visdom_url else None
        server = find_server(url, request.server, request.start_server, dry_run)
    if request.cluster is not None and not dry_run:  # connects: it needs the cluster itself
        cpus = check_nodes(request.cluster, configs, server)
        request = replace(request, parallel=request.parallel or cpus)  # on a cluster, its CPUs by default
    return Checked(request, resumed, configs, server, locks)


def run(request: RunRequest, out: TextIO | None = None) -> int:
    """Check everything, start the server if needed, train, report; the exit code.

    Raises a LivetrainError (its kind carries the exit code) before anything is started or written."""
    out = GoneQuiet(out or sys.stdout)  # type: ignore[assignment]  # a closed terminal stops no run
    checked = check(request)
    request, configs, server = checked.request, checked.configs, checked.server
    runs = checked.resumed or []
    try:
        if request.resume_dir is None:
            launch_dir = new_launch_dir(request.log_dir)
            checked.locks.append(LaunchLock(launch_dir).hold())  # held until the launch ends, and by its workers
            checked.locks[-1].mark()
            runs = [PlannedRun(config, launch_dir / config.label) for config in configs]
            write_launch_order(launch_dir, runs)
            env = request.draw.env or f"livetrain_{launch_dir.name}"
        else:
            launch_dir = request.resume_dir
            env = request.draw.env or _logged_env(runs) or f"livetrain_{launch_dir.name}"
            for run in runs:
                if not run.done:
                    supersede(run.run_dir, resumes_at(run))  # what it logged past its checkpoint, it logs again
        draw = replace(request.draw, env=env, run_windows=windows.run_windows_for(len(runs)))
        options = LaunchOptions(server, draw, out, parallel=request.parallel or default_parallel(),
                                control=request.control, cluster=request.cluster)
        _announce(out, runs, launch_dir, server, env)
        started = time.monotonic()
        outcome = launch(runs, launch_dir, options)
        _report(out, outcome, time.monotonic() - started)
        if server is not None and server.started is not None and request.keep_serving and not outcome.interrupted:
            serve_until_stopped(out, server, env)
        return outcome.exit_code
    finally:
        for lock in checked.locks:
            lock.release()
        if server is not None and server.started is not None:
            server.started.stop()


def default_parallel(cores: int | None = None) -> int:
    """Workers alive at once unless --parallel says: the machine's cores, and at least 4, so that
    a handful of runs trains side by side (the point of the page) even on 2 cores, while a big
    sweep queues instead of slowing every run down to a crawl."""
    return max(4, cores or machine_cores())


def _logged_env(runs: Sequence[PlannedRun]) -> str | None:
    record = read(runs[0].run_dir, keep_scalars=False)
    env = record.meta.get("env")
    return str(env) if env and is_fit_name(str(env)) else None


def _announce(out: TextIO, runs: Sequence[PlannedRun], launch_dir: Path,
              server: Server | None, env: str) -> None:
    first = runs[0].config
    names = ", ".join(run.config.label + (" (finished)" if run.done else " (resumed)" if run.resume else "")
                      for run in runs)
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
        out.write(f"Interrupted ({outcome.stopped_by}) after {took}: run logs and the checkpoints of finished "
                  "epochs are kept in "
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
