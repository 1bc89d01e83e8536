"""The launcher's plan and command line: models, labels and overrides; every command's help; each
bad input gets one line, `Error: ...`, the right exit code, no traceback, and loses nothing."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import launch
from dashboard.launch import supervisor
from dashboard.launch.grid import check_label, parse_models, parse_setting, plan_runs
from dashboard.launch.plan import PlanError, check_env, is_fit_name
from dashboard.runlog import LOG_NAME, RunLog, read
from tests.conftest import free_port
from trainers.config import RunConfig
from trainers.errors import UsageError
from trainers.reporting import TEST_ACC, TRAIN_LOSS
from dashboard.launch.worker import WorkerSpec


# ---- the plan ------------------------------------------------------------------------------

def test_models_become_labelled_runs() -> None:
    assert parse_models(["softmax,mlp,cnn"]) == [("softmax", "softmax"), ("mlp", "mlp"), ("cnn", "cnn")]
    assert parse_models(["mlp, MLP", "cnn"]) == [("mlp", "mlp-1"), ("mlp", "mlp-2"), ("cnn", "cnn")]
    assert parse_models(["mlp:fast,mlp:slow,mlp"]) == [("mlp", "fast"), ("mlp", "slow"), ("mlp", "mlp")]


@pytest.mark.parametrize("words, message", [
    (["mlp,resnet"], "unknown model 'resnet' in --models; choose from softmax, softmax-nn, mlp, cnn, lenet, or a preset: d2l-softmax"),
    ([" , "], "no model given"),
    (["mlp:a,cnn:a"], "two runs are labelled 'a'"),
    (["mlp:bad/label"], "run label 'bad/label': '/' cannot be in it"),
    (["mlp,cnm"], "unknown model 'cnm' in --models (did you mean 'cnn'?); choose from softmax"),
    (["Soft-Max"], "unknown model 'soft-max' in --models (did you mean 'softmax'?)"),
])
def test_bad_models_are_usage_errors(words: list[str], message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)):
        parse_models(words)


def test_labels_and_envs_in_any_script() -> None:
    """The course's readers name runs in Chinese; a label stays a safe folder name and env."""
    assert parse_models(["mlp:模型,cnn:卷积网络,softmax:café"]) == [
        ("mlp", "模型"), ("cnn", "卷积网络"), ("softmax", "café")]
    assert check_label("cafe\u0301") == "café"  # NFC: one form of one name
    assert [check_label(w) for w in ("モデル", "модель", "हिन्दी", "نموذج", "x.1_a-b", "२०२६")]
    assert check_env("实验-1") == "实验-1"
    configs = plan_runs(["mlp:模型"], ["模型.lr=1e-3,1e-2"], seeds=(0, 1))
    assert [c.label for c in configs] == ["模型-lr1e-3-seed0", "模型-lr1e-3-seed1", "模型-lr1e-2-seed0",
                                          "模型-lr1e-2-seed1"]
    for bad, why in (("a/b", "'/' cannot be in it"), ("a\\b", "cannot be in it"), ("..", "must start with"),
                     ("a..b", "'..' cannot be in it"), ("bell\x07", "'\\x07' cannot be in it"),
                     ("tab\tx", "cannot be in it"), ("-x", "must start with a letter or a digit"),
                     ("🙂", "cannot be in it"), ("", "it is empty"), ("a b", "' ' cannot be in it"),
                     ("模" * 41, "41 characters (123 bytes); use at most 40 characters and 120 bytes"),
                     ("\U00020000" * 31, "31 characters (124 bytes)")):
        with pytest.raises(PlanError, match=re.escape(why)):
            check_label(bad)
    with pytest.raises(PlanError) as caught:
        check_label("x" * 10_000)
    said = str(caught.value)
    assert "\n" not in said and len(said) < 200 and "10,000 characters" in said
    assert is_fit_name("实验") and not is_fit_name("a/b") and not is_fit_name("cafe\u0301")


