"""Softmax regression's pieces written by hand (d2l's chapter): softmax, cross-entropy, SGD.

Autograd computes the gradients, as in d2l; nothing here uses torch.nn layers or losses, or
torch.optim. Both softmax and cross-entropy subtract each row's max before exponentiating, so
they stay finite for any finite logits (the log-sum-exp trick).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax, (B, K) -> (B, K); softmax(z) == softmax(z - c) for any row constant c."""
    shifted = logits - logits.max(dim=1, keepdim=True).values  # largest entry of each row is 0
    exp = shifted.exp()  # in (0, 1]: cannot overflow
    return exp / exp.sum(dim=1, keepdim=True)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise log-softmax, (B, K) -> (B, K), as z - max - log(sum(exp(z - max)))."""
    shifted = logits - logits.max(dim=1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()  # the sum is >= 1: log is finite


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of integer labels (B,) under logits (B, K); never log(softmax(...))."""
    picked = log_softmax(logits).gather(1, labels.unsqueeze(1))  # (B, 1): log p of the true class
    return -picked.mean()


class SGD:
    """Minibatch SGD by hand: p <- p - lr * grad (the loss is a batch mean, so no / batch_size).

    Speaks just enough of torch.optim's interface (step, zero_grad, param_groups, state_dict)
    for the training loop and checkpoints to treat it like any optimizer."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        self.params = list(params)
        self.param_groups = [{"lr": lr}]

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        for p in self.params:
            if p.grad is not None:
                p -= lr * p.grad

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, float]:
        return {"lr": float(self.param_groups[0]["lr"])}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])
