"""The bad-input sweep, as a user meets it: every command run as a real process (`python launch.py
...`) with wrong values, files and environments. Each must end with exactly one line on stderr,
`Error: ...`, saying what to do; a non-zero exit code; no traceback anywhere; and the runs already
logged in the log dir left byte for byte as they were (what a failed launch may not touch)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.runlog import RunLog
from tests.conftest import REPO, free_port
from tests.helpers import broken
from trainers.config import RunConfig

pytestmark = pytest.mark.slow


def livetrain(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working folder holding an earlier launch's finished run, broken data sets, a damaged
    checkpoint, files where folders belong, and a port held by a web server that is not Visdom."""
    root = tmp_path_factory.mktemp("sweep")
    earlier = root / "runs" / "2026-01-01T000000" / "mlp"
    log = RunLog(earlier, meta={"label": "mlp", "colour": 1, "env": "old"})
    log.config(RunConfig("mlp", epochs=1, limit=100).to_dict())
    log.scalars(1, 1.0, {"train/loss": 0.5})
    log.status("finished")
    log.close()
    for how in ("truncated", "wrong-magic", "mismatched-count", "missing", "damaged-gzip", "bad-label", "wrong-size"):
        (root / "data" / how).mkdir(parents=True)
        broken(root / "data" / how, how)
    damaged = root / "damaged" / "2026-01-01T000000" / "mlp"
    log = RunLog(damaged, meta={"label": "mlp", "colour": 1, "env": "old"})
    log.config(RunConfig("mlp", epochs=3, limit=100).to_dict())
    log.status("interrupted")
    log.close()
    (damaged / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (root / "garbage").mkdir()
    (root / "garbage" / "log.jsonl").write_text('{"kind": "scalars", "x": 1\nnot json at all\n')
    (root / "a-file").write_text("a file, not a folder\n")
    (root / "models.py").write_text(MODELS_FILE)
    (root / "broken.py").write_text("def oops(:\n")
    (root / "bad.toml").write_text('epochs = 1\n\n[runs.a]\nmodel = "mlp"\nlr = \n')
    (root / "odd.toml").write_text('[runs.a]\nmodel = "mlp"\ncolour = "red"\n')
    with socket.socket() as sock:  # a port that accepts connections but never answers as Visdom
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        (root / "port").write_text(str(sock.getsockname()[1]))
        yield root


MODELS_FILE = """from torch import nn

WIDTH = 3


class Five(nn.Module):  # five logits, not ten
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(5))

    def forward(self, x):
        return self.net(x)


class Deep(nn.Module):
    def __init__(self, depth, num_classes=10):
        super().__init__()


class Fails(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        raise ValueError("no such width")


class Colour(nn.Module):  # three-channel images only
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def make_nothing():
    return 3


five = Five()  # a model built at the top level: the file runs again for each run


def net(X):  # the forward pass of a model from scratch, not a model
    return X
"""


def cases() -> list[tuple[str, list[str], int, str]]:
    unused = str(free_port())
    items = [
        # data: damaged, cut, mismatched, foreign files
        *[(f"data {how}", ["run", "--headless", "--dataset", "mnist", "--data-dir", f"data/{how}/broken"], 1, words)
          for how, words in [("truncated", "is truncated"), ("wrong-magic", "is not an IDX image file"),
                             ("mismatched-count", "do not belong together"), ("missing", "is missing"),
                             ("damaged-gzip", "is a damaged gzip file"), ("bad-label", "outside 0-9"),
                             ("wrong-size", "not 28x28")]],
        ("data dir is a file", ["run", "--headless", "--data-dir", "a-file"], 1, "is not a folder"),
        ("log dir under a file", ["run", "--headless", "--log-dir", "a-file/runs"], 1, "choose another folder"),
        ("damaged checkpoint", ["run", "--headless", "--resume", "damaged/2026-01-01T000000"], 1,
         "is damaged or not a livetrain checkpoint; delete it"),
        # names that would be HTML or script in the page, and names that are not names
        ("env holds script", ["run", "--env", "<script>alert(1)</script>"], 2, "env name"),
        ("label holds HTML", ["run", "--models", "mlp:<b>x</b>"], 2, "run label"),
        ("label with a space", ["run", "--models", "mlp:a b"], 2, "run label"),
        ("label of 10,000 characters", ["run", "--models", "mlp:" + "模" * 10_000], 2,
         "run label '" + "模" * 30 + "...': it is 10,000 characters (30,000 bytes)"),
        ("label with a path", ["run", "--models", "mlp:模型/../x"], 2, "'/' cannot be in it"),
        ("env of 10,000 characters", ["run", "--env", "实" * 10_000], 2, "env name '" + "实" * 30 + "...': it is"),
        ("replay env holds HTML", ["replay", "runs", "--env", "<img src=x>"], 2, "env name"),
        # ports, hosts, URLs
        ("port 0", ["run", "--port", "0"], 2, "--port"),
        ("port too high", ["server", "--port", "70000"], 2, "--port"),
        ("port not a number", ["run", "--port", "http"], 2, "--port"),
        ("port held by something else", ["run", "--port", "PORT"], 1, "not Visdom"),
        ("server on a held port", ["server", "--port", "PORT"], 1, "not Visdom"),
        ("host unknown", ["server", "--host", "no-such-host.invalid", "--port", unused], 1, "cannot resolve host"),
        ("host not ours", ["run", "--host", "192.0.2.1", "--port", unused], 1, "is not an address of this machine"),
        ("url with a space", ["run", "--visdom-url", "http://exa mple:80"], 2, "write it like http://HOST:PORT"),
        ("url not http", ["replay", "runs", "--visdom-url", "ftp://localhost:21"], 2, "write it like"),
        ("url bad port", ["run", "--visdom-url", "http://localhost:99999"], 2, "port is not a number"),
        ("url nobody answers", ["run", "--visdom-url", f"http://127.0.0.1:{unused}"], 1, "nothing answers at"),
        ("url not visdom", ["replay", "runs", "--visdom-url", "http://127.0.0.1:PORT"], 1, "no Visdom server answers at"),
        # files and folders
        ("replay a file", ["replay", "a-file"], 1, "is not a run dir"),
        ("replay garbage log", ["replay", "garbage"], 1, "holds no run"),
        ("replay nothing", ["replay", "nowhere"], 2, "does not exist"),
        ("runs of a file", ["runs", "--log-dir", "a-file"], 1, "is not a folder"),
        ("server env dir a file", ["server", "--env-dir", "a-file"], 2, "is a file"),
        # values
        ("smooth out of range", ["run", "--smooth", "1"], 2, "--smooth"),
        ("scatter not a setting", ["run", "--scatter", "colour"], 2, "--scatter"),
        ("replay's scatter not a setting", ["replay", ".", "--scatter", "label"], 2, "--scatter"),
        ("limit zero", ["run", "--limit", "0"], 2, "--limit"),
        ("nproc zero", ["run", "--headless", "--models", "mlp", "--nproc", "0"], 2, "--nproc"),
        ("nproc not a number", ["run", "--headless", "--models", "mlp", "--set", "mlp.nproc=two"], 2,
         "nproc must be a whole number"),
        ("nproc past the bound", ["run", "--headless", "--models", "mlp", "--set", "mlp.nproc=65"], 2,
         "nproc must be from 1 to 64"),
        ("nproc of the scratch softmax", ["run", "--headless", "--nproc", "2"], 2, "use softmax-nn"),
        # values no run can finish with
        ("epochs past a lifetime", ["run", "--headless", "--epochs", "99999999999999999999"], 2, "1<=x<=10000"),
        ("epochs past the bound by --set", ["run", "--headless", "--models", "mlp", "--set", "mlp.epochs=10001"], 2,
         "epochs must be from 1 to 10,000"),
        ("limit past the data set", ["run", "--headless", "--limit", "60001"], 2,
         "is more than the 60000 training images of fashion-mnist; use at most 60000"),
        ("batch past the data", ["run", "--headless", "--models", "mlp", "--limit", "100", "--batch-size", "101"], 2,
         "batch size 101 is more than the 100 training images"),
        ("seed negative", ["run", "--headless", "--seed", "-1"], 2, "--seed"),
        ("set on a missing run", ["run", "--models", "mlp", "--set", "cnn.lr=1"], 2, "no run 'cnn'"),
        ("lr infinite", ["run", "--lr", "inf"], 2, "learning rate must be a positive number"),
        ("demo on a held port", ["demo", "--port", "PORT"], 1, "not Visdom"),
        # the experiment settings
        ("unknown activation", ["run", "--headless", "--models", "mlp", "--set", "mlp.activation=swish"], 2,
         "unknown activation 'swish'"),
        ("unknown loss", ["run", "--headless", "--models", "mlp", "--set", "mlp.loss=hinge"], 2, "unknown loss 'hinge'"),
        ("unknown preset", ["run", "--headless", "--models", "mlp-300"], 2, "or a preset: d2l-softmax"),
        ("hidden not numbers", ["run", "--headless", "--models", "mlp", "--set", "mlp.hidden=abc"], 2,
         "hidden must be whole numbers separated by commas"),
        ("negative momentum", ["run", "--headless", "--models", "softmax", "--set", "softmax.momentum=-1"], 2,
         "momentum must be from 0"),
        ("a setting the model lacks", ["run", "--headless", "--models", "softmax", "--set", "softmax.activation=tanh"],
         2, "softmax has no setting 'activation'"),
        ("a grid past the limit", ["run", "--headless", "--models", "mlp", "--set", "mlp.lr=1,2,3,4,5,6,7,8,9",
                                   "--seeds", "0,1,2,3,4,5,6,7"], 2, "more than 64 runs"),
        ("seeds not numbers", ["run", "--headless", "--seeds", "a,b"], 2, "--seeds"),
        # experiment files
        ("experiment not TOML", ["run", "--headless", "bad.toml"], 2, "bad.toml is not valid TOML: Invalid value (at line 5"),
        ("experiment unknown setting", ["run", "--headless", "odd.toml"], 2, "[runs.a] has no setting 'colour'"),
        ("experiment and --models", ["run", "--headless", "odd.toml", "--models", "mlp"], 2, "drop --models"),
        # a model from a file
        ("model file missing", ["run", "--headless", "--models", "nowhere.py:Net"], 2, "no model file"),
        ("model file broken", ["run", "--headless", "--models", "broken.py:Net"], 2, "does not import: SyntaxError"),
        ("model class missing", ["run", "--headless", "--models", "models.py:Net"], 2,
         "has no 'Net' (did you mean 'net'?); its nn.Module classes, functions and models: Colour, Deep, Fails, "
         "Five, five, make_nothing, net"),
        ("model a forward function", ["run", "--headless", "--models", "models.py:net"], 2,
         "net(X) is a forward pass (it takes the batch), not a model; give livetrain the model: an nn.Module class, "
         "or a function that returns one"),
        ("model name a typo", ["run", "--headless", "--models", "models.py:Fives"], 2,
         "has no 'Fives' (did you mean 'Five'?); its nn.Module classes"),
        ("top-level model output wrong", ["run", "--headless", "--models", "models.py:five"], 2,
         "five returns (2, 5) for a batch of 2 images of (1, 28, 28) and (2, 5) for them flat (2, 784)"),
        ("model output wrong", ["run", "--headless", "--models", "models.py:Five"], 2,
         "Five returns (2, 5) for a batch of 2 images of (1, 28, 28) and (2, 5) for them flat (2, 784); "
         "it must return logits of shape (2, 10)"),
        ("model argument unknown", ["run", "--headless", "--models", "models.py:Deep"], 2,
         "Deep requires the argument 'depth', which livetrain cannot fill; give it a default, or name it one of "
         "num_classes, image_shape, in_channels, num_inputs"),
        ("model raises when built", ["run", "--headless", "--models", "models.py:Fails"], 2,
         "run 'Fails': Fails(num_classes=10) failed: ValueError: no such width"),
        ("model for other images", ["run", "--headless", "--models", "models.py:Colour"], 2,
         "Colour takes neither images (2, *(1, 28, 28)) nor flat ones (2, 784): as images, RuntimeError: "),
        ("model function returns no module", ["run", "--headless", "--models", "models.py:make_nothing"], 2,
         "make_nothing() returned int, not an nn.Module"),
        ("model name not a model", ["run", "--headless", "--models", "models.py:WIDTH"], 2,
         "models.py:WIDTH is neither an nn.Module class, a function that returns one, nor a model"),
    ]
    return items


CASES = cases()


@pytest.mark.parametrize("name, args, code, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_touches_nothing(place: Path, name: str, args: list[str], code: int,
                                                     words: str) -> None:
    before = digest(place / "runs")
    port = (place / "port").read_text()
    result = livetrain(place, *[a.replace("PORT", port) for a in args])
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert words in lines[0], lines[0]
    assert result.returncode == code, (result.returncode, lines[0])
    assert digest(place / "runs") == before  # nothing written, no server started (its env folder)


@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Visdom server with its login on (user ada, password s3cret)."""
    from dashboard.server import ServerConfig, start_background

    with pytest.MonkeyPatch.context() as env:  # the server reads them at its start
        env.setenv("VISDOM_USERNAME", "ada")
        env.setenv("VISDOM_PASSWORD", "s3cret")
        server = start_background(ServerConfig(port=free_port(), env_dir=tmp_path_factory.mktemp("login"), login=True))
    yield server.config.url
    server.stop()


@pytest.mark.parametrize("command, user, password, words", [
    ("run", None, None, "asks for a login; set VISDOM_USERNAME and VISDOM_PASSWORD"),
    ("run", "ada", "wrong", "refused the login of VISDOM_USERNAME='ada'"),
    ("replay", None, None, "asks for a login"),
    ("replay", "bob", "s3cret", "refused the login"),
])
def test_a_server_with_a_login_refuses_before_anything_starts(place: Path, login_server: str, command: str,
                                                              user: str | None, password: str | None,
                                                              words: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the right credentials every request would be refused while the runs trained unseen."""
    for key, value in (("VISDOM_USERNAME", user), ("VISDOM_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    before = digest(place / "runs")
    args = ["run", "--models", "softmax", "--limit", "500"] if command == "run" else ["replay", "runs"]
    result = livetrain(place, *args, "--visdom-url", login_server)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.stderr
    assert result.returncode == 1
    assert digest(place / "runs") == before