def test_settings_apply_by_model_then_by_label() -> None:
    configs = plan_runs(["mlp:fast,mlp:slow,cnn"], ["mlp.lr=0.05", "slow.lr=0.01", "slow.batch-size=64",
                                                    "cnn.epochs=2"], epochs=5, seed=3)
    by_label = {c.label: c for c in configs}
    assert by_label["fast"].lr == 0.05 and by_label["slow"].lr == 0.01 and by_label["slow"].batch_size == 64
    assert by_label["cnn"].epochs == 2 and by_label["fast"].epochs == 5 and by_label["cnn"].seed == 3
    assert by_label["cnn"].lr == 2e-3  # the model's own default where nothing was said
    assert parse_setting(" mlp.optimizer = Adam ") == ("mlp", "optimizer", [("Adam", "adam")])
    # RUN in any case: a model's or a label's (a user model's label is its class name)
    upper = plan_runs(["mlp:Fast,cnn"], ["MLP.lr=0.05", "fast.epochs=2", "CNN.nproc=2"])
    assert [(c.label, c.lr, c.epochs, c.nproc) for c in upper] == [("Fast", 0.05, 2, 1), ("cnn", 2e-3, 10, 2)]


@pytest.mark.parametrize("settings, message", [
    (["cnn.lr=0.1"], "--set 'cnn.lr=0.1': no run 'cnn' in this launch; its runs are softmax, mlp"),
    (["mlp.colour=red"], "no setting 'colour'; use one of dataset, epochs, batch-size"),
    (["mlp.hiden=64"], "--set 'mlp.hiden=64': no setting 'hiden' (did you mean 'hidden'?); use one of dataset"),
    (["mlp.batchsize=64"], "no setting 'batchsize' (did you mean 'batch-size'?); use one of"),
    (["mlp.opt=sgd"], "no setting 'opt' (did you mean 'optimizer'?); use one of"),
    (["mpl.lr=0.1"], "--set 'mpl.lr=0.1': no run 'mpl' in this launch (did you mean 'mlp'?); its runs are softmax, mlp"),
    (["mlp.activation=swish"], "run 'mlp': unknown activation 'swish'; choose one of relu, sigmoid, tanh"),
    (["mlp.loss=hinge"], "run 'mlp': unknown loss 'hinge'; choose one of ce, nll, mse, bce"),
    (["mlp.hidden=abc"], "hidden must be whole numbers separated by commas, e.g. 200,200, not 'abc'"),
    (["mlp.hidden=200,0"], "run 'mlp': hidden must be whole numbers from 1 to 65,536"),
    (["softmax.momentum=-0.5"], "run 'softmax': momentum must be from 0 up to (not including) 1, not -0.5"),
    (["mlp.momentum=0.5"], "run 'mlp': momentum is SGD's setting, and this run trains with adam"),
    (["softmax.activation=tanh"], "run 'softmax': softmax has no setting 'activation' (its settings: none of its own)"),
    (["mlp.channels=8"], "run 'mlp': mlp has no setting 'channels' (its settings: hidden, activation, dropout, init)"),
    (["mlp.block=pool-first"], "run 'mlp': mlp has no setting 'block'"),
    (["cnn.block=pool-first"], "run 'cnn': unknown block 'pool-first'; choose one of conv-pool-bn-relu, "
                               "conv-bn-relu-pool"),
    (["mlp.schedule=linear"], "run 'mlp': unknown schedule 'linear'; choose one of constant, cosine, step"),
    (["mlp.dataset=svhn"], "run 'mlp': unknown data set 'svhn'"),
    (["mlp.dropout=1"], "run 'mlp': dropout must be from 0 up to (not including) 1, not 1.0"),
    (["mlp.lr=1,2,3,4,5,6,7,8", "mlp.seed=1,2,3,4,5,6,7,8,9"], "would make more than 64 runs"),
    (["mlp.lr=1,1"], "a value is given twice"),
    (["mlp.lr=fast"], "lr must be a number, not 'fast'"),
    (["mlp.epochs=1.5"], "epochs must be a whole number"),
    (["mlp-lr=1"], "write RUN.SETTING=VALUE"),
    (["mlp.lr=-1"], "run 'mlp': learning rate must be a positive number, not -1.0"),
    (["mlp.epochs=0"], "run 'mlp': epochs must be from 1 to 10,000, not 0"),
    (["mlp.epochs=99999999999999999999"], "run 'mlp': epochs must be from 1 to 10,000"),
    (["mlp.seed=-3"], "run 'mlp': seed must be from 0 to 2**63-1"),
    (["softmax.optimizer=adam"], "run 'softmax': softmax regression trains with its hand-written SGD"),
])
def test_bad_settings_are_usage_errors(settings: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)) as info:  # PlanError, or the run's ConfigError
        plan_runs(["softmax,mlp" + (",cnn" if settings[0].startswith("cnn.b") else "")], settings)
    assert info.value.exit_code == 2


