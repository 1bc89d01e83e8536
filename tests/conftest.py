"""Shared fixtures: free ports and a real Visdom server started by the test and stopped after."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.server import ServerConfig, ServerProcess, start_background

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real Visdom server on a free loopback port, with its env files in a temp folder."""
    config = ServerConfig(port=0, env_dir=tmp_path_factory.mktemp("visdom-env"))  # a free port, taken by the server
    server = start_background(config)
    yield server
    server.stop()
