"""One run on several processes (ranks) with torch.distributed, rank 0 alone reporting.

A run with `nproc` > 1 is trained by its worker's ranks: the worker becomes torch's elastic agent
(`torch.distributed.launcher.api.elastic_launch`, the code behind `torchrun`), which spawns
`nproc` ranks on this machine, each joining one process group (gloo on the CPU; on CUDA, nccl for
GPU tensors and gloo for the CPU tensors of the per-batch sums) and calling `trainers.loop.fit` as
its rank. Rank 0 alone builds the run's `Dashboard`: one run log, one run on the page. The others
report nothing.

How the run ends is the worker's to log, as one process would: it knows what the ranks do not.
- Finished (or diverged, which every rank sees at the same batch: the loss is the global one):
  rank 0 logged it, and the agent returns.
- A rank killed or raising: the agent sees it within MONITOR_INTERVAL, stops the others
  (SIGTERM, then SIGKILL after SHUTDOWN_TIMEOUT), and the worker logs the run failed with the
  first rank's reason (a rank's own error is in its note, `rank-failure-R.json` in the run dir;
  a signal has none). A rank that hangs instead fails its peers' next collective after
  COLLECTIVE_TIMEOUT.
- Stopped (Ctrl-C, SIGTERM, SIGHUP, the launcher gone): the worker's stop handler interrupts
  the agent, whose shutdown stops the ranks, and the worker logs the run interrupted with the
  reason. Every rank also watches the agent, so none outlives it.

`main` is the other entry: the rank itself, as `torchrun ... -m dashboard.launch.ranks` starts it
on each node (env:// rendezvous; see docs/distributed.md). There rank 0 logs how the run ended as far as it
can tell: its own error, a stop signal, or a failed collective (another rank gone)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import torch.distributed as dist

from dashboard import windows
from dashboard.adapter import Dashboard, DashboardOptions
from dashboard.board import Board
from dashboard.connection import VisdomConnection
from dashboard.launch import page, worker
from dashboard.launch.control import FileInbox
from dashboard.launch.grid import check_label
from dashboard.launch.plan import PlannedRun, check_env
from dashboard.launch.resume import resumes_at, supersede
from dashboard.replay import ReplayError, replay
from dashboard.runlog import INCOMPLETE_MARK
from dashboard.launch.worker import KEPT, STOPPED_BY_CTRL_C, WorkerSpec
from dashboard.sender import Sender
from dashboard.windows import DrawOptions
from trainers.config import RunConfig
from trainers.distributed import World, backend
from trainers.errors import LivetrainError
from trainers.loop import RunResult, Silent, fit, resolve_device
from trainers.reporting import RunState

COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=60)  # a collective a rank never joins fails after this
MONITOR_INTERVAL = 0.5  # s between the agent's looks at its ranks
SHUTDOWN_TIMEOUT = 3  # s the agent gives stopped ranks before SIGKILL (under the launcher's grace)
FAILURE_NOTE = "rank-failure-{rank}.json"  # in the run dir: a rank's own error, for the worker
RANK_LOGS = "ranks"  # in the run dir: each rank's stdout and stderr


@dataclass(frozen=True)
class RankJob:
    """What each rank is given (picklable): the worker's spec, and whether rank 0 logs the run's
    end itself (the torchrun entry) or leaves it to the worker that started the ranks."""

    spec: WorkerSpec
    logs_end: bool = False
    agent: int | None = None  # the pid of the agent that started this rank, watched


def rank_threads(config: RunConfig) -> RunConfig:
    """The config each rank trains: the run's threads shared among its ranks (at least one each)."""
    if config.threads is None or config.device == "cuda":
        return config
    return replace(config, threads=max(1, config.threads // config.nproc))


def train_on_ranks(spec: WorkerSpec) -> RunResult:
    """In a worker: train its run on `nproc` ranks started by torch's elastic agent; log how it
    ended unless rank 0 did (see the module doc). KeyboardInterrupt: stopped, logged."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = spec.config.resolved()
    for note in spec.run_dir.glob(FAILURE_NOTE.format(rank="*")):
        note.unlink()
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the worker prints nothing
    launch = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=config.nproc, rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0", run_id=f"livetrain-{os.getpid()}", max_restarts=0,
        monitor_interval=MONITOR_INTERVAL, start_method="spawn", shutdown_timeout=SHUTDOWN_TIMEOUT,
        # the stop signals stay the worker's own (see worker._stop_on): the agent is told as a
        # KeyboardInterrupt, and its shutdown stops the ranks
        signals_to_handle="SIGQUIT",
        logs_specs=DefaultLogsSpecs(log_dir=str(spec.run_dir / RANK_LOGS), redirects=Std.ALL))
    job = RankJob(replace(spec, config=rank_threads(config)), agent=os.getpid())
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        returned = elastic_launch(launch, rank_main)(job)
    except ChildFailedError as exc:
        reason, details = failure_reason(exc.failures, spec.run_dir, config.nproc)
        worker.seal(spec, RunState.FAILED, reason, worker.logged(spec))
        (spec.run_dir / worker.ERROR_FILE).write_text(details or f"{reason}\n")
        if spec.dashboard.visdom_url is not None:  # rank 0's sender may have died with it: redraw from the log
            (spec.run_dir / INCOMPLETE_MARK).touch()
        return RunResult(RunState.FAILED, reason)
    except KeyboardInterrupt:
        worker.seal(spec, RunState.INTERRUPTED, f"{worker.stopped_by() or STOPPED_BY_CTRL_C}; {KEPT}",
                    worker.logged(spec))
        raise
    except Exception as exc:  # the rendezvous itself (a port, the store): no rank has trained
        worker.seal(spec, RunState.FAILED, f"the ranks could not start: {type(exc).__name__}: {exc}",
                    worker.logged(spec))
        raise
    state = returned.get(0) or RunState.FAILED
    return RunResult(state)


def worker_main(spec: WorkerSpec) -> None:
    """The worker process of a run on several processes (see dashboard.launch.worker.main)."""
    worker.main(spec, train_on_ranks)


def failure_reason(failures: dict[int, Any], run_dir: Path, size: int) -> tuple[str, str]:
    """(the one-line reason, a traceback or "") of a run whose ranks `failures` (by rank: torch's
    ProcessFailure) failed: a rank killed by a signal first (its peers' errors follow from it),
    else the first rank's own error, else the first exit code. The agent's SIGTERM to the ranks
    it stops is not a cause."""
    notes = {}
    for rank in failures:
        try:
            notes[rank] = json.loads((run_dir / FAILURE_NOTE.format(rank=rank)).read_text())
        except (OSError, ValueError):
            pass
    for rank, failure in sorted(failures.items()):
        if failure.exitcode < 0 and rank not in notes and -failure.exitcode != signal.SIGTERM:
            return (f"rank {rank} of {size} was killed ({failure.signal_name()}); the other ranks were stopped",
                    "")
    if notes and all(note.get("collective") for note in notes.values()):
        silent = [r for r in range(size) if r not in notes]  # ended without a word: killed
        if silent:
            return (f"rank {silent[0]} of {size} ended unexpectedly (killed?), and the other ranks' collectives "
                    "failed", "")
    if notes:
        rank = min(notes, key=lambda r: (bool(notes[r].get("collective")), notes[r].get("time", 0.0)))
        return f"rank {rank} of {size} failed: {notes[rank]['error']}", str(notes[rank].get("traceback", ""))
    rank, failure = min(failures.items())
    how = failure.signal_name() if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return f"rank {rank} of {size} ended with {how}; the other ranks were stopped", ""


def _world() -> World:
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def rank_main(job: RankJob) -> str:
    """A rank: join the process group, train its part of the run, return the run's final state
    (rank 0's report). A rank that fails or is stopped exits at once (see the module doc)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, worker._stop_on)
    if job.agent is not None:
        # a launcher's run: the terminal's Ctrl-C reaches every process of its group, and is the
        # launcher's to act on (it stops the worker, whose agent stops the ranks); a rank that
        # stopped itself first would end the run "failed: rank 0 ... exit code 130"
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        worker.watch_launcher(job.agent)
    spec = job.spec
    world = _world()
    dash: Any = Silent()
    board: BoardThread | None = None
    code = worker.EXIT_FAILED
    try:
        config = spec.config.resolved()
        if config.nproc != world.size:  # the torchrun entry: the world is torchrun's
            config = replace(config, nproc=world.size)
        dist.init_process_group(backend(resolve_device(config.device).type), timeout=COLLECTIVE_TIMEOUT)
        if world.main:
            if job.logs_end and spec.dashboard.visdom_url:  # no launcher: rank 0 draws the runs pane too
                board = BoardThread(spec, config)
            dash = Dashboard(spec.run_dir, config.label, spec.dashboard, spec.colour_index, parent=spec.parent)
        # what the launcher asks of the run, read by rank 0 (torchrun's ranks have no launcher)
        inbox = FileInbox(spec.run_dir) if spec.control and world.main and not job.logs_end else None
        result = fit(config, dash, spec.run_dir, resume=spec.resume, world=world, inbox=inbox)
        dist.destroy_process_group()
        return result.status
    except KeyboardInterrupt:
        code = worker.EXIT_INTERRUPTED
        if job.logs_end and world.main:
            dash.status(RunState.INTERRUPTED, f"{_torchrun_stop()}; {KEPT}")
    except BaseException as exc:  # noqa: BLE001 - told to the worker (or logged by rank 0), then exit
        said = rank_error(exc, spec.run_dir)
        if worker.stopped_by():  # a collective cut short by the stop: stopped, not failed
            code = worker.EXIT_INTERRUPTED
            if job.logs_end and world.main:
                dash.status(RunState.INTERRUPTED, f"{_torchrun_stop()}; {KEPT}")
        elif job.logs_end:
            if world.main:
                dash.status(RunState.FAILED, said)
        else:
            note = {"rank": world.rank, "time": time.time(), "error": said, "collective": collective_failed(exc),
                    "traceback": traceback.format_exc()}
            try:
                (spec.run_dir / FAILURE_NOTE.format(rank=world.rank)).write_text(json.dumps(note))
            except OSError:
                pass
            if note["collective"]:  # a peer gone first: let the agent see that rank's end before ours
                try:
                    time.sleep(2 * MONITOR_INTERVAL)
                except KeyboardInterrupt:  # the agent stopping this rank
                    pass
    finally:
        if world.main:
            try:
                dash.close()
            except OSError:
                pass
        if board is not None:
            board.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class BoardThread:
    """The env-wide windows of one run (the runs pane, the compare windows' frames), drawn from
    its log by a thread of rank 0, where no launcher draws them (the torchrun entry)."""

    def __init__(self, spec: WorkerSpec, config: RunConfig, every: float = 1.0) -> None:
        assert spec.dashboard.visdom_url is not None
        self.spec = spec
        self.sender = Sender(VisdomConnection(spec.dashboard.visdom_url), name="visdom-board")
        # the Control pane says why there are no controls: no launcher of ours takes requests
        env = spec.dashboard.draw.env
        note = (page.CONTROL_WIN, lambda connection: connection.post("events", page.torchrun_note(env)))
        self.board = Board(self.sender, spec.dashboard.draw, after_runs=[note])
        self.board.add(spec.run_dir, config.label, spec.colour_index, None, config.to_dict())
        self._stop = threading.Event()
        self.sender.flush()  # the runs pane and the compare windows first, as a launcher draws them
        self.sender.connection.close()
        self.sender.start()
        self._thread = threading.Thread(target=self._follow, args=(every,), name="board", daemon=True)
        self._thread.start()

    def _follow(self, every: float) -> None:
        while not self._stop.wait(every):
            self.board.poll()

    def close(self, wait: float = 3.0) -> None:
        """Draw the run's end, then stop. When the server missed some of the run (its sender or
        this one gave up waiting: a slow or frozen server), redraw the run from its log, as a
        launcher does."""
        self._stop.set()
        self._thread.join()
        self.board.poll()
        self.sender.mark(windows.RUNS_WIN)
        delivered = self.sender.close(wait)
        if delivered and not (self.spec.run_dir / INCOMPLETE_MARK).exists():
            return
        try:
            replay([self.spec.run_dir], self.sender.connection.url, self.spec.dashboard.draw)
        except ReplayError:
            print(f"The Visdom server missed updates and does not answer now; once it does, `livetrain replay "
                  f"{self.spec.run_dir} --env {self.spec.dashboard.draw.env}` redraws the run.", file=sys.stderr)


def _torchrun_stop() -> str:
    """Why a rank under torchrun was stopped: its agent sends SIGTERM when another rank failed as
    well as when it was stopped itself (a Ctrl-C reaches the ranks straight from the terminal)."""
    said = worker.stopped_by() or STOPPED_BY_CTRL_C
    if said == worker.STOP_REASONS[signal.SIGTERM]:
        return f"{said} (torchrun sends it when another rank failed, or when it was stopped itself)"
    return said


def rank_error(exc: BaseException, run_dir: Path) -> str:
    """A rank's error in one line (a failed collective: most likely another rank gone)."""
    full = worker.disk_full(exc, run_dir)
    if full:
        return full.strerror
    if collective_failed(exc):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # gloo's: "[.../pair.cc:545] Read error ..."
        return f"a collective failed, most likely another rank stopped ({first[:160]})"
    return f"{type(exc).__name__}: {exc}"


def collective_failed(exc: BaseException) -> bool:
    """`exc` is torch.distributed's (or gloo's) error of a collective, not this rank's own."""
    return isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and "gloo" in str(exc))


# ---- the torchrun entry ----

def _setting(text: str) -> tuple[str, Any]:
    from trainers.errors import did_you_mean
    from trainers.settings import BY_NAME

    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in BY_NAME:
        flags = [setting.flag for setting in BY_NAME.values()]
        names, hint = ", ".join(flags), did_you_mean(key, flags) if sep else ""
        raise click.BadParameter(f"{text!r}{hint}: write SETTING=VALUE with one of {names}, e.g. lr=0.05")
    try:
        return key, BY_NAME[key].read(raw.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: {BY_NAME[key].flag} must be {BY_NAME[key].what}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.option("--set", "settings", multiple=True, metavar="SETTING=VALUE",
              help="A setting of the run, e.g. --set epochs=3 --set lr=0.05 (as launch.py's --set, without RUN.).")
@click.option("--label", default="", help="The run's name (default: the model's).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="The run's folder is LOG_DIR/LABEL (rank 0 writes it).")
@click.option("--visdom-url", default=None,
              help="The dashboard to draw on, e.g. http://head-node:8097 (login from VISDOM_USERNAME and "
                   "VISDOM_PASSWORD); none: headless, the run log only.")
@click.option("--env", default="main", show_default=True, help="The Visdom env to draw in.")
@click.option("--resume", is_flag=True, help="Resume from the run folder's checkpoint.")
def main(model: str, settings: tuple[str, ...], label: str, log_dir: Path, visdom_url: str | None, env: str,
         resume: bool) -> None:
    """One rank of a run on several processes, as torchrun starts it on each node:

    \b
    torchrun --nnodes=2 --nproc-per-node=1 --node-rank=0 --master-addr=HEAD --master-port=29500 \\
        -m dashboard.launch.ranks cnn --set epochs=3 --visdom-url http://HEAD:8097

    Rank 0 writes the run log and draws the run; the others train only."""
    if "RANK" not in os.environ:
        raise click.UsageError("this is a rank of a run on several processes: start it with torchrun "
                               "(see --help), or use `launch.py run --set MODEL.nproc=N` on one machine")
    values = dict(_setting(text) for text in settings)
    try:
        label, env = check_label(label) if label else "", check_env(env)
        config = RunConfig(model, label=label, **values).resolved()
        config = replace(config, label=check_label(config.label))
    except LivetrainError as exc:
        raise click.UsageError(str(exc)) from None
    options = DashboardOptions(visdom_url=visdom_url, draw=DrawOptions(env=env))
    spec = WorkerSpec(config, log_dir / config.label, options, resume=resume)
    if os.environ["RANK"] == "0":  # the log rank 0 writes: cut back to where this run starts (see resume.py)
        try:
            supersede(spec.run_dir, resumes_at(PlannedRun(config, spec.run_dir, resume)))
        except LivetrainError as exc:  # no checkpoint to resume from, or a damaged one
            raise click.ClickException(str(exc)) from None
    rank_main(RankJob(spec, logs_end=True))


if __name__ == "__main__":
    main()
