"""Control of a live launch's runs, from the command line (`livetrain control`) or the page: the
path a request takes, the launcher's checks, and a worker's inbox.

    livetrain control / the page -> LAUNCH/.livetrain/inbox/ID.json (a request, written whole)
      -> the launcher (`Desk.poll`, every pass of its loop): checked, logged in .livetrain/control.jsonl
         (sent, or refused with why), and appended to RUN/requests.jsonl of each run it names
      -> the run's worker (`FileInbox`, between two batches): applied, and recorded in its run log
         ("control": applied at step N, x, or refused with why; trainers.steering)

Every request has an id: the launcher passes each id on once and a run applies each once, so a
request made twice (a double click, a retry) is applied once. Only the launch's own launcher
acts on its folder's inbox; nothing in a request names a file or code: a run's label, an
action, and values checked as `--set` checks them."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboard.launch.forks import Forks
from trainers.settings import BY_NAME
from trainers.settings import read as read_setting
from dashboard.launch.plan import LaunchError, PlanError
from dashboard.launch.resume import LAUNCH_META, LaunchLock
from dashboard.runlog import LOG_NAME, REQUESTS, LogFollower, RunRecord, read
from trainers.config import ConfigError, RunConfig
from trainers.errors import did_you_mean
from trainers.control import ACTIONS, FORK, FORKABLE, SET, SETTABLE, Request, outcome_of, refusal
from trainers.reporting import RunState

INBOX = f"{LAUNCH_META}/inbox"  # in a launch folder: the requests for its launcher
LAUNCH_LOG = f"{LAUNCH_META}/control.jsonl"  # every request the launcher took, and what it did
ALL = "*"  # a request to every run of the launch
POLL = 0.1  # s between a worker's looks at its requests file (it looks between two batches)


def request_id() -> str:
    return f"{time.time_ns():x}-{secrets.token_hex(3)}"


def parse_values(words: Iterable[str], allowed: tuple[str, ...] = SETTABLE) -> dict[str, Any]:
    """{"lr": 0.01} from ["lr=0.01"]: each value read as `--set` reads it (its errors as ConfigError);
    `allowed`: the settings that may be named (FORKABLE for a fork)."""
    values: dict[str, Any] = {}
    for word in words:
        key, sep, raw = word.partition("=")
        key = key.strip().replace("-", "_").lower()
        if not sep or key not in allowed:
            hyphenated = [k.replace("_", "-") for k in allowed]
            hint = did_you_mean(key, hyphenated) if sep and key not in BY_NAME else ""  # a typo, not a setting
            raise ConfigError(f"{word!r}{hint}: write SETTING=VALUE with one of {', '.join(hyphenated)} (e.g. lr=0.01)")
        try:
            values[key] = read_setting(key, raw)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return values


@dataclass(frozen=True)
class Outcome:
    """What the launcher did with a request: sent it to runs, or refused it (with why)."""

    request: Request
    run: str
    sent: tuple[str, ...] = ()
    refused: str = ""
    usage: bool = False  # refused for what the request says (a bad value), not for the run's state
    time: float = field(default_factory=time.time)
    fork: str = ""  # a fork's label, once planned

    def to_dict(self) -> dict[str, Any]:
        return {"time": round(self.time, 3), "run": self.run, **self.request.to_dict(), "sent": list(self.sent),
                **({"fork": self.fork} if self.fork else {}),
                **({"refused": self.refused, "usage": self.usage} if self.refused else {})}


class Desk:
    """The launcher's side: takes the requests in its launch folder's inbox (and the page's, given
    to `take`), checks them against the runs as their logs show them, sends them on, logs them."""

    def __init__(self, launch_dir: Path, runs: Mapping[str, Path], records: Mapping[str, RunRecord],
                 enabled: bool = True, configs: Mapping[str, RunConfig] | None = None) -> None:
        self.launch_dir = launch_dir
        self.enabled = enabled  # False: a launch started with --no-control refuses every request
        self.inbox = launch_dir / INBOX
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.runs = dict(runs)  # label -> run folder
        self.records = records  # label -> the run's log as followed (the board's)
        self.configs = dict(configs or {})  # label -> the run's config as launched (what a fork starts from)
        self.forks = Forks(launch_dir)
        self.seen: set[str] = set()
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()  # the loop's inbox against the page's events (their own thread)

    def pending(self) -> bool:
        """Whether the inbox holds a request (a look at a folder: cheap enough for every pass)."""
        try:
            with os.scandir(self.inbox) as entries:
                return any(entry.name.endswith(".json") for entry in entries)
        except OSError:
            return False

    def poll(self) -> list[Outcome]:
        """Take what the inbox holds (oldest first); each file is removed once taken."""
        taken = []
        for path in sorted(self.inbox.glob("*.json")):
            try:
                item = json.loads(path.read_text(encoding="utf-8"))
                path.unlink()
            except (OSError, ValueError):
                continue  # being written (it is renamed in whole), or not a request: left, or gone
            outcome = self.take(item)
            if outcome is not None:
                taken.append(outcome)
        return taken

    def add(self, label: str, run_dir: Path, config: RunConfig) -> None:
        """A run that joined the launch (a fork; its log's record in `records` too): requests can name it now."""
        with self._lock:
            self.runs[label] = run_dir
            self.configs[label] = config

    def take(self, item: Mapping[str, Any]) -> Outcome | None:
        """One request ({"id", "run", "action", "values", "source"}, and a fork's "options":
        "label", "stop_parent"; "refused": a reason already found, e.g. a value the page's field
        could not read): checked, sent, logged. None for an id taken before (a second delivery)."""
        with self._lock:
            return self._take(item)

    def _take(self, item: Mapping[str, Any]) -> Outcome | None:
        request = Request(str(item.get("id") or request_id()), str(item.get("action", "")),
                          dict(item.get("values") or {}), str(item.get("source") or "command line"),
                          dict(item.get("options") or {}))
        if request.id in self.seen:
            return None
        self.seen.add(request.id)
        target = str(item.get("run", ""))
        if item.get("refused"):
            outcome = Outcome(request, target, refused=str(item["refused"]), usage=True)
        else:
            outcome = self._check(request, target)
        request = outcome.request  # a fork's: with the folder it goes to
        if not outcome.refused:
            for label in outcome.sent:
                send(self.runs[label], request)
        self.outcomes.append(outcome)
        with open(self.launch_dir / LAUNCH_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(outcome.to_dict()) + "\n")
        return outcome

    def _check(self, request: Request, target: str) -> Outcome:
        if not self.enabled:
            return Outcome(request, target, refused="this launch was started with --no-control")
        if request.action not in ACTIONS:
            return Outcome(request, target, refused=f"no action {request.action!r}; use one of {', '.join(ACTIONS)}",
                           usage=True)
        if target != ALL and target not in self.runs:
            return Outcome(request, target, refused=f"no run {target!r} in this launch; its runs are "
                                                    f"{', '.join(self.runs)}", usage=True)
        if request.action == FORK:
            return self._fork(request, target)
        labels = list(self.runs) if target == ALL else [target]
        reasons = {label: self._refusal(label, request) for label in labels}
        usage = [r for r in reasons.values() if r.startswith("!")]
        if usage:
            return Outcome(request, target, refused=usage[0][1:], usage=True)
        sent = tuple(label for label, reason in reasons.items() if not reason)
        if not sent:
            said = reasons[target] if target != ALL else "; ".join(f"{label}: {why}" for label, why in reasons.items())
            return Outcome(request, target, refused=said)
        return Outcome(request, target, sent=sent)

    def _fork(self, request: Request, target: str) -> Outcome:
        """Plan a fork of `target` (its label and config checked) and address the request to it."""
        if target == ALL:
            return Outcome(request, target, refused="pick one run to fork", usage=True)
        reason = self._refusal(target, request)
        if reason:
            return Outcome(request, target, refused=reason.lstrip("!"), usage=reason.startswith("!"))
        unknown = [key for key in request.values if key not in FORKABLE]
        if unknown:
            return Outcome(request, target, refused=f"a fork cannot change {unknown[0].replace('_', '-')}; it can "
                           f"change {', '.join(k.replace('_', '-') for k in FORKABLE)}", usage=True)
        try:
            fork = self.forks.plan(request.id, target, self.configs[target], self.records.get(target),
                                   request.values, str(request.options.get("label") or "").strip(),
                                   set(self.runs), bool(request.options.get("stop_parent")))
        except (ConfigError, PlanError, TypeError) as exc:
            return Outcome(request, target, refused=str(exc), usage=True)
        addressed = Request(request.id, FORK, dict(request.values), request.source,
                            {"into": fork.label, "stop_parent": fork.stop_parent})
        return Outcome(addressed, target, sent=(target,), fork=fork.label)

    def _refusal(self, label: str, request: Request) -> str:
        """Why `label` cannot take `request` now ("" if it can; a leading "!": the request's fault)."""
        record = self.records.get(label)
        state = record.status if record is not None else RunState.STARTING
        config = record.config if record is not None else {}
        if request.action == SET:
            for name, value in request.values.items():
                try:
                    RunConfig(str(config.get("model") or "mlp"), **{name: value}).check()
                except (ConfigError, TypeError) as exc:
                    return f"!{exc}"
        if state == RunState.QUEUED or state == RunState.STARTING:
            return "it has not started yet (queued); ask again once it trains"
        if state not in (RunState.RUNNING, RunState.PAUSED):
            return f"it has ended ({state})"
        if request.action == SET:  # the values; whether a pause or resume fits, the run itself says (it
            # knows: the log the launcher follows may be a moment behind it)
            reason = refusal(SET, request.values, str(config.get("optimizer") or ""), False)
            return f"!{reason}" if reason else ""
        return ""


def send(run_dir: Path, request: Request) -> None:
    """Append `request` to the run's requests file (one line, one write)."""
    with open(run_dir / REQUESTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(request.to_dict()) + "\n")


class FileInbox:
    """A worker's inbox: the requests the launcher appends to its run's REQUESTS file, read from
    where the file ended when the run started (what came before was for an earlier process of the
    run). Looked at once every POLL s at most: between two batches this costs a clock read."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / REQUESTS
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0
        self.next_look = 0.0

    def poll(self) -> list[Request]:
        now = time.monotonic()
        if now < self.next_look:
            return []
        self.next_look = now + POLL
        try:
            if self.path.stat().st_size <= self.offset:
                return []
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        whole = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next look
        self.offset += len(whole)
        requests = []
        for line in whole.splitlines():
            try:
                requests.append(Request.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return requests

    def wait(self, timeout: float) -> list[Request]:
        deadline = time.monotonic() + timeout
        while True:
            self.next_look = 0.0
            found = self.poll()
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))


def ask(launch_dir: Path, run: str, action: str, values: Mapping[str, Any], source: str = "command line",
        options: Mapping[str, Any] | None = None) -> str:
    """Put a request in the launch's inbox (written whole, then renamed in); its id."""
    inbox = launch_dir / INBOX
    ident = request_id()
    item = {"id": ident, "run": run, "action": action, "values": dict(values), "source": source,
            **({"options": dict(options)} if options else {})}
    tmp = inbox / f".{ident}.tmp"
    tmp.write_text(json.dumps(item), encoding="utf-8")
    os.replace(tmp, inbox / f"{ident}.json")
    return ident


def launcher_answer(launch_dir: Path, ident: str) -> dict[str, Any] | None:
    """What the launcher did with request `ident` (its line in LAUNCH_LOG), once it has."""
    try:
        lines = (launch_dir / LAUNCH_LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if item.get("id") == ident:
            return item
    return None


def request(path: Path, action: str, words: Iterable[str] = (), timeout: float = 30.0,
            options: Mapping[str, Any] | None = None) -> list[str]:
    """`livetrain control ACTION PATH [VALUES]`: ask the run at `path` (or every run of the launch
    at `path`) through its launcher, the way the page does, and wait for each run's answer. The
    lines to print ("mlp: applied at batch 412, epoch 1.38"); a PlanError for a bad request, a
    LaunchError when the launch is not running, the run cannot take it, or no answer came. A
    fork's `options`: its "label", "stop_parent"; `words` its settings."""
    if action not in ACTIONS:
        raise PlanError(f"no action {action!r}; use one of {', '.join(ACTIONS)}")
    values = parse_values(words, FORKABLE if action == FORK else SETTABLE) if action in (SET, FORK) else {}
    if action == SET and not values:
        raise PlanError(f"set what? e.g. `livetrain control set {path} lr=0.01` ({', '.join(SETTABLE)})")
    if action not in (SET, FORK) and list(words):
        raise PlanError(f"{action} takes no values; drop {' '.join(words)}")
    if (path / LOG_NAME).is_file():
        launch_dir, run = path.parent, str(read(path, keep_scalars=False).meta.get("label") or path.name)
    elif any((d / LOG_NAME).is_file() for d in path.iterdir() if d.is_dir()):
        launch_dir, run = path, ALL
    else:
        raise PlanError(f"no run log in {path}; give a run's folder (or a launch's, for all its runs)")
    if not (launch_dir / INBOX).is_dir() or not LaunchLock(launch_dir).held():
        raise LaunchError(f"the launch in {launch_dir} is not running; nothing there can take a request "
                          "(`livetrain run --resume` continues it)")
    if action == FORK and run == ALL:
        raise PlanError(f"fork one run: give its folder, e.g. {path / next(iter(sorted(d.name for d in path.iterdir() if (d / LOG_NAME).is_file())))}")
    ident = ask(launch_dir, run, action, values, options=options)
    deadline = time.monotonic() + timeout
    answer = None
    while answer is None:
        answer = launcher_answer(launch_dir, ident)
        if answer is None:
            if time.monotonic() > deadline:
                raise LaunchError(f"the launcher of {launch_dir} did not take the request within {timeout:.0f} s")
            time.sleep(0.05)
    if answer.get("refused"):
        kind = PlanError if answer.get("usage") else LaunchError
        raise kind(f"{'every run' if run == ALL else run}: {answer['refused']}")
    followers = {label: LogFollower(launch_dir / label_dir(launch_dir, label)) for label in answer["sent"]}
    lines: dict[str, str] = {}
    while len(lines) < len(followers):
        for label, follower in followers.items():
            follower.poll()
            done = outcome_of(follower.record.controls, ident)
            if done is None and RunState(follower.record.status).final and label not in lines:
                lines[label] = f"{label}: refused: it ended ({follower.record.status}) before it took the request"
            elif done is not None and label not in lines:
                lines[label] = (f"{label}: {action} applied at batch {done['step']}, epoch {done['x']:.2f}"
                                if done.get("applied") else f"{label}: refused: {done.get('reason', '')}")
                if done.get("applied") and action == FORK:
                    lines[label] += (f"; the fork {answer['fork']} starts from there, in "
                                     f"{launch_dir / answer['fork']}")
        if len(lines) < len(followers):
            if time.monotonic() > deadline:
                waiting = ", ".join(label for label in followers if label not in lines)
                raise LaunchError(f"sent to {waiting}, which did not take it within {timeout:.0f} s")
            time.sleep(0.05)
    refused = [line for line in lines.values() if ": refused: " in line]
    if refused and len(refused) == len(lines):
        raise LaunchError("; ".join(refused))
    return [lines[label] for label in followers]


def label_dir(launch_dir: Path, label: str) -> str:
    """The folder of run `label` in a launch (its label, unless its log names it otherwise)."""
    if (launch_dir / label / LOG_NAME).is_file():
        return label
    for run_dir in launch_dir.iterdir():
        if (run_dir / LOG_NAME).is_file() and read(run_dir, keep_scalars=False).meta.get("label") == label:
            return run_dir.name
    return label
