"""The real Visdom server, run offline: start it, probe it, stop it.

Visdom's own entry point downloads its frontend at every start and, with `-bind_local` unset,
listens on every interface. This module builds visdom's tornado `Application` itself: it checks
that the page files were installed (`dashboard.assets`), keeps the env files in a folder of ours,
listens on 127.0.0.1 unless told otherwise, and turns Visdom's login on from the environment.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from dashboard import assets
from dashboard.page_flow import paced_socket_handler
from dashboard.protocol import COOKIE_VAR, PASSWORD_VAR, SPLICE_PATH, USER_VAR
from dashboard.visdom_app import (
    events_handler, fast_update_handler, guarded_application, quiet_application, reconnect_transform,
    env_deletion_handlers, splice_handler, visdom_socket_handler,
)
from trainers.errors import LivetrainError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8097
DEFAULT_ENV_DIR = Path("runs") / "visdom"
OWNER_CHECK = 0.5  # s between a started server's looks at whether its owner is still there


class Found(str, Enum):
    """What `probe` finds at a URL, and what `port_state` finds on a port."""

    VISDOM = "visdom"  # a Visdom server answers
    OTHER = "other"  # something answers that is not Visdom
    NONE = "none"  # nothing answers
    FREE = "free"  # the port is free to listen on

    def __str__(self) -> str:
        return self.value


class ServerError(LivetrainError):
    """A one-line, user-facing reason why the server cannot start or be reached."""


@dataclass(frozen=True)
class ServerConfig:
    """Where the server listens, where it keeps env files, and whether it asks for a login."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    env_dir: Path = field(default=DEFAULT_ENV_DIR)
    login: bool = False

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"  # reachable from here whatever interface it is on
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """True when `host` names this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def probe(url: str, timeout: float = 1.0) -> Found:
    """What answers at `url`: VISDOM, OTHER (something that is not Visdom) or NONE."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout) as resp:
            body = resp.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read(65536).decode("utf-8", "replace") if exc.fp else ""
    except ValueError:  # a URL urllib cannot use (http.client.InvalidURL)
        return Found.OTHER
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        refused = isinstance(reason, ConnectionRefusedError) or (
            isinstance(reason, OSError) and reason.errno in (errno.ECONNREFUSED, errno.EADDRNOTAVAIL)
        )
        return Found.NONE if refused else Found.OTHER
    # index.html's title is "visdom", login.html's "Visdom Login"
    return Found.VISDOM if re.search(r"<title>\s*visdom( login)?\s*</title>", body, re.I) else Found.OTHER


def port_state(config: ServerConfig) -> str:
    """FREE when we can listen on host:port, VISDOM when a Visdom server already does.

    Raises ServerError when something else holds the port or the address is unusable."""
    try:
        infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ServerError(f"cannot resolve host {config.host!r}; use an address such as 127.0.0.1")
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
            return Found.FREE
        except OSError as exc:
            if exc.errno == errno.EACCES:
                raise ServerError(
                    f"no permission to listen on port {config.port}; choose a port above 1023 with --port"
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ServerError(
                    f"{config.host} is not an address of this machine; use 127.0.0.1 or one of its own"
                )
            if exc.errno != errno.EADDRINUSE:
                raise ServerError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}")
    if probe(config.url, timeout=3.0) == Found.VISDOM:
        return Found.VISDOM
    raise ServerError(
        f"port {config.port} on {config.host} is in use by another program (not Visdom); "
        "stop it or choose another port with --port"
    )


def login_credentials(env_dir: Path) -> dict[str, str]:
    """Visdom's credential dict from VISDOM_USERNAME / VISDOM_PASSWORD; sets up the cookie secret.

    The secret comes from VISDOM_COOKIE, else from `env_dir/COOKIE_SECRET` (made once, mode 600),
    so browser sessions survive a restart."""
    from visdom.utils.server_utils import hash_password

    user, password = os.environ.get(USER_VAR), os.environ.get(PASSWORD_VAR)
    if not user or not password:
        raise ServerError(f"--login needs the credentials in {USER_VAR} and {PASSWORD_VAR}; set both")
    secret_file = env_dir / "COOKIE_SECRET"
    secret = os.environ.get(COOKIE_VAR)
    if secret:
        secret_file.write_text(secret)
    elif not secret_file.is_file():
        secret_file.write_text(secrets.token_hex(32))
    secret_file.chmod(0o600)
    # the browser sends sha256(password) and the server hashes that once more before comparing
    # (visdom 0.2.4: sha256 again; 0.3: salted PBKDF2, the salt kept in what it stores)
    return {"username": user, "password": hash_password(hashlib.sha256(password.encode("utf-8")).hexdigest())}


