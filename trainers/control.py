"""What a run can be asked while it trains, and how the loop takes it.

A person on the page (or `livetrain control`) asks a run to stop, pause, resume, change its
learning rate, momentum or weight decay, or fork: write a checkpoint of the point it has reached
beside it, for its launcher to start a new run from (trainers.checkpoints: a fork's checkpoint).
The launcher checks the request and hands it to the run's worker; the loop reads what came
between two batches (`Inbox.poll`, cheap when nothing did) and applies it before the next batch. What happened to each request is recorded in the run log with
its id, so that a request delivered twice is applied once, and the page and the command line can
say "applied at batch N" or why not.

This module knows nothing of where requests come from (`dashboard.launch.control` reads them from
the run's folder): the loop sees an `Inbox`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from trainers.settings import FORKABLE, SETTABLE  # noqa: F401 - named here as before

STOP, PAUSE, RESUME, SET, FORK = "stop", "pause", "resume", "set", "fork"
ACTIONS = (STOP, PAUSE, RESUME, SET, FORK)
CONTROL = "control"  # the kind of the run log's record of each request's outcome


@dataclass(frozen=True)
class Request:
    """One request to a run: its id (unique: a second delivery of it is not applied again), the
    action, its values (for `set`: {"lr": 0.01}; for `fork`: the fork's settings), where it came
    from ("page", "command line"), and for `fork` its options: "into", the folder (beside the
    run's) its checkpoint goes to, named by the launcher; "stop_parent", whether the run stops there."""

    id: str
    action: str
    values: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        item = {"id": self.id, "action": self.action, "values": dict(self.values), "source": self.source}
        return {**item, "options": dict(self.options)} if self.options else item

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> "Request":
        return cls(str(item["id"]), str(item["action"]), dict(item.get("values") or {}), str(item.get("source", "")),
                   dict(item.get("options") or {}))


class Inbox(Protocol):
    """Where a training run finds the requests made to it."""

    def poll(self) -> list[Request]:
        """The requests that came since the last call; called between every two batches, so it
        must cost next to nothing when none did."""

    def wait(self, timeout: float) -> list[Request]:
        """Like poll, but waits up to `timeout` s for one (a paused run)."""


class NoInbox:
    """A run nobody can ask anything (a hand-written loop, a test)."""

    def poll(self) -> list[Request]:
        return []

    def wait(self, timeout: float) -> list[Request]:
        return []


class StopRequested(Exception):
    """A request to stop the run: raised between two batches, caught by `fit`, which writes a
    checkpoint of the point reached and ends the run."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.action)
        self.request = request


def refusal(action: str, values: Mapping[str, Any], optimizer: str, paused: bool) -> str:
    """Why a request cannot be applied to a run training with `optimizer` (paused or not), or ""."""
    if action not in ACTIONS:
        return f"no action {action!r}; use one of {', '.join(ACTIONS)}"
    if action == RESUME and not paused:
        return "the run is not paused"
    if action == PAUSE and paused:
        return "the run is paused already"
    if action == FORK:
        return ""  # the fork's settings are the launcher's to check, against the whole config
    if action != SET:
        return ""
    if not values:
        return f"set what? give one of {', '.join(SETTABLE)}, e.g. lr=0.01"
    for name, value in values.items():
        if name not in SETTABLE:
            return f"{name} cannot change while a run trains; {', '.join(SETTABLE)} can"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} must be a number, not {value!r}"
        if name == "lr" and not value > 0:
            return f"learning rate must be a positive number, not {value}"
        if name in ("momentum", "weight_decay") and not 0 <= value < 1:
            return f"{name.replace('_', ' ')} must be from 0 up to (not including) 1, not {value}"
        if name == "momentum" and optimizer != "sgd":
            return f"momentum is SGD's setting, and this run trains with {optimizer}"
    return ""


def changed(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """What a request's recorded outcome (a "control" record) changed in the run: the values of a
    `set` it applied, else nothing."""
    return dict(outcome.get("values") or {}) if outcome.get("applied") and outcome.get("action") == SET else {}


def outcome_of(controls: list[dict[str, Any]], ident: str) -> dict[str, Any] | None:
    """The recorded outcome of request `ident` among a run's "control" records (None: not yet)."""
    return next((c for c in controls if c.get("id") == ident), None)


def source_said(request: Request) -> str:
    """How a run's status says who stopped it: "stopped from the page", "... by `livetrain control`"
    (a fork that stopped its parent: "..., forked into mlp-fork1")."""
    said = "stopped from the page" if request.source == "page" else "stopped by `livetrain control`"
    return f"{said}, forked into {request.options['into']}" if request.action == FORK else said


def plain_name(name: str) -> bool:
    """Whether `name` can be a folder beside a run's (no path in it, not hidden): a fork's "into"."""
    return bool(name) and name not in (".", "..") and not name.startswith(".") and "/" not in name and "\\" not in name
