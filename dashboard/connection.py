"""One HTTP connection to a Visdom server, with timeouts and login, and nothing else.

Visdom's own client blocks without a timeout on a frozen server and prints a traceback on a dead
one; this posts the same JSON messages with a timeout and turns every failure into `Unreachable`.
It keeps its HTTP connection open between requests (keep-alive: a new connection per request
costs both sides CPU several times a second per run; docs/benchmarks.md says how much).
Requests go straight to the server, never through an HTTP proxy."""

from __future__ import annotations

import hashlib
import http.client
import http.cookies
import json
import os
import urllib.parse
from typing import Any

from dashboard.protocol import PASSWORD_VAR, SPLICE_PATH, USER_VAR


class Unreachable(Exception):
    """The server did not answer, answered with an error, or refused the login."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of an error answer; None when nothing answered


class VisdomConnection:
    """Posts messages to a Visdom server's endpoints (`events`, `update`, `win_exists`, `win_data`...)."""

    def __init__(self, url: str, timeout: float = 5.0, username: str | None = None,
                 password: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.username = username if username is not None else os.environ.get(USER_VAR)
        self.password = password if password is not None else os.environ.get(PASSWORD_VAR)
        parts = urllib.parse.urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path  # a server with a base URL
        self._http: http.client.HTTPConnection | None = None  # open between requests
        self._cookies: dict[str, str] = {}  # the login's cookie, as set by the server
        self._logged_in = False
        self.can_splice = True  # until the server shows it cannot (a stock Visdom server)
        self.outages = 0  # counts forget_login() calls: what the server held before may be gone
        self.requests = 0  # HTTP requests made

    def _connect(self) -> http.client.HTTPConnection:
        if self._http is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._http = kind(self._host, self._port, timeout=self.timeout)
        return self._http

    def cookies(self) -> dict[str, str]:
        """The login's cookies, as the server set them (for a socket to the same server)."""
        return dict(self._cookies)

    def close(self) -> None:
        """Close the open connection (the next request opens a new one)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def _exchange(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, str]:
        """One request on the open connection (opened if need be). Any failure closes it: a late
        answer (a frozen server's) must never be read as the next request's."""
        connection = self._connect()
        self.requests += 1
        try:
            connection.request("POST", self._base + path, body, headers)
            response = connection.getresponse()
            return response, response.read().decode("utf-8", "replace")
        except BaseException:
            self.close()
            raise

    def _request(self, path: str, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        reused = self._http is not None
        try:
            try:
                response, text = self._exchange(path, body, headers)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                # a kept-alive connection the server had closed: once more, on a new one
                response, text = self._exchange(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out (a frozen server)...
            raise Unreachable(f"{self.url} did not answer ({exc or type(exc).__name__})") from None
        if response.will_close:
            self.close()
        for header in response.headers.get_all("Set-Cookie") or ():
            for name, morsel in http.cookies.SimpleCookie(header).items():
                self._cookies[name] = morsel.coded_value
        if response.status >= 400:
            raise Unreachable(f"{self.url}{path} answered HTTP {response.status}", status=response.status)
        return text

    def login(self) -> None:
        """Log in when credentials are set (Visdom's page sends sha256 of the password)."""
        if self.username and self.password and not self._logged_in:
            digest = hashlib.sha256(self.password.encode("utf-8")).hexdigest()
            self._request("/", json.dumps({"username": self.username, "password": digest}).encode())
            self._logged_in = True

    def post(self, endpoint: str, message: dict[str, Any]) -> str:
        """POST `message` as JSON to `/endpoint`; the server's answer as text."""
        self.login()
        return self._request("/" + endpoint, json.dumps(message, separators=(",", ":"), allow_nan=False).encode())

    def pane(self, env: str, win: str) -> dict[str, Any] | None:
        """The pane `win` of `env` as the server holds it; None when it holds none."""
        try:
            return json.loads(self.post("win_data", {"eid": env, "win": win}))
        except Unreachable as exc:
            if exc.status is None:
                raise  # nothing answered: an outage
            return None  # visdom answers an error for a missing env or window

    def splice(self, env: str, splices: list[dict[str, Any]]) -> list[str] | None:
        """Replace the tails of traces (see `dashboard.visdom_app.splice_handler`): per splice SPLICED,
        STALE or MISSING_WINDOW; None when the server cannot (a stock Visdom server)."""
        if not self.can_splice:
            return None
        try:
            answer = self.post(SPLICE_PATH.lstrip("/"), {"eid": env, "splices": splices})
            answers = json.loads(answer)
        except Unreachable as exc:
            if exc.status is None:
                raise  # nothing answered: an outage, not a server without the endpoint
            answers = None  # an error answer: a server without the endpoint (one from ours: the same)
        except ValueError:
            answers = None
        if not isinstance(answers, list) or len(answers) != len(splices):
            self.can_splice = False
            return None
        return answers

    def forget_login(self) -> None:
        """After an outage the server may have restarted (with a new cookie secret, without the
        windows it held): log in again, and send whole traces."""
        self._logged_in = False
        self._cookies.clear()
        self.close()
        self.outages += 1
        self.can_splice = True


class LoginRefused(Unreachable):
    """The server's login is on, and the credentials in the environment are missing or wrong."""


def check_access(url: str, timeout: float = 5.0) -> None:
    """Make sure we may draw at `url`: with the server's login on, the credentials in the
    environment must work (else every request would be refused while the runs train unseen)."""
    connection = VisdomConnection(url, timeout=timeout)
    try:
        connection.login()
    except Unreachable as exc:
        if exc.status == 400:
            raise LoginRefused(f"the Visdom server at {connection.url} refused the login of {USER_VAR}="
                               f"{connection.username!r}; check {USER_VAR} and {PASSWORD_VAR}") from None
        raise
    try:
        connection.post("win_exists", {"eid": "livetrain", "win": "livetrain"})
    except Unreachable as exc:
        if exc.status == 400:
            raise LoginRefused(f"the Visdom server at {connection.url} asks for a login; set {USER_VAR} and "
                               f"{PASSWORD_VAR} to its user name and password") from None
        raise
