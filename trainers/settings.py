"""A run's settings, each declared once: its name, type, bounds, help, whether it is a model's
own and where it may be given. Everything else comes from these declarations:

- `RunConfig.check`'s checks of each value, and their one-line errors (`problem`);
- `livetrain run`'s options for every run (`--lr`, ...: dashboard.launch.options.setting_options);
- the `--set RUN.SETTING=VALUE` keys and how a value is read (`read`, `SETTINGS`);
- an experiment file's keys, top level and per run, and their checks (dashboard.launch.experiment);
- what `--resume` refuses (the options for every run that may not change);
- what `set` may change while a run trains, and what a fork may change (trainers.control);
- the runs table's columns and the settings said under a model's name (dashboard.panes);
- the settings a sweep's plots may put on an axis (dashboard.sweep).

A new setting is one declaration here, a field of `RunConfig`, and the code that uses it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainers.catalog import ACTIVATIONS, AUGMENTS, BLOCKS, INITS, LOSSES
from trainers.datasets import DATASETS

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
DEVICES = ("auto", "cpu", "cuda")
# Bounds on what a run can finish with: 10,000 epochs of the CNN on Fashion-MNIST take about 8 h
# on 2 cores (the softmax 25 min); torch's seeds are 64-bit
MAX_EPOCHS = 10_000
MAX_SEED = 2**63 - 1
MAX_WIDTH = 65_536  # units in one hidden layer, or channels in one conv block
MAX_NPROC = 64  # ranks of one run started on one machine (the torchrun entry takes any world)

INT, FLOAT, NAME, WIDTHS, FOLDER = "int", "float", "name", "widths", "folder"
_WHAT = {INT: "a whole number", FLOAT: "a number", NAME: "a name", FOLDER: "a folder"}


@dataclass(frozen=True)
class Setting:
    """One setting of a run (a field of trainers.config.RunConfig)."""

    name: str  # RunConfig's field; written with "-" for "_" on the command line (batch-size)
    kind: str  # INT, FLOAT, NAME (one of `choices`), WIDTHS (whole numbers, "200,200"), FOLDER
    help: str = ""  # its option's help for every run (`every_run`)
    words: str = ""  # what errors call it (default: its name, "_" as " ")
    low: float | None = None
    high: float | None = None
    high_open: bool = False  # up to, not including, `high`
    high_words: str = ""  # `high` as errors write it (2**63-1)
    choices: tuple[str, ...] = ()
    example: str = ""  # of a value, in errors (WIDTHS)
    model: bool = False  # a model's own setting: the models that have it say so (ModelSpec.settings)
    per_run: bool = True  # a `--set` key and an experiment run's key: one value, or several (a sweep)
    every_run: bool = False  # an option of `livetrain run` for every run, and an experiment's top-level key
    on_resume: bool = False  # `--resume` takes it (else it refuses it: a resumed run keeps what it logged)
    default: Any = None  # its option's default (None: the model's, the preset's or RunConfig's)
    column: str = ""  # its column in the runs table, headed so; else, with `shown`, under the model's name
    shown: bool = False
    varies: bool = True  # a sweep's plots may give it an axis (not where the run ran)
    live: bool = False  # `set` may change it while the run trains (trainers.steering applies it)
    forked: bool = False  # a fork may train with another value than its parent

    @property
    def flag(self) -> str:
        return self.name.replace("_", "-")

    @property
    def said(self) -> str:
        return self.words or self.name.replace("_", " ")

    @property
    def what(self) -> str:
        """What a value must be, in words (its type)."""
        if self.kind == WIDTHS:
            return f"whole numbers separated by commas, e.g. {self.example}"
        return _WHAT[self.kind]

    def read(self, text: str) -> Any:
        """A value as written on the command line ("0.05", "200,200"); ValueError if it is not
        of this setting's type (its bounds are `problem`'s)."""
        text = text.strip()
        if self.kind == INT:
            return int(text)
        if self.kind == FLOAT:
            return float(text)
        if self.kind == WIDTHS:
            return tuple(int(part) for part in text.split(","))
        if not text:
            raise ValueError(text)
        return text.lower() if self.kind == NAME else text

    def problem(self, value: Any) -> str | None:
        """Why `value` (of this setting's type) cannot be, in one line; None when it can."""
        if self.choices and value not in self.choices:
            return f"unknown {self.said} {value!r}; choose one of {', '.join(self.choices)}"
        if self.kind == WIDTHS:
            if all(isinstance(w, int) and self.low <= w <= self.high for w in value):
                return None
            written = ",".join(str(w) for w in value) if isinstance(value, (tuple, list)) else repr(value)
            return (f"{self.said} must be whole numbers from {self.low:,} to {self.high:,} separated by commas "
                    f"(e.g. {self.name}={self.example}), not {written}")
        if self.kind not in (INT, FLOAT):
            return None
        finite = math.isfinite(value)
        if self.low is not None and self.high is None and self.kind == FLOAT and not (value > self.low and finite):
            return f"{self.said} must be a positive number, not {value}"
        if self.high is None:
            return f"{self.said} must be at least {self.low}, not {value}" if value < self.low else None
        high = self.high_words or f"{self.high:,}"
        if self.high_open:
            if not (self.low <= value < self.high and finite):
                return f"{self.said} must be from {self.low:g} up to (not including) {high}, not {value}"
        elif not self.low <= value <= self.high:
            return f"{self.said} must be from {self.low:,} to {high}, not {value}"
        return None


DECLARED: tuple[Setting, ...] = (
    Setting("dataset", NAME, "[default: fashion-mnist, or the preset's]", words="data set", choices=tuple(DATASETS),
            every_run=True, column="data"),
    Setting("epochs", INT, "[default: 10, or the preset's]", low=1, high=MAX_EPOCHS, every_run=True, on_resume=True,
            forked=True),
    Setting("batch_size", INT, "[default: each model's own]", low=1, every_run=True, column="batch", forked=True),
    Setting("optimizer", NAME, "[default: each model's own]", choices=OPTIMIZERS, every_run=True, column="optimizer",
            forked=True),
    Setting("lr", FLOAT, "Learning rate for every run [default: each model's own].", words="learning rate", low=0,
            every_run=True, column="lr", live=True, forked=True),
    Setting("seed", INT, "", low=0, high=MAX_SEED, high_words="2**63-1", every_run=True, default=0, column="seed"),
    Setting("device", NAME, "", choices=DEVICES, every_run=True, default="auto", column="device", varies=False),
    Setting("limit", INT, "Train on the first N training images only (quick runs); at most the data set's "
            "(60,000 for Fashion-MNIST and MNIST, 50,000 for CIFAR-10).", low=1, every_run=True),
    Setting("loss", NAME, choices=tuple(LOSSES), column="loss", forked=True),
    Setting("momentum", FLOAT, low=0, high=1, high_open=True, shown=True, live=True, forked=True),
    Setting("weight_decay", FLOAT, low=0, high=1, high_open=True, shown=True, live=True, forked=True),
    Setting("schedule", NAME, choices=SCHEDULES, shown=True, forked=True),
    Setting("augment", NAME, choices=AUGMENTS, shown=True, forked=True),
    Setting("label_smoothing", FLOAT, low=0, high=1, high_open=True, shown=True, forked=True),
    Setting("hidden", WIDTHS, low=1, high=MAX_WIDTH, example="200,200", model=True, shown=True),
    Setting("activation", NAME, choices=tuple(ACTIVATIONS), model=True, shown=True),
    Setting("dropout", FLOAT, low=0, high=1, high_open=True, model=True, shown=True),
    Setting("init", NAME, choices=tuple(INITS), model=True, shown=True),
    Setting("channels", WIDTHS, low=1, high=MAX_WIDTH, example="16,32", model=True, shown=True),
    Setting("block", NAME, choices=BLOCKS, model=True, shown=True),
    Setting("nproc", INT, "Train each run on N processes with torch.distributed (one run on the page, rank 0 "
            "reporting); with --resume, resume on N [default: 1, or as logged; per run: --set RUN.nproc=N].",
            low=1, high=MAX_NPROC, every_run=True, on_resume=True, column="ranks"),
    # where a run reads its data: an experiment file's top-level key and the torchrun entry's;
    # on the command line it is `--data-dir`, which `demo` shares (launch.py)
    Setting("data_dir", FOLDER, per_run=False, every_run=True, varies=False),
    Setting("threads", INT, words="threads", low=1, per_run=False, varies=False),
)
BY_NAME = {setting.name: setting for setting in DECLARED}
SETTINGS = tuple(s.name for s in DECLARED if s.per_run)  # `--set`'s keys, in their order
EVERY_RUN = tuple(s.name for s in DECLARED if s.every_run)  # `run`'s options and an experiment's top level
MODEL_SETTINGS = tuple(s.name for s in DECLARED if s.model)  # the settings a model may have of its own
LISTS = frozenset(s.name for s in DECLARED if s.kind == WIDTHS)  # values that hold commas: swept with "/"
COLUMNS = tuple((s.column, s.name) for s in DECLARED if s.column)  # the runs table's, in order
SHOWN = tuple(s.name for s in DECLARED if s.shown)  # said under the model's name in the runs table
NOT_ON_RESUME = tuple(s.name for s in DECLARED if s.every_run and not s.on_resume)
SETTABLE = tuple(s.name for s in DECLARED if s.live)  # what `set` may change while a run trains
# what a fork may train with other than its parent (the model and its data stay the parent's)
FORKABLE = tuple(s.name for s in DECLARED if s.forked)


def read(name: str, text: str) -> Any:
    """The value of setting `name` written as `text`; ValueError naming what it must be."""
    setting = BY_NAME[name]
    try:
        return setting.read(text)
    except ValueError:
        raise ValueError(f"{setting.flag} must be {setting.what}, not {text.strip()!r}") from None


def written(value: Any) -> str:
    """A setting's value as `--set` takes it back: 0.001, 512,256, sgd (the runs table, a plan)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
