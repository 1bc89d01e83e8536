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
A request seen twice (its id) is applied once; one that cannot apply is refused, with why.

On several ranks (trainers.distributed) every rank applies a request at the same batch: rank 0
alone reads the inbox, and whether anything came rides on the batch's sums that the ranks
all-reduce anyway (`ask`), so a batch with no request costs no extra collective. When one did,
rank 0 decides each request (and writes a fork's checkpoint), then shares what it decided with
the others, which apply the same. A paused run's ranks meet every PAUSED_POLL s (rank 0 says
what came, maybe nothing), so no collective waits long enough to time out, however long the pause."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from trainers.checkpoints import EpochPosition
from trainers.config import RunConfig
from trainers.control import (
    CONTROL, FORK, PAUSE, RESUME, SET, STOP, Inbox, NoInbox, Request, StopRequested, plain_name, refusal,
)
from trainers.distributed import SINGLE, World
from trainers.reporting import Reporter, RunState

PAUSED_POLL = 0.25  # s between looks at the inbox while paused


class Steering:
    """Applies the requests made to one training run (`between`, called after every batch)."""

    def __init__(self, inbox: Inbox | None, reporter: Reporter, optimizer: Any, config: RunConfig,
                 world: World = SINGLE) -> None:
        self.world = world
        self.inbox = inbox if inbox is not None and world.main else NoInbox()  # rank 0's alone
        self.reporter = reporter
        self.optimizer = optimizer
        self.config = config  # with the lr, momentum and weight decay in force
        self.paused = False
        # writes a fork's checkpoint: (folder name beside the run's, position in the epoch, x);
        # set by `fit` for each epoch; None: the run keeps no checkpoints, so nothing forks from it
        self.save: Callable[[str, EpochPosition, float], None] | None = None
        self._done: set[str] = set()
        self._asked: list[Request] = []  # on several ranks: what rank 0 found before the batch's sums

    def resumed_with(self, lr: float | None) -> None:
        """A resumed run's base lr, as its checkpoint has it (maybe changed from the page)."""
        if lr is not None and lr != self.config.lr:
            self.config = replace(self.config, lr=lr)
            if self.config.schedule == "constant":
                self.optimizer.param_groups[0]["lr"] = lr

    def ask(self) -> float:
        """On several ranks, before the batch's sums: 1.0 when rank 0 found a request, else 0.0 (a
        term of those sums: every rank then knows whether to meet in `between`)."""
        self._asked = self.inbox.poll()
        return float(bool(self._asked))

    def between(self, step: int, x: float, position: EpochPosition | None = None, asked: bool = False) -> bool:
        """Take what was asked since the last batch (`step` batches done, at `x` epochs, at
        `position` in the epoch; on several ranks `asked`: the sum of the ranks' `ask`). True when
        the run was paused (it waited here); raises StopRequested for a stop."""
        if self.world.size == 1:
            requests = self.inbox.poll()
            if not requests:
                return False
        elif not asked:
            return False
        else:
            requests, self._asked = self._asked, []
        stop = self._round(requests, step, x, position)
        waited = False
        while self.paused and stop is None:
            waited = True
            stop = self._round(self.inbox.wait(PAUSED_POLL), step, x, position)
        if stop is not None:
            raise StopRequested(stop)
        return waited

    def _round(self, requests: list[Request], step: int, x: float, position: EpochPosition | None) -> Request | None:
        """Decide and apply `requests` (rank 0's; on the others, what rank 0 shares that it
        decided); the request that stops the run, if one does."""
        if self.world.main:
            shared, stop = [], None
            for request in requests:
                if request.id in self._done:  # delivered again: applied once already
                    continue
                self._done.add(request.id)
                reason = self._decide(request, x, position)
                shared.append({**request.to_dict(), "refused": reason})
                if self._apply(request, step, x, reason):
                    stop = request
                    break
            self.world.share(shared or None)
            return stop
        for item in self.world.share(None) or []:
            request = Request.from_dict(item)
            if self._apply(request, step, x, str(item["refused"])):
                return request
        return None

    def _decide(self, request: Request, x: float, position: EpochPosition | None) -> str:
        """Why `request` cannot apply now ("" if it can); a fork's checkpoint is written here."""
        reason = refusal(request.action, request.values, str(self.config.optimizer), self.paused)
        if not reason and request.action == FORK:
            reason = self._fork(request, x, position)
        return reason

    @staticmethod
    def _stops(request: Request) -> bool:
        return request.action == STOP or (request.action == FORK and bool(request.options.get("stop_parent")))

    def _apply(self, request: Request, step: int, x: float, refused: str) -> bool:
        """Apply a decided request and record its outcome; True when it stops the run."""
        self._record(request, step, x, refused)
        if refused:
            return False
        if request.action == SET:
            self._set(dict(request.values))
        elif request.action == PAUSE:
            self.paused = True
            self.reporter.status(RunState.PAUSED, f"paused ({request.source or 'asked'})")
        elif request.action == RESUME:
            self.paused = False
            self.reporter.status(RunState.RUNNING)
        return self._stops(request)

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

