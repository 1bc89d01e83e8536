"""Experiment files: `livetrain run experiment.toml`, the runs and sweeps of a launch written down.

    epochs = 3                 # options for every run, as on the command line
    limit = 10000
    seeds = [0, 1, 2]          # every run once per seed
    parallel = 2
    env = "activations"

    [runs.relu]                # one table per run; its name is the run's label
    model = "mlp"              # a model, a preset, or "my_models.py:TinyNet" (next to this file)
    hidden = [200, 200]

    [runs.sigmoid]
    model = "mlp"
    activation = "sigmoid"
    lr = [1e-3, 1e-2]          # a list sweeps: one run per value (hidden, channels: a list of lists)

A run's keys are `--set`'s settings (`batch-size` or `batch_size`), with their meaning and checks.
TOML is read with `tomllib` (Python 3.11+) or, on 3.10, the `tomli` package it came from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dashboard.launch.grid import LISTS, SETTINGS, Choices, check_label, expand, parse_models
from dashboard.launch.plan import PlanError, check_env
from trainers.config import RunConfig
from trainers.usermodels import is_user_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 path; setup.cfg installs tomli there
    import tomli as tomllib

# the top-level keys: options for every run (`run`'s own), and the launch's
COMMON = ("dataset", "epochs", "batch_size", "lr", "optimizer", "seed", "device", "limit", "data_dir")
LAUNCH = ("seeds", "parallel", "env")


def read_experiment(path: Path, **given: Any) -> tuple[list[RunConfig], dict[str, Any]]:
    """The checked runs of the experiment file at `path`, and its launch options (seeds, parallel,
    env). `given`: options from the command line (None: not given), which win over the file's."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read the experiment file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path} is not valid TOML: {exc}") from None
    top = {_key(k): v for k, v in doc.items() if k != "runs"}
    unknown = [k for k in top if k not in COMMON + LAUNCH]
    if unknown:
        raise PlanError(f"{path}: no top-level option {unknown[0]!r}; use {', '.join(COMMON + LAUNCH)}, "
                        "and put each run's settings in its [runs.LABEL] table")
    runs = doc.get("runs")
    if not isinstance(runs, dict) or not runs or not all(isinstance(t, dict) for t in runs.values()):
        raise PlanError(f"{path} has no runs; add a table per run, e.g. [runs.relu] with model = \"mlp\"")
    named, parsed = [], []
    for label, table in runs.items():
        label = check_label(label)
        settings = {_key(k): v for k, v in table.items()}
        model = settings.pop("model", None)
        if not isinstance(model, str) or not model:
            raise PlanError(f"{path}: [runs.{label}] needs model = \"...\" (a model, a preset, or FILE.py:Class)")
        if is_user_model(model) and not Path(model.split(".py:", 1)[0]).is_absolute():
            model = str(path.parent / model)  # a model file lies next to the experiment file
        (entry,) = parse_models([f"{model}:{label}"])
        named.append(entry)
        for key, value in settings.items():
            parsed.append((label, key, _choices(path, label, key, value)))
    common = {k: top.get(k) for k in COMMON} | {k: v for k, v in given.items() if v is not None}
    seeds = tuple(given.get("seeds") or top.get("seeds") or ())
    if not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise PlanError(f"{path}: seeds must be a list of whole numbers, e.g. seeds = [0, 1, 2]")
    parallel, env = top.get("parallel"), top.get("env")
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise PlanError(f"{path}: parallel must be a whole number from 1, not {parallel!r}")
    if env is not None:
        check_env(str(env))
    configs = expand(named, parsed, seeds, **{k: v for k, v in common.items() if k != "seeds"})
    return configs, {"parallel": parallel, "env": None if env is None else str(env)}


def _key(key: str) -> str:
    return key.replace("-", "_").lower()


def _choices(path: Path, label: str, key: str, value: Any) -> Choices:
    """The value (several, if a list: a sweep) of one setting of a run, checked like `--set`'s."""
    if key not in SETTINGS:
        names = ", ".join(k.replace("_", "-") for k in SETTINGS)
        raise PlanError(f"{path}: [runs.{label}] has no setting {key!r}; use one of {names}")
    sweep = isinstance(value, list) and (key not in LISTS or (bool(value) and isinstance(value[0], list)))
    read, what = SETTINGS[key]
    choices = []
    for item in value if sweep else [value]:
        if isinstance(item, bool) or (key in LISTS) != isinstance(item, list):
            raise PlanError(f"{path}: [runs.{label}] {key.replace('_', '-')} must be {what}, not {item!r}")
        written = ",".join(str(v) for v in item) if isinstance(item, list) else str(item)
        try:
            choices.append((written, read(written)))
        except ValueError:
            raise PlanError(f"{path}: [runs.{label}] {key.replace('_', '-')} must be {what}, not {item!r}") from None
    return choices
