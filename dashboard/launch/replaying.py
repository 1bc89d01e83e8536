"""`replay`: logged runs drawn into a Visdom env, on a server found or started as for a launch."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from dashboard.launch.plan import LaunchError
from dashboard.launch.servers import find_server, page_url, serve_until_stopped
from dashboard.replay import ReplayError, check_runs, replay
from dashboard.server import ServerConfig, ServerError


def replay_runs(paths: list[Path], env: str, visdom_url: str | None, config: ServerConfig, out: TextIO,
                smoothing: float | None = None) -> None:
    """Draw the runs under `paths` into `env`: at `visdom_url`, or on the local server (started
    when none answers, and then kept up until Ctrl-C). Raises LaunchError before anything is
    started when the logs or the server say no."""
    check_runs(paths)  # before anything is started
    server = find_server(visdom_url, config, start=True)
    try:
        if server.started is not None:
            try:
                server.started.wait_ready()
            except ServerError as exc:
                raise LaunchError(str(exc)) from None
        try:
            done = replay(paths, server.url, env, smoothing=smoothing)
        except ReplayError as exc:
            raise LaunchError(str(exc)) from None
        note = f" ({done.skipped_lines} incomplete log lines skipped)" if done.skipped_lines else ""
        out.write(f"Replayed {len(done.labels)} run(s): {', '.join(done.labels)}{note}. "
                  f"See {page_url(server, env)}\n")
        out.flush()
        if server.started is not None:
            serve_until_stopped(out, server, env)
    finally:
        if server.started is not None:
            server.started.stop()
