"""The background sender: the only thread that talks to Visdom.

Producers (a training thread, the launcher's loop) only mark an item as changed, which costs a
lock, a counter and an event. The sender thread sends each item whose version moved since it was
last sent, at most once per `interval` seconds, so many changes coalesce into one request per
window per flush; the first change after a quiet spell goes at once.
A failed request (server down, frozen past the timeout, restarted, erroring) ends the pass; the
next pass waits out a backoff (0.5 s doubling to 8 s) and then sends *every* item again, in the
order they were first registered, which rebuilds all windows on a server that lost them.

A request that timed out may still be applied later: a frozen server reads it when it thaws,
maybe after newer ones. Our server refuses messages older than what it holds (`windows.new_seq`);
for any server, CHECK_AFTER s after the first good pass that follows a failure, and at close if
a failure came since, the sender runs its checks (`add_check`): each reads back what its windows
hold, and marks what differs from what it last sent, which the next pass sends again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dashboard.connection import Unreachable, VisdomConnection

SendFn = Callable[[VisdomConnection], None]
CheckFn = Callable[[VisdomConnection], list[str]]
MAX_BACKOFF = 8.0
CHECK_AFTER = 2.0  # s after the server answers again: requests it had queued are applied by then


class Sender:
    """Sends changed items to one Visdom connection from a daemon thread."""

    def __init__(self, connection: VisdomConnection, interval: float = 1.0, name: str = "visdom-sender",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connection = connection
        self._clock = clock  # when a retry or a check is due (a test's own clock steps through the backoff)
        self.interval = interval
        self._items: dict[str, SendFn] = {}  # insertion order is send order
        self._version: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.connected = False
        self.failures = 0  # consecutive failed passes
        self.ever_failed = False  # any pass failed since the start (the server missed something)
        self.last_error = ""
        self.requests = 0
        self._retry_at = 0.0
        self._checks: list[CheckFn] = []
        self._suspect = False  # a request failed since the last check: the server may hold late ones
        self._check_at: float | None = None
        self.checks_run = 0
        self.check_marked: list[str] = []  # what the checks found different (and sent again)

    def register(self, key: str, send: SendFn, changed: bool = True) -> None:
        """Add an item; `send(connection)` draws it whole (it may post more than once)."""
        with self._lock:
            self._items[key] = send
            self._version[key] = self._version.get(key, 0) + (1 if changed else 0)

    def add_check(self, check: CheckFn) -> None:
        """`check(connection)` compares what the server holds with what was sent and returns the
        keys of the items that differ, which the sender marks (see the module doc)."""
        self._checks.append(check)

    def mark(self, key: str) -> None:
        """Say that an item changed; the next pass sends it."""
        with self._lock:
            self._version[key] += 1
        if not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def pending(self) -> list[str]:
        """Keys whose latest version has not reached the server."""
        with self._lock:
            return [k for k, v in self._version.items() if v and self._sent.get(k) != v]

    def flush(self) -> bool:
        """One pass: send what changed (everything after a failure). True when nothing is left."""
        if self._clock() < self._retry_at:
            return False
        with self._lock:
            todo = [(k, self._items[k], v) for k, v in self._version.items() if v and self._sent.get(k) != v]
        try:
            for key, send, version in todo:
                send(self.connection)
                self.requests += 1
                with self._lock:
                    self._sent[key] = version
        except Unreachable as exc:
            self._failed(exc)
            return False
        self.connected, self.failures, self.last_error = True, 0, ""
        if self._suspect and self._checks:
            if self._check_at is None:
                self._check_at = self._clock() + CHECK_AFTER
            elif self._clock() >= self._check_at:
                return self.check()
        return True

    def _failed(self, exc: Unreachable) -> None:
        self.connected = False
        self.ever_failed = True
        self.failures += 1
        self.last_error = str(exc)
        self._retry_at = self._clock() + min(0.5 * 2 ** (self.failures - 1), MAX_BACKOFF)
        with self._lock:
            self._sent.clear()  # the server may have restarted empty: draw everything again
        self.connection.forget_login()
        self._suspect, self._check_at = True, None

    def check(self) -> bool:
        """Run the checks now (see the module doc), and send what they found different."""
        try:
            marked = [key for check in self._checks for key in check(self.connection)]
        except Unreachable as exc:
            self._failed(exc)
            return False
        self.checks_run += 1
        self.check_marked.extend(marked)
        for key in marked:
            self.mark(key)
        self._suspect, self._check_at = False, None
        return self.flush() if marked else True

    def _loop(self) -> None:
        # A change after a quiet spell is sent at once (the first points of a run show without
        # waiting); after that, passes are at least `interval` apart, so changes coalesce.
        # The periodic wake-up also retries after a failure, when nothing new may come.
        last = -self.interval
        while not self._closing.is_set():
            self._wake.wait(self.interval)
            gap = last + self.interval - time.monotonic()
            if gap > 0 and self._closing.wait(gap):
                break
            self._wake.clear()
            if self._closing.is_set():
                break
            last = time.monotonic()
            self.flush()
        self._retry_at = 0.0  # a last pass at close, whatever the backoff
        if self.flush() and self._suspect and self._checks:
            self.check()

    def close(self, wait: float = 3.0) -> bool:
        """Send what is left and stop, waiting at most `wait` s (a frozen server must not hold up the exit).

        True when everything reached the server."""
        if not self._thread.is_alive():
            return not self.pending()
        self._closing.set()
        self._wake.set()
        self._thread.join(wait)
        return not self._thread.is_alive() and not self.pending()
