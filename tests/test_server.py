"""The offline Visdom server: page and every asset served locally, loopback only, login, ports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import launch
from dashboard import assets
from dashboard.server import ServerConfig, ServerProcess, probe, start_background
from tests.conftest import REPO, free_port

# Fetches the page and everything it references, recursively through the stylesheets' url(...)s.
# Run inside a network namespace that has only loopback: nothing beyond the machine is reachable.
FETCH_ALL = textwrap.dedent(
    r"""
    import re, sys, time, urllib.parse, urllib.request
    sys.path.insert(0, sys.argv[2])
    from dashboard.server import ServerConfig, start_background
    server = start_background(ServerConfig(port=int(sys.argv[1]), env_dir=__import__("pathlib").Path(sys.argv[3])))
    try:
        base = server.config.url + "/"
        page = urllib.request.urlopen(base, timeout=10).read().decode()
        page = re.sub(r"<!--.*?-->", "", page, flags=re.S)
        refs = re.findall(r'<(?:script|link)[^>]*(?:src|href)=["\']?([^"\'\s>]+)', page)
        seen, todo = set(), [urllib.parse.urljoin(base, r) for r in refs]
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = resp.read()
                print(resp.status, len(body), url.replace(base, "/"))
            if url.split("?")[0].endswith(".css"):
                for ref in re.findall(rb'url\(["\']?([^"\')]+)', body):
                    ref = ref.decode()
                    if not ref.startswith("data:"):
                        todo.append(urllib.parse.urljoin(url, ref).split("#")[0])
    finally:
        server.stop()
    """
)


def test_page_and_every_asset_load_with_no_network(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
         sys.executable, "-c", FETCH_ALL, str(free_port()), str(REPO), str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split(maxsplit=2) for line in proc.stdout.splitlines()]
    fetched = {path.split("?")[0]: (int(status), int(size)) for status, size, path in rows}
    for path, (status, size) in fetched.items():
        assert status == 200, f"{path}: HTTP {status}"
        # /user/style.css is the user's own (empty) stylesheet, served by visdom's settings handler
        assert size > 0 or path == "/user/style.css", f"{path}: empty"
    # the scripts that make the page (a blank page is what a missing one looks like)
    for script in ("jquery.min.js", "react-react.min.js", "react-dom.min.js", "plotly-plotly.min.js",
                   "main.js", "MathJax.js", "TeX-AMS-MML_HTMLorMML.js", "d3.v3.min.js"):
        assert any(p.endswith("/" + script) for p in fetched), f"{script} was not referenced"
    # the fonts bootstrap.min.css points at were followed and served too
    assert any(p.endswith("glyphicons-halflings-regular.woff2") for p in fetched)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, read from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    found.add(address)
    return found


def test_listens_on_loopback_only(visdom_server: ServerProcess) -> None:
    assert _listening_addresses(visdom_server.config.port) == {"127.0.0.1"}


def test_env_files_stay_in_our_folder(visdom_server: ServerProcess) -> None:
    req = urllib.request.Request(
        visdom_server.config.url + "/save", data=json.dumps({"data": ["main"]}).encode(), method="POST",
        headers={"Content-Type": "application/json"},  # urllib's default is a form's body type: refused
    )
    urllib.request.urlopen(req, timeout=5).read()
    assert (visdom_server.config.env_dir / "main.json").is_file()


def test_server_command_reuses_a_running_visdom(visdom_server: ServerProcess) -> None:
    result = CliRunner().invoke(launch.cli, ["server", "--port", str(visdom_server.config.port)])
    assert result.exit_code == 0, result.output
    assert "already answers" in result.output and "reusing it" in result.output


def test_server_command_fails_clearly_when_another_program_holds_the_port() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(launch.cli, ["server", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: port {port} on 127.0.0.1 is in use by another program (not Visdom); "
        "stop it or choose another port with --port"
    )


def test_server_command_names_setup_when_page_files_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assets, "static_dir", lambda: tmp_path)
    result = CliRunner().invoke(launch.cli, ["server", "--port", str(free_port())])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Visdom's page files are missing")
    assert "run `make setup`" in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--port", "0"], "0 is not in the range 1<=x<=65535"),
    (["--port", "http"], "'http' is not a valid integer"),
    (["--host", "no.such.host.invalid"], "cannot resolve host"),
    (["--host", "192.0.2.1"], "is not an address of this machine"),
])
def test_server_command_rejects_bad_addresses(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(launch.cli, ["server", *argv])
    assert result.exit_code in (1, 2) and message in result.output
    assert "Traceback" not in result.output


def test_listening_beyond_loopback_warns(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard.server", "--host", "0.0.0.0", "--port", str(port),
         "--env-dir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert first.startswith("Warning: listening on 0.0.0.0:")
        assert "reachable from other machines" in first and "--login" in first
    finally:
        proc.terminate()
        proc.wait(10)


def test_login_is_required_when_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISDOM_USERNAME", "ada")
    monkeypatch.setenv("VISDOM_PASSWORD", "s3cret")
    server = start_background(ServerConfig(port=free_port(), env_dir=tmp_path, login=True))
    try:
        url = server.config.url + "/"
        anonymous = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "main.js" not in anonymous and "login" in anonymous.lower()

        def log_in(password: str) -> int:
            body = json.dumps({"username": "ada", "password": hashlib.sha256(password.encode()).hexdigest()})
            req = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                return urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert log_in("wrong") != 200
        assert log_in("s3cret") == 200
        secret = tmp_path / "COOKIE_SECRET"
        assert secret.is_file() and oct(secret.stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()


def test_login_without_credentials_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VISDOM_USERNAME", raising=False)
    monkeypatch.delenv("VISDOM_PASSWORD", raising=False)
    result = CliRunner().invoke(
        launch.cli, ["server", "--login", "--port", str(free_port()), "--env-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: --login needs the credentials in VISDOM_USERNAME and VISDOM_PASSWORD; set both"
    )


def test_probe_tells_visdom_from_nothing(visdom_server: ServerProcess) -> None:
    assert probe(visdom_server.config.url) == "visdom"
    assert probe(f"http://127.0.0.1:{free_port()}") == "none"


def test_asset_install_is_complete_and_idempotent() -> None:
    static = assets.static_dir()
    assert assets.missing(static) == []
    assert assets.install(static) == []  # nothing to do the second time
    assert re.fullmatch(r"0\.2\.4", (static / "version.built").read_text().strip())
    assert os.path.getsize(static / "js" / "plotly-plotly.min.js") > 1_000_000


def test_each_visdom_release_has_its_page_files(tmp_path: Path) -> None:
    """0.3.0's page loads MathJax 3 and newer grid style sheets; a patch release keeps its minor's
    files; a release livetrain does not know is a one-line error that says what to install."""
    v024, v030 = assets.page_files("0.2.4"), assets.page_files("0.3.0")
    assert v024.mathjax == "mathjax@2.7.5" and v030.mathjax == "mathjax@3.2.2"
    assert "js/mathjax/3.2.2/es5/tex-mml-svg.js" in v030.wanted()  # what 0.3.0's server downloads
    assert {a.target for a in v024.assets} == {a.target for a in v030.assets}
    assert assets.page_files("0.3.2") == replace(v030, version="0.3.2")
    for unknown in ("0.2.3", "0.4.0", "1.0"):
        with pytest.raises(assets.AssetError,
                           match=r"^livetrain serves visdom 0\.2\.4, 0\.3\.0 .*'visdom>=0\.2\.4,<0\.4'"):
            assets.page_files(unknown)
    # a static/ folder of visdom 0.3.0 with 0.2.4's files in it: what 0.3.0 adds is missing
    static = tmp_path / "visdom" / "static"
    static.mkdir(parents=True)
    (static.parent / "VERSION").write_text("0.3.0\n")
    for target in v024.wanted():
        (static / target).parent.mkdir(parents=True, exist_ok=True)
        (static / target).write_text("x")
    (static / "version.built").write_text("0.2.4")
    assert assets.missing(static) == ["js/mathjax/3.2.2/es5/tex-mml-svg.js", "version.built"]


def test_the_server_runs_without_tornados_debug_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Visdom turns tornado's debug mode on: an autoreloader polling every module twice a second
    (CPU taken from training), a restart when a source file changes, tracebacks sent to clients."""
    import visdom.server.app as visdom_app

    from dashboard.visdom_app import quiet_application

    monkeypatch.setattr(visdom_app, "DEFAULT_ENV_PATH", f"{tmp_path}/")
    app = quiet_application(visdom_app.Application)(port=free_port(), env_path=f"{tmp_path}/")
    assert isinstance(app, visdom_app.Application)
    assert not app.settings.get("debug") and not app.settings.get("autoreload")
    assert not app.settings.get("serve_traceback")
    assert any(rule.matcher.regex.pattern.startswith("/events") for rule in app.wildcard_router.rules)


