"""What a run reports beyond its scalars, as records for the windows (dashboard.panels): one
function each, computing a record's payload (JSON values) from a test pass, registered here.

- Before the first step: the training samples (`samples`) and the test images the gallery
  shows (`gallery`), once.
- After each test pass, the untrained model's at epoch 0 first: each kind of AT_TEST.
- After each trained epoch's test pass: each kind of AFTER_EPOCH as well.

A measure takes the pass (`Evaluation`) and returns the payload, or None: nothing to report for
this model. `measure` computes every payload of a pass once, `scalars` takes the compare
windows' numbers from them, and `report` hands them to the reporter's one generic call,
`Reporter.record(kind, step, x, payload)`."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from trainers import models
from trainers.reporting import (  # noqa: F401 - the kinds, named here as before
    CONFUSION, GALLERY, MISTAKES, PREDICTIONS, SAMPLES, TEST_ECE, TEST_WEAKEST, Reporter,
)

CALIBRATION_BINS = 10
STRONGEST_UNITS = 16  # a first layer's units drawn as templates when they are not the classes
FILTERS_SHOWN = 64  # a first convolution's kernels drawn, at most


@dataclass(frozen=True)
class Evaluation:
    """A pass over the test set, as the measures read it: its result (trainers.loop.EvalResult),
    the test set's uint8 images and labels, the data set's class names, the model, and the fixed
    sample of test images (their indices) whose predictions are reported."""

    result: Any
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    model: Any
    sample: torch.Tensor


def probabilities(probability: torch.Tensor) -> list[float]:
    """Probabilities as reported (4 decimals): what a window shows, live and in a replay."""
    return [round(float(p), 4) for p in probability]


def images(batch: torch.Tensor) -> dict[str, Any]:
    """uint8 images (N, C, H, W) as a payload's fields: their shape, and their bytes in base64."""
    raw = batch.to(torch.uint8).contiguous().cpu().numpy().tobytes()
    return {"shape": list(batch.shape), "images": base64.b64encode(raw).decode("ascii")}


def samples(batch: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]) -> dict[str, Any]:
    """Training images with their labels (the page's training samples)."""
    return {"classes": list(classes), "labels": labels.tolist(), **images(batch)}


def gallery(test: Evaluation) -> dict[str, Any]:
    """The sample of test images whose predictions are reported, with the class names."""
    return {"classes": list(test.classes), **images(test.images[test.sample])}


def predictions(test: Evaluation) -> dict[str, Any]:
    """Per image of the sample: the predicted class, its probability and the true class."""
    result, sample = test.result, test.sample
    return {"predicted": result.predicted[sample].tolist(), "probability": probabilities(result.probability[sample]),
            "true": test.labels[sample].tolist()}


def confusion(test: Evaluation) -> dict[str, Any]:
    """The confusion matrix (rows the true class, columns the predicted one) and the class names."""
    return {"matrix": test.result.confusion.tolist(), "classes": list(test.classes)}


def mistakes(test: Evaluation) -> dict[str, Any]:
    """The test images the model gets most confidently wrong (highest loss first): the predicted
    class and its probability, the true class and the probability given to it."""
    result = test.result
    worst = result.mistakes(test.labels)
    return {"predicted": result.predicted[worst].tolist(), "probability": probabilities(result.probability[worst]),
            "true": test.labels[worst].tolist(), "true_probability": probabilities(torch.exp(-result.image_loss[worst])),
            "classes": list(test.classes), **images(test.images[worst])}


def calibration(test: Evaluation) -> dict[str, Any]:
    """Per confidence bin (the predicted class's probability, in CALIBRATION_BINS equal bins of
    [0, 1]): [images, mean confidence, accuracy] (None for an empty bin's two means); and the
    expected calibration error, the images-weighted mean of |accuracy - mean confidence|."""
    result = test.result
    confidence = result.probability.double()
    correct = (result.predicted == test.labels.cpu()).double()
    index = (confidence * CALIBRATION_BINS).long().clamp(0, CALIBRATION_BINS - 1)
    count = torch.bincount(index, minlength=CALIBRATION_BINS)
    conf_sum = torch.bincount(index, weights=confidence, minlength=CALIBRATION_BINS)
    right = torch.bincount(index, weights=correct, minlength=CALIBRATION_BINS)
    bins, gap = [], 0.0
    for n, c, r in zip(count.tolist(), conf_sum.tolist(), right.tolist()):
        bins.append([n, c / n, r / n] if n else [0, None, None])
        gap += abs(r - c)  # n x |accuracy - mean confidence|
    return {"bins": bins, "ece": gap / max(int(count.sum()), 1)}


