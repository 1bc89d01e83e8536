"""Requests that timed out on a frozen server are still applied when it thaws, possibly after newer
ones. Reproduced on purpose: a relay (tests/relay.py) holds the requests a run sends while "the
server is frozen", the run times out and goes on, newer sends land, and then the held requests are
delivered. Our server refuses them (each message carries a sequence number, and a tail names the
message it extends); a stock Visdom server applies them, and the run's check after the outage (and
at close) finds the difference and sends again. Either way the server ends holding what the run
last drew."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from dashboard import panels, windows
from dashboard.connection import VisdomConnection
from dashboard.sender import CHECK_AFTER, Sender
from dashboard.protocol import SEQ_KEY, STALE
from dashboard.server import ServerConfig, ServerProcess, start_background
from dashboard.visdom_backend import VisdomBackend
from dashboard.windows import DrawOptions
from benchmarks.stock_visdom import start_stock
from tests.conftest import free_port
from tests.helpers import expected, held, stream
from tests.relay import HoldingRelay
from trainers import measures
from trainers.reporting import TRAIN_LOSS

LOSS_WIN = windows.COMPARE_BY_METRIC[TRAIN_LOSS].win
CLASSES = tuple(f"class {i}" for i in range(10))


@pytest.fixture(params=["ours", "stock"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env_dir = tmp_path_factory.mktemp("visdom")
    if request.param == "stock":  # Visdom's own server: its /update and /events, no splice endpoint
        started = start_stock(free_port(), env_dir)
    else:
        started = start_background(ServerConfig(port=0, env_dir=env_dir))
    yield started
    started.stop()


@pytest.fixture
def relay(server: ServerProcess) -> Iterator[HoldingRelay]:
    relayed = HoldingRelay(server.config.port)
    yield relayed
    relayed.close()


def predict(backend: VisdomBackend, x: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (16, 1, 28, 28), generator=gen, dtype=torch.uint8)
    backend.record(measures.GALLERY, 0, x, {"classes": list(CLASSES), **measures.images(images)})
    backend.record(measures.PREDICTIONS, 0, x, {"predicted": torch.randint(0, 10, (16,), generator=gen).tolist(),
                                                "probability": measures.probabilities(torch.rand(16, generator=gen)),
                                                "true": torch.randint(0, 10, (16,), generator=gen).tolist()})
    backend.record(measures.CONFUSION, 0, x, {"matrix": torch.randint(0, 50, (10, 10), generator=gen).tolist(),
                                              "classes": list(CLASSES)})


def gallery(url: str, env: str, win: str) -> str:
    return json.loads(VisdomConnection(url).post("win_data", {"eid": env, "win": win}))["content"]


class Clock:
    """The sender's clock, moved by hand past its backoffs and its check's delay."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def past_backoff(self, sender: Sender) -> None:
        self.now += 0.5 * 2 ** max(sender.failures - 1, 0) + 0.01


def failing_flush(sender: Sender, clock: Clock) -> None:
    clock.past_backoff(sender)
    assert not sender.flush()


@pytest.mark.parametrize("then", ["go on", "close"])
def test_requests_applied_late_do_not_leave_a_stale_window(server: ServerProcess, relay: HoldingRelay,
                                                          then: str) -> None:
    env, url = "late", server.config.url
    connection = VisdomConnection(relay.url, timeout=60)  # held requests fail at once (the relay drops them)
    clock = Clock()
    sender = Sender(connection, clock=clock)
    backend = VisdomBackend(sender, DrawOptions(env, max_points=40), "run")
    step = stream(backend, sender, flushes=3, per_flush=9)  # drawn, tails spliced (on ours)
    predict(backend, 1.0, seed=1)
    assert sender.flush()
    old_gallery = gallery(url, env, windows.run_window("gallery", backend.label))

    relay.hold_all()  # the server freezes: the next request fails, kept in its socket
    step = stream_failing(backend, sender, step, clock)
    relay.hold_matching(b"POST /update")  # it answers the gallery and freezes on the traces
    predict(backend, 1.5, seed=2)
    step = stream_failing(backend, sender, step, clock)
    assert len(relay.kept) == 2

    relay.pass_all()  # thawed: newer sends land first
    clock.past_backoff(sender)
    predict(backend, 2.0, seed=3)
    step = stream(backend, sender, flushes=2, per_flush=9, start=step)
    newest_gallery = gallery(url, env, windows.run_window("gallery", backend.label))
    assert newest_gallery != old_gallery
    assert held(url, env, LOSS_WIN) == expected(backend)

    late = relay.release()  # ... and then the requests it had queued
    assert len(late) == 2 and all(a.startswith("HTTP/1.1 200") for a in late), late
    if connection.can_splice:  # our server: both refused, nothing changed
        assert all(STALE in answer for answer in late), late
        assert held(url, env, LOSS_WIN) == expected(backend)
    else:  # a stock server applied them: the window went back in time
        assert held(url, env, LOSS_WIN) != expected(backend)
        if then == "go on":  # the run's check, CHECK_AFTER s after the server answered again
            clock.now += CHECK_AFTER
            assert sender.flush()
        else:  # the run ends first: its sender checks at close
            sender.start()
            assert sender.close(wait=10)
        assert sender.checks_run == 1 and backend._traces_key in sender.check_marked
    assert held(url, env, LOSS_WIN) == expected(backend)
    assert gallery(url, env, windows.run_window("gallery", backend.label)) == newest_gallery


def stream_failing(backend: VisdomBackend, sender: Sender, step: int, clock: Clock) -> int:
    for _ in range(9):
        step += 1
        backend.scalars(step, step / 100, {TRAIN_LOSS: (step * 7919 % 1000) / 1000})
    failing_flush(sender, clock)
    return step


def test_our_server_refuses_a_pane_older_than_the_one_it_holds(visdom_server: ServerProcess) -> None:
    url, env = visdom_server.config.url, "late-panes"
    connection = VisdomConnection(url)
    newer, older = (windows.text_message(env, "pane", "t", text, 100, 100) for text in ("newer", "older"))
    older[SEQ_KEY] = newer[SEQ_KEY] - 1
    connection.post("events", newer)
    assert connection.post("events", older) == STALE
    assert gallery(url, env, "pane") == "newer"
    # a placeholder (numbered 0) never replaces what a run drew
    for placeholder in panels.run_placeholders(env, "run"):
        connection.post("events", windows.text_message(env, placeholder["win"], "t", "drawn", 100, 100))
        assert connection.post("events", placeholder) == STALE
        assert gallery(url, env, placeholder["win"]) == "drawn"