def test_the_connection_is_kept_open_and_replaced_after_a_restart(tmp_path: Path) -> None:
    """One HTTP connection serves every request; after the server restarts (the open connection is
    dead), the next request goes through on a new one, with no error and no outage to report."""
    from dashboard.connection import VisdomConnection

    config = ServerConfig(port=free_port(), env_dir=tmp_path)
    server = start_background(config)
    try:
        connection = VisdomConnection(config.url)
        message = {"eid": "keep", "win": "none"}
        assert connection.post("win_exists", message) == "false"
        assert connection._http is not None
        sock = connection._http.sock
        for _ in range(5):
            assert connection.post("win_exists", message) == "false"
        assert connection._http.sock is sock and connection.requests == 6
        server.process.kill()
        server.process.wait(10)
        server = start_background(config)
        assert connection.post("win_exists", message) == "false"
        assert connection._http.sock is not sock and connection.requests == 8  # the dead one, then a new one
    finally:
        server.stop()


# ---- another web site's requests -----------------------------------------------------------------

EVIL = "http://evil.example"


def post_endpoints(tmp_path: Path) -> list[str]:
    """Every path the server routes to a handler that takes a POST (a plain path, not a pattern)."""
    import tornado.web

    from dashboard.server import application

    tmp_path.mkdir()
    app = application(ServerConfig(port=0), tmp_path)

    paths = []
    rules = list(app.default_router.rules)
    while rules:
        rule = rules.pop()
        rules.extend(getattr(rule.target, "rules", []))  # a router of more rules (per host)
        handler, pattern = rule.target, getattr(rule.matcher, "regex", None)
        if (isinstance(handler, type) and issubclass(handler, tornado.web.RequestHandler)
                and handler.post is not tornado.web.RequestHandler.post and pattern is not None):
            path = pattern.pattern.rstrip("$")
            if re.fullmatch(r"/[\w/]*", path):
                paths.append(path)
    return sorted(set(paths))


