"""`--dry-run`: every check a launch makes, the plan printed, nothing started or written."""

from __future__ import annotations

import sys
from pathlib import Path

from dashboard.server import Found, probe
from dashboard.terminal import columns
from tests.conftest import REPO, free_port
from tests.helpers import finish, launch_dir, livetrain


def plan(cwd: Path, *args: str) -> tuple[int, str, str]:
    return finish(livetrain(cwd, "run", *args, "--dry-run"), timeout=120)


def test_a_24_run_sweep_plan_fits_a_terminal_and_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    code, out, err = plan(tmp_path, "--models", "softmax-nn,mlp", "--set", "mlp.lr=1e-3,1e-2,0.1",
                          "--set", "softmax-nn.lr=0.03,0.3", "--seeds", "0,1,2,3", "--epochs", "3", "--limit", "2000",
                          "--parallel", "4", "--port", str(port), "--log-dir", "logs")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "livetrain would train 20 run(s) on fashion-mnist, 4 at a time (--parallel 4); 16 queue."
    assert lines[1] == "Every run: epochs=3 limit=2000"  # what every run changes, said once
    rows = [line.split() for line in lines[3:23]]
    assert [r[1] for r in rows[:4]] == ["softmax-nn-lr0.03-seed0", "softmax-nn-lr0.03-seed1",
                                        "softmax-nn-lr0.03-seed2", "softmax-nn-lr0.03-seed3"]
    assert [r[-1] for r in rows].count("now") == 4 and [r[-1] for r in rows].count("queued") == 16
    mlp = {r[1]: r for r in rows if r[2] == "mlp"}
    assert mlp["mlp-lr1e-3-seed2"][3:6] == ["2", "fashion-mnist", "-"]  # the recipe's own lr: no change
    assert mlp["mlp-lr0.1-seed0"][5] == "lr=0.1"
    assert len(lines) <= 26 and max(columns(line) for line in lines) <= 120  # a terminal holds it
    assert "this launch would start the server" in out and "Nothing started (--dry-run)" in out
    assert not (tmp_path / "logs").exists()  # no log dir, no launch folder
    assert probe(f"http://127.0.0.1:{port}") == Found.NONE  # no server


def test_a_plan_refuses_what_a_launch_refuses(tmp_path: Path) -> None:
    """One line and the launch's exit code for each check, before anything is written."""
    (tmp_path / "file").write_text("")
    for args, code, said in [
        (["--models", "mlp", "--set", "mlp.lr=-1"], 2, "learning rate must be a positive number"),
        (["--models", "mlp", "--data-dir", "nowhere"], 1, "--data-dir nowhere is not a folder"),
        (["--models", "mlp", "--log-dir", "file/runs"], 1, "is a file; choose another folder with --log-dir"),
        (["--models", "mlp", "--visdom-url", f"http://127.0.0.1:{free_port()}"], 1, "nothing answers at"),
        (["--models", "mlp", "--device", "cuda"], 1, "CUDA is not available here"),
    ]:
        got, out, err = plan(tmp_path, *args)
        assert got == code and said in err and len(err.splitlines()) == 1 and not out, (args, got, err)


def test_an_experiment_file_and_a_resume_plan_alike(tmp_path: Path) -> None:
    (tmp_path / "exp.toml").write_text('epochs = 1\nlimit = 512\n\n[runs.slow]\nmodel = "softmax"\nlr = [0.01, 0.1]\n\n'
                                       '[runs.wide]\nmodel = "mlp"\nhidden = [64]\n')
    code, out, err = finish(livetrain(tmp_path, "run", "exp.toml", "--headless", "--dry-run"))
    assert code == 0, err
    assert "Every run: epochs=1 limit=512" in out and "Headless: run logs only" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["3", "wide", "mlp", "0", "fashion-mnist", "hidden=64", "now"] in rows
    assert ["1", "slow-lr0.01", "softmax", "0", "fashion-mnist", "lr=0.01", "now"] in rows
    # a finished launch, planned for two more epochs: nothing of its logs changes
    code, _, err = finish(livetrain(tmp_path, "run", "--models", "softmax", "--epochs", "1", "--limit", "512",
                                    "--headless", "--log-dir", "logs"))
    assert code == 0, err
    folder = launch_dir(tmp_path / "logs")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, out, err = finish(livetrain(tmp_path, "run", "--resume", str(folder), "--epochs", "2", "--headless",
                                      "--dry-run"))
    assert code == 0, err
    assert f"livetrain would resume 1 of the 1 runs in {folder}" in out and "epochs=2" in out
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_the_help_offers_it() -> None:
    import subprocess

    for command in ("run", "demo"):
        done = subprocess.run([sys.executable, str(REPO / "launch.py"), command, "--help"], capture_output=True,
                              text=True, check=True)
        assert "--dry-run" in done.stdout
