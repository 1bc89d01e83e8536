"""A stock Visdom server (visdom's own `start_server`: its handlers, its debug mode, none of
ours), for tests and benchmarks that need one to compare with; offline, with the page files that
`make setup` installed. Start it with `start_stock(port, env_dir)`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dashboard.server import ServerConfig, ServerProcess

# base_url "" is what visdom's own main() passes for its default "/"
STOCK = ("import sys; from visdom.server.run_server import start_server; "
         "start_server(port=int(sys.argv[1]), env_path=sys.argv[2] + '/', base_url='', bind_local=True)")


def start_stock(port: int, env_dir: Path, timeout: float = 60.0) -> ServerProcess:
    """Visdom's own server on 127.0.0.1:`port` (a port the caller holds free), ready to answer."""
    env_dir.mkdir(parents=True, exist_ok=True)
    log_path = env_dir / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", STOCK, str(port), str(env_dir)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = ServerProcess(ServerConfig(port=port, env_dir=env_dir), process, log_path)
    server.wait_ready(timeout)
    return server
