"""Control from the page: the Control pane of a live launch, and the page's events that reach
its launcher.

The pane is one of Visdom's properties panes: a run to act on (or all runs), Stop, Pause and
Resume buttons, and the lr, momentum and weight decay, each applied when its field is submitted
(Enter); then a fork of the run picked: the settings it changes ("lr=1e-4 batch-size=128"), its
label (PARENT-fork1 when left empty), whether it stops the parent, and the Fork button. Beside
it, a Requests pane says what happened to each request: sent, applied at batch N, or refused and
why. When a person uses a field, the page sends a PropertyUpdate event to the
server, which passes it to every client of its `/vis_socket`; the launcher is one (logged in,
with the server's login on), keeps its own env's events for this pane, and hands each to the
launch's `Desk`, the path `livetrain control` takes too. Another site's page cannot open the
server's socket (dashboard.visdom_app refuses its Origin), and with `--login` an anonymous page
cannot either (visdom closes it)."""

from __future__ import annotations

import collections
import html
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dashboard import windows
from dashboard.connection import VisdomConnection
from dashboard.launch.control import ALL, Desk, Outcome, parse_values
from dashboard.runlog import RunRecord
from trainers.config import ConfigError
from trainers.control import FORK, FORKABLE, PAUSE, RESUME, SET, STOP, outcome_of
from trainers.reporting import RunState

CONTROL_WIN, REQUESTS_WIN = "control", "control-requests"
CONTROL_TITLE, REQUESTS_TITLE = "Control", "Control: requests"
ALL_RUNS = "all runs"
# the pane's fields, in order: each event names its field by its place here
FIELDS = ("run", "stop", "pause", "resume", "lr", "momentum", "weight decay", "fork with", "fork label",
          "stop the parent", "fork")
BUTTONS = {"stop": STOP, "pause": PAUSE, "resume": RESUME}
SETTING_FIELDS = ("lr", "momentum", "weight decay")
FORK_TEXT = ("fork with", "fork label")  # kept as typed, until the Fork button asks
SHOWN = 12  # requests listed in the Requests pane, newest first


