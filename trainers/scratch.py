"""Softmax regression's pieces written by hand (d2l's chapter): softmax, the losses, SGD.

Autograd computes the gradients, as in d2l; nothing here uses torch.nn layers or losses, or
torch.optim. Both softmax and cross-entropy subtract each row's max before exponentiating, so
they stay finite for any finite logits (the log-sum-exp trick).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def nll(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of integer labels (B,) under log-probabilities (B, K)."""
    return -log_probs.gather(1, labels.unsqueeze(1)).mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of integer labels (B,) under logits (B, K); never log(softmax(...))."""
    return nll(log_softmax(logits), labels)  # log p of each true class, negated, averaged


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,) integer labels -> (B, K) rows of 0.0 with a 1.0 at each label."""
    rows = torch.zeros(labels.shape[0], num_classes, device=labels.device)
    return rows.scatter(1, labels.unsqueeze(1), 1.0)


def squared_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error of the softmax probabilities against the one-hot labels, summed over the K
    classes and averaged over the batch (the Brier score)."""
    diff = softmax(logits) - one_hot(labels, logits.shape[1])
    return (diff * diff).sum(dim=1).mean()


def binary_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """K one-vs-rest logistic losses on the logits against the one-hot labels, summed over the
    classes and averaged over the batch. log(1 + e^-|z|) + max(z, 0) - z*t never overflows."""
    target = one_hot(labels, logits.shape[1])
    per_class = logits.clamp(min=0) - logits * target + (-logits.abs()).exp().log1p()
    return per_class.sum(dim=1).mean()


class SGD:
    """Minibatch SGD by hand, with torch.optim.SGD's momentum and weight decay:
    g <- grad + wd * p; v <- momentum * v + g (v = g at the first step); p <- p - lr * v.
    (The loss is a batch mean, so no / batch_size.)

    Speaks just enough of torch.optim's interface (step, zero_grad, param_groups, state_dict)
    for the training loop and checkpoints to treat it like any optimizer."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.params = list(params)
        # lr, momentum and weight decay in one group, as torch's optimizers keep them (a run's
        # lr schedule and the page's changes set them there)
        self.param_groups = [{"lr": lr, "momentum": momentum, "weight_decay": weight_decay}]
        self.velocity: list[torch.Tensor | None] = [None] * len(self.params)

    @property
    def momentum(self) -> float:
        return float(self.param_groups[0]["momentum"])

    @property
    def weight_decay(self) -> float:
        return float(self.param_groups[0]["weight_decay"])

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            # each step as torch.optim.SGD rounds it (a multiply fused into the add), so that the
            # two agree to the last bit rather than drift apart over many steps
            g = p.grad.add(p, alpha=weight_decay) if weight_decay else p.grad
            if momentum:
                v = self.velocity[i]
                self.velocity[i] = v = g.clone() if v is None else v.mul_(momentum).add_(g)
                g = v
            p.add_(g, alpha=-lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {"lr": float(self.param_groups[0]["lr"]), "momentum": self.momentum, "weight_decay": self.weight_decay,
                "velocity": [v for v in self.velocity]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.param_groups[0]["lr"] = float(state["lr"])
        for key in ("momentum", "weight_decay"):  # older checkpoints have neither: the run's own stay
            if key in state:
                self.param_groups[0][key] = float(state[key])
        saved = state.get("velocity") or [None] * len(self.params)  # older checkpoints have none
        self.velocity = [None if v is None else v.to(p.device) for v, p in zip(saved, self.params)]
