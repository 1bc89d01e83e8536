"""RunConfig: everything that defines one training run, saved with the run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from trainers.errors import UsageError, did_you_mean
from trainers.catalog import MODELS, RECIPES, Recipe, is_user_model
from trainers.settings import (  # noqa: F401 - the bounds, named here as before
    DECLARED, DEVICES, MAX_EPOCHS, MAX_NPROC, MAX_SEED, MAX_WIDTH, MODEL_SETTINGS, OPTIMIZERS, SCHEDULES,
)

def recipe(model: str) -> Recipe:
    """The recipe of a built-in model, or of a model from a file, which this loads (with torch)
    to check that it gives one. KeyError for neither; ModelFileError for a file that cannot."""
    if model in RECIPES:
        return RECIPES[model]
    if is_user_model(model):
        from trainers.models import spec

        return spec(model)
    raise KeyError(model)


OLD_CNN_BLOCK = "conv-bn-relu-pool"  # the CNN's blocks before issue 29 made pooling come first
MAX_BLOCKS = 3  # conv blocks: each halves the image, and 28 / 2**3 leaves 3x3
ADAMW_DECAY = 0.01  # torch.optim.AdamW's own default weight decay


class ConfigError(UsageError, ValueError):
    """A one-line reason why a configuration cannot run (a usage error: the settings say it)."""


@dataclass(frozen=True)
class RunConfig:
    """One run. `None` means the model's default (see trainers.catalog's RECIPES): for optimizer, lr, batch
    size, momentum, weight decay, schedule and the model's own settings."""

    model: str
    dataset: str = "fashion-mnist"
    epochs: int = 10
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    label: str = ""
    data_dir: str | None = None
    threads: int | None = None  # torch intra-op threads for this run; None: torch's default
    limit: int | None = None  # train on the first N training images only (quick runs, tests)
    loss: str = "ce"  # see trainers.losses
    momentum: float | None = None  # SGD's; None: the model's (0.9, or 0 for softmax regression)
    weight_decay: float | None = None  # None: 0 (AdamW: 0.01)
    schedule: str | None = None  # of the lr: constant, cosine (to 0 over the run) or step
    augment: str | None = None  # of the training images: none, flip, crop or crop-flip (trainers.data)
    label_smoothing: float | None = None  # cross-entropy's; None: the model's (0 on another loss)
    hidden: tuple[int, ...] | None = None  # hidden layer widths (MLP, CNN head)
    activation: str | None = None
    dropout: float | None = None
    init: str | None = None  # of the MLP's weights: kaiming, xavier or normal
    channels: tuple[int, ...] | None = None  # per conv block (CNN)
    block: str | None = None  # a conv block's order (CNN): conv-pool-bn-relu or conv-bn-relu-pool
    preset: str = ""  # the preset it was made from (trainers.presets), if any
    nproc: int = 1  # processes (ranks) that train this one run with torch.distributed

    def resolved(self) -> "RunConfig":
        """A copy with the model's defaults filled in and every field checked."""
        try:
            spec = recipe(self.model)
        except KeyError:
            raise ConfigError(f"unknown model {self.model!r}{did_you_mean(self.model, MODELS)}; "
                              f"choose one of {', '.join(MODELS)}, "
                              "or PATH.py:ClassName") from None
        foreign = [name for name in MODEL_SETTINGS if getattr(self, name) is not None and name not in spec.settings]
        if foreign:
            own = ", ".join(spec.settings) or "none of its own"
            raise ConfigError(f"{self.model} has no setting {foreign[0]!r}{did_you_mean(foreign[0], spec.settings)} "
                              f"(its settings: {own})")
        optimizer = self.optimizer or spec.optimizer
        if self.momentum is not None and optimizer != "sgd":
            raise ConfigError(f"momentum is SGD's setting, and this run trains with {optimizer}; "
                              "drop momentum or use optimizer sgd")
        cfg = replace(
            self,
            batch_size=self.batch_size or spec.batch_size,
            optimizer=optimizer,
            lr=spec.lr if self.lr is None else self.lr,
            label=self.label or self.model,
            momentum=(spec.momentum if self.momentum is None else self.momentum) if optimizer == "sgd" else None,
            weight_decay=(ADAMW_DECAY if optimizer == "adamw" else 0.0) if self.weight_decay is None
            else self.weight_decay,
            schedule=self.schedule or spec.schedule,
            augment=self.augment or spec.augment,
            label_smoothing=(spec.label_smoothing if self.loss == "ce" else 0.0) if self.label_smoothing is None
            else self.label_smoothing,
            **{name: spec.settings[name] if getattr(self, name) is None else getattr(self, name)
               for name in spec.settings},
        )
        cfg.check()
        return cfg

    def model_settings(self) -> dict[str, Any]:
        """The model's own settings this config gives (resolved: all of them)."""
        return {name: getattr(self, name) for name in MODEL_SETTINGS if getattr(self, name) is not None}

    def check(self) -> None:
        """Each setting given against its declaration (trainers.settings), then what they say together."""
        for setting in DECLARED:
            value = getattr(self, setting.name)
            problem = None if value is None else setting.problem(value)
            if problem:
                raise ConfigError(problem)
        scratch = recipe(self.model).scratch
        if scratch and self.optimizer not in (None, "sgd"):
            raise ConfigError("softmax regression trains with its hand-written SGD; use optimizer sgd")
        if self.label_smoothing and (self.loss != "ce" or scratch):
            raise ConfigError("label smoothing is cross-entropy's (loss ce), on a model written with torch.nn; "
                              f"drop it, or train with loss ce{' and softmax-nn' if scratch else ''}")
        if self.nproc > 1 and scratch:
            raise ConfigError(f"{self.model} is written without torch.nn and trains on one process only; "
                              "use softmax-nn for a softmax on several (nproc)")
        if self.channels is not None and not 1 <= len(self.channels) <= MAX_BLOCKS:
            raise ConfigError(f"channels must name 1 to {MAX_BLOCKS} conv blocks (e.g. channels=16,32), "
                              f"not {len(self.channels)}")

    def check_sizes(self, train_images: int) -> None:
        """What only the data set can say: --limit and the batch size fit its `train_images`."""
        if self.limit is not None and self.limit > train_images:
            raise ConfigError(f"limit {self.limit} is more than the {train_images} training images of "
                              f"{self.dataset}; use at most {train_images}, or leave it out to train on all")
        images = min(self.limit or train_images, train_images)
        if self.batch_size is not None and self.batch_size > images:
            raise ConfigError(f"batch size {self.batch_size} is more than the {images} training images "
                              f"it would train on; use at most {images}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists), as the run log and checkpoints hold them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known}
        for name in ("hidden", "channels"):  # JSON keeps tuples as lists
            if isinstance(given.get(name), list):
                given[name] = tuple(given[name])
        if given.get("model") == "cnn" and "channels" in given and "block" not in given:
            given["block"] = OLD_CNN_BLOCK  # logged resolved before `block` was a setting: its blocks were these
        return cls(**given)


def machine_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_run(parallel_runs: int, cores: int | None = None) -> int:
    """Torch threads for each of `parallel_runs` workers sharing this machine's cores.

    Runs share the cores evenly (at least one thread each), so that three runs on two cores use
    one thread each instead of fighting over 3 x 2 threads."""
    if cores is None:
        cores = machine_cores()
    return max(1, cores // max(1, parallel_runs))
