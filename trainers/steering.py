"""A training run's side of control (see trainers.control): between two batches it reads what
was asked of the run and applies it, and records what happened to each request in the run log.

- `set` changes the lr (the base the schedule scales, from the next batch), momentum or weight
  decay, in the optimizer and in the config the run's checkpoints carry, so that a resumed run
  keeps the change.
- `pause` holds the run between two batches, logging no batch, until `resume` (or `stop`): it
  then goes on exactly where it was (the same batches, the same numbers).
- `stop` ends the run there: `fit` writes a checkpoint of that point, to resume or fork from.
- `fork` writes a checkpoint of that point into the folder the launcher named, beside the run's
  (`save`, given by `fit`), for the launcher to start the fork from; the run goes on (or stops,
  when the request says so). A checkpoint that cannot be written (a full disk) refuses the fork,
  with why, and the run goes on.
A request seen twice (its id) is applied once; one that cannot apply is refused, with why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from trainers.checkpoints import EpochPosition
from trainers.config import RunConfig
from trainers.control import (
    CONTROL, FORK, PAUSE, RESUME, SET, STOP, Inbox, NoInbox, Request, StopRequested, plain_name, refusal,
)
from trainers.reporting import Reporter, RunState

PAUSED_POLL = 0.25  # s between looks at the inbox while paused


class Steering:
    """Applies the requests made to one training run (`between`, called after every batch)."""

    def __init__(self, inbox: Inbox | None, reporter: Reporter, optimizer: Any, config: RunConfig) -> None:
        self.inbox = inbox or NoInbox()
        self.reporter = reporter
        self.optimizer = optimizer
        self.config = config  # with the lr, momentum and weight decay in force
        self.paused = False
        # writes a fork's checkpoint: (folder name beside the run's, position in the epoch, x);
        # set by `fit` for each epoch; None: the run keeps no checkpoints, so nothing forks from it
        self.save: Callable[[str, EpochPosition, float], None] | None = None
        self._done: set[str] = set()

    def resumed_with(self, lr: float | None) -> None:
        """A resumed run's base lr, as its checkpoint has it (maybe changed from the page)."""
        if lr is not None and lr != self.config.lr:
            self.config = replace(self.config, lr=lr)
            if self.config.schedule == "constant":
                self.optimizer.param_groups[0]["lr"] = lr

    def between(self, step: int, x: float, position: EpochPosition | None = None) -> bool:
        """Take what was asked since the last batch (`step` batches done, at `x` epochs, at
        `position` in the epoch). True when the run was paused (it waited here); raises
        StopRequested for a stop."""
        requests = self.inbox.poll()
        if not requests:
            return False
        for request in requests:
            self._take(request, step, x, position)
        waited = False
        while self.paused:
            waited = True
            for request in self.inbox.wait(PAUSED_POLL):
                self._take(request, step, x, position)
        return waited

    def _take(self, request: Request, step: int, x: float, position: EpochPosition | None = None) -> None:
        if request.id in self._done:  # delivered again: applied once already
            return
        self._done.add(request.id)
        reason = refusal(request.action, request.values, str(self.config.optimizer), self.paused)
        if not reason and request.action == FORK:
            reason = self._fork(request, x, position)
        if reason:
            self._record(request, step, x, reason)
            return
        if request.action == SET:
            self._set(dict(request.values))
        self._record(request, step, x)
        if request.action == PAUSE:
            self.paused = True
            self.reporter.status(RunState.PAUSED, f"paused ({request.source or 'asked'})")
        elif request.action == RESUME:
            self.paused = False
            self.reporter.status(RunState.RUNNING)
        elif request.action == STOP or (request.action == FORK and request.options.get("stop_parent")):
            raise StopRequested(request)

    def _fork(self, request: Request, x: float, position: EpochPosition | None) -> str:
        """Write the checkpoint a fork starts from; why it could not ("" when written)."""
        into = str(request.options.get("into") or "")
        if self.save is None or position is None:
            return "this run keeps no checkpoints, so nothing can fork from it"
        if not plain_name(into):
            return f"a fork goes to a folder beside the run's, not {into!r}"
        try:
            self.save(into, position, x)
        except OSError as exc:  # a full disk: the fork fails, the run goes on
            return f"its checkpoint could not be written ({exc.strerror or exc}: {exc.filename or into})"
        return ""

    def _set(self, values: dict[str, float]) -> None:
        group = self.optimizer.param_groups[0]
        for name, value in values.items():
            value = float(value)
            if name == "lr":
                if self.config.schedule == "constant":  # otherwise the next batch's schedule scales it
                    group["lr"] = value
            else:
                group[name] = value
        self.config = replace(self.config, **{k: float(v) for k, v in values.items()})

    def _record(self, request: Request, step: int, x: float, refused: str = "") -> None:
        outcome = {"applied": not refused, **({"reason": refused} if refused else {})}
        self.reporter.record(CONTROL, step, x, {**request.to_dict(), **outcome})