def application(config: ServerConfig, env_dir: Path, credential: dict | None = None) -> Any:
    """Visdom's tornado Application as livetrain serves it: our /update, /events and splice
    handlers, the page's socket paced by the page (`dashboard.page_flow`), no debug mode, other
    sites' requests refused, the page's scripts."""
    import visdom.server.app as visdom_app

    # visdom reads the cookie secret from its module-level default folder: point it at ours
    visdom_app.DEFAULT_ENV_PATH = f"{env_dir}/"
    built = guarded_application(quiet_application(visdom_app.Application), is_loopback(config.host))
    app = built(port=config.port, env_path=f"{env_dir}/", user_credential=credential)
    app.transforms.insert(0, reconnect_transform())
    # rules added later are matched first: these replace visdom's own (benchmarks.stock_visdom
    # starts visdom's own server, to compare with)
    replaced = dict(env_deletion_handlers())
    replaced["/socket"] = paced_socket_handler(replaced.get("/socket") or visdom_socket_handler())
    app.add_handlers(r".*", [(r"/update", fast_update_handler(), {"app": app}),
                             (r"/events", events_handler(), {"app": app}),
                             (SPLICE_PATH, splice_handler(), {"app": app}),
                             *((path, handler, {"app": app}) for path, handler in replaced.items())])
    return app


def serve(config: ServerConfig, announce: bool = True, port_file: Path | None = None,
          owner: int | None = None) -> None:
    """Run the Visdom server in this process until interrupted (blocking). Port 0 takes a free
    port; the port it listens on is written to `port_file` (if given) once it listens. With
    `owner` (the pid of the process that started it, its parent), it stops within a second of
    the owner's end, however that came (kill -9 included): nothing keeps running unnoticed."""
    assets.check()
    env_dir = config.env_dir.resolve()
    try:
        env_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServerError(f"cannot create the env folder {env_dir}: {exc.strerror}; choose another with --env-dir")
    credential = login_credentials(env_dir) if config.login else None

    import logging

    import tornado.ioloop

    logging.getLogger().setLevel(logging.WARNING)
    # index.html asks static_url() for ../user/style.css, which visdom serves from its own handler;
    # tornado logs an error for it on every page load
    logging.getLogger("tornado.general").addFilter(
        lambda record: "user/style.css" not in record.getMessage()
    )
    app = application(config, env_dir, credential)
    import tornado.httpserver
    import tornado.netutil

    try:
        sockets = tornado.netutil.bind_sockets(config.port, address=config.host)
    except OSError as exc:
        raise ServerError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}")
    tornado.httpserver.HTTPServer(app, max_buffer_size=1024**3).add_sockets(sockets)
    config = replace(config, port=int(sockets[0].getsockname()[1]))
    if port_file is not None:
        partial = port_file.with_name(port_file.name + ".tmp")
        partial.write_text(str(config.port))
        partial.replace(port_file)
    if announce:
        if not is_loopback(config.host):
            print(
                f"Warning: listening on {config.host}:{config.port}, reachable from other machines; "
                + ("login is on." if config.login else "anyone who can reach it can read and change the dashboards, "
                   "and stop, pause or change the runs from their Control pane (add --login)."),
                flush=True,
            )
        print(f"Visdom server at {config.url} (env files in {env_dir}); Ctrl-C stops it.", flush=True)
    if owner is not None:
        def check_owner() -> None:
            if os.getppid() != owner:
                print(f"The process that started this server (pid {owner}) has ended; stopping.", flush=True)
                tornado.ioloop.IOLoop.current().stop()
        tornado.ioloop.PeriodicCallback(check_owner, OWNER_CHECK * 1000).start()
    tornado.ioloop.IOLoop.current().start()


