"""RunConfig: everything that defines one training run, saved with the run."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from trainers.data import DATASETS
from trainers.errors import UsageError
from trainers.losses import LOSSES
from trainers.models import ACTIVATIONS, INITS, MODELS
from trainers.models import spec as model_spec

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
# Bounds on what a run can finish with: 10,000 epochs of the CNN on Fashion-MNIST take about 8 h
# on 2 cores (the softmax 25 min); torch's seeds are 64-bit
MAX_EPOCHS = 10_000
MAX_SEED = 2**63 - 1
MAX_WIDTH = 65_536  # units in one hidden layer, or channels in one conv block
MAX_NPROC = 64  # ranks of one run started on one machine (the torchrun entry takes any world)
MAX_BLOCKS = 3  # conv blocks: each halves the image, and 28 / 2**3 leaves 3x3
DEVICES = ("auto", "cpu", "cuda")
ADAMW_DECAY = 0.01  # torch.optim.AdamW's own default weight decay
# the settings a model may have of its own (see ModelSpec.settings); the rest every run has
MODEL_SETTINGS = ("hidden", "activation", "dropout", "init", "channels")


class ConfigError(UsageError, ValueError):
    """A one-line reason why a configuration cannot run (a usage error: the settings say it)."""


@dataclass(frozen=True)
class RunConfig:
    """One run. `None` means the model's default (see models.MODELS): for optimizer, lr, batch
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
    hidden: tuple[int, ...] | None = None  # hidden layer widths (MLP, CNN head)
    activation: str | None = None
    dropout: float | None = None
    init: str | None = None  # of the MLP's weights: kaiming, xavier or normal
    channels: tuple[int, ...] | None = None  # per conv block (CNN)
    preset: str = ""  # the preset it was made from (trainers.presets), if any
    nproc: int = 1  # processes (ranks) that train this one run with torch.distributed

    def resolved(self) -> "RunConfig":
        """A copy with the model's defaults filled in and every field checked."""
        try:
            spec = model_spec(self.model)
        except KeyError:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}, "
                              "or PATH.py:ClassName") from None
        foreign = [name for name in MODEL_SETTINGS if getattr(self, name) is not None and name not in spec.settings]
        if foreign:
            own = ", ".join(spec.settings) or "none of its own"
            raise ConfigError(f"{self.model} has no setting {foreign[0]!r} (its settings: {own})")
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
            **{name: spec.settings[name] if getattr(self, name) is None else getattr(self, name)
               for name in spec.settings},
        )
        cfg.check()
        return cfg

    def model_settings(self) -> dict[str, Any]:
        """The model's own settings this config gives (resolved: all of them)."""
        return {name: getattr(self, name) for name in MODEL_SETTINGS if getattr(self, name) is not None}

    def check(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown data set {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(f"epochs must be from 1 to {MAX_EPOCHS:,}, not {self.epochs}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be from 0 to 2**63-1, not {self.seed}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {self.batch_size}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, not {self.lr}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if model_spec(self.model).scratch and self.optimizer not in (None, "sgd"):
            raise ConfigError("softmax regression trains with its hand-written SGD; use optimizer sgd")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, not {self.limit}")
        if not 1 <= self.nproc <= MAX_NPROC:
            raise ConfigError(f"nproc must be from 1 to {MAX_NPROC}, not {self.nproc}")
        if self.nproc > 1 and model_spec(self.model).scratch:
            raise ConfigError(f"{self.model} is written without torch.nn and trains on one process only; "
                              "use softmax-nn for a softmax on several (nproc)")
        self._check_training()
        self._check_model()

    def _check_training(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be from 0 up to (not including) 1, not {self.momentum}")
        if self.weight_decay is not None and not (0 <= self.weight_decay < 1 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight decay must be from 0 up to (not including) 1, not {self.weight_decay}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")

    def _check_model(self) -> None:
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.init is not None and self.init not in INITS:
            raise ConfigError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be from 0 up to (not including) 1, not {self.dropout}")
        for name, widths in (("hidden", self.hidden), ("channels", self.channels)):
            if widths is not None and not all(isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in widths):
                raise ConfigError(f"{name} must be whole numbers from 1 to {MAX_WIDTH:,} separated by commas "
                                  f"(e.g. {name}=200,200), not {_widths(widths)}")
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
        return cls(**given)


def _widths(widths: Any) -> str:
    return ",".join(str(w) for w in widths) if isinstance(widths, (tuple, list)) else repr(widths)


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
