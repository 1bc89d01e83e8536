"""Resuming an earlier launch: its runs as they were (the finished ones too, drawn from their
logs, each in the colour it had), the lock that keeps two launchers off one launch folder, and
each resumed run's log cut back to its checkpoint, so that nothing past it is drawn twice.

A run interrupted at epoch 2.6 resumes from its epoch-2 checkpoint and logs x in (2, 2.6] again;
its earlier records there are superseded (TensorBoard's `purge_step` does the same for event
files). They move, whole lines, to `superseded.jsonl` in the run's folder: nothing logged is lost,
and the log, its replay and every window read each x once. A run with no checkpoint (it failed
or was stopped in its first epoch) starts over at x = 0, on the same trace."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import IO

from dashboard.launch.plan import LaunchError, PlannedRun
from dashboard.runlog import LOG_NAME, NODE_FILE, read, run_dirs
from trainers.config import ConfigError, RunConfig
from trainers.reporting import RunState, epochs_done
from trainers.catalog import ModelFileError, is_user_model

# A launch folder's own files lie in its hidden folder LAUNCH_META: a run's label starts with a
# letter or digit, so no run's folder can take its name
LAUNCH_META = ".livetrain"
LOCK_NAME = f"{LAUNCH_META}/lock"  # held (shared) by the launch's launcher and workers
SUPERSEDED = "superseded.jsonl"
LAUNCH_FILE = f"{LAUNCH_META}/launch.json"  # the launch's runs in their order
_DRAWN_AT_X = ("scalars", "predictions", "confusion", "mistakes")  # records a run logs again at each x


def resume_runs(launch_dir: Path, epochs: int | None = None, nproc: int | None = None) -> list[PlannedRun]:
    """Every run of an earlier launch, in its order: those with epochs left resume (from their
    checkpoint, where they have one), on `nproc` processes each (None: as logged; a checkpoint is
    the bare model's, whatever the processes that wrote it), with the threads this launch gives
    them; the finished ones are there to be shown (`done`). Each keeps the colour it was drawn in."""
    found = in_launch_order(run_dirs(launch_dir, depth=1))  # a launch's folder, or one run's own
    if not found:
        raise LaunchError(f"no run logs in {launch_dir}; pass a folder made by `livetrain run` "
                          "(`livetrain runs` lists them)")
    runs, done = [], []
    for run_dir in found:
        record = read(run_dir, keep_scalars=False)
        if not record.config:
            raise LaunchError(f"{run_dir / LOG_NAME} has no config record, so it cannot be resumed; "
                              "start a new run instead")
        # the threads were the old launch's share of the cores: this launch shares them anew
        config = replace(RunConfig.from_dict(record.config), threads=None)
        if record.meta.get("label"):
            config = replace(config, label=str(record.meta["label"]))
        if epochs is not None:
            config = replace(config, epochs=epochs)
        if nproc is not None:
            config = replace(config, nproc=nproc)
        colour = record.meta.get("colour")
        colour = int(colour) if isinstance(colour, int) else None
        if record.status == RunState.FINISHED and config.epochs <= epochs_done(record.x):
            done.append(config.label)
            runs.append(PlannedRun(config, run_dir, colour=colour, done=True))
            continue
        try:
            config = config.resolved()
        except ModelFileError as exc:
            path = Path(config.model.rsplit(":", 1)[0]) if is_user_model(config.model) else None
            if path is not None and not path.is_file():
                raise LaunchError(f"cannot resume {run_dir}: its model came from {path}, which is not there now; "
                                  "put the file back there (the run's model is named by that path)") from None
            raise LaunchError(f"cannot resume {run_dir}: {exc}; fix the model file, which the run's model is "
                              "named by") from None
        except ConfigError as exc:  # the log's settings, not the command line's: a damaged log
            raise LaunchError(f"cannot resume {run_dir}: its logged config is refused ({exc})") from None
        from trainers.checkpoints import CHECKPOINT, read_checkpoint  # torch: resuming trains

        checkpoint = run_dir / CHECKPOINT
        if checkpoint.is_file():
            read_checkpoint(checkpoint, config)  # damaged: said now, not by the run's worker
        runs.append(PlannedRun(config, run_dir, checkpoint.is_file(), colour=colour))
    if len(done) == len(runs):
        raise LaunchError(f"every run in {launch_dir} has finished its epochs ({', '.join(done)}); "
                          "pass --epochs with a larger number to train them further")
    return runs


def write_launch_order(launch_dir: Path, runs: list[PlannedRun]) -> None:
    """Note the launch's runs in their order (their folders' names), for a resume to keep it."""
    (launch_dir / LAUNCH_META).mkdir(exist_ok=True)
    (launch_dir / LAUNCH_FILE).write_text(json.dumps({"runs": [run.run_dir.name for run in runs]}, ensure_ascii=False)
                                          + "\n", encoding="utf-8")


def add_to_launch_order(launch_dir: Path, name: str) -> None:
    """A run folder that joined the launch as it trained (a fork), last in its order."""
    try:
        names = list(json.loads((launch_dir / LAUNCH_FILE).read_text(encoding="utf-8"))["runs"])
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    tmp = launch_dir / f"{LAUNCH_FILE}.tmp"
    tmp.write_text(json.dumps({"runs": [*names, name]}, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, launch_dir / LAUNCH_FILE)


def in_launch_order(found: list[Path]) -> list[Path]:
    """Run folders in the order their launch listed them (LAUNCH_FILE), any others after."""
    if not found:
        return found
    try:
        names = json.loads((found[0].parent / LAUNCH_FILE).read_text(encoding="utf-8"))["runs"]
        order = {str(name): i for i, name in enumerate(names)}
    except (OSError, ValueError, KeyError, TypeError):
        return found
    return sorted(found, key=lambda d: order.get(d.name, len(order)))


class LaunchLock:
    """A launch folder's lock: its launcher and each of its workers hold it shared while they run
    (a lock the kernel drops when they die, however they die); resuming the folder takes it
    exclusively first, so a launch still training is refused rather than written into twice."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.path.parent.mkdir(exist_ok=True)
        self._file: IO[str] | None = None

    def hold(self) -> "LaunchLock":
        """Hold it shared (a new launch, or a worker of one), for as long as this process lives."""
        self._file = open(self.path, "a+", encoding="utf-8")
        fcntl.flock(self._file, fcntl.LOCK_SH)
        return self

    def take(self) -> "LaunchLock":
        """Take it for a resume: refused while any launcher or worker of the folder runs; then
        held shared, as a launch holds it."""
        self._file = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise self._training() from None
        self.mark()
        fcntl.flock(self._file, fcntl.LOCK_SH)
        return self

    def refuse_if_held(self) -> None:
        """Refuse as `take` would, taking nothing (`--dry-run`)."""
        if self.held():
            raise self._training()

    def _training(self) -> LaunchError:
        pid = self.path.read_text(encoding="utf-8").strip() if self.path.is_file() else ""
        return LaunchError(f"{self.folder} is still training (its launcher{f', pid {pid},' if pid else ''} "
                           "or one of its workers is running); stop it, or let it end, then resume")

    def mark(self) -> None:
        """Write this process's pid in it (the launcher's), for the message a resume refused reads."""
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.write(str(os.getpid()))
            self._file.flush()

    def held(self) -> bool:
        """Whether a launcher or worker of the folder holds the lock now (the launch runs)."""
        if not self.path.is_file():
            return False
        with open(self.path, "a+", encoding="utf-8") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
        return False

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def launch_running(folder: Path) -> bool | None:
    """Whether the launch `folder` is training now (a process of it holds its lock); None when the
    folder has no lock (no launch of ours made it)."""
    if not (folder / LOCK_NAME).is_file():
        return None
    return LaunchLock(folder).held()


