"""What a run may name, without torch: the built-in models and their recipes, the losses, the
activations and initialisations, and (trainers.datasets) the data sets.

The command line's help and checks, a plan (`--dry-run`), the runs table and the settings'
declarations (trainers.settings) read these, so that a command that trains nothing never imports
torch. trainers.models and .losses build the real things under the same names, and refuse to
import if their names are not these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.errors import UsageError

LOSSES = ("ce", "nll", "mse", "bce")  # trainers.losses
ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky-relu", "selu", "softplus")  # trainers.models
INITS = ("kaiming", "xavier", "normal")
AUGMENTS = ("none", "flip", "crop", "crop-flip")  # of the training images, per batch (trainers.data.augmented)
# a CNN block's order (trainers.models.CNN): pooling before the batch norm and ReLU does them on a
# quarter of the values (the default since issue 29); the other is the CNN's first recipe's
BLOCKS = ("conv-pool-bn-relu", "conv-bn-relu-pool")


@dataclass(frozen=True)
class Recipe:
    """A model's default recipe: what a run of it gets where it says nothing."""

    optimizer: str
    lr: float
    batch_size: int
    normalize: bool  # standardise pixels (mean/std) rather than only scale them to [0, 1]
    schedule: str  # "constant", "cosine" (to 0 over the run, per batch) or "step"
    description: str
    momentum: float = 0.9  # when it trains with SGD
    settings: Mapping[str, Any] = field(default_factory=dict)  # its own settings, with their defaults
    scratch: bool = False  # trains with hand-written ops only (trainers.scratch): loss and SGD
    augment: str = "none"  # one of AUGMENTS
    label_smoothing: float = 0.0  # of cross-entropy's targets (a run on another loss has none)


RECIPES: dict[str, Recipe] = {
    "softmax": Recipe(
        "sgd", 0.1, 256, False, "constant",
        "softmax regression from scratch (d2l): W, b, softmax, cross-entropy and SGD by hand",
        momentum=0.0, scratch=True,
    ),
    "softmax-nn": Recipe(
        "sgd", 0.1, 256, False, "constant",
        "softmax regression, concise (d2l): nn.Flatten + nn.Linear, nn.CrossEntropyLoss, torch.optim.SGD",
        momentum=0.0,
    ),
    "mlp": Recipe(
        "adam", 1e-3, 128, True, "cosine",
        "MLP: hidden layers 512-256, ReLU, dropout 0.2, Kaiming init",
        settings={"hidden": (512, 256), "activation": "relu", "dropout": 0.2, "init": "kaiming"},
    ),
    "cnn": Recipe(
        "adam", 2e-3, 128, True, "cosine",
        "CNN: a conv3x3-maxpool-BN-ReLU block per channel count (16, 64), FC 128, dropout 0.3",
        settings={"channels": (16, 64), "hidden": (128,), "dropout": 0.3, "block": BLOCKS[0]},
    ),
    "lenet": Recipe(
        "adam", 1e-3, 128, True, "constant",
        "LeNet-5 (seed 004): conv5 6, maxpool, conv5 16, maxpool, FC 120-84, ReLU",
        settings={"activation": "relu"},
    ),
}
MODELS = tuple(RECIPES)
USER_RECIPE = Recipe("adam", 1e-3, 128, True, "cosine", "")  # a model from a file (`path.py:Name`)


class ModelFileError(UsageError):
    """A model named by its file cannot be used: the file does not import, lacks the name, the
    model cannot be built, or it does not make logits of the right shape."""


def is_user_model(name: str) -> bool:
    """Whether `name` names a model in a file, `path.py:Name` (trainers.usermodels)."""
    return ".py:" in name
