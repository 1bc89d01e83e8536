"""A TCP relay on 127.0.0.1 in front of a real server, that can hold requests as a frozen server does.

A frozen server (SIGSTOP) keeps what clients send in its sockets' buffers; the clients time out
and go on; when it thaws, it reads and applies every one of those requests, in an order nobody
chose. While the relay holds, it keeps what a client sends instead of passing it on, and once the
whole request is there it drops the connection unanswered: the client's request failed at once,
as one that timed out against the frozen server fails (with no wait on a timeout, which on a
loaded machine an answered request could reach too). `release()` later delivers each kept request
to the server on a connection of its own, in the order they came, and returns the server's
answers. So a test decides exactly when the late requests land: after newer ones, say."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class HoldingRelay:
    """Relays 127.0.0.1:`port` to `upstream`; holds a connection's bytes while `hold(first_bytes)` is true."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.hold: Callable[[bytes], bool] = lambda data: False
        self.kept: list[bytearray] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold_all(self) -> None:
        self.hold = lambda data: True

    def hold_matching(self, marker: bytes) -> None:
        """Hold only requests whose first bytes hold `marker` (e.g. b"POST /update"): a server that
        froze part way through a pass of the client's."""
        self.hold = lambda data: marker in data

    def pass_all(self) -> None:
        self.hold = lambda data: False

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        kept: bytearray | None = None
        try:
            while True:
                try:
                    data = conn.recv(1 << 20)
                except OSError:
                    break
                if not data:
                    break
                if kept is None and self.hold(data):
                    kept = bytearray()
                if kept is not None:  # held: kept whole, then the connection dropped with no answer
                    kept += data
                    if _complete(kept):
                        with self._lock:  # a client retries a dropped kept-alive connection once:
                            if bytes(kept) not in (bytes(k) for k in self.kept):  # the same request
                                self.kept.append(kept)
                        break
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
                upstream.sendall(data)
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()

    def release(self, timeout: float = 10.0) -> list[str]:
        """Deliver every kept request to the server (each on a new connection, then closed for
        writing, as the client that gave up had closed it); the server's answers, in order."""
        with self._lock:
            kept, self.kept = self.kept, []
        answers = []
        for request in kept:
            with socket.create_connection(self.upstream, timeout=timeout) as sock:
                sock.sendall(bytes(request))
                sock.shutdown(socket.SHUT_WR)
                answer = bytearray()
                while chunk := sock.recv(1 << 20):
                    answer += chunk
            answers.append(answer.decode("utf-8", "replace"))
        return answers

    def close(self) -> None:
        self._closed = True
        self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(1 << 20):
            sink.sendall(chunk)
    except OSError:
        pass


def _complete(request: bytearray) -> bool:
    """Whether `request` holds a whole HTTP request: its headers and the body they announce."""
    end = request.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in bytes(request[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(request) >= end + 4 + length