class ControlPane:
    """What the Control pane shows (the run picked, the values last asked for) and what a
    person's use of it asks (`event`)."""

    def __init__(self, env: str, labels: list[str], desk: Desk, records: Mapping[str, RunRecord]) -> None:
        self.env = env
        self.labels = labels
        self.desk = desk
        self.records = records
        self.picked = 0  # 0: all runs, else labels[picked - 1]
        self.typed: dict[str, str] = {}  # field -> what was last submitted there
        self.stop_parent = False  # the fork's checkbox
        self.queue: collections.deque[tuple[int, Any]] = collections.deque()  # the page's events, to take
        self.lock = threading.Lock()
        self._done = 0  # control records in the runs' logs, when last counted
        self._requests_sent: str | None = None
        self._outages = -1
        # whether the launcher hears the page: until then the pane has no controls (a click the
        # server forwards before the launcher listens reaches nobody)
        self.listening = False
        self.ended = ""  # once the launch has ended: what the pane says in place of its controls

    def hearing(self, listening: bool, sender: Any) -> None:
        """The launcher's socket to the page connected (True) or was lost: draw the pane again."""
        self.listening = listening
        sender.mark(CONTROL_WIN)

    def asked(self, field: int, value: Any) -> None:
        """A page event (the PageEvents thread): held for the launcher's loop, which takes it
        (`take_asked`) once it has read the runs' logs, so that it is checked against what the
        runs have logged by now (a run stopped a moment ago has ended), as `livetrain control`'s are."""
        self.queue.append((field, value))

    def waiting(self) -> bool:
        return bool(self.queue)

    def take_asked(self, sender: Any) -> None:
        """Take the page's events that came (the launcher's loop), and draw both panes again."""
        while self.queue:
            self.event(*self.queue.popleft())
        sender.mark(CONTROL_WIN)
        sender.mark(REQUESTS_WIN)

    def logs_changed(self, sender: Any) -> None:
        """The runs' logs gained records: draw again what the requests' outcomes changed."""
        done = sum(len(record.controls) for record in self.records.values())
        if done != self._done:
            self._done = done
            sender.mark(REQUESTS_WIN)
            sender.mark(CONTROL_WIN)  # the picked run's values in force

    def send_requests(self, connection: VisdomConnection) -> None:
        """Post the Requests pane, unless it shows what it showed last time (sender thread)."""
        message = self.requests_message()
        content = message["data"][0]["content"]
        if content != self._requests_sent or connection.outages != self._outages:
            connection.post("events", message)
            self._requests_sent, self._outages = content, connection.outages

    def add(self, label: str, sender: Any) -> None:
        """A run that joined the launch (a fork): one more to pick."""
        with self.lock:
            self.labels.append(label)
        sender.mark(CONTROL_WIN)

    def target(self) -> str:
        return ALL if self.picked == 0 else self.labels[self.picked - 1]

    def event(self, field: int, value: Any) -> Outcome | None:
        """A person used field `field` (its place in FIELDS) with `value` (a select's index as
        text, a button's "clicked", a field's text): the request it makes (None: only the pick)."""
        with self.lock:
            name = FIELDS[field] if 0 <= field < len(FIELDS) else ""
            if name == "run":
                try:
                    self.picked = min(max(int(value), 0), len(self.labels))
                except (TypeError, ValueError):
                    pass
                self.typed.clear()
                return None
            if name in BUTTONS:
                return self.desk.take({"run": self.target(), "action": BUTTONS[name], "source": "page"})
            if name in FORK_TEXT:
                self.typed[name] = str(value).strip()
                return None
            if name == "stop the parent":
                self.stop_parent = value is True or str(value).lower() == "true"
                return None
            if name == "fork":
                return self._fork()
            if name:
                text = str(value).strip()
                # the field submits when it loses focus, changed or not: only a change asks anything
                if not text or text == self.typed.get(name, self._current().get(name, "")):
                    return None
                setting = name.replace(" ", "_")
                try:
                    values = parse_values([f"{setting}={text}"])
                except ConfigError as exc:
                    return self.desk.take({"run": self.target(), "action": SET, "source": "page",
                                           "values": {}, "refused": str(exc)})
                outcome = self.desk.take({"run": self.target(), "action": SET, "values": values, "source": "page"})
                if outcome is not None and not outcome.refused:
                    self.typed[name] = text  # shown until the run applies it; refused, it shows what is in force
                return outcome
            return None

    def _fork(self) -> Outcome | None:
        """The Fork button: fork the run picked with the settings typed (lock held)."""
        item = {"run": self.target(), "action": FORK, "source": "page",
                "options": {"label": self.typed.get("fork label", ""), "stop_parent": self.stop_parent}}
        try:
            item["values"] = parse_values(self.typed.get("fork with", "").replace(",", " ").split(), FORKABLE)
        except ConfigError as exc:
            return self.desk.take({**item, "values": {}, "refused": str(exc)})
        outcome = self.desk.take(item)
        if outcome is not None and not outcome.refused:  # asked: the fields are empty for the next fork
            for name in FORK_TEXT:
                self.typed.pop(name, None)
            self.stop_parent = False
        return outcome

    def end(self, launch_dir: Path, sender: Any) -> None:
        """The launch has ended: no launcher hears the page any more, so the pane says that, and
        how to train on, in place of controls that would reach nobody (the page stays up)."""
        self.ended = (f"This launch ended at {time.strftime('%H:%M:%S')}: nothing here to stop, pause, change or fork "
                      f"now. To train its runs on: livetrain run --resume {launch_dir} (with --epochs N for more "
                      "epochs).")
        sender.mark(CONTROL_WIN)
        sender.mark(REQUESTS_WIN)

    def message(self) -> dict[str, Any]:
        """The Control pane as a whole-pane message."""
        if self.ended:
            return windows.text_message(self.env, CONTROL_WIN, CONTROL_TITLE, windows.waiting_html(self.ended),
                                        windows.UNIT, windows.PANE_HEIGHT)
        with self.lock:
            current = self._current()
            if not self.listening:  # one field, at the run select's place: nothing it says asks anything
                fields = [{"type": "text", "name": "control", "value": "connecting to the launcher…"}]
                return self._message(fields)
            fields = [{"type": "select", "name": "run", "value": self.picked, "values": [ALL_RUNS, *self.labels]},
                      *({"type": "button", "name": name, "value": name.capitalize()} for name in BUTTONS),
                      *({"type": "text", "name": name, "value": self.typed.get(name, current.get(name, ""))}
                        for name in SETTING_FIELDS),
                      *({"type": "text", "name": name, "value": self.typed.get(name, "")} for name in FORK_TEXT),
                      {"type": "checkbox", "name": "stop the parent", "value": self.stop_parent},
                      {"type": "button", "name": "fork", "value": "Fork"}]
        return self._message(fields)

    def _message(self, fields: list[dict[str, Any]]) -> dict[str, Any]:
        return {"eid": self.env, "win": CONTROL_WIN, "data": [{"type": "properties", "content": fields}],
                "opts": {"title": CONTROL_TITLE, "width": windows.UNIT, "height": windows.PANE_HEIGHT},
                windows.SEQ_KEY: windows.new_seq()}

    def _current(self) -> dict[str, str]:
        """The picked run's lr, momentum and weight decay in force, as text ("" for all runs)."""
        if self.picked == 0:
            return {}
        record = self.records.get(self.labels[self.picked - 1])
        if record is None:
            return {}
        config = record.in_force()
        shown = {"lr": config.get("lr"), "momentum": config.get("momentum"), "weight decay": config.get("weight_decay")}
        return {k: f"{v:g}" for k, v in shown.items() if isinstance(v, (int, float))}

    def requests_message(self) -> dict[str, Any]:
        """The Requests pane: the newest requests and what happened to each."""
        lines = []
        for outcome in reversed(self.desk.outcomes[-SHOWN:]):
            lines.append(f"<li>{outcome_html(outcome, self.records)}</li>")
        body = (f'<ul style="font:12px sans-serif;padding-left:16px;margin:4px">{"".join(lines)}</ul>' if lines else
                windows.waiting_html("No request was made while the launch ran.") if self.ended else
                windows.waiting_html("Pick a run (or all runs) in Control, then Stop, Pause, Resume, or type a new "
                                     "lr, momentum or weight decay and press Enter. To fork the run picked, type "
                                     "what the fork changes (lr=1e-4 batch-size=256), maybe its label, and "
                                     "press Fork."))
        return windows.text_message(self.env, REQUESTS_WIN, REQUESTS_TITLE, body, windows.UNIT, windows.PANE_HEIGHT)


