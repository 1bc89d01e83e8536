"""Presets: the course notes' recipes (`../shared/seeds/`), each one word for `--models`.

A preset names a model and the settings its seed trains it with; anything the command line or
`--set` says still wins over it. Every run made from one logs its name (`preset`) and, like any
run, every setting it trained with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A seed's recipe: the model, the RunConfig fields it sets, and where it comes from."""

    model: str
    settings: Mapping[str, Any]
    source: str  # which seed, and what it shows

    def describe(self) -> str:
        said = " ".join(f"{key.replace('_', '-')}={_text(value)}" for key, value in self.settings.items())
        return f"model={self.model} {said}"


def _text(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


PRESETS: dict[str, Preset] = {
    "d2l-softmax": Preset("softmax", {"optimizer": "sgd", "lr": 0.1, "batch_size": 256, "momentum": 0.0,
                                      "schedule": "constant", "epochs": 5},
                          "seed 003: d2l's softmax regression from scratch, 5 epochs"),
    "d2l-softmax-nn": Preset("softmax-nn", {"optimizer": "sgd", "lr": 0.1, "batch_size": 256, "momentum": 0.0,
                                            "schedule": "constant", "epochs": 10},
                             "seed 000: the concise softmax regression, nn.Linear and torch.optim.SGD"),
    "mlp-200": Preset("mlp", {"hidden": (200, 200), "activation": "relu", "dropout": 0.0, "init": "kaiming",
                              "optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "batch_size": 200,
                              "schedule": "constant", "epochs": 10},
                      "seed 001: MLP 784-200-200-10, Kaiming init, plain SGD; no ReLU on the logits"),
    "lenet-cifar": Preset("lenet", {"dataset": "cifar10", "optimizer": "sgd", "lr": 0.001, "momentum": 0.9,
                                    "batch_size": 32, "schedule": "constant", "epochs": 10},
                          "seed 004: LeNet-5 on CIFAR-10, SGD with momentum"),
}
