"""The runs a command line asks for: models and presets with their labels, `--set` values and
sweeps, and `--seeds`, expanded into one checked `RunConfig` per run.

- `--models softmax,mlp:fast,mlp-200,my_models.py:TinyNet`: a model, a preset or a model
  class from a file per run, labelled by its name (a class: its name) or `NAME:LABEL`; repeats are numbered (mlp-1, mlp-2) and get distinct seeds (seed, seed+1, ...),
  so that they are repeats, not copies.
- `--set RUN.SETTING=VALUE`: RUN is a label, a model or a preset (all its runs). Several values
  make a sweep, one run per value, labelled by it: `--set mlp.lr=1e-3,1e-2` makes mlp-lr1e-3
  and mlp-lr1e-2. Settings that are lists themselves (hidden, channels) take commas inside a
  value and `/` between values: `--set mlp.hidden=200,200/512,256`.
- `--seeds 0,1,2`: every run once per seed, labelled mlp-seed0, mlp-seed1, ...

What wins: the model's defaults, then the preset's settings, then the options for every run
(`--lr`, ...), then `--set` by model or preset, then `--set` by label."""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dashboard.launch.plan import LABEL_BYTES, LABEL_CHARS, PlanError, check_name
from trainers.config import ConfigError, RunConfig
from trainers.settings import BY_NAME, LISTS, SETTINGS
from trainers.catalog import MODELS, is_user_model
from trainers.errors import did_you_mean
from trainers.presets import PRESETS

MAX_RUNS = 64  # runs in one launch, sweeps and seeds included


def parse_models(words: Sequence[str]) -> list[tuple[str, str]]:
    """(model or preset, label) per run from "softmax,mlp,cnn" or "mlp:fast,mlp:slow" (repeatable).

    A name given once labels its run; repeats without labels become mlp-1, mlp-2, ..."""
    entries: list[tuple[str, str]] = []
    for word in ",".join(words).split(","):
        word = word.strip()
        if not word:
            continue
        if is_user_model(word):  # PATH.py:ClassName[:LABEL], labelled by its class name
            path, _, rest = word.partition(".py:")
            class_name, _, label = rest.partition(":")
            name = f"{Path(path + '.py').resolve()}:{class_name.strip()}"
            entries.append((name, label.strip() or class_name.strip()))
            continue
        name, _, label = word.partition(":")
        name = name.strip().lower()
        if name not in MODELS and name not in PRESETS:
            raise PlanError(f"unknown model {name!r} in --models{did_you_mean(name, [*MODELS, *PRESETS])}; "
                            f"choose from {', '.join(MODELS)}, or a preset: "
                            f"{', '.join(PRESETS)} (e.g. --models softmax,mlp,cnn)")
        entries.append((name, label.strip()))
    if not entries:
        raise PlanError("no model given; e.g. --models softmax,mlp,cnn")
    unlabelled = Counter(name for name, label in entries if not label)
    numbered: Counter[str] = Counter()
    runs = []
    for name, label in entries:
        if not label:
            if unlabelled[name] > 1:
                numbered[name] += 1
                label = f"{name}-{numbered[name]}"
            else:
                label = name
        runs.append((name, check_label(label)))
    twice = [label for label, n in Counter(label for _, label in runs).items() if n > 1]
    if twice:
        raise PlanError(f"two runs are labelled {twice[0]!r}; label each, e.g. --models mlp:fast,mlp:slow")
    return runs


def check_label(label: str) -> str:
    """The label in NFC form, when it is fit to name a run's folder and windows (`check_name`)."""
    return check_name(label, "run label", LABEL_CHARS, LABEL_BYTES)


def no_setting(key: str, said: str, also: Sequence[str] = ()) -> str:
    """"no setting 'hiden' (did you mean 'hidden'?); use one of ...": `key` as read, `said` as
    written; `also`, other names a guess may give (an experiment file's model)."""
    hyphenated = [k.replace("_", "-") for k in SETTINGS]
    return f"no setting {said!r}{did_you_mean(key, [*hyphenated, *also])}; use one of {', '.join(hyphenated)}"


def parse_setting(text: str) -> tuple[str, str, list[tuple[str, Any]]]:
    """("mlp", "lr", [("0.05", 0.05)]) from "mlp.lr=0.05": the target, the setting, and each value
    given (a sweep: several), as written and as read."""
    match = re.fullmatch(r"\s*([^.=\s]+)\.([A-Za-z_-]+)\s*=\s*(.*?)\s*", text)
    if not match:
        raise PlanError(f"--set {text!r}: write RUN.SETTING=VALUE, e.g. --set mlp.lr=0.05")
    target, key, raw = match.group(1), match.group(2).replace("-", "_").lower(), match.group(3)
    if key not in SETTINGS:
        raise PlanError(f"--set {text!r}: {no_setting(key, match.group(2))}")
    setting = BY_NAME[key]
    values = []
    for part in raw.split("/" if key in LISTS else ","):
        part = part.strip()
        try:
            values.append((part, setting.read(part)))
        except ValueError:
            raise PlanError(f"--set {text!r}: {setting.flag} must be {setting.what}, not {part!r}") from None
    if len({written for written, _ in values}) < len(values):
        raise PlanError(f"--set {text!r}: a value is given twice")
    return target, key, values


