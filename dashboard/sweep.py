"""A sweep's settings against its results: which settings its runs vary, and the axes that show them.

The parallel-coordinates figure has one axis per varied setting and one for the final test
accuracy; the scatter puts one setting (the lr when it varies) against that accuracy. Both are
built from the runs' logged configs, so a replay draws them as the live launch did."""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

from trainers.config import RunConfig
from trainers.settings import DECLARED

# config fields that say where or how fast a run ran, or what it is called: never a setting
NOT_SETTINGS = frozenset({"label", "preset"} | {s.name for s in DECLARED if not s.varies})
SETTINGS = tuple(f.name for f in fields(RunConfig) if f.name not in NOT_SETTINGS)  # what a sweep may vary
SCATTER_FIRST = ("lr", "weight_decay", "batch_size", "momentum", "dropout")  # preferred for the scatter


@dataclass(frozen=True)
class SweepRun:
    label: str
    colour_index: int
    config: Mapping[str, Any]
    accuracy: float | None  # its final test accuracy; None until it finished


def axis_value(value: Any) -> Any:
    """A setting's value as an axis shows it: numbers as they are, lists as "512,256"."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _spans_decades(values: Sequence[Any]) -> bool:
    return _numeric(values) and all(v > 0 for v in values) and max(values) >= 10 * min(values)


@dataclass(frozen=True)
class Plan:
    """The settings a set of runs vary (in config order), and the one the scatter shows."""

    settings: tuple[str, ...]
    values: Mapping[str, tuple[Any, ...]]  # per setting: its distinct values over all runs, sorted
    prefer: str | None = None  # the setting the person chose for the scatter (`--scatter`)

    @classmethod
    def of(cls, runs: Sequence[SweepRun], prefer: str | None = None) -> "Plan":
        keys: dict[str, None] = {}
        for run in runs:
            keys.update(dict.fromkeys(k for k in run.config if k not in NOT_SETTINGS))
        settings, values = [], {}
        for key in keys:
            seen = {repr(axis_value(r.config.get(key))): axis_value(r.config.get(key)) for r in runs}
            if len(seen) > 1:
                settings.append(key)
                distinct = list(seen.values())
                values[key] = tuple(sorted(distinct) if _numeric(distinct) else sorted(distinct, key=str))
        return cls(tuple(settings), values, prefer)

    @staticmethod
    def is_sweep(runs: Sequence[SweepRun]) -> bool:
        """Two runs of one model (on one data set) that differ in a setting other than the seed:
        a sweep, or a comparison of settings (sigmoid against ReLU). Different models alone (the
        demo) are not: their settings differ because their defaults do."""
        by_model: dict[tuple[Any, Any], list[SweepRun]] = {}
        for run in runs:
            by_model.setdefault((run.config.get("model"), run.config.get("dataset")), []).append(run)
        return any(set(Plan.of(same).settings) - {"seed"} for same in by_model.values() if len(same) > 1)

    @property
    def scatter(self) -> str | None:
        """The setting the scatter shows: the one chosen, when it varies; else the lr (or another
        of SCATTER_FIRST) when it varies, else the first numeric one, else the first (categories
        along the axis); the seed only when nothing else varies."""
        for key in (self.prefer, *SCATTER_FIRST):
            if key in self.settings:
                return key
        others = [k for k in self.settings if k != "seed"]
        numeric = [k for k in others if _numeric(self.values[k])]
        return (numeric or others or list(self.settings) or [None])[0]

    @property
    def log_x(self) -> bool:
        return self.scatter is not None and _spans_decades(self.values[self.scatter])

    def dimensions(self, runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
        """Plotly parcoords dimensions: one per setting, over all the sweep's values (so an axis
        does not move as runs finish), then the final test accuracy of `runs` (finished ones)."""
        out = []
        for key in self.settings:
            every = self.values[key]
            shown = [axis_value(r.config.get(key)) for r in runs]
            if _spans_decades(every):  # parcoords has no log axis: log10 values, ticks at the values
                out.append({"label": key, "values": [math.log10(v) for v in shown],
                            "range": [math.log10(every[0]), math.log10(every[-1])],
                            "tickvals": [math.log10(v) for v in every], "ticktext": [f"{v:g}" for v in every]})
            elif _numeric(every):
                low, high = every[0], every[-1]
                out.append({"label": key, "values": shown, "range": [low, high]})
            else:  # categories: one tick each, in sorted order
                index = {repr(v): i for i, v in enumerate(every)}
                out.append({"label": key, "values": [index[repr(v)] for v in shown],
                            "range": [0, max(len(every) - 1, 1)],
                            "tickvals": list(range(len(every))),
                            "ticktext": [html.escape(str(v), quote=False) for v in every]})
        accuracy = [r.accuracy for r in runs]
        out.append({"label": "test acc", "values": accuracy,
                    "range": [min(accuracy), max(accuracy)] if len(set(accuracy)) > 1 else None})
        if out[-1]["range"] is None:
            del out[-1]["range"]
        return out

    def key(self, runs: Sequence[SweepRun]) -> tuple[Any, ...]:
        """What a drawing of `runs` depends on (to draw it again only when that changes)."""
        return (self.settings, tuple(sorted(self.values.items())),
                tuple((r.label, r.accuracy) for r in runs))


SEED_SUFFIX = re.compile(r"-seed-?\d+$")


def seed_groups(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, list[int]]]:
    """The runs (label, config) that differ only by seed, as groups of two or more: (the group's
    label, the indices of its runs), in the order of their first runs. A group of `--seeds 0,1,2`
    (labels mlp-seed0, mlp-seed1, mlp-seed2) is "mlp (3 seeds)"."""
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for index, (_, config) in enumerate(runs):
        key = tuple(sorted((k, repr(axis_value(v))) for k, v in config.items() if k not in NOT_SETTINGS | {"seed"}))
        by_key.setdefault(key, []).append(index)
    groups = []
    for members in by_key.values():
        if len(members) < 2 or len({repr(runs[i][1].get("seed")) for i in members}) < len(members):
            continue  # one run, or repeats of one seed: not a seed group
        stems = [SEED_SUFFIX.sub("", runs[i][0]) for i in members]
        # repeats (mlp-1-seed0, mlp-2-seed2): what their labels share, "mlp"
        stem = os.path.commonprefix(stems).rstrip("-_.") or runs[members[0]][0]
        groups.append((f"{stem} ({len(members)} seeds)", members))
    return groups
