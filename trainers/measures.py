"""What a run measures for the windows that are one module each (dashboard.panels): after each
test pass (the untrained model's at epoch 0 first), one record per kind, its payload computed
here by one function each, registered in AT_TEST. Each takes the pass's result, the test labels
and the model, and returns JSON values (or None: nothing to report for this model)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainers.reporting import Reporter

AT_TEST: tuple[tuple[str, Callable[[Any, torch.Tensor, Any], dict[str, Any] | None]], ...] = (
)


def report(reporter: Reporter, step: int, x: float, result: Any, labels: torch.Tensor, model: Any) -> None:
    """Report every kind of AT_TEST for a test pass (`result`, a trainers.loop.EvalResult) at x."""
    for kind, measure in AT_TEST:
        payload = measure(result, labels, model)
        if payload is not None:
            reporter.record(kind, step, x, payload)
