"""Forks: a new run started from the point a live run has reached, with settings a person changes.

    `livetrain control fork` / the page's Fork -> the launcher's Desk: the fork planned here (its
      label, folder and config, checked as `--set` checks them) and its request sent to the parent
      -> the parent's worker, between two batches: a checkpoint of that point written into the
         fork's folder (trainers.steering), recorded in its log as applied at batch N, x
      -> the launcher (`Forks.settled`, as it reads the parent's log): the fork joins the launch,
         a run like the others (queued when --parallel has no free slot), resumed from that
         checkpoint with its own config (trainers.checkpoints), its log naming its parent and x

A fork's config is its parent's as the parent trains now (with what was set from the page), with
the settings given (trainers.control.FORKABLE) and its own label: `PARENT-fork1` unless named.
With nothing changed it trains batch for batch as its parent does from that point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dashboard.launch.grid import check_label
from dashboard.launch.plan import PlanError
from dashboard.runlog import RunRecord
from trainers.config import ConfigError, RunConfig
from trainers.control import SETTABLE, changed, outcome_of
from trainers.reporting import RunState


@dataclass(frozen=True)
class Fork:
    """A fork asked for: request `id` to run `parent`; the run it starts once the parent applies it."""

    id: str
    parent: str  # the parent's label
    label: str
    run_dir: Path
    config: RunConfig
    stop_parent: bool = False


def fork_config(parent: RunConfig, record: RunRecord | None, values: Mapping[str, Any], label: str) -> RunConfig:
    """The fork's config: the parent's (as it was asked for, so that what the model decides by
    default is decided again for a new optimizer), with what was set while it trained, then
    `values`; checked as `--set` is (a ConfigError says why not)."""
    since: dict[str, Any] = {}
    for item in record.controls if record is not None else ():
        since.update(changed(item))
    settings = {key: value for key, value in since.items() if key in SETTABLE}
    if "optimizer" in values:  # another optimizer: the parent's momentum and weight decay were its own
        settings = {key: value for key, value in settings.items() if key == "lr"}
    config = replace(parent, **{**settings, **dict(values), "label": label})
    config.check()
    x = record.x if record is not None else 0.0
    if config.epochs <= x:
        raise ConfigError(f"epochs must be more than the {x:.2f} the run has trained, not {config.epochs}")
    return config


class Forks:
    """The forks asked for in one launch and not yet started or refused."""

    def __init__(self, launch_dir: Path) -> None:
        self.launch_dir = launch_dir
        self.pending: dict[str, Fork] = {}
        self.count: dict[str, int] = {}  # forks named after each parent so far

    def plan(self, ident: str, parent: str, config: RunConfig, record: RunRecord | None, values: Mapping[str, Any],
             label: str, taken: set[str], stop_parent: bool) -> Fork:
        """Fork `parent` (its config as launched, `record` its log): label and folder chosen
        (`label`, else PARENT-forkN), the config checked. A PlanError or ConfigError says why not."""
        taken = taken | {fork.label for fork in self.pending.values()}
        if label:
            label = check_label(label)
            if label in taken or (self.launch_dir / label).exists():
                raise PlanError(f"a run is labelled {label!r} in this launch already; name the fork otherwise")
        else:
            n = self.count.get(parent, 0)
            while not label or label in taken or (self.launch_dir / label).exists():
                n += 1
                label = f"{parent}-fork{n}"
            self.count[parent] = n
        fork = Fork(ident, parent, label, self.launch_dir / label, fork_config(config, record, values, label),
                    stop_parent)
        self.pending[ident] = fork
        return fork

    def settled(self, records: Mapping[str, RunRecord]) -> list[tuple[Fork, dict[str, Any]]]:
        """The forks whose parents applied them since the last call, each with its parent's record of
        it (step, x). Those refused, or whose parent ended first, are dropped (their folder with them,
        when the parent left nothing in it)."""
        started = []
        for ident, fork in list(self.pending.items()):
            record = records.get(fork.parent)
            done = outcome_of(record.controls, ident) if record is not None else None
            if done is None and (record is None or not RunState(record.status).final):
                continue
            del self.pending[ident]
            if done is not None and done.get("applied"):
                started.append((fork, done))
            else:
                try:
                    os.rmdir(fork.run_dir)
                except OSError:
                    pass
        return started

