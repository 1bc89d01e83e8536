"""The house rules, checked: dependencies run one way. `trainers/` (the core) imports nothing
from `dashboard/`; no two modules import each other, however far round; the client and the
server share only `dashboard.protocol`; a training worker imports neither the server nor the
board; no product file is over 400 lines; every error a user meets carries its exit code; a
command that trains nothing imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, free_port
from tests.helpers import wait_for


def imported(path: Path) -> set[str]:
    """The modules a source file imports (at any depth: function-level imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_core_imports_nothing_from_the_dashboard() -> None:
    for path in sorted((REPO / "trainers").glob("*.py")):
        assert not [m for m in imported(path) if m.split(".")[0] == "dashboard"], path


def test_client_and_server_share_only_the_wire_protocol() -> None:
    server, connection = REPO / "dashboard" / "server.py", REPO / "dashboard" / "connection.py"
    assert not [m for m in imported(server) if m.startswith(("dashboard.connection", "dashboard.windows"))]
    assert not [m for m in imported(connection) if m.startswith("dashboard.server")]
    client = [REPO / "dashboard" / f for f in ("connection.py", "windows.py", "visdom_backend.py")]
    assert all(any(m.startswith("dashboard.protocol") for m in imported(f)) for f in client)


def test_a_training_worker_imports_neither_the_server_nor_the_board() -> None:
    probe = ("import sys, dashboard.launch.worker; print(sorted(m for m in sys.modules "
             "if m in ('dashboard.server', 'dashboard.board', 'dashboard.replay')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def product_modules() -> dict[str, Path]:
    files = [*(REPO / "dashboard").rglob("*.py"), *(REPO / "trainers").glob("*.py"), REPO / "launch.py"]
    modules = {}
    for path in files:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def test_no_two_modules_import_each_other() -> None:
    modules = product_modules()
    graph = {name: {m for m in imported(path) if m in modules and m != name} for name, path in modules.items()}
    cycles: list[list[str]] = []

    def walk(name: str, path: list[str], done: set[str]) -> None:
        for dep in sorted(graph[name]):
            if dep in path:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in done:
                walk(dep, path + [dep], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            walk(name, [name], done)
    assert not cycles, cycles
    assert "dashboard.launch.worker" in graph and graph["dashboard.launch.worker"]  # the walk sees imports


def test_no_product_file_is_over_400_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in product_modules().values()}
    assert not {name: n for name, n in sizes.items() if n > 400}, sizes


def test_every_error_a_user_meets_carries_its_exit_code() -> None:
    """One base error: each module's `...Error` is a LivetrainError, so the command line turns any
    of them into one line with the kind's own exit code, and none needs re-wrapping to get it."""
    import importlib

    from trainers.errors import LivetrainError, UsageError

    found = {}
    for name, path in product_modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                found[f"{name}.{node.name}"] = getattr(importlib.import_module(name), node.name)
    assert len(found) >= 9, sorted(found)
    assert not [n for n, kind in found.items() if not issubclass(kind, LivetrainError)], sorted(found)
    usage = sorted(n for n, kind in found.items() if kind.exit_code == 2)
    assert usage == ["dashboard.launch.plan.PlanError", "trainers.catalog.ModelFileError",
                     "trainers.config.ConfigError", "trainers.errors.UsageError"]
    assert issubclass(found["trainers.config.ConfigError"], UsageError)


# Runs a command of the command line in this process, as `livetrain` does, and says which of the
# heavy modules it imported
COMMAND = """import sys
import launch
try:
    launch.cli.main(sys.argv[1:], prog_name="livetrain", standalone_mode=False)
except BaseException as exc:
    print("ended:", type(exc).__name__, exc, file=sys.stderr)
print(sorted(m for m in ("torch", "numpy", "visdom", "tornado") if m in sys.modules))
"""


def test_commands_that_train_nothing_import_no_torch(tmp_path: Path) -> None:
    """--help of every command, `runs`, `data list` and `control` (its checks, and a launch that
    is not there to answer) start without torch (2-3 s and 500 MB of it)."""
    run_dir = tmp_path / "runs" / "mlp"
    run_dir.mkdir(parents=True)
    (run_dir / "log.jsonl").write_text('{"kind": "config", "time": 1, "config": {"model": "mlp", "epochs": 1}}\n')
    for args in (["--help"], ["run", "--help"], ["demo", "--help"], ["replay", "--help"], ["data", "get", "--help"],
                 ["runs", "--log-dir", str(tmp_path / "runs")], ["data", "list"],
                 ["control", "stop", str(run_dir), "--timeout", "1"],
                 ["control", "fork", str(run_dir), "--set", "lr=x"]):
        done = subprocess.run([sys.executable, "-c", COMMAND, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "[]", (args, done.stdout[-300:], done.stderr[-300:])
        assert "Traceback" not in done.stderr, done.stderr


def test_the_server_command_serves_without_torch(tmp_path: Path) -> None:
    """`livetrain server`: the Visdom server alone, with no torch in the process (its maps)."""
    from dashboard.server import Found, probe

    port = free_port()
    server = subprocess.Popen([sys.executable, str(REPO / "launch.py"), "server", "--port", str(port),
                               "--env-dir", str(tmp_path / "envs")], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: server.poll() is not None or probe(f"http://127.0.0.1:{port}") == Found.VISDOM)
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "libtorch" not in maps and "/torch/" not in maps
    finally:
        server.terminate()
        server.wait(timeout=30)