def answer(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(300).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode("utf-8", "replace")


def test_another_site_cannot_change_the_dashboards(tmp_path: Path) -> None:
    """Any page a person has open could make their browser post to the server or open its
    sockets (visdom accepts every origin): delete their envs, soon stop their runs. Every POST
    endpoint and both sockets refuse another site's Origin; the page's own origin and clients
    that send none (livetrain's workers, visdom's Python client) are served."""
    import websocket

    from dashboard.connection import VisdomConnection

    server = start_background(ServerConfig(port=0, env_dir=tmp_path / "visdom"))
    url = server.config.url
    try:
        own = VisdomConnection(url)
        pane = {"eid": "victim", "win": "note", "data": [{"content": "kept", "type": "text"}], "opts": {}}
        own.post("events", pane)  # no Origin, JSON: livetrain's own client
        paths = post_endpoints(tmp_path / "routes")
        assert {"/events", "/update", "/close", "/delete_env", "/livetrain/splice"} <= set(paths), paths
        body = json.dumps({"eid": "victim", "win": "note"}).encode()
        for path in paths:
            for origin in (EVIL, "null"):
                code, text = answer(url, path, body, {"Origin": origin, "Content-Type": "application/json"})
                assert code == 403 and "livetrain: refused: a request from another site" in text, (path, code, text)
            # what a plain HTML form of any site sends, with no preflight (old browsers: no Origin)
            code, text = answer(url, path, body, {"Content-Type": "text/plain"})
            assert code == 403 and "send JSON" in text, (path, code, text)
            # the page's own origin, and no Origin at all, reach the handler
            for headers in ({"Origin": url, "Content-Type": "application/x-www-form-urlencoded"}, {}):
                headers = headers or {"Content-Type": "application/json"}
                assert "livetrain: refused" not in answer(url, path, b"{}", headers)[1], (path, headers)
        for path in ("/socket", "/vis_socket"):
            for origin in (EVIL, "null"):
                with pytest.raises(websocket.WebSocketBadStatusException, match="403"):
                    websocket.create_connection(url.replace("http", "ws") + path, origin=origin, timeout=10)
        # the attack from the issue: a socket from another site deleting an env
        socket_url = url.replace("http", "ws") + "/socket"
        for kwargs in ({"origin": url}, {"suppress_origin": True}):  # the page's own, and a client's
            ws = websocket.create_connection(socket_url, timeout=10, **kwargs)
            ws.close()
        assert json.loads(own.post("win_data", {"eid": "victim", "win": None}))["note"]["content"] == "kept"
        # visdom's own Python client: its posts and its incoming socket
        import visdom

        viz = visdom.Visdom(server="http://127.0.0.1", port=server.config.port, use_incoming_socket=True,
                            raise_exceptions=True)
        assert viz.socket_alive and viz.text("hello", env="client", win="t") == "t" and viz.win_exists("t", "client")
        viz.use_socket = False  # its socket thread ends with the server, rather than retry every 3 s
        # a site that resolves its own name to 127.0.0.1 (DNS rebinding) is not this machine
        request = urllib.request.Request(url + "/", headers={"Host": f"evil.example:{server.config.port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        assert probe(url) == probe(url.replace("127.0.0.1", "localhost"))  # its own names: served
    finally:
        server.stop()


def test_a_live_env_is_deleted_from_the_page_or_the_client(visdom_server: ServerProcess) -> None:
    """A live env has no file (visdom writes one only when the page saves it); visdom deletes an
    env by removing its file, which answered 500 and left the env on the page's list."""
    import websocket

    from dashboard.connection import VisdomConnection
    from tests.helpers import wait_for

    url = visdom_server.config.url
    connection = VisdomConnection(url)

    def envs() -> list[str]:
        return json.loads(connection._request("/env_state", b"{}"))

    for env in ("by-client", "by-page"):
        connection.post("events", {"eid": env, "win": "w", "data": [{"content": "hi", "type": "text"}], "opts": {}})
    assert {"by-client", "by-page"} <= set(envs())
    connection.post("delete_env", {"eid": "by-client"})  # visdom's client (HTTP 500 before)
    assert "by-client" not in envs()
    page = websocket.create_connection(url.replace("http", "ws") + "/socket", origin=url, timeout=10)
    try:
        page.send(json.dumps({"cmd": "delete_env", "eid": "by-page"}))  # the page's delete button
        wait_for(lambda: "by-page" not in envs(), timeout=30)
        while True:  # and the page is told: the env list it gets last holds neither
            message = json.loads(page.recv())
            if message.get("command") == "env_update" and "by-page" not in message["data"]:
                break
    finally:
        page.close()
    assert not {"by-client", "by-page"} & set(envs())
