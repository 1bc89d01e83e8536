"""Shared fixtures: free ports and a real Visdom server started by the test and stopped after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

from dashboard.server import ServerConfig, ServerProcess, _ServerOnly, spawn

REPO = Path(__file__).resolve().parent.parent
# the interpreter the `visdom_server` fixture serves from, when not this one (with its own visdom)
SERVER_PYTHON = "LIVETRAIN_TEST_SERVER_PYTHON"


_reserved: list[socket.socket] = []  # held until the tests end


def free_port() -> int:
    """A loopback port that stays free for the servers under test, and only for them, until the
    tests end: it is held bound (not listening) with SO_REUSEADDR. The kernel then gives it to no
    other bind and to no outgoing connection, while a server that also sets SO_REUSEADDR (tornado,
    http.server, the launcher's port check) may listen on it. (Binding port 0 and closing at once,
    as before, left a race: anything could take the port before the server under test did.)
    Where the server may pick its port, start it on port 0 instead."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    _reserved.append(sock)
    return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def torch_importable() -> Iterator[None]:
    """`livetrain server` run in this process (click's CliRunner) keeps torch out of it for good
    (`without_torch`, for a process that only serves): undone after each test, so that a later
    test may import torch whichever order the tests run in."""
    yield
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _ServerOnly)]


@pytest.fixture(scope="module")
def visdom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real Visdom server on a free loopback port, with its env files in a temp folder; served
    from the Python that SERVER_PYTHON names, where it names one (to run a server-facing test module
    against livetrain on visdom 0.3: `LIVETRAIN_TEST_SERVER_PYTHON=.venv-visdom03/bin/python`)."""
    config = ServerConfig(port=0, env_dir=tmp_path_factory.mktemp("visdom-env"))  # a free port, taken by the server
    server = spawn(config, python=os.environ.get(SERVER_PYTHON) or None)
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 1.5 MB tmpfs: room for the MLP's run log and one checkpoint (0.8 MB), not for the next."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