def class_accuracy(test: Evaluation) -> dict[str, Any]:
    """Per class, the share of its test images predicted right (None for a class with none)."""
    matrix = test.result.confusion  # (K, K): rows the true class
    right, shown = matrix.diagonal().tolist(), matrix.sum(dim=1).tolist()
    return {"classes": list(test.classes), "acc": [r / n if n else None for r, n in zip(right, shown)]}


def weight_tiles(weights: torch.Tensor, names: list[str]) -> dict[str, Any]:
    """(n, h, w) weights as a record's tiles (dashboard.panels.tiles): each scaled to its own
    largest magnitude and stored as int8 (base64), with that scale."""
    flat = weights.detach().float().cpu().reshape(weights.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12)
    data = (flat / scale[:, None] * 127).round().clamp(-127, 127).to(torch.int8)
    return {"names": names, "shape": list(weights.shape), "scale": scale.tolist(),
            "data": base64.b64encode(data.numpy().tobytes()).decode()}


def input_shape(inputs: int) -> tuple[int, int, int] | None:
    """The (C, H, W) of a square image of `inputs` values, grey or colour (None: not one)."""
    for channels in (1, 3):
        side = math.isqrt(inputs // channels)
        if side * side * channels == inputs:
            return channels, side, side
    return None


def first_layer(model: Any, kind: str) -> tuple[str, torch.Tensor, bool] | None:
    """(its name, its weight, whether it is the model's only layer) of the model's first weight
    layer when it is of `kind` ("linear", "conv2d"; see models.layers), else None."""
    found = models.layers(model)
    if not found or not found[0][0].startswith(kind):
        return None
    return found[0][0], found[0][1][0].detach(), len(found) == 1


def templates(test: Evaluation) -> dict[str, Any] | None:
    """A fully connected first layer's weights as images of the input (a colour input: the mean
    over its channels): one per class when that layer is the whole model (a softmax
    regression), else its STRONGEST_UNITS units of the largest weight norm. None for a model
    whose first layer is not fully connected."""
    model, classes = test.model, test.classes
    first = first_layer(model, "linear")
    if first is None:
        return None
    layer, weight, alone = first
    weight = weight.T if isinstance(model, models.SoftmaxRegression) else weight  # (units, inputs)
    shape = input_shape(weight.shape[1])
    if shape is None:
        return None
    per_class = alone and weight.shape[0] == len(classes)
    picked = torch.arange(weight.shape[0]) if per_class else \
        weight.float().norm(dim=1).cpu().argsort(descending=True, stable=True)[:STRONGEST_UNITS]
    drawn = weight[picked.to(weight.device)].reshape(len(picked), *shape).mean(dim=1)
    names = list(classes) if per_class else [f"unit {int(i)}" for i in picked]
    return {"layer": layer, "classes": per_class, **weight_tiles(drawn, names)}


def filters(test: Evaluation) -> dict[str, Any] | None:
    """A first convolution's kernels (its first FILTERS_SHOWN), each as an image (several input
    channels: their mean). None for a model whose first layer is not a convolution."""
    first = first_layer(test.model, "conv2d")
    if first is None:
        return None
    layer, weight, _ = first
    kernels = weight[:FILTERS_SHOWN].mean(dim=1)  # (out, in, kh, kw) -> (out, kh, kw)
    return {"layer": layer, **weight_tiles(kernels, [str(i + 1) for i in range(kernels.shape[0])])}


Measure = Callable[[Evaluation], "dict[str, Any] | None"]
AT_TEST: tuple[tuple[str, Measure], ...] = (
    ("calibration", calibration),
    ("class_accuracy", class_accuracy),
    ("templates", templates),
    ("filters", filters),
)
AFTER_EPOCH: tuple[tuple[str, Measure], ...] = (
    (PREDICTIONS, predictions),
    (CONFUSION, confusion),
    (MISTAKES, mistakes),
)


def measure(test: Evaluation, trained: bool = True) -> dict[str, dict[str, Any]]:
    """Every kind of AT_TEST for a test pass, and of AFTER_EPOCH when `trained`: {kind: payload},
    in their order, the kinds that do not apply to the model left out."""
    found = {kind: take(test) for kind, take in AT_TEST + (AFTER_EPOCH if trained else ())}
    return {kind: payload for kind, payload in found.items() if payload is not None}


def scalars(found: Mapping[str, dict[str, Any]]) -> dict[str, float]:
    """The numbers the compare windows and the runs table take from a pass's records (`measure`):
    the weakest class's accuracy and the expected calibration error."""
    out = {TEST_ECE: found["calibration"]["ece"]}
    scored = [acc for acc in found["class_accuracy"]["acc"] if acc is not None]
    if scored:
        out[TEST_WEAKEST] = min(scored)
    return out


def report(reporter: Reporter, step: int, x: float, found: Mapping[str, dict[str, Any]]) -> None:
    """Report a test pass's records (`measure`) at x."""
    for kind, payload in found.items():
        reporter.record(kind, step, x, payload)