@dataclass
class ServerProcess:
    """A Visdom server running in a child process (see `start_background`)."""

    config: ServerConfig  # its port is the one it listens on once `wait_ready` returned
    process: subprocess.Popen[bytes]
    log_path: Path
    port_file: Path | None = None  # where a server started on port 0 says which port it took

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.port_file is not None:
            self.port_file.unlink(missing_ok=True)

    def wait_ready(self, timeout: float = 30.0, abort: Callable[[], bool] = lambda: False) -> bool:
        """Wait until the server answers as Visdom; raise ServerError if it exits or never answers.

        False when `abort()` turned true first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if abort():
                return False
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()
                raise ServerError(f"the Visdom server exited at start: {tail[-1] if tail else 'no output'}")
            if self.config.port == 0:
                if self.port_file is None or not self.port_file.is_file():
                    time.sleep(0.05)
                    continue
                self.config = replace(self.config, port=int(self.port_file.read_text()))
            if probe(self.config.url, timeout=1.0) == Found.VISDOM:
                return True
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"the Visdom server did not answer at {self.config.url} within {timeout:.0f} s; "
                          f"see {self.log_path}")


# What a serving process never imports: torch (visdom imports it only to accept tensors in its
# client: seconds of start-up and 500 MB) and openTSNE (visdom 0.3's client imports it for its
# embeddings' t-SNE, and with it scikit-learn and scipy: 85 MB more).
NOT_SERVED = ("torch", "openTSNE")


class _ServerOnly:
    """A finder on `sys.meta_path` that refuses NOT_SERVED (see `without_torch`)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in NOT_SERVED:
            raise ModuleNotFoundError(f"no {name} in a process that only serves", name=name)
        return None


def without_torch() -> None:
    """Keep torch (and NOT_SERVED's others) out of this process, which only serves: importing one
    fails fast, with nothing left in `sys.modules` (a None entry there breaks libraries that look
    a module up by its entry, such as scipy's array API checks). Only for a process that will
    never train."""
    if not any(m in sys.modules for m in NOT_SERVED) and not any(isinstance(f, _ServerOnly) for f in sys.meta_path):
        sys.meta_path.insert(0, _ServerOnly())


def spawn(config: ServerConfig, python: str | None = None) -> ServerProcess:
    """Start the server in a child process and return at once (see `ServerProcess.wait_ready`).

    The child has its own session: a Ctrl-C in the terminal reaches only its owner, which stops it
    when it is done with it (the page stays up while runs are wound down). Port 0: a free port,
    known once `wait_ready` returned (in `config`). `python`: another interpreter to serve from,
    with its own visdom (the tests serve visdom 0.3 from a Python 3.12 venv); it checks its own
    page files."""
    if python is None:
        assets.check()
    config.env_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.env_dir / "server.log"
    port_file = None
    if config.port == 0:
        port_file = config.env_dir / f"server-port-{os.getpid()}-{secrets.token_hex(4)}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                python or sys.executable, "-m", "dashboard.server",
                "--host", config.host, "--port", str(config.port),
                "--env-dir", str(config.env_dir.resolve()),
                *(["--login"] if config.login else []),
                *(["--port-file", str(port_file.resolve())] if port_file else []),
                "--owner", str(os.getpid()),
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
        )
    return ServerProcess(config, process, log_path, port_file)


def start_background(config: ServerConfig, timeout: float = 30.0) -> ServerProcess:
    """Start the server in a child process and wait until it answers as Visdom."""
    handle = spawn(config)
    handle.wait_ready(timeout)
    return handle


def main(argv: list[str] | None = None) -> int:
    """Child-process entry for `start_background`; users run `python launch.py server`."""
    parser = argparse.ArgumentParser(description="Run the offline Visdom server.")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--env-dir", type=Path, default=DEFAULT_ENV_DIR)
    parser.add_argument("--login", action="store_true")
    parser.add_argument("--port-file", type=Path, help="write the port listened on here (for --port 0)")
    parser.add_argument("--owner", type=int, help="stop when this process (the parent) has ended")
    args = parser.parse_args(argv)
    without_torch()
    try:
        serve(ServerConfig(args.host, args.port, args.env_dir, args.login), port_file=args.port_file, owner=args.owner)
    except (ServerError, assets.AssetError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
