"""The Visdom server a launch (or a replay) draws into: a URL given, or the local one, reused or
started; and keeping a started one up until Ctrl-C."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import TextIO

from dashboard.connection import LoginRefused, Unreachable, check_access
from dashboard.launch.plan import LaunchError
from dashboard.launch.supervisor import StopRequests
from dashboard.server import Found, ServerConfig, ServerError, ServerProcess, port_state, probe, spawn


@dataclass
class Server:
    """Where the live windows go, and the server process when this launch started it."""

    url: str
    started: ServerProcess | None = None
    to_start: bool = False  # a plan's (`--dry-run`): a launch would start it


def find_server(visdom_url: str | None, config: ServerConfig, start: bool, dry_run: bool = False) -> Server:
    """The Visdom server to draw into: `visdom_url` (which must answer), or the local one, reused
    when it answers, else started (unless `start` is False; with `dry_run`, only said). A started
    one may still be booting: call `started.wait_ready()`."""
    if visdom_url is not None:
        state = probe(visdom_url, timeout=3.0)
        if state != Found.VISDOM:
            what = "nothing answers" if state == Found.NONE else "no Visdom server answers"
            raise LaunchError(f"{what} at {visdom_url}; start one there (`livetrain server`), fix --visdom-url, "
                              "or leave it out to use a local server")
        _check_access(visdom_url)
        return Server(visdom_url)
    try:
        if port_state(config) == Found.VISDOM:
            _check_access(config.url)
            return Server(config.url)
    except ServerError as exc:
        raise LaunchError(f"{exc}, or pass --visdom-url of a running Visdom server") from None
    if not start:
        raise LaunchError(f"no Visdom server answers at {config.url} and --no-server was given; "
                          "start one with `livetrain server`, or drop --no-server or add --headless")
    if dry_run:  # port_state found the port free
        return Server(config.url, to_start=True)
    try:
        return Server(config.url, spawn(config))
    except (ServerError, OSError) as exc:
        raise LaunchError(f"cannot start the Visdom server: {exc}") from None


def _check_access(url: str) -> None:
    try:
        check_access(url)
    except LoginRefused as exc:
        raise LaunchError(str(exc)) from None
    except Unreachable as exc:
        raise LaunchError(f"the Visdom server at {url} did not take a request ({exc}); check it, or pass "
                          "--headless to train without it") from None


def page_url(server: Server, env: str) -> str:
    return f"{server.url}/env/{urllib.parse.quote(env)}"


def serve_until_stopped(out: TextIO, server: Server, env: str) -> None:
    assert server.started is not None
    out.write(f"The page stays up at {page_url(server, env)}; Ctrl-C stops the server.\n")
    out.flush()
    stops = StopRequests()
    with stops.installed():
        while not stops.count and server.started.process.poll() is None:
            time.sleep(0.2)
    out.write("Visdom server stopped.\n")
