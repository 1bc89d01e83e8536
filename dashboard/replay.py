"""Replay: draw logged runs in a Visdom env, through the very code that draws live runs.

Each run's log is fed, record by record, to a `VisdomBackend` as if the run were training, and
the `Board` reads the same logs for the env-wide panes; then one synchronous pass of the sender
draws it all. So a replayed window holds what the live one held when the run ended."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dashboard.board import Board, run_colour, run_label
from dashboard.connection import VisdomConnection
from dashboard.runlog import INCOMPLETE_MARK, LOG_FORMAT, LOG_NAME, RunRecord, feed, read, run_dirs
from dashboard.sender import Sender
from dashboard.sweep import seed_groups
from dashboard.visdom_backend import VisdomBackend
from dashboard.windows import PALETTE, DrawOptions
from trainers.errors import LivetrainError


class ReplayError(LivetrainError):
    """A one-line reason the replay could not be done."""


@dataclass
class Replayed:
    labels: list[str]
    skipped_lines: int


def find_runs(paths: list[Path]) -> list[Path]:
    """Run dirs named directly, or found one level down (a launch's log dir)."""
    runs: list[Path] = []
    for path in paths:
        if (path / LOG_NAME).is_file() or path.name == LOG_NAME:
            runs.append(path.parent if path.name == LOG_NAME else path)
        elif path.is_dir():
            found = run_dirs(path)  # a launch's folder, or a log dir of launches
            if not found:
                raise ReplayError(f"no run log ({LOG_NAME}) in {path} or its subfolders; pass a run dir")
            runs.extend(found)
        elif path.exists():
            raise ReplayError(f"{path} is not a run dir; pass the folder holding a run's {LOG_NAME}")
        else:
            raise ReplayError(f"{path} does not exist; pass a run dir holding {LOG_NAME}")
    return runs


def check_runs(paths: list[Path]) -> list[Path]:
    """The run dirs under `paths`, each checked to open with its config record (before a server is
    started for them)."""
    run_dirs = find_runs(paths)
    for run_dir in run_dirs:
        record = RunRecord(run_dir / LOG_NAME)
        try:
            with open(run_dir / LOG_NAME, "rb") as handle:
                record.add_line(handle.readline())
        except OSError as exc:
            raise ReplayError(f"cannot read {run_dir / LOG_NAME}: {exc.strerror}") from None
        if not record.config:
            raise ReplayError(_no_config(run_dir))
        _readable(run_dir, record)
    return run_dirs


def _readable(run_dir: Path, record: RunRecord) -> None:
    if record.format > LOG_FORMAT:
        raise ReplayError(f"{run_dir / LOG_NAME} is a run log of format {record.format}, written by a newer "
                          f"livetrain (this one reads formats 1 to {LOG_FORMAT}): upgrade livetrain to replay it")


def _no_config(run_dir: Path) -> str:
    return f"{run_dir / LOG_NAME} holds no run (no config record); is it a livetrain run log?"


def replay_colours(logged: list[tuple[Path, int]]) -> list[int]:
    """Each run's colour in a replay, from (its launch folder, the colour it was drawn in): as it
    was, unless a run of another launch had that colour already (each launch numbers its own from
    0), then the next colour no run has yet. Runs of one launch that shared a colour (a seed
    group) still share it."""
    given: dict[tuple[Path, int], int] = {}
    shades = len(PALETTE)
    for folder, colour in logged:
        if (folder, colour) in given:
            continue
        used = {c % shades for c in given.values()}
        free = [c for c in range(shades) if c not in used]
        given[folder, colour] = colour if colour % shades not in used or not free else free[0]
    return [given[key] for key in logged]


def replay(paths: list[Path], url: str, draw: DrawOptions, timeout: float = 10.0) -> Replayed:
    """Draw the runs under `paths` at `url`, into `draw.env`."""
    run_dirs = find_runs(paths)
    sender = Sender(VisdomConnection(url, timeout=timeout))
    board = Board(sender, draw)
    labels: list[str] = []
    records = []
    for run_dir in run_dirs:
        try:
            record = read(run_dir)
        except OSError as exc:
            raise ReplayError(f"cannot read {run_dir / LOG_NAME}: {exc.strerror}") from None
        if not record.config:
            raise ReplayError(_no_config(run_dir))
        _readable(run_dir, record)
        label = run_label(record, run_dir.name)
        while label in labels:  # two logs of runs with one label: keep their traces apart
            label += "'"
        labels.append(label)
        records.append(record)
    # the seed groups among these runs, as a launch of them groups them
    group_of = {i: group for group, members in seed_groups(list(zip(labels, (r.config for r in records))))
                for i in members}
    colours = replay_colours([(d.parent, run_colour(r, label)) for d, r, label in zip(run_dirs, records, labels)])
    for index, (run_dir, record, label) in enumerate(zip(run_dirs, records, labels)):
        colour = colours[index]
        board.add(run_dir, label, colour, group_of.get(index), record.config)  # its windows' places first
        backend = VisdomBackend(sender, replace(draw, in_group=index in group_of), label, colour)
        feed(record, backend)
    skipped = sum(r.skipped for r in records)
    board.poll()
    if not sender.flush():
        raise ReplayError(f"could not draw the runs at {url}: {sender.last_error}")
    for run_dir in run_dirs:  # their windows are whole now
        (run_dir / INCOMPLETE_MARK).unlink(missing_ok=True)
    return Replayed(labels, skipped)
