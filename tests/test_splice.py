"""A trace that gained a few points is sent as those points (its tail), not whole, when the server
is ours; the server then holds exactly what a whole send would have left. Stock Visdom servers,
a server that lost the window and a trace changed behind the client's back get whole traces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashboard import windows
from benchmarks.stock_visdom import start_stock
from dashboard.server import ServerProcess
from tests.conftest import free_port
from tests.helpers import drawing, expected, held, stream
from trainers.reporting import TRAIN_LOSS

LOSS_WIN = windows.COMPARE_BY_METRIC[TRAIN_LOSS].win


@pytest.mark.parametrize("smoothing", [None, 0.6])
def test_tails_are_spliced_and_the_server_holds_the_whole_trace(visdom_server: ServerProcess, smoothing: float | None) -> None:
    url, env = visdom_server.config.url, f"splice-{smoothing}"
    # 40 points per trace at most: the buckets merge (the whole trace changes) several times
    connection, sender, backend = drawing(url, env, "run <1>", max_points=40, smoothing=smoothing)
    stream(backend, sender, flushes=60, per_flush=7)
    assert held(url, env, LOSS_WIN) == expected(backend)
    assert len(expected(backend)["run &lt;1&gt;"][0]) > 20
    traces = 2 if smoothing else 1
    assert backend.tails_sent >= 40 * traces  # most flushes sent tails, the merges whole traces
    # one request per flush (plus the first flush's and each merge's whole traces)
    assert 60 <= connection.requests - 1 < 60 + 12


def test_a_trace_changed_behind_the_clients_back_is_sent_whole(visdom_server: ServerProcess) -> None:
    url, env = visdom_server.config.url, "splice-stale"
    connection, sender, backend = drawing(url, env, "a", max_points=400, smoothing=None)
    stream(backend, sender, flushes=3, per_flush=5)
    # someone else replaces the trace (a replay into the same env, a user's script)
    window = windows.COMPARE_BY_METRIC[TRAIN_LOSS]
    other = windows.trace(window, "a", 0, [0.0], [1.0])
    connection.post("update", windows.trace_message(env, window, other, create=False))
    tails = backend.tails_sent
    stream(backend, sender, flushes=1, per_flush=5, start=100)
    assert backend.tails_sent == tails  # answered "stale": sent whole
    assert held(url, env, LOSS_WIN) == expected(backend)
    # a window deleted on the page
    connection.post("close", {"eid": env, "win": LOSS_WIN})
    stream(backend, sender, flushes=1, per_flush=5, start=200)
    assert held(url, env, LOSS_WIN) == expected(backend)


@pytest.fixture
def stock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Visdom's own server (no splice endpoint, its own /update), like a remote stock one."""
    server = start_stock(free_port(), tmp_path_factory.mktemp("stock"))
    yield server
    server.stop()


def test_a_stock_visdom_server_gets_whole_traces(stock_server: ServerProcess) -> None:
    url, env = stock_server.config.url, "stock"
    connection, sender, backend = drawing(url, env, "b", max_points=40)
    stream(backend, sender, flushes=10, per_flush=7)
    assert not connection.can_splice and backend.tails_sent == 0
    assert held(url, env, LOSS_WIN) == expected(backend)
