"""The page's socket, paced by the page: what the server sends a page never runs tens of seconds
ahead of what the page has drawn.

Visdom sends a page each change of a window as it comes: the window whole (a point added to a
compare window of 200 KB sends 200 KB), or a diff (0.3's, livetrain's splices). A page that draws
slower than that (a busy laptop, many runs) falls behind: the messages wait in the sockets'
buffers (5 MB of them was measured, on 2 busy cores: 40 s), and the page shows the state of 40 s
ago, a click's answer included (the Control pane's).

With the page's script (`page_scripts.ACKS`), the page acknowledges each message once it has
handled it. Once it has acknowledged the end of its first env's load (which goes at once, as
from visdom: Visdom's page packs the windows of a load in one go, and windows drawn in several
goes may be placed with the columns of an older page width, the grid at 1920 px two a row), this
handler holds back what the page has not yet taken: it sends on while less than IN_FLIGHT bytes
are unacknowledged, and keeps the rest in a queue of at most one entry per window: a change to a
window that already waits there makes that entry "the window as the server holds it when it
goes" (whole), in the place of the first. So a page that draws slowly gets fewer redraws of each
window, never an older state, and what changed last (a click's answer) comes after at most one
message per window. Nothing moves across a message that is not one window's (a layout, the list
of envs, a window closed). A page that never acknowledges (no script) gets every message at once,
as from visdom's own handler."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

ACK = "livetrain_ack"  # {"cmd": ACK, "n": messages handled}: the page's script sends it
# the end of an env's load (visdom's `load_env`, 0.2.4 and 0.3): the page packs its windows then
LOADED = '{"command": "layout"}'
IN_FLIGHT = 256 * 1024  # bytes sent to the page and not yet acknowledged, at most (one message at least)


# visdom 0.3 sends a window as JSON text: {"command": "window", "version": .., "id": .., ...}, or a
# diff of one, {"command": "window_update", "win": .., ...}; the window is named near the start
_NAMED = re.compile(r'^\{"command": "window(_update)?", (?:"version": \d+, )?"(?:id|win)": ("(?:[^"\\]|\\.)*")')


def message_key(message: Any) -> tuple[str | None, bool]:
    """The window a message draws (None: not one window's) and whether it draws it whole."""
    if isinstance(message, str) and message.startswith('{"command": "window'):
        named = _NAMED.match(message[:1000])
        if named:
            return str(json.loads(named.group(2))), named.group(1) is None
        try:
            message = json.loads(message)
        except ValueError:
            return None, False
    if isinstance(message, dict):
        if message.get("command") == "window" and message.get("id") is not None:
            return str(message["id"]), True
        if message.get("command") == "window_update" and message.get("win") is not None:
            return str(message["win"]), False
    return None, False


Current = Callable[[str, str], Any]  # (env, window) -> the window whole as the server holds it now, or None
_NOW = object()  # an entry's kind: the window as the server holds it when the entry goes


class Entry(NamedTuple):
    """One message waiting to go to the page."""

    key: str | None  # its window; None: a message that is not one window's (a barrier)
    whole: bool  # the message (for _NOW: the newest put) draws its window whole
    message: Any  # the message, or _NOW
    later: Any = None  # for _NOW: (its env, the newest message put)


class PageQueue:
    """What waits to go to one page, and what it has not acknowledged (no tornado in here)."""

    def __init__(self, budget: int = IN_FLIGHT, current: Current | None = None) -> None:
        self.budget = budget
        self.current = current
        self.waiting: list[Entry] = []  # in order
        self.unacked: collections.deque[int] = collections.deque()  # sizes of what was sent, in order
        self.unacked_bytes = 0
        self.paced = False  # the page acknowledged its env's load: hold back what it has not taken
        self._sent = self._acked = 0  # messages sent, acknowledged
        self._loaded_at: int | None = None  # the count of sent messages when the env's load ended
        self.replaced = 0  # messages that went as part of a later one of their window

    def put(self, message: Any, env: str | None = None) -> None:
        """`message`, broadcast for `env` (None: the page shows several envs)."""
        key, whole = message_key(message)
        if key is not None:
            start = max((i + 1 for i, entry in enumerate(self.waiting) if entry.key is None), default=0)
            same = [i for i in range(start, len(self.waiting)) if self.waiting[i].key == key]
            if same and env is not None and self.current is not None:
                self._merge(same, Entry(key, whole, _NOW, (env, message)), same[0])
                return
            whole_at = next((i for i in same if self.waiting[i].message is _NOW or self.waiting[i].whole), None)
            if whole and whole_at is not None:  # what waited of it since its whole copy goes: this one draws it all
                self._merge([i for i in same if i >= whole_at], Entry(key, True, message), whole_at)
                return
        self.waiting.append(Entry(key, whole, message))

    def _merge(self, same: list[int], entry: Entry, at: int) -> None:
        self.replaced += len(same)
        self.waiting[at] = entry
        self.waiting = [m for i, m in enumerate(self.waiting) if i == at or i not in same]

    def ready(self) -> bool:
        """Whether the next waiting message may go now."""
        return bool(self.waiting) and (not self.paced or not self.unacked or self.unacked_bytes < self.budget)

    def take(self) -> Any:
        """The next message to send; None when none is left (a window closed since it was put,
        whose last message was a diff)."""
        while self.waiting:
            key, whole, message, later = self.waiting.pop(0)
            if message is not _NOW:
                return message
            assert self.current is not None and key is not None
            pane = self.current(later[0], key)
            if pane is not None:
                return pane
            if whole:  # not in that env (any more): the newest whole copy put, as it is
                return later[1]
        return None

    def sent(self, size: int, message: Any = None) -> None:
        self.unacked.append(size)
        self.unacked_bytes += size
        self._sent += 1
        if self._loaded_at is None and message == LOADED:
            self._loaded_at = self._sent

    def acked(self, n: int) -> None:
        for _ in range(min(max(n, 0), len(self.unacked))):
            self.unacked_bytes -= self.unacked.popleft()
            self._acked += 1
        if self._loaded_at is not None and self._acked >= self._loaded_at:
            self.paced = True


def paced_socket_handler(base: type) -> type:
    """`base` (visdom's page socket handler, or ours built on it) with the pacing above."""
    import tornado.escape
    from tornado.websocket import WebSocketClosedError

    class PacedSocketHandler(base):  # type: ignore[misc, valid-type]
        def _page_queue(self) -> PageQueue:
            queue = self.__dict__.get("_livetrain_queue")
            if queue is None:
                queue = self.__dict__["_livetrain_queue"] = PageQueue(current=self._current)
            return queue

        def _current(self, env: str, win: str) -> Any:
            return self.state.get(env, {}).get("jsons", {}).get(win)

        def write_message(self, message: Any, binary: bool = False) -> Any:
            if binary:
                return super().write_message(message, binary)
            if self.ws_connection is None or self.ws_connection.is_closing():
                raise WebSocketClosedError()
            queue = self._page_queue()
            env = getattr(self, "eid", None)
            queue.put(message, env if isinstance(env, str) else None)
            self._pump(queue)
            return None

        def _pump(self, queue: PageQueue) -> None:
            while queue.ready():
                message = queue.take()
                if message is None:
                    return
                text = message if isinstance(message, (str, bytes)) else tornado.escape.json_encode(message)
                try:
                    super().write_message(text)
                except WebSocketClosedError:
                    queue.waiting.clear()
                    return
                queue.sent(len(text), text)

        def on_message(self, message: str | bytes) -> Any:
            if isinstance(message, str) and message.startswith('{"cmd":"' + ACK + '"'):
                try:
                    n = int(json.loads(message).get("n", 1))
                except (ValueError, TypeError, AttributeError):
                    return None
                queue = self._page_queue()
                queue.acked(n)
                self._pump(queue)
                return None
            return super().on_message(message)

        def on_close(self) -> None:
            self._page_queue().waiting.clear()
            super().on_close()

    return PacedSocketHandler

