"""The plan of a launch: runs from the command line's words (models, labels, --set), or the
runs of an earlier launch to resume, and every check that can refuse a command before anything
starts or is written. Its own errors are `PlanError` (a usage error) and `LaunchError` (the
machine says no); the trainers' errors (a bad setting, data, device or checkpoint) pass through
unchanged, with their own exit codes."""

from __future__ import annotations

import math
import os
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dashboard.runlog import LOG_NAME, read, run_dirs
from trainers import data
from trainers.config import ConfigError, RunConfig
from trainers.errors import LivetrainError, UsageError
from trainers.loop import CHECKPOINT, read_checkpoint, resolve_device
from trainers.models import MODELS
from trainers.reporting import RunState


LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
ENV_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
URL_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")  # a name, an IPv4 or an IPv6 address (no spaces)
# what --set may change per run, and how its value is read
SETTINGS: dict[str, tuple[type, str]] = {
    "lr": (float, "a number"), "epochs": (int, "a whole number"), "batch_size": (int, "a whole number"),
    "optimizer": (str, "a name"), "seed": (int, "a whole number"), "device": (str, "a name"),
    "limit": (int, "a whole number"),
}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a launch: its checked config, its folder, and whether it resumes from the
    checkpoint there."""

    config: RunConfig
    run_dir: Path
    resume: bool = False


class PlanError(UsageError):
    """The command line asks for something impossible (a usage error: exit code 2)."""


class LaunchError(LivetrainError):
    """The runs cannot start here: no data, no writable log dir, no server (exit code 1)."""


def parse_models(words: Sequence[str]) -> list[tuple[str, str]]:
    """(model, label) per run from "softmax,mlp,cnn" or "mlp:fast,mlp:slow" (repeatable).

    A model named once is labelled by its name; repeats without labels become mlp-1, mlp-2, ..."""
    entries: list[tuple[str, str]] = []
    for word in ",".join(words).split(","):
        word = word.strip()
        if not word:
            continue
        model, _, label = word.partition(":")
        model = model.strip().lower()
        if model not in MODELS:
            raise PlanError(f"unknown model {model!r} in --models; choose from {', '.join(MODELS)} "
                            "(e.g. --models softmax,mlp,cnn)")
        entries.append((model, label.strip()))
    if not entries:
        raise PlanError("no model given; e.g. --models softmax,mlp,cnn")
    unlabelled = Counter(model for model, label in entries if not label)
    numbered: Counter[str] = Counter()
    runs = []
    for model, label in entries:
        if not label:
            if unlabelled[model] > 1:
                numbered[model] += 1
                label = f"{model}-{numbered[model]}"
            else:
                label = model
        if not LABEL_RE.fullmatch(label):
            raise PlanError(f"run label {label!r}: use up to 40 letters, digits, '.', '_' or '-'")
        runs.append((model, label))
    twice = [label for label, n in Counter(label for _, label in runs).items() if n > 1]
    if twice:
        raise PlanError(f"two runs are labelled {twice[0]!r}; label each, e.g. --models mlp:fast,mlp:slow")
    return runs


def parse_setting(text: str) -> tuple[str, str, Any]:
    """("mlp", "lr", 0.05) from "mlp.lr=0.05"."""
    match = re.fullmatch(r"\s*([^.=\s]+)\.([A-Za-z_-]+)\s*=\s*(.*?)\s*", text)
    if not match:
        raise PlanError(f"--set {text!r}: write RUN.SETTING=VALUE, e.g. --set mlp.lr=0.05")
    target, key, raw = match.group(1), match.group(2).replace("-", "_").lower(), match.group(3)
    if key not in SETTINGS:
        names = ", ".join(k.replace("_", "-") for k in SETTINGS)
        raise PlanError(f"--set {text!r}: no setting {match.group(2)!r}; use one of {names}")
    kind, what = SETTINGS[key]
    try:
        value = kind(raw) if kind is not str else raw.lower()
        if kind is str and not value:
            raise ValueError
    except ValueError:
        raise PlanError(f"--set {text!r}: {key.replace('_', '-')} must be {what}, not {raw!r}") from None
    return target, key, value


def plan_runs(models: Sequence[str], settings: Sequence[str], **common: Any) -> list[RunConfig]:
    """One checked RunConfig per run: `common` options (dataset, epochs, lr, ...) for all, then
    --set overrides, by model name (every run of it) and then by label (that run only)."""
    runs = parse_models(models)
    labels = {label for _, label in runs}
    model_names = {model for model, _ in runs}
    values: dict[str, dict[str, Any]] = {label: {} for label in labels}
    parsed = [(text, *parse_setting(text)) for text in settings]
    for text, target, _, _ in parsed:
        if target not in labels and target not in model_names:
            raise PlanError(f"--set {text!r}: no run {target!r} in this launch; its runs are "
                            f"{', '.join(label for _, label in runs)}")
    for by_label in (False, True):
        for _, target, key, value in parsed:
            for model, label in runs:
                if (label == target) if by_label else (model == target and target not in labels):
                    values[label][key] = value
    configs = []
    for model, label in runs:
        given = {k: v for k, v in common.items() if v is not None} | values[label]
        try:
            configs.append(RunConfig(model=model, label=label, **given).resolved())
        except ConfigError as exc:
            raise exc.about(f"run {label!r}") from None
    return configs


def resume_runs(launch_dir: Path, epochs: int | None = None) -> list[PlannedRun]:
    """Each run of an earlier launch that has epochs left (resumed where it has a checkpoint)."""
    found = run_dirs(launch_dir, depth=1)  # a launch's folder, or one run's own
    if not found:
        raise LaunchError(f"no run logs in {launch_dir}; pass a folder made by `livetrain run` "
                          "(`livetrain runs` lists them)")
    todo, done = [], []
    for run_dir in found:
        record = read(run_dir, keep_scalars=False)
        if not record.config:
            raise LaunchError(f"{run_dir / LOG_NAME} has no config record, so it cannot be resumed; "
                              "start a new run instead")
        config = RunConfig.from_dict(record.config)
        if record.meta.get("label"):
            config = replace(config, label=str(record.meta["label"]))
        if epochs is not None:
            config = replace(config, epochs=epochs)
        if record.status == RunState.FINISHED and config.epochs <= epochs_done(record.x):
            done.append(config.label)
            continue
        try:
            config = config.resolved()
        except ConfigError as exc:  # the log's settings, not the command line's: a damaged log
            raise LaunchError(f"cannot resume {run_dir}: its logged config is refused ({exc})") from None
        checkpoint = run_dir / CHECKPOINT
        if checkpoint.is_file():
            read_checkpoint(checkpoint, config)  # damaged: said now, not by the run's worker
        todo.append(PlannedRun(config, run_dir, checkpoint.is_file()))
    if not todo:
        raise LaunchError(f"every run in {launch_dir} has finished its epochs ({', '.join(done)}); "
                          "pass --epochs with a larger number to train them further")
    return todo


def epochs_done(x: float) -> int:
    return int(math.floor(x + 1e-9))


def check_devices(configs: Sequence[RunConfig]) -> None:
    """Every run's device exists on this machine (`--device cuda` needs a GPU)."""
    for config in configs:
        resolve_device(config.device)


