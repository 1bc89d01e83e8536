"""The classifiers the product compares, and a registry of them by name: how each is built, with
its default recipe (trainers.catalog, which holds the recipes without torch).

Every model maps a float batch (B, C, H, W) to logits (B, num_classes). A model's own settings
(`hidden`, `activation`, `dropout`, `init`, `channels`, `block`) are named in its recipe, with their
defaults; a run can change them (`--set mlp.activation=sigmoid`), and no other model's.

A person's own model is named `path/to/file.py:Name`: an `nn.Module` class, or a function that
returns one, built with what its signature asks for (nothing, or some of `num_classes`,
`image_shape`, `in_channels`, `num_inputs`) and given (B, C, H, W) images, or flat (B, C*H*W)
ones when that is what it takes; it trains with the MLP's recipe."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from trainers import catalog
from trainers.catalog import USER_RECIPE, Recipe, is_user_model
from trainers.usermodels import build_user_model, load_user_factory


class SoftmaxRegression:
    """d2l's softmax regression on raw tensors: logits = flatten(x) @ W + b.

    W (D, K) is drawn from N(0, 0.01^2) and b (K,) starts at zero; no torch.nn inside."""

    def __init__(self, num_inputs: int, num_classes: int) -> None:
        self.W = torch.normal(0.0, 0.01, (num_inputs, num_classes)).requires_grad_()
        self.b = torch.zeros(num_classes, requires_grad=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.W + self.b  # (B, D) @ (D, K) + (K,) -> (B, K)

    def parameters(self) -> list[torch.Tensor]:
        return [self.W, self.b]

    def to(self, device: torch.device | str) -> "SoftmaxRegression":
        self.W = self.W.detach().to(device).requires_grad_()
        self.b = self.b.detach().to(device).requires_grad_()
        return self

    def train(self, mode: bool = True) -> "SoftmaxRegression":
        return self  # no dropout or batch statistics: train and eval behave the same

    def eval(self) -> "SoftmaxRegression":
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"W": self.W.detach().clone(), "b": self.b.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.W.copy_(state["W"])
            self.b.copy_(state["b"])


class ConciseSoftmax(nn.Module):
    """d2l's concise softmax regression: nn.Flatten + nn.Linear(D, K), weights from N(0, 0.01^2).

    The weights are drawn exactly as `SoftmaxRegression` draws W (a (D, K) normal, then
    transposed into the layer), so with the same seed both start equal and train equal."""

    def __init__(self, num_inputs: int, num_classes: int) -> None:
        super().__init__()
        weight = torch.normal(0.0, 0.01, (num_inputs, num_classes))  # first: nn.Linear draws its own
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(num_inputs, num_classes))
        with torch.no_grad():
            self.net[1].weight.copy_(weight.T)
            self.net[1].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, K)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky-relu": nn.LeakyReLU, "selu": nn.SELU,
    "softplus": nn.Softplus,
}
# the name torch.nn.init's gain and Kaiming functions know each activation by (softplus: as ReLU)
_GAIN_NAME = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "leaky-relu": "leaky_relu", "selu": "selu",
              "softplus": "relu"}
INITS = catalog.INITS


def init_linear(layer: nn.Linear, init: str, activation: str) -> None:
    """Kaiming (He), Xavier (Glorot, with the activation's gain) or N(0, 0.01^2) weights; zero bias."""
    gain_name = _GAIN_NAME[activation]
    if init == "kaiming":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="leaky_relu" if gain_name == "leaky_relu" else "relu")
    elif init == "xavier":
        nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain(gain_name))
    else:
        nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)


