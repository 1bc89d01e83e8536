"""Losses: what a run trains on (`--set mlp.loss=mse`), by name, as the seeds compare them.

- `ce`: cross-entropy of the softmax, `nn.CrossEntropyLoss`;
- `nll`: `nn.LogSoftmax` then `nn.NLLLoss`, the same number written as two steps (seed 004);
- `mse`: squared error of the softmax probabilities against one-hot labels, summed over the
  classes and averaged over the batch (the Brier score), whose gradients vanish where
  cross-entropy's do not (seeds 001, 003);
- `bce`: one-vs-rest logistic losses on the logits against one-hot labels, `BCEWithLogitsLoss`,
  summed over the classes and averaged over the batch (seed 004).

Each is a mean over the batch of a per-image number, so batch sizes compare. The from-scratch
model gets each written by hand (`trainers.scratch`). Losses of different kinds are not
comparable numbers, so every run is also evaluated in cross-entropy (`trainers.loop.evaluate`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainers import catalog, scratch

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, K), labels (B,)) -> scalar


def _nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(F.log_softmax(logits, dim=1), labels)


def _mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probs = F.softmax(logits, dim=1)
    return F.mse_loss(probs, F.one_hot(labels, logits.shape[1]).to(probs.dtype), reduction="sum") / labels.shape[0]


def _bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / labels.shape[0]


LOSSES: dict[str, Loss] = {"ce": F.cross_entropy, "nll": _nll, "mse": _mse, "bce": _bce}
if tuple(LOSSES) != catalog.LOSSES:
    raise ImportError("trainers.losses and trainers.catalog name different losses")
SCRATCH_LOSSES: dict[str, Loss] = {
    "ce": scratch.cross_entropy, "nll": lambda z, y: scratch.nll(scratch.log_softmax(z), y),
    "mse": scratch.squared_error, "bce": scratch.binary_cross_entropy,
}


def get(name: str, by_hand: bool = False, smoothing: float = 0.0) -> Loss:
    """The loss `name`; `by_hand`: written with `trainers.scratch` only (the from-scratch model).
    `smoothing`: cross-entropy against targets of 1 - smoothing on the true class and the rest
    spread evenly over all classes (label smoothing; RunConfig.check allows it on ce only)."""
    if smoothing:
        return functools.partial(F.cross_entropy, label_smoothing=smoothing)
    return (SCRATCH_LOSSES if by_hand else LOSSES)[name]


def entropy_bits(log_p: torch.Tensor) -> torch.Tensor:
    """Each row's entropy in bits, -sum p log2 p, from log-probabilities (N, K) -> (N,); a
    probability of 0 adds 0 (its 0 * -inf is taken as 0). Seed 001: 2.0 for a uniform guess
    over 4 classes, 1.3568 for (0.1, 0.1, 0.1, 0.7), 0.0342 for (0.001, 0.001, 0.001, 0.997).
    A row that is not numbers (a diverged model's) gives NaN, not 0 bits of certainty."""
    p = log_p.exp()
    return -torch.where(p == 0, torch.zeros_like(p), p * log_p).sum(dim=1) / math.log(2)