# ---- the command line ----------------------------------------------------------------------

def invoke(*args: str) -> Result:
    return CliRunner().invoke(launch.cli, list(args), prog_name="livetrain")


@pytest.mark.parametrize("command, words", [
    ([], "Train PyTorch classifiers side by side"),
    (["run"], "Train runs side by side, live in Visdom"),
    (["demo"], "softmax, MLP and CNN side by side on Fashion-MNIST"),
    (["server"], "Run the Visdom server alone"),
    (["replay"], "Draw logged runs"),
    (["runs"], "A table of past runs"),
])
def test_every_command_has_help(command: list[str], words: str) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert words in " ".join(result.output.split())


def assert_one_line_error(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert ".;" not in lines[0], lines[0]  # click's sentence, then our hint: one stop, not two
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A log dir holding one earlier run, which a bad command must leave exactly as it was; the
    working directory is an empty temp folder (no ./data, no ./runs)."""
    monkeypatch.chdir(tmp_path)
    log_dir = tmp_path / "runs"
    log = RunLog(log_dir / "earlier" / "mlp", meta={"label": "mlp"})
    log.config(RunConfig("mlp").resolved().to_dict())
    log.scalars(1, 0.01, {TRAIN_LOSS: 2.0})
    log.close()
    before = {p: p.read_bytes() for p in log_dir.rglob("*") if p.is_file()}
    yield log_dir
    assert {p: p.read_bytes() for p in log_dir.rglob("*") if p.is_file()} == before


USAGE_ERRORS = [
    (["--models", "mlp,resnet"], "unknown model 'resnet'"),
    (["--dataset", "svhn"], "Invalid value for '--dataset'"),
    (["--epochs", "0"], "Invalid value for '--epochs': 0 is not in the range 1<=x<=10000"),
    (["--epochs", "-3"], "'--epochs'"),
    (["--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["--lr", "-0.1"], "Invalid value for '--lr': -0.1 is not in the range x>0"),
    (["--lr", "0"], "'--lr'"),
    (["--lr", "fast"], "'fast' is not a valid float"),
    (["--lr", "nan"], "learning rate must be a positive number"),
    (["--models", "softmax,mlp", "--set", "cnn.lr=0.1"], "no run 'cnn' in this launch"),
    (["--set", "mlp.lr"], "write RUN.SETTING=VALUE"),
    (["--optimizer", "adam", "--models", "softmax"], "softmax regression trains with its hand-written SGD"),
    (["--env", "my env/x"], "env name 'my env/x': ' ' cannot be in it"),
    (["--visdom-url", "localhost:8097"], "write it like http://HOST:PORT"),
    (["--device", "tpu"], "Invalid value for '--device'"),
]


@pytest.mark.parametrize("args, words", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_bad_run_options_are_one_line_usage_errors(logged: Path, args: list[str], words: str) -> None:
    result = invoke("run", "--log-dir", str(logged), *args)
    assert_one_line_error(result, 2, words)
    assert len(list(logged.iterdir())) == 1  # no launch folder was made


def test_resume_takes_no_new_plan(logged: Path) -> None:
    result = invoke("run", "--resume", str(logged / "earlier"), "--models", "cnn")
    assert_one_line_error(result, 2, "--resume continues the runs as they were logged; drop --models")


def test_a_missing_data_set_says_where_to_put_it(logged: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("run", "--headless", "--log-dir", str(logged), "--dataset", "mnist",
                    "--data-dir", str(tmp_path / "empty"))
    assert_one_line_error(result, 1, "MNIST not found", "put the four *-idx?-ubyte[.gz] files")
    assert len(list(logged.iterdir())) == 1


def test_a_data_dir_that_is_not_there(logged: Path, tmp_path: Path) -> None:
    result = invoke("run", "--headless", "--log-dir", str(logged), "--data-dir", str(tmp_path / "typo"))
    assert_one_line_error(result, 1, f"--data-dir {tmp_path / 'typo'} is not a folder")


def test_an_unwritable_log_dir_says_to_choose_another(logged: Path) -> None:
    blocker = logged / "earlier" / "mlp" / LOG_NAME  # a file where a folder would have to be
    result = invoke("run", "--headless", "--log-dir", str(blocker / "runs"))
    assert_one_line_error(result, 1, "cannot create the log dir", "choose another folder with --log-dir")
    result = invoke("run", "--headless", "--log-dir", str(blocker))
    assert_one_line_error(result, 1, "it is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_log_dir_says_to_choose_another(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke("run", "--headless", "--log-dir", str(locked))
        assert_one_line_error(result, 1, "cannot write run logs in", "--log-dir")
    finally:
        locked.chmod(0o700)


@pytest.fixture
def not_visdom() -> Iterator[int]:
    """A port held by a web server that is not Visdom."""
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html><title>something else</title></html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_a_port_held_by_something_else(logged: Path, not_visdom: int) -> None:
    result = invoke("run", "--log-dir", str(logged), "--port", str(not_visdom))
    assert_one_line_error(result, 1, f"port {not_visdom} on 127.0.0.1 is in use by another program (not Visdom)",
                          "--port", "--visdom-url")
    assert len(list(logged.iterdir())) == 1


def test_an_unreachable_visdom_url(logged: Path, not_visdom: int) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(invoke("run", "--log-dir", str(logged), "--visdom-url", url), 1,
                          f"nothing answers at {url}", "livetrain server")
    url = f"http://127.0.0.1:{not_visdom}"
    assert_one_line_error(invoke("run", "--log-dir", str(logged), "--visdom-url", url), 1,
                          f"no Visdom server answers at {url}")


def test_no_server_when_none_answers(logged: Path) -> None:
    result = invoke("run", "--log-dir", str(logged), "--no-server", "--port", str(free_port()))
    assert_one_line_error(result, 1, "--no-server was given", "livetrain server")


def test_resume_of_a_folder_without_runs(logged: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("run", "--resume", str(empty)), 1, f"no run logs in {empty}")
    assert_one_line_error(invoke("run", "--resume", str(tmp_path / "missing")), 2, "does not exist")


def test_no_command_shows_the_help() -> None:
    result = invoke()
    assert result.exit_code == 0 and "Commands:" in result.output


# ---- past runs and sealed logs -------------------------------------------------------------

def _logged_run(run_dir: Path, label: str, states: list[tuple[str, str]], epochs: int = 2) -> None:
    log = RunLog(run_dir, meta={"label": label})
    log.config(RunConfig("mlp", epochs=epochs, label=label).resolved().to_dict())
    for epoch in range(1, len(states) + 1):
        log.scalars(epoch * 10, float(epoch), {TEST_ACC: 0.8 + epoch / 100, TRAIN_LOSS: 0.5})
    for state, reason in states:
        log.status(state, reason)
    log.close()


def test_runs_lists_past_runs(tmp_path: Path) -> None:
    _logged_run(tmp_path / "a" / "good", "good", [("running", ""), ("finished", "")])
    _logged_run(tmp_path / "a" / "bad", "bad", [("failed", "loss became nan at epoch 1, batch 3")])
    _logged_run(tmp_path / "b" / "lost", "lost", [("running", "")])
    old = time.time() - 3600
    os.utime(tmp_path / "b" / "lost" / LOG_NAME, (old, old))
    result = invoke("runs", "--log-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["label", "model", "dataset", "epochs", "test", "acc", "status", "duration", "path"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "2/2" in rows["good"] and "0.8200" in rows["good"] and "finished" in rows["good"]
    assert "failed: loss became nan" in rows["bad"]
    assert "stopped (no final status)" in rows["lost"] and str(tmp_path / "b" / "lost") in rows["lost"]


def test_runs_without_logs(tmp_path: Path) -> None:
    result = invoke("runs", "--log-dir", str(tmp_path))
    assert result.exit_code == 0 and "No runs logged" in result.output
    assert_one_line_error(invoke("runs", "--log-dir", str(tmp_path / "missing")), 1, "no folder")


def test_a_worker_that_died_gets_a_final_status_after_its_cut_last_line(tmp_path: Path) -> None:
    spec = WorkerSpec(RunConfig("mlp", label="mlp").resolved(), tmp_path / "mlp", colour_index=1)
    _logged_run(spec.run_dir, "mlp", [("running", "")])
    with open(spec.run_dir / LOG_NAME, "a") as handle:
        handle.write('{"kind":"scalars","st')  # killed mid-line
    never_started = WorkerSpec(RunConfig("cnn", label="cnn").resolved(), tmp_path / "cnn")
    supervisor.seal_logs([spec, never_started], [-9, 1], stopping="")
    record = read(spec.run_dir)
    assert record.skipped == 1 and len(record.scalars) == 1
    assert record.states[-1] == {**record.states[-1], "state": "failed",
                                 "reason": "the worker process was killed (SIGKILL)"}
    other = read(never_started.run_dir)
    assert other.config["model"] == "cnn" and other.status == "failed" and "exited with code 1" in other.states[-1]["reason"]
    supervisor.seal_logs([spec], [-9], stopping="")  # already final: left alone
    assert len(read(spec.run_dir).states) == 2


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_a_gpu(logged: Path) -> None:
    result = invoke("run", "--headless", "--log-dir", str(logged), "--device", "cuda")
    assert_one_line_error(result, 1, "CUDA is not available here", "--device cpu")
    result = invoke("run", "--headless", "--log-dir", str(logged), "--set", "mlp.device=cuda")
    assert_one_line_error(result, 1, "CUDA is not available here")


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "livetrain"
    proc = subprocess.run([str(script), "runs", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "A table of past runs" in proc.stdout


def test_run_help_lists_each_preset_with_its_seed_and_settings() -> None:
    from trainers.presets import PRESETS

    text = invoke("run", "--help").output
    for name, preset in PRESETS.items():
        assert name in text and preset.source.split(":")[0] in text and f"model={preset.model}" in text


def test_a_ctrl_c_while_workers_start_reaches_the_launcher_and_never_the_workers() -> None:
    """The launcher keeps its stop handler while it starts the fork server and its workers: a
    Ctrl-C in that moment reaches it, even when another thread of the launcher's takes the
    signal (torch's import may leave one; when the launcher ignored SIGINT meanwhile, that thread
    dropped it). The fork server ignores SIGINT once started, and so do the workers, from it or
    forked. In a process of its own: a thread of pytest's must not be the one that takes it."""
    probe = """
import multiprocessing.forkserver, os, signal, threading, time
from dashboard.launch import supervisor
from tests.forkcheck import signals
from trainers.config import RunConfig
threading.Thread(target=threading.Event().wait, daemon=True).start()  # SIGINT not blocked there
spawn = multiprocessing.forkserver.ensure_running
multiprocessing.forkserver.ensure_running = lambda: (os.kill(os.getpid(), signal.SIGINT), spawn())  # Ctrl-C mid-spawn
stops = supervisor.StopRequests()
with stops.installed():
    said = []
    for method in ("forkserver", "fork"):
        ctx = supervisor.worker_context(method, [RunConfig("mlp")])
        answers = ctx.Queue()
        ctx.Process(target=signals, args=(answers,)).start()
        said.append(answers.get(timeout=120))
    server = multiprocessing.forkserver._forkserver._forkserver_pid
    line = next(line for line in open(f"/proc/{server}/status") if line.startswith("SigIgn:"))
    said.append("ignored" if int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1 else "caught")
    for _ in range(100):  # the handler runs on the main thread, at its next bytecode
        if stops.count:
            break
        time.sleep(0.01)
    print(stops.count, *said)
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path(launch.__file__).parent, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split() == ["1", "ignored", "ignored", "ignored"], done.stdout + done.stderr


def test_a_fork_server_ended_by_an_early_ctrl_c_leaves_the_runs_unstarted(tmp_path: Path) -> None:
    """A Ctrl-C in the fork server's first milliseconds (before it ignores SIGINT) ends it, and
    stops the launch too: the worker it was to fork is left unstarted, without an error; with
    no stop under way, a fork server that died is started again."""
    from dashboard.launch import supervisor
    from dashboard.launch.worker import WorkerSpec
    from dashboard.adapter import DashboardOptions

    class Context:
        starts = 0

        def get_start_method(self) -> str:
            return "forkserver"

        def Process(self, **kwargs: object) -> object:  # noqa: N802 - multiprocessing's name
            context = self

            class Proc:
                exitcode = None

                def start(self) -> None:
                    context.starts += 1
                    if context.starts == 1:
                        raise EOFError("the fork server closed the connection")

            return Proc()

    specs = [WorkerSpec(RunConfig("mlp", label=f"m{i}"), tmp_path / f"m{i}", DashboardOptions()) for i in range(2)]
    stops = supervisor.StopRequests()
    supervised = supervisor.Supervisor(specs, stops)
    supervised._ctx = Context()
    stops.count = 1  # the same Ctrl-C reached the launcher
    supervised._start_next(2)
    assert supervised.procs == [] and supervised._ctx.starts == 1
    stops.count = 0
    supervised._ctx = Context()
    supervised._start_next(2)
    assert len(supervised.procs) == 2 and supervised._ctx.starts == 3  # the first started again
