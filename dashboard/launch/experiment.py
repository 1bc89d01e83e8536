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

from dashboard.launch.grid import Choices, check_label, expand, model_of, no_setting, parse_models
from dashboard.launch.plan import PlanError, check_env
from trainers.config import ConfigError, RunConfig
from trainers.settings import BY_NAME, EVERY_RUN, FLOAT, INT, LISTS, MAX_SEED, SETTINGS
from trainers.catalog import MODELS, is_user_model
from trainers.errors import did_you_mean
from trainers.presets import PRESETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 path; setup.cfg installs tomli there
    import tomli as tomllib

# the top-level keys: options for every run (`run`'s own), and the launch's
COMMON = EVERY_RUN
LAUNCH = ("seeds", "parallel", "env")
TOP = "the top level"


def read_experiment(path: Path, **given: Any) -> tuple[list[RunConfig], dict[str, Any]]:
    """The checked runs of the experiment file at `path`, and its launch options (seeds, parallel,
    env). `given`: options from the command line (None: not given), which win over the file's.
    Every key of every table is checked, for its type and then as the command line checks its
    value: a wrong one is a PlanError naming the file, the table and the key."""
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
        hint = did_you_mean(unknown[0], COMMON + LAUNCH + ("runs",))
        raise PlanError(f"{path}: no top-level option {unknown[0]!r}{hint}; use {', '.join(COMMON + LAUNCH)}, "
                        "and put each run's settings in its [runs.LABEL] table")
    common = {key: _common(path, key, value) for key, value in top.items() if key in COMMON}
    runs = doc.get("runs")
    if not isinstance(runs, dict) or not runs or not all(isinstance(t, dict) for t in runs.values()):
        raise PlanError(f"{path} has no runs; add a table per run, e.g. [runs.relu] with model = \"mlp\"")
    named, parsed = [], []
    for label, table in runs.items():
        label = check_label(label)
        settings = {_key(k): v for k, v in table.items()}
        model = settings.pop("model", None)
        if not isinstance(model, str) or not model:
            near = [k for k in settings if did_you_mean(k, ["model"])]
            hint = f"; it has {near[0]!r}: did you mean 'model'?" if near else ""
            raise PlanError(f"{path}: [runs.{label}] needs model = \"...\" (a model, a preset, or FILE.py:Class)"
                            + hint)
        _check_model(path, label, model)
        if is_user_model(model) and not Path(model.split(".py:", 1)[0]).is_absolute():
            model = str(path.parent / model)  # a model file lies next to the experiment file
        (entry,) = parse_models([f"{model}:{label}"])
        named.append(entry)
        for key, value in settings.items():
            parsed.append((label, key, _choices(path, label, model_of(entry[0]), key, value)))
    common |= {k: v for k, v in given.items() if v is not None}
    seeds = tuple(given.get("seeds") or _seeds(path, top.get("seeds")))
    parallel, env = top.get("parallel"), top.get("env")
    if parallel is not None and (not _whole(parallel) or parallel < 1):
        raise PlanError(f"{path}: {TOP}: parallel must be a whole number from 1, not {_toml(parallel)}")
    if env is not None:
        if not isinstance(env, str):
            raise PlanError(f"{path}: {TOP}: env must be a name in quotes (e.g. env = \"sweep\"), not {_toml(env)}")
        env = check_env(env)
    configs = expand(named, parsed, seeds, **{k: v for k, v in common.items() if k != "seeds"})
    return configs, {"parallel": parallel, "env": env}


def _check_model(path: Path, label: str, model: str) -> None:
    """One model, a preset or FILE.py:Class, as a run's `model` (its label is its table's name)."""
    where = f"{path}: [runs.{label}]: model = {_toml(model)}"
    if ":" in model.split(".py:", 1)[-1]:
        raise PlanError(f"{where}: a run's label is its table's name; write the model alone, e.g. "
                        f"model = {_toml(model.rsplit(':', 1)[0])}")
    name = model.strip().lower()
    if not is_user_model(model) and name not in MODELS and name not in PRESETS:
        raise PlanError(f"{where} is not a model{did_you_mean(name, [*MODELS, *PRESETS])}; use one of "
                        f"{', '.join(MODELS)}, a preset ({', '.join(PRESETS)}), or FILE.py:Class (one model a run)")


def _key(key: str) -> str:
    return key.replace("-", "_").lower()


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _toml(value: Any) -> str:
    """A value as the file writes it (true, "three", [1, 2]), for an error to quote."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    return str(value)


def _fits(key: str, value: Any) -> bool:
    """Whether `value`, as TOML read it, is of the type setting `key` takes (trainers.settings)."""
    kind = BY_NAME[key].kind
    if kind == INT:
        return _whole(value)
    if kind == FLOAT:
        return _whole(value) or isinstance(value, float)
    if key in LISTS:
        return isinstance(value, list) and bool(value) and all(_whole(v) for v in value)
    return isinstance(value, str)


def _example(key: str) -> str:
    example = {INT: "3", FLOAT: "0.01"}.get(BY_NAME[key].kind) or ("[200, 200]" if key in LISTS else '"..."')
    return f"{key.replace('_', '-')} = {example}"


def _read(path: Path, where: str, key: str, value: Any, model: str) -> Any:
    """`value` of setting `key` read as the command line reads it, and checked as a run's config
    checks it (on a run of `model`): else a PlanError naming the file, the table and the key."""
    setting = BY_NAME[key]
    what = "a list of whole numbers" if key in LISTS else "a folder in quotes" if key == "data_dir" else setting.what
    if not _fits(key, value):
        raise PlanError(f"{path}: {where}: {setting.flag} must be {what} (e.g. {_example(key)}), not {_toml(value)}")
    if key == "data_dir":
        return value
    out = setting.read(",".join(str(v) for v in value) if key in LISTS else str(value))
    try:
        RunConfig(model, **{key: out}).check()
    except ConfigError as exc:
        raise PlanError(f"{path}: {where}: {setting.flag} = {_toml(value)}: {exc}") from None
    return out


def _common(path: Path, key: str, value: Any) -> Any:
    return _read(path, TOP, key, value, "mlp")


def _seeds(path: Path, value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if (not isinstance(value, list) or not value or not all(_whole(s) and 0 <= s <= MAX_SEED for s in value)
            or len(set(value)) < len(value)):
        raise PlanError(f"{path}: {TOP}: seeds must be a list of distinct whole numbers from 0 to 2**63-1, "
                        f"e.g. seeds = [0, 1, 2], not {_toml(value)}")
    return tuple(value)


def _choices(path: Path, label: str, model: str, key: str, value: Any) -> Choices:
    """The value (several, if a list: a sweep) of one setting of a run, checked like `--set`'s."""
    where = f"[runs.{label}]"
    if key not in SETTINGS:
        raise PlanError(f"{path}: {where} has {no_setting(key, key, ['model'])}")
    sweep = isinstance(value, list) and (key not in LISTS or (bool(value) and isinstance(value[0], list)))
    if sweep and not value:
        raise PlanError(f"{path}: {where}: {key.replace('_', '-')} = [] sweeps no value; give one, or a list "
                        "of several")
    choices = []
    for item in value if sweep else [value]:
        written = ",".join(str(v) for v in item) if isinstance(item, list) else str(item)
        choices.append((written, _read(path, where, key, item, model)))
    if len({written for written, _ in choices}) < len(choices):
        raise PlanError(f"{path}: {where}: {key.replace('_', '-')} sweeps a value twice: {_toml(value)}")
    return choices