TORCHRUN_NOTE = ("This run was started by torchrun, with no livetrain launcher to take requests: it cannot be "
                 "stopped, paused, changed or forked from here. A run started with `livetrain run` (--nproc N for "
                 "several processes on one machine) can.")


def torchrun_note(env: str) -> dict[str, Any]:
    """The Control pane of an env that a torchrun run draws (dashboard.launch.ranks.BoardThread)."""
    return windows.text_message(env, CONTROL_WIN, CONTROL_TITLE, windows.waiting_html(TORCHRUN_NOTE), windows.UNIT,
                                windows.PANE_HEIGHT)


def outcome_html(outcome: Outcome, records: Mapping[str, RunRecord]) -> str:
    """One request and what happened to it, for the Requests pane (everything escaped)."""
    request = outcome.request
    what = request.action + "".join(f" {k.replace('_', ' ')} {v:g}" if isinstance(v, (int, float)) else f" {k} {v}"
                                    for k, v in request.values.items()) + (f" into {outcome.fork}" if outcome.fork else "")
    stamp = time.strftime("%H:%M:%S", time.localtime(outcome.time))
    head = f"{stamp} {html.escape(ALL_RUNS if outcome.run == ALL else outcome.run)}: <b>{html.escape(what)}</b>"
    if outcome.refused:
        return f'{head} &mdash; <span style="color:{windows.WRONG}">refused: {html.escape(outcome.refused)}</span>'
    said = []
    for label in outcome.sent:
        record = records.get(label)
        done = outcome_of(record.controls, request.id) if record else None
        if done is None and record is not None and RunState(record.status).final:
            said.append(f'<span style="color:{windows.WRONG}">{html.escape(label)} ended before it took it</span>')
        elif done is None:
            said.append(f"{html.escape(label)} sent")
        elif done.get("applied"):
            said.append(f'<span style="color:{windows.RIGHT}">{html.escape(label)} applied at batch {done["step"]} '
                        f'(epoch {done["x"]:.2f})</span>')
        else:
            said.append(f'<span style="color:{windows.WRONG}">{html.escape(label)} refused: '
                        f'{html.escape(str(done.get("reason", "")))}</span>')
    return f"{head} &mdash; {'; '.join(said)}"


class PageEvents:
    """A thread reading the server's `/vis_socket`: each PropertyUpdate of this env's Control
    pane goes to `handle(field, value)`. It connects again after the server restarts."""

    def __init__(self, connection: VisdomConnection, env: str, handle: Callable[[int, Any], None],
                 hearing: Callable[[bool], None] = lambda listening: None) -> None:
        self.connection = connection
        self.env = env
        self.handle = handle
        self.hearing = hearing  # called with True once connected (the server forwards the page's events), False when lost
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._socket: Any = None
        self._thread = threading.Thread(target=self._run, name="page-events", daemon=True)

    def start(self) -> "PageEvents":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._socket is not None:
            try:
                self._socket.close()
            except Exception:  # noqa: BLE001 - closing a socket that may be half gone
                pass
        self._thread.join(timeout=2)

    def _run(self) -> None:
        import websocket

        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.connection.login()
                cookies = "; ".join(f"{k}={v}" for k, v in self.connection.cookies().items())
                url = self.connection.url.replace("http", "ws", 1) + "/vis_socket"
                self._socket = websocket.create_connection(url, timeout=None,
                                                           header=[f"Cookie: {cookies}"] if cookies else [])
                self.connected.set()
                self.hearing(True)
                backoff = 0.5
                while not self._stop.is_set():
                    self._take(self._socket.recv())
            except Exception:  # noqa: BLE001 - the server went away (or refused): try again later
                if self.connected.is_set():
                    self.connected.clear()
                    self.hearing(False)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 8.0)

    def _take(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if (isinstance(event, dict) and event.get("event_type") == "PropertyUpdate"
                and event.get("eid") == self.env and event.get("target") == CONTROL_WIN):
            try:
                self.handle(int(event.get("propertyId", -1)), event.get("value"))
            except Exception:  # noqa: BLE001 - one bad event must not end the page's control
                pass
