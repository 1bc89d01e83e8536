"""`replay`: logged runs drawn into a Visdom env, on a server found or started as for a launch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from dashboard.connection import Unreachable, VisdomConnection
from dashboard.launch.servers import find_server, page_url, serve_until_stopped
from dashboard.replay import ReplayError, check_runs, replay
from dashboard.server import ServerConfig
from dashboard import windows
from dashboard.windows import DrawOptions


def replay_runs(paths: list[Path], draw: DrawOptions, visdom_url: str | None, config: ServerConfig,
                out: TextIO) -> None:
    """Draw the runs under `paths` into `draw.env`: at `visdom_url`, or on the local server (started
    when none answers, and then kept up until Ctrl-C). Raises ReplayError before anything is
    started when the logs say no, and LaunchError or ServerError when the server does."""
    draw = replace(draw, run_windows=windows.run_windows_for(len(check_runs(paths))))  # before anything starts
    server = find_server(visdom_url, config, start=True)
    try:
        if server.started is not None:
            server.started.wait_ready()
        done = replay(paths, server.url, draw)
        note = f" ({done.skipped_lines} incomplete log lines skipped)" if done.skipped_lines else ""
        out.write(f"Replayed {len(done.labels)} run(s): {', '.join(done.labels)}{note}. "
                  f"See {page_url(server, draw.env)}\n")
        out.flush()
        if server.started is not None:
            serve_until_stopped(out, server, draw.env)
    finally:
        if server.started is not None:
            server.started.stop()


def redraw(out: TextIO, run_dirs: Sequence[Path], launch_dir: Path, url: str, draw: DrawOptions,
           panes: Sequence[dict[str, Any]] = ()) -> None:
    """The server missed a launch's last updates (down or frozen as its runs ended): if it answers
    now, draw every run again from its log, and post `panes` (the Control pane as the launch left
    it), so that the page ends complete; else say how to later."""
    try:
        done = replay(list(run_dirs), url, draw)
        connection = VisdomConnection(url)
        for message in panes:
            connection.post("events", message)
        out.write(f"The Visdom server missed the runs' last updates; redrew {len(done.labels)} run(s) "
                  "from their logs.\n")
    except (ReplayError, Unreachable):
        out.write(f"The Visdom server missed updates and does not answer now; once it does, "
                  f"`livetrain replay {launch_dir} --env {draw.env}` redraws the runs.\n")
    out.flush()