def hold_launch_lock(run_dir: Path) -> LaunchLock | None:
    """A worker's share of its launch folder's lock, when the folder has one (a launched run)."""
    folder = run_dir.parent
    return LaunchLock(folder).hold() if (folder / LOCK_NAME).is_file() else None


def resumes_at(run: PlannedRun) -> float | None:
    """The epochs a resumed run's checkpoint holds; None when it starts over."""
    from trainers.checkpoints import CHECKPOINT, checkpoint_x, read_checkpoint

    return checkpoint_x(read_checkpoint(run.run_dir / CHECKPOINT, run.config)) if run.resume else None


def supersede(run_dir: Path, done: float | None) -> int:
    """Cut a run's log back to where it resumes, after `done` epochs (None: it starts over): every
    record it will log again (scalars, predictions, confusion matrices, mistakes past `done`; all
    of them, and its training samples, when it starts over) moves to SUPERSEDED. Returns the lines
    moved. The log is replaced in one rename; the moved lines are written (and flushed) first.
    The node it trained on (a cluster's) is forgotten: it tells where it trains next."""
    (run_dir / NODE_FILE).unlink(missing_ok=True)
    path = run_dir / LOG_NAME
    if not path.is_file():
        return 0
    kept, moved = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            (moved if _superseded(line, done) else kept).append(line if line.endswith("\n") else line + "\n")
    if not moved:
        return 0
    with open(run_dir / SUPERSEDED, "a", encoding="utf-8") as handle:
        handle.writelines(moved)
        handle.flush()
        os.fsync(handle.fileno())
    tmp = path.with_name(f".{LOG_NAME}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(moved)


def _superseded(line: str, done: float | None) -> bool:
    """Whether a log line is one a run resuming after `done` epochs (None: from the start) logs again."""
    try:
        record = json.loads(line)
        kind = record["kind"]
    except (ValueError, KeyError, TypeError):
        return True  # a line cut by a crash: moved aside, not lost
    if done is None:
        return kind in _DRAWN_AT_X or kind == "samples"
    return kind in _DRAWN_AT_X and float(record.get("x", 0.0)) > done + 1e-9
