"""The README and docs/ stay true to the command line.

Every `livetrain ...` command line they show (each line of a code block, and each inline code span
that gives a command with arguments) is taken as written: `run` and `demo` lines are planned with
`--dry-run` (every check a launch makes), `runs`, `data list` and `--help` are run, and the
others (`server`, `replay`, `control`, `data get`, `setup`) are parsed, which checks their options,
values and the files they name. What a line names is made first: a real launch folder wherever a
`runs/...` path appears, the experiment file and the model file the docs show."""

from __future__ import annotations

import re
import shlex
import socket
import shutil
import signal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import launch
from dashboard.server import ServerProcess
from tests.conftest import REPO, free_port
from tests.helpers import finish, launch_dir, launched as launched_in, livetrain, wait_for

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SPAN = re.compile(r"`((?:[A-Z_]+=\S+ )*livetrain [^`]+)`")
PLANNED, RUN = ("run", "demo"), (("runs",), ("data", "list"))
MY_MODELS = """from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        return self.net(x)
"""


def command_lines() -> list[tuple[str, str]]:
    """(where, line) for every command line of the README and docs/: each code block line, and
    each inline span that gives arguments (`livetrain replay` alone names the command)."""
    found = []
    for path in DOCS:
        fenced = False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{n}"
            if line.strip().startswith("```"):
                fenced = not fenced
            elif fenced and re.match(r"\s*(?:[A-Z_]+=\S+ )*livetrain\b", line):
                found.append((where, line.split(" # ")[0].strip()))
            elif not fenced:
                found.extend((where, span) for span in SPAN.findall(line) if words_of(span)[1])
    return found


def words_of(line: str) -> tuple[list[str], list[str]]:
    """(the command's path, e.g. ["data", "list"], its arguments), env assignments dropped."""
    words = shlex.split(line)
    words = words[words.index("livetrain") + 1:]
    path: list[str] = []
    group: click.Group = launch.cli
    while words and isinstance(group, click.Group) and words[0] in group.commands:
        path.append(words.pop(0))
        group = group.commands[path[-1]]  # type: ignore[assignment]
    return path, words


def experiment_toml() -> str:
    """The experiment file docs/experiments.md shows."""
    text = (REPO / "docs" / "experiments.md").read_text()
    return re.search(r"```toml\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding what the lines name: one real (tiny, headless) launch, stopped with Ctrl-C
    after its first epoch so that it can be resumed, copied to every `runs/...` path a line
    gives; the docs' experiment file; and a model file."""
    root = tmp_path_factory.mktemp("docs")
    proc = livetrain(root, "run", "--models", "softmax", "--epochs", "1000", "--limit", "256", "--headless",
                     "--log-dir", "made")
    wait_for(lambda: launched_in(root / "made") and (launch_dir(root / "made") / "softmax" / "checkpoint.pt").is_file())
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    launched = launch_dir(root / "made")
    for _, line in command_lines():
        for word in shlex.split(line):
            if word.startswith("runs/") and not (root / word).exists():
                folder = re.match(r"runs/[^/]+", word).group(0)  # type: ignore[union-attr]
                if not (root / folder).exists():
                    shutil.copytree(launched, root / folder)
                if not (root / word).exists():  # a run's folder: the launch's run, by that name
                    shutil.copytree(launched / "softmax", root / word)
    (root / "experiment.toml").write_text(experiment_toml())
    (root / "my_models.py").write_text(MY_MODELS)
    return root


def test_the_readme_is_a_front_page_that_links_every_doc() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = set(re.findall(r"\]\(docs/([^)#]+)", readme))
    assert linked >= {p.name for p in (REPO / "docs").glob("*.md")}
    for path in DOCS:  # and each doc's own links lead somewhere
        for target in re.findall(r"\]\(([^)#:]+)[)#]", path.read_text()):
            assert (path.parent / target).exists(), (path.name, target)
    assert len(command_lines()) >= 25


def test_every_command_line_in_the_docs_plans_or_parses(made: Path, visdom_server: ServerProcess,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(made)
    port = str(free_port())
    runner = CliRunner()
    head = socket.create_server(("127.0.0.1", 0))  # a Ray head's port answering (a dry run only probes it)
    for where, line in command_lines():
        path, args = words_of(line)
        if "--visdom-url" in args:  # a server elsewhere: here, one of the test's own
            args[args.index("--visdom-url") + 1] = visdom_server.config.url
        if "--cluster" in args:
            args[args.index("--cluster") + 1] = f"127.0.0.1:{head.getsockname()[1]}"
        if "--help" in args or tuple(path) in RUN:
            result = runner.invoke(launch.cli, [*path, *args], catch_exceptions=False)
            assert result.exit_code == 0, (where, result.output)
        elif path and path[0] in PLANNED:
            extra = ["--dry-run"] + ([] if "--headless" in args or "--visdom-url" in args else ["--port", port])
            result = runner.invoke(launch.cli, [*path, *args, *extra], catch_exceptions=False)
            assert result.exit_code == 0 and "Nothing started (--dry-run)" in result.output, (where, result.output)
        else:
            assert path, (where, line)
            command = launch.cli
            for name in path:
                command = command.commands[name]  # type: ignore[attr-defined]
            command.make_context(" ".join(["livetrain", *path]), list(args))  # raises on a bad option or value