def prepare_to_fork() -> None:
    """Set this process up to fork workers: one torch thread until then, so that no OpenMP pool
    exists at the fork (a forked child cannot use its parent's)."""
    torch.set_num_threads(1)


def load_data(configs: Sequence[RunConfig]) -> None:
    """Read every data set the runs train on, checking each file (a damaged one is one error
    here, not one per run), and each run's --limit and batch size against it. The data stays
    loaded, in `trainers.data`'s cache: forked workers find it there."""
    for dataset, data_dir in sorted({(c.dataset, c.data_dir or "") for c in configs}):
        if data_dir and not Path(data_dir).is_dir():
            raise LaunchError(f"--data-dir {data_dir} is not a folder; give the folder that holds the data "
                              "sets, or leave it out to use ./data and the system's copy")
        loaded = data.load(dataset, data_dir or None)
        for config in configs:
            if (config.dataset, config.data_dir or "") == (dataset, data_dir):
                try:
                    config.check_sizes(len(loaded.train))
                except ConfigError as exc:
                    raise exc.about(f"run {config.label!r}") from None


def check_env(env: str) -> str:
    if not ENV_RE.fullmatch(env):
        raise PlanError(f"env name {env!r}: use up to 64 letters, digits, '.', '_' or '-'")
    return env


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not URL_HOST_RE.fullmatch(parts.hostname):
        raise PlanError(f"--visdom-url {url!r}: write it like http://HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise PlanError(f"--visdom-url {url!r}: the port is not a number from 1 to 65535") from None
    return url.rstrip("/")


def prepare_log_dir(log_dir: Path) -> None:
    """Make sure run logs can be written under `log_dir` (created if missing)."""
    hint = "choose another folder with --log-dir"
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
