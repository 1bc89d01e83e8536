"""The three classifiers the product compares, and a registry of them by name.

Every model maps a float batch (B, C, H, W) to logits (B, num_classes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainers import scratch


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


class MLP(nn.Module):
    """Fully connected ReLU network with Kaiming (He) initialisation, as in the MLP article."""

    def __init__(self, num_inputs: int, num_classes: int, hidden: tuple[int, ...] = (512, 256),
                 dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = num_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, K)


class CNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU-pool) and a small head; any C x H x W input, e.g. 1x28x28
    or 3x32x32 (the head's input size follows from two halvings of H and W)."""

    def __init__(self, in_channels: int, num_classes: int, height: int, width: int,
                 channels: tuple[int, int] = (16, 32), hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c1, H/2, W/2)
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c2, H/4, W/4)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(c2 * (height // 4) * (width // 4), hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last makes oneDNN's CPU convolutions faster (see the README's trainer speed)
        x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))  # (B, C, H, W) -> (B, K)


Model = SoftmaxRegression | nn.Module


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and train it by default."""

    build: Callable[[tuple[int, int, int], int], Model]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: str
    lr: float
    batch_size: int
    normalize: bool  # standardise pixels (mean/std) rather than only scale them to [0, 1]
    cosine: bool  # anneal the lr to 0 over the run (per batch) rather than keep it constant
    description: str


MODELS: dict[str, ModelSpec] = {
    "softmax": ModelSpec(
        lambda shape, k: SoftmaxRegression(shape[0] * shape[1] * shape[2], k),
        scratch.cross_entropy, "sgd", 0.1, 256, False, False,
        "softmax regression from scratch (d2l): W, b, softmax, cross-entropy and SGD by hand",
    ),
    "mlp": ModelSpec(
        lambda shape, k: MLP(shape[0] * shape[1] * shape[2], k),
        F.cross_entropy, "adam", 1e-3, 128, True, True,
        "MLP 784-512-256-10, ReLU, dropout 0.2, Kaiming init",
    ),
    "cnn": ModelSpec(
        lambda shape, k: CNN(shape[0], k, shape[1], shape[2]).to(memory_format=torch.channels_last),
        F.cross_entropy, "adam", 1e-3, 128, True, True,
        "CNN: 2 x (conv3x3-BN-ReLU-maxpool), 16 and 32 channels, FC 128, dropout 0.3",
    ),
}


def build(name: str, image_shape: tuple[int, int, int], num_classes: int) -> Model:
    return MODELS[name].build(image_shape, num_classes)
