"""What a run measures for the windows that are one module each (dashboard.panels): after each
test pass (the untrained model's at epoch 0 first), one record per kind, its payload computed
here by one function each, registered in AT_TEST. Each takes the pass's result, the test labels,
the data set's class names and the model, and returns JSON values (or None: nothing to report
for this model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainers.reporting import Reporter

CALIBRATION_BINS = 10


def calibration(result: Any, labels: torch.Tensor, classes: tuple[str, ...], model: Any) -> dict[str, Any]:
    """Per confidence bin (the predicted class's probability, in CALIBRATION_BINS equal bins of
    [0, 1]): [images, mean confidence, accuracy] (None for an empty bin's two means); and the
    expected calibration error, the images-weighted mean of |accuracy - mean confidence|."""
    confidence = result.probability.double()
    correct = (result.predicted == labels.cpu()).double()
    index = (confidence * CALIBRATION_BINS).long().clamp(0, CALIBRATION_BINS - 1)
    count = torch.bincount(index, minlength=CALIBRATION_BINS)
    conf_sum = torch.bincount(index, weights=confidence, minlength=CALIBRATION_BINS)
    right = torch.bincount(index, weights=correct, minlength=CALIBRATION_BINS)
    bins, gap = [], 0.0
    for n, c, r in zip(count.tolist(), conf_sum.tolist(), right.tolist()):
        bins.append([n, c / n, r / n] if n else [0, None, None])
        gap += abs(r - c)  # n x |accuracy - mean confidence|
    return {"bins": bins, "ece": gap / max(int(count.sum()), 1)}


def class_accuracy(result: Any, labels: torch.Tensor, classes: tuple[str, ...], model: Any) -> dict[str, Any]:
    """Per class, the share of its test images predicted right (None for a class with none)."""
    confusion = result.confusion  # (K, K): rows the true class
    right, images = confusion.diagonal().tolist(), confusion.sum(dim=1).tolist()
    return {"classes": list(classes), "acc": [r / n if n else None for r, n in zip(right, images)]}


Measure = Callable[[Any, torch.Tensor, tuple[str, ...], Any], "dict[str, Any] | None"]
AT_TEST: tuple[tuple[str, Measure], ...] = (
    ("calibration", calibration),
    ("class_accuracy", class_accuracy),
)


def report(reporter: Reporter, step: int, x: float, result: Any, labels: torch.Tensor, classes: tuple[str, ...],
           model: Any) -> None:
    """Report every kind of AT_TEST for a test pass (`result`, a trainers.loop.EvalResult) at x."""
    for kind, measure in AT_TEST:
        payload = measure(result, labels, classes, model)
        if payload is not None:
            reporter.record(kind, step, x, payload)