def plan_runs(models: Sequence[str], settings: Sequence[str], seeds: Sequence[int] = (),
              max_runs: int = MAX_RUNS, **common: Any) -> list[RunConfig]:
    """One checked RunConfig per run: `common` options (dataset, epochs, lr, ...; None: not
    given) for all, then --set overrides and sweeps, then one run per seed of `seeds`."""
    named = parse_models(models)
    labels = {label for _, label in named}
    targets = labels | {name for name, _ in named} | {model_of(name) for name, _ in named}
    parsed = []
    by_lower = {target.lower(): target for target in targets}  # RUN in any case: MLP, Breaks, breaks
    for text in settings:
        target, key, choices = parse_setting(text)
        target = unicodedata.normalize("NFC", target)
        target = target if target in targets else by_lower.get(target.lower(), target)
        if target not in targets:
            raise PlanError(f"--set {text!r}: no run {target!r} in this launch{did_you_mean(target, targets)}; "
                            "its runs are "
                            f"{', '.join(label for _, label in named)}")
        parsed.append((target, key, choices))
    return expand(named, parsed, seeds, max_runs, **common)


Choices = list[tuple[str, Any]]  # a setting's values (several: a sweep), each as written and as read


def expand(named: Sequence[tuple[str, str]], parsed: Sequence[tuple[str, str, Choices]], seeds: Sequence[int] = (),
           max_runs: int = MAX_RUNS, **common: Any) -> list[RunConfig]:
    """The runs of (model or preset, label) pairs, with `parsed` settings (target, key, values)
    applied and swept, `common` options for all, once per seed of `seeds`; each checked."""
    labels = {label for _, label in named}
    # each run's own settings: by model or preset first, then by label; a later one of a key wins
    own = [dict([(key, choices) for target, key, choices in parsed
                 if target != label and target in (name, model_of(name)) and target not in labels]
                + [(key, choices) for target, key, choices in parsed if target == label])
           for name, label in named]
    count = sum(math.prod(len(choices) for choices in mine.values()) for mine in own) * max(1, len(seeds))
    if count > max_runs:
        raise PlanError(f"this launch would make more than {max_runs} runs ({count}: sweeps x seeds); "
                        "sweep fewer values or seeds, or split it into several launches")
    given = {k: v for k, v in common.items() if v is not None}
    repeats = Counter(name for name, _ in named)
    index: Counter[str] = Counter()
    # repeats of one model are repeats, not copies: each gets seeds of its own. Alone, seed,
    # seed+1, ...; with --seeds, the k-th repeat's seeds are the seeds shifted past the ones before
    # (0,1 then 2,3), and its labels say the seeds it trains with
    stride = max(seeds) - min(seeds) + 1 if seeds else 1
    configs: list[RunConfig] = []
    for (name, label), mine in zip(named, own):
        values = dict(PRESETS[name].settings) if name in PRESETS else {}
        values |= given
        offset = 0
        if repeats[name] > 1:
            offset = index[name] * stride
            index[name] += 1
            values["seed"] = values.get("seed", 0) + offset
        for variant, suffix in _sweep(mine):
            for seed in seeds or [None]:
                run = values | variant | ({} if seed is None else {"seed": seed + offset})
                run_label = label + suffix + ("" if seed is None else f"-seed{seed + offset}")
                configs.append(_config(name, check_label(run_label), run))
    twice = [label for label, n in Counter(c.label for c in configs).items() if n > 1]
    if twice:
        raise PlanError(f"two runs would be labelled {twice[0]!r}; label them apart, e.g. --models mlp:a,mlp:b")
    return configs


def model_of(name: str) -> str:
    """The model a model or preset name trains."""
    return PRESETS[name].model if name in PRESETS else name


def _sweep(mine: dict[str, Choices]) -> list[tuple[dict[str, Any], str]]:
    """Each combination of the swept values (settings given one value apply to all), with the
    label suffix naming the swept ones."""
    keys = list(mine)
    combos = []
    for choice in itertools.product(*(mine[key] for key in keys)):
        variant = {key: value for key, (_, value) in zip(keys, choice)}
        suffix = "".join(f"-{key.replace('_', '-')}{written.replace(',', 'x')}"
                         for key, (written, _) in zip(keys, choice) if len(mine[key]) > 1)
        combos.append((variant, suffix))
    return combos


def _config(name: str, label: str, values: dict[str, Any]) -> RunConfig:
    preset = name if name in PRESETS else ""
    try:
        return RunConfig(model=model_of(name), label=label, preset=preset, **values).resolved()
    except ConfigError as exc:
        raise exc.about(f"run {label!r}") from None
