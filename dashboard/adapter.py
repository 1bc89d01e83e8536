"""`Dashboard`: the thin adapter a training run reports to, and the only thing workers take from here.

It fans each call out to the run log (always, first: the source of truth) and, when a Visdom URL
is given, to the Visdom backend, whose sender thread does all the talking to the server. The
per-batch scalars are the exception: they go to the run log alone, which hands them to the backend
in the batches it writes (a few a second), so a batch costs the training loop one short call.
Nothing here blocks on the network: a dead or frozen server costs the training loop nothing.

From a notebook: `serve()` gives the local server's URL (started for the notebook when none
answers), and `dash.show()` displays the run's page inline."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from dashboard.connection import VisdomConnection
from dashboard.runlog import INCOMPLETE_MARK, LOG_NAME, RunLog, feed, read
from dashboard.sender import Sender
from dashboard.visdom_backend import VisdomBackend
from dashboard.windows import DrawOptions, default_colour_index
from trainers.errors import UsageError
from trainers.reporting import RunState

_started = []  # the servers `serve` started, kept for as long as this process lives (they stop with it)


def serve(port: int = 8097) -> str:
    """The URL of the local Visdom server on `port`: the one that answers there, or one started now
    in a process of its own, which stops when this one (a notebook's kernel) ends."""
    # the server's module only here: a training worker, which imports this one, never loads it
    from dashboard.server import Found, ServerConfig, ServerError, port_state, spawn

    config = ServerConfig(port=port)
    if port_state(config) != Found.VISDOM:
        server = spawn(config)
        try:
            server.wait_ready()
        except ServerError:
            server.stop()
            raise
        _started.append(server)
    return config.url


@dataclass(frozen=True)
class DashboardOptions:
    """Where and how a run is drawn; `visdom_url=None` means headless (run log only)."""

    visdom_url: str | None = None
    draw: DrawOptions = DrawOptions()
    interval: float = 1.0  # seconds between flushes to the server
    timeout: float = 5.0  # per request


class Dashboard:
    """Implements trainers' `Reporter` for one run: run log + (optionally) live Visdom windows."""

    def __init__(self, run_dir: Path, label: str, options: DashboardOptions = DashboardOptions(),
                 colour_index: int | None = None, parent: Mapping[str, Any] | None = None) -> None:
        self.label = label
        self.options = options
        self.colour_index = default_colour_index(label) if colour_index is None else colour_index
        earlier = read(run_dir) if options.visdom_url and (run_dir / LOG_NAME).is_file() else None
        meta = {"label": label, "colour": self.colour_index, "env": options.draw.env}
        # a fork's log names its parent and where it forked (dashboard.launch.forks)
        self.log = RunLog(run_dir, meta={**meta, "parent": dict(parent)} if parent else meta)
        self.sender: Sender | None = None
        self.visdom: VisdomBackend | None = None
        if options.visdom_url:
            self.sender = Sender(VisdomConnection(options.visdom_url, timeout=options.timeout),
                                 options.interval, name=f"visdom-{label}")
            self.visdom = VisdomBackend(self.sender, options.draw, label, self.colour_index)
            if earlier is not None:  # a resumed run: its windows start with what it logged before
                feed(earlier, self.visdom)
            # per-batch scalars reach the windows in the batches the run log writes (at most
            # WRITE_EVERY s apart): the per-batch call is the run log's alone
            self.log.on_scalars = self.visdom.add_points
            self.sender.start()
        # Reporter.scalars is the run log's own method: the one call made every training step
        # costs no call of ours on top (it hands its batches to the windows, see above)
        self.scalars: Callable[[int, float, Mapping[str, float]], None] = self.log.scalars

    def _targets(self) -> list[Any]:
        return [self.log] + ([self.visdom] if self.visdom is not None else [])

    def config(self, config: Mapping[str, Any]) -> None:
        for target in self._targets():
            target.config(config)

    def status(self, state: RunState, reason: str = "") -> None:
        for target in self._targets():
            target.status(state, reason)

    def record(self, kind: str, step: int, x: float, payload: Mapping[str, Any]) -> None:
        for target in self._targets():
            target.record(kind, step, x, payload)

    def show(self, width: int = 1000, height: int = 700) -> Any:
        """The run's page (its env), to display inline in a Jupyter notebook: an IFrame."""
        if self.options.visdom_url is None:
            raise UsageError("this Dashboard has no server (visdom_url=None): it writes its run log only; "
                             "give DashboardOptions(visdom_url=serve()) to see the page")
        try:
            from IPython.display import IFrame
        except ImportError:
            raise UsageError("show() displays the page in a Jupyter notebook, which needs IPython; "
                             "elsewhere open " + self.page_url) from None
        return IFrame(self.page_url, width, height)

    @property
    def page_url(self) -> str:
        """Where the run's windows are: its server's page of its env."""
        env = urllib.parse.quote(self.options.draw.env or "main")
        return f"{self.options.visdom_url}/env/{env}"

    def close(self, wait: float = 3.0) -> bool:
        """Close the log; give the sender up to `wait` s to draw what is left. True if it all arrived.

        When it did not (the server down or frozen at the end), a marker file next to the log says
        so, for the launcher (or a replay) to redraw the run from its log."""
        self.log.close()
        if self.sender is None:
            return True
        delivered = self.sender.close(wait)
        marker = self.log.path.parent / INCOMPLETE_MARK
        if delivered:
            marker.unlink(missing_ok=True)
        else:
            marker.write_text(f"The Visdom server did not get all of this run's last updates "
                              f"({self.sender.last_error or 'timed out'}); `livetrain replay` redraws it.\n")
        return delivered
