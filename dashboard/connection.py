"""One HTTP connection to a Visdom server, with timeouts and login, and nothing else.

Visdom's own client blocks without a timeout on a frozen server and prints a traceback on a dead
one; this posts the same JSON messages with a timeout and turns every failure into `Unreachable`."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import socket
import urllib.error
import urllib.request
from typing import Any

from dashboard.server import PASSWORD_VAR, USER_VAR

MISSING_WINDOW = "win does not exist"


class Unreachable(Exception):
    """The server did not answer, answered with an error, or refused the login."""


class VisdomConnection:
    """Posts messages to a Visdom server's endpoints (`events`, `update`, `win_exists`, `win_data`...)."""

    def __init__(self, url: str, timeout: float = 5.0, username: str | None = None,
                 password: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.username = username if username is not None else os.environ.get(USER_VAR)
        self.password = password if password is not None else os.environ.get(PASSWORD_VAR)
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self._logged_in = False

    def _request(self, path: str, body: bytes) -> str:
        req = urllib.request.Request(self.url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            raise Unreachable(f"{self.url}{path} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{self.url} did not answer ({reason})") from None

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

    def forget_login(self) -> None:
        """After an outage the server may have restarted with a new cookie secret: log in again."""
        self._logged_in = False
