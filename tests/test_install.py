"""livetrain as a user installs it from a clone or a git URL: a wheel (not the editable install
`make` does) in a fresh virtual environment, used from another folder. Every package is in it,
setting up is `livetrain setup`, and the messages say so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_a_wheel_in_a_fresh_venv_works_from_another_folder(tmp_path: Path) -> None:
    constraints = {"PIP_CONSTRAINT": str(REPO / "constraints.txt"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
                tmp_path, constraints)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("livetrain-*.whl")
    venv = tmp_path / "venv"
    try:
        # the same Python as the project's venv, and torch from the same pinned local wheels
        base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        assert run([str(base), "-m", "venv", str(venv)], tmp_path).returncode == 0
        installed = run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path, constraints, timeout=900)
        assert installed.returncode == 0, installed.stderr[-2000:]
        livetrain = str(venv / "bin" / "livetrain")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        # setup's cache of npm tarballs, seeded from the clone's (so the test needs no network)
        cache = tmp_path / "cache"
        if (REPO / ".cache" / "npm").is_dir():
            shutil.copytree(REPO / ".cache" / "npm", cache / "livetrain" / "npm")
        env = {"XDG_CACHE_HOME": str(cache), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}

        helped = run([livetrain, "--help"], elsewhere, env)
        assert helped.returncode == 0 and "Train PyTorch classifiers" in helped.stdout, helped.stderr
        listed = run([livetrain, "data", "list"], elsewhere, env)
        assert listed.returncode == 0 and listed.stdout.startswith("fashion-mnist  /"), listed.stdout + listed.stderr
        # no page files yet: the server says what sets them up, the way it was installed
        refused = run([livetrain, "server", "--port", str(free_port())], elsewhere, env)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().endswith("run `livetrain setup` to install them from the npm registry")
        set_up = run([livetrain, "setup"], elsewhere, env)
        assert set_up.returncode == 0, set_up.stderr
        assert "Visdom page files: installed" in set_up.stdout and "Fashion-MNIST: /" in set_up.stdout
        assert "all present" in run([livetrain, "setup"], elsewhere, env).stdout  # a second time: nothing to do
        trained = run([livetrain, "run", "--headless", "--models", "softmax,mlp", "--epochs", "1", "--limit", "1000"],
                      elsewhere, env)
        assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
        assert "All 2 run(s) finished" in trained.stdout
        assert len(list((elsewhere / "runs").glob("*/*/log.jsonl"))) == 2
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 5.7 GB: not left for pytest's kept temp folders
