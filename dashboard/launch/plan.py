"""The plan of a launch: its runs (new ones, from `dashboard.launch.grid`, or an earlier
launch's to resume), and every check that can refuse a command before anything starts or is
written. Its own errors are `PlanError` (a usage error) and `LaunchError` (the
machine says no); the trainers' errors (a bad setting, data, device or checkpoint) pass through
unchanged, with their own exit codes.

It needs no torch until a check needs the machine (devices, data): a plan that is only printed
(`--dry-run`), and the commands that train nothing, never import it."""

from __future__ import annotations

import os
import re
import time
import unicodedata
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainers.catalog import ModelFileError, is_user_model
from trainers.config import ConfigError, RunConfig
from trainers.errors import LivetrainError, UsageError


# Names a person gives (run labels, envs) become folder names, Visdom envs (and their files),
# window ids and page text: letters and digits of any script are fine, a path separator or a
# control character is not, and the bytes are bounded as well as the characters (a CJK letter is
# 3 bytes of a file name's 255)
LABEL_CHARS, LABEL_BYTES = 40, 120  # 40 CJK letters of the BMP; 30 beyond it
ENV_CHARS, ENV_BYTES = 64, 200
PER_LAUNCH = ""  # a launch's env (DrawOptions.env) when none is given: named after its folder
NAME_PUNCTUATION = "._-"
URL_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")  # a name, an IPv4 or an IPv6 address (no spaces)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a launch: its checked config, its folder, and whether it resumes from the
    checkpoint there. A resumed launch's finished runs are `done` (shown, not trained), and its
    runs keep the colour they were drawn in (None: by their place in the launch)."""

    config: RunConfig
    run_dir: Path
    resume: bool = False
    colour: int | None = None
    done: bool = False


class PlanError(UsageError):
    """The command line asks for something impossible (a usage error: exit code 2)."""


class LaunchError(LivetrainError):
    """The runs cannot start here: no data, no writable log dir, no server (exit code 1)."""


def check_devices(configs: Sequence[RunConfig]) -> None:
    """Every run's device exists on this machine (`--device cuda` needs a GPU; a run on N ranks
    on CUDA, one GPU per rank, needs N)."""
    import torch

    from trainers.loop import DeviceError, resolve_device

    for config in configs:
        device = resolve_device(config.device)
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        if device.type == "cuda" and config.nproc > gpus:
            raise DeviceError(f"run {config.label!r}: nproc {config.nproc} on CUDA takes one GPU per rank, and "
                              f"torch sees {gpus}; use --set {config.label}.nproc={gpus} or --device cpu")


def prepare_to_fork() -> None:
    """Set this process up to fork workers: one torch thread until then, so that no OpenMP pool
    exists at the fork (a forked child cannot use its parent's)."""
    import torch

    torch.set_num_threads(1)


def load_data(configs: Sequence[RunConfig]) -> None:
    """Read every data set the runs train on, checking each file (a damaged one is one error
    here, not one per run), and each run's --limit and batch size against it. The data stays
    loaded, in `trainers.data`'s cache: forked workers find it there."""
    from trainers import data
    from trainers.usermodels import check_user_model

    for dataset, data_dir in sorted({(c.dataset, c.data_dir or "") for c in configs}):
        if data_dir and not Path(data_dir).is_dir():
            raise LaunchError(f"--data-dir {data_dir} is not a folder; give the folder that holds the data "
                              "sets, or leave it out to use ./data and the system's copy")
        loaded = data.load(dataset, data_dir or None)
        for config in configs:
            if (config.dataset, config.data_dir or "") == (dataset, data_dir):
                if is_user_model(config.model):
                    try:
                        check_user_model(config.model, loaded.image_shape, len(loaded.classes))
                    except ModelFileError as exc:
                        raise exc.about(f"run {config.label!r}") from None
                try:
                    config.check_sizes(len(loaded.train))
                except ConfigError as exc:
                    raise exc.about(f"run {config.label!r}") from None


def _name_problem(name: str, max_chars: int, max_bytes: int) -> str:
    """What makes `name` (NFC) unfit as a label or env, or "" when nothing does."""
    size = len(name.encode("utf-8"))
    if not name:
        return "it is empty"
    if len(name) > max_chars or size > max_bytes:
        return (f"it is {len(name):,} characters ({size:,} bytes); use at most {max_chars} characters and "
                f"{max_bytes} bytes")
    for ch in name:
        kind = unicodedata.category(ch)
        if not (kind[0] in "LN" or kind[0] == "M" or ch in NAME_PUNCTUATION):
            return f"{ch!r} cannot be in it"
    if unicodedata.category(name[0])[0] not in "LN":
        return "it must start with a letter or a digit"
    if ".." in name:
        return "'..' cannot be in it"
    return ""


def check_name(name: str, what: str, max_chars: int, max_bytes: int) -> str:
    """`name` in NFC form when it is fit to be a folder name and a Visdom env: letters and digits
    of any script (with their accents), '.', '_' or '-', starting with a letter or digit, no
    '..', and at most `max_chars` characters and `max_bytes` bytes; else a PlanError that quotes
    at most the first 30 characters of it."""
    normal = unicodedata.normalize("NFC", name)
    problem = _name_problem(normal, max_chars, max_bytes)
    if problem:
        shown = repr(normal if len(normal) <= 40 else normal[:30] + "...")
        raise PlanError(f"{what} {shown}: {problem} (use letters or digits of any script, '.', '_' or '-')")
    return normal


def is_fit_name(name: str, max_chars: int = ENV_CHARS, max_bytes: int = ENV_BYTES) -> bool:
    return not _name_problem(name, max_chars, max_bytes) and unicodedata.is_normalized("NFC", name)


def check_env(env: str) -> str:
    return check_name(env, "env name", ENV_CHARS, ENV_BYTES)


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not URL_HOST_RE.fullmatch(parts.hostname):
        raise PlanError(f"--visdom-url {url!r}: write it like http://HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise PlanError(f"--visdom-url {url!r}: the port is not a number from 1 to 65535") from None
    return url.rstrip("/")


def prepare_log_dir(log_dir: Path, dry_run: bool = False) -> None:
    """Make sure run logs can be written under `log_dir` (created if missing). `dry_run`: check
    that they could be, creating nothing (the folder, or the nearest one above it that exists,
    is a folder this user may write in)."""
    hint = "choose another folder with --log-dir"
    if dry_run:
        there = next(p for p in (log_dir.absolute(), *log_dir.absolute().parents) if p.exists())
        if not there.is_dir():
            raise LaunchError(f"cannot use {log_dir} as the log dir: {there} is a file; {hint}")
        if not os.access(there, os.W_OK | os.X_OK):
            raise LaunchError(f"cannot write run logs in {log_dir}: {there} is not writable; {hint}")
        return
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LaunchError(f"cannot use {log_dir} as the log dir: it is a file; {hint}") from None
    except OSError as exc:
        raise LaunchError(f"cannot create the log dir {log_dir}: {exc.strerror}; {hint}") from None
    probe_file = log_dir / f".write-test-{os.getpid()}"
    try:
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as exc:
        raise LaunchError(f"cannot write run logs in {log_dir}: {exc.strerror}; {hint}") from None


def new_launch_dir(log_dir: Path) -> Path:
    """A fresh folder for this launch's runs, named by the time it started."""
    stamp = time.strftime("%Y-%m-%dT%H%M%S")
    for n in range(1, 1000):
        folder = log_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise LaunchError(f"cannot make a new folder in {log_dir}; clean it up or choose another --log-dir")