class Dropout(nn.Dropout):
    """nn.Dropout whose mask comes from 16 random bits a value: torch draws those four to a 64-bit
    number, where `bernoulli_` draws one number a value (on the CPU the layer, forward and
    backward, is 5x faster for the CNN's 400,000 values a batch: docs/benchmarks.md). p is rounded
    to a multiple of 1/65,536; the kept values are scaled by 1 / (1 - that p), so the mean stays.
    From torch's own generator, as nn.Dropout's mask is: a checkpoint's random state brings the
    same masks back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        dropped = min(round(self.p * 65536), 65535)  # of every 65,536 values
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2**63, None)
        # 1.0 where kept (P = 1 - dropped / 65,536), 0.0 where dropped: the comparison written
        # straight into x's dtype (a bool mask converted took 5x as long; docs/benchmarks.md)
        keep = torch.ge(bits.view(torch.int16)[:n].view(x.shape), dropped - 32768,
                        out=torch.empty(x.shape, dtype=x.dtype, device=x.device))
        return x * keep.mul_(65536 / (65536 - dropped))


class MLP(nn.Module):
    """A fully connected network: hidden layers of the given widths, each with its activation and
    dropout, then a linear layer to the logits (no activation on them)."""

    def __init__(self, num_inputs: int, num_classes: int, hidden: tuple[int, ...] = (512, 256),
                 activation: str = "relu", dropout: float = 0.2, init: str = "kaiming") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = num_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                init_linear(m, init, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, K)


class CNN(nn.Module):
    """Conv blocks, one per entry of `channels`, and a small head; any C x H x W input, e.g.
    1x28x28 or 3x32x32 (the head's input size follows from the halvings).

    A block is conv3x3-maxpool-BN-ReLU (`block` "conv-pool-bn-relu", the default), or the first
    recipe's conv3x3-BN-ReLU-maxpool ("conv-bn-relu-pool"). Pooling first does the batch norm and
    the ReLU on a quarter of the values, and trained better here (docs/benchmarks.md)."""

    def __init__(self, in_channels: int, num_classes: int, height: int, width: int,
                 channels: tuple[int, ...] = (16, 64), hidden: tuple[int, ...] = (128,), dropout: float = 0.3,
                 block: str = catalog.BLOCKS[0]) -> None:
        super().__init__()
        if block not in catalog.BLOCKS:
            raise ValueError(f"block must be one of {', '.join(catalog.BLOCKS)}, not {block!r}")
        blocks: list[nn.Module] = []
        previous = in_channels
        for c in channels:
            conv, pool = nn.Conv2d(previous, c, 3, padding=1, bias=False), nn.MaxPool2d(2)
            norm = [nn.BatchNorm2d(c), nn.ReLU()]
            blocks += [conv, pool, *norm] if block == "conv-pool-bn-relu" else [conv, *norm, pool]  # (B, c, H/2, W/2)
            previous, height, width = c, height // 2, width // 2
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten(), Dropout(dropout)]
        size = previous * height * width
        for h in hidden:
            head += [nn.Linear(size, h), nn.ReLU(), Dropout(dropout)]
            size = h
        head.append(nn.Linear(size, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last makes oneDNN's CPU convolutions faster (see docs/benchmarks.md, Speed)
        features = self.features(x.contiguous(memory_format=torch.channels_last))
        if features.requires_grad:
            # the head's Flatten hands its gradient back in NCHW order; beside the last block's own
            # channels-last tensors, their backward takes torch's mixed-layout path (ReLU's: 20x as
            # slow). Turned channels-last first, the step is about 1.05x faster; the same values.
            features.register_hook(_channels_last)
        return self.head(features)  # (B, C, H, W) -> (B, K)


def _channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


class LeNet(nn.Module):
    """LeNet-5 as seed 004 writes it: conv5x5 6, maxpool, conv5x5 16, maxpool, FC 120-84-K.

    On 32x32 images (CIFAR-10) the first conv is unpadded, on 28x28 it pads by 2 (LeCun's own
    MNIST LeNet), so both reach the 16 x 5 x 5 features the first FC layer takes. (The seed resizes
    CIFAR-10 to 224x224 and then flattens 16*5*5, which cannot run: 224 gives 16 x 53 x 53.)"""

    def __init__(self, in_channels: int, num_classes: int, height: int, width: int,
                 activation: str = "relu") -> None:
        super().__init__()
        pad = max(0, (32 - min(height, width)) // 2)
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), act(), nn.MaxPool2d(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5), act(), nn.MaxPool2d(2),  # (B, 16, 5, 5)
        )
        h, w = ((height + 2 * pad - 4) // 2 - 4) // 2, ((width + 2 * pad - 4) // 2 - 4) // 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * h * w, 120), act(), nn.Linear(120, 84), act(),
                                  nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, C, H, W) -> (B, K)


Model = SoftmaxRegression | nn.Module
Shape = tuple[int, int, int]


def layers(model: Model) -> list[tuple[str, list[torch.Tensor]]]:
    """The model's weight layers in order, each with its parameters (weight and bias): modules
    with a weight of 2 or more dimensions (Linear, Conv2d, ...), named by their kind and count
    ("linear1", "linear2", "conv2d1"). Normalisation layers are left out: their scale and shift
    are not what vanishes. The scratch softmax's W and b are one layer, "linear1"."""
    if isinstance(model, SoftmaxRegression):
        return [("linear1", [model.W, model.b])]
    found: list[tuple[str, list[torch.Tensor]]] = []
    counts: dict[str, int] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not params or not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            continue
        kind = type(module).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        found.append((f"{kind}{counts[kind]}", params))
    return found


@dataclass(frozen=True)
class ModelSpec(Recipe):
    """A model's recipe (trainers.catalog) and how to build it."""

    # (image shape, classes, its settings) -> the model
    build: Callable[[Shape, int, Mapping[str, Any]], Model] = field(kw_only=True)


def _flat(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


BUILDERS: dict[str, Callable[[Shape, int, Mapping[str, Any]], Model]] = {
    "softmax": lambda shape, k, s: SoftmaxRegression(_flat(shape), k),
    "softmax-nn": lambda shape, k, s: ConciseSoftmax(_flat(shape), k),
    "mlp": lambda shape, k, s: MLP(_flat(shape), k, s["hidden"], s["activation"], s["dropout"], s["init"]),
    "cnn": lambda shape, k, s: CNN(shape[0], k, shape[1], shape[2], s["channels"], s["hidden"],
                                   s["dropout"], s["block"]).to(memory_format=torch.channels_last),
    "lenet": lambda shape, k, s: LeNet(shape[0], k, shape[1], shape[2], s["activation"]),
}
MODELS: dict[str, ModelSpec] = {name: ModelSpec(**vars(catalog.RECIPES[name]), build=build)
                                for name, build in BUILDERS.items()}
if tuple(MODELS) != catalog.MODELS or tuple(ACTIVATIONS) != catalog.ACTIVATIONS:
    raise ImportError("trainers.models and trainers.catalog name different models or activations")


def spec(name: str) -> ModelSpec:
    """The ModelSpec of a built-in model, or of a model from a file (`path.py:Name`).
    Raises KeyError for neither, ModelFileError for a file that cannot give the model."""
    if name in MODELS:
        return MODELS[name]
    if is_user_model(name):
        return _user_spec(name)
    raise KeyError(name)


@functools.cache
def _user_spec(ref: str) -> ModelSpec:
    factory = load_user_factory(ref)
    return ModelSpec(**vars(replace(USER_RECIPE, description=f"{factory.__name__} from {ref.rsplit(':', 1)[0]}")),
                     build=lambda shape, k, s: build_user_model(ref, shape, k))


def build(name: str, image_shape: Shape, num_classes: int, settings: Mapping[str, Any] | None = None) -> Model:
    """Model `name` for images of `image_shape`; `settings` (its own, e.g. hidden) over its defaults."""
    model_spec = spec(name)
    return model_spec.build(image_shape, num_classes, {**model_spec.settings, **(settings or {})})
