"""RunConfig: everything that defines one training run, saved with the run."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from trainers.data import DATASETS
from trainers.errors import UsageError
from trainers.models import MODELS

OPTIMIZERS = ("sgd", "adam")
# Bounds on what a run can finish with: 10,000 epochs of the CNN on Fashion-MNIST take about 8 h
# on 2 cores (the softmax 25 min); torch's seeds are 64-bit
MAX_EPOCHS = 10_000
MAX_SEED = 2**63 - 1
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(UsageError, ValueError):
    """A one-line reason why a configuration cannot run (a usage error: the settings say it)."""


@dataclass(frozen=True)
class RunConfig:
    """One run. `None` for optimizer, lr or batch_size means the model's default (see models)."""

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

    def resolved(self) -> "RunConfig":
        """A copy with the model's defaults filled in and every field checked."""
        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        spec = MODELS[self.model]
        cfg = replace(
            self,
            batch_size=self.batch_size or spec.batch_size,
            optimizer=self.optimizer or spec.optimizer,
            lr=spec.lr if self.lr is None else self.lr,
            label=self.label or self.model,
        )
        cfg.check()
        return cfg

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
        if self.model == "softmax" and self.optimizer not in (None, "sgd"):
            raise ConfigError("softmax regression trains with its hand-written SGD; use optimizer sgd")
        if self.device not in DEVICES:
            raise ConfigError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, not {self.limit}")

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
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def threads_per_run(parallel_runs: int, cores: int | None = None) -> int:
    """Torch threads for each of `parallel_runs` workers sharing this machine's cores.

    Runs share the cores evenly (at least one thread each), so that three runs on two cores use
    one thread each instead of fighting over 3 x 2 threads."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, parallel_runs))
