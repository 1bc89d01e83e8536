"""The default MLP and CNN reach the published Fashion-MNIST anchors on this CPU (about 2.5 min)."""

from __future__ import annotations

import pytest

from trainers import data
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.reporting import Recorder

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model, epochs, floor", [
    ("mlp", 15, 0.885),  # published "MLP 256-128-100": 0.8833
    # published small two-conv nets: 0.876 to 0.925; the recipe's mean over 3 seeds is
    # benchmarks/cnn_recipe's to measure (issue 29: >= 0.925, each seed >= 0.922)
    ("cnn", 10, 0.92),
])
def test_default_model_reaches_published_accuracy(model: str, epochs: int, floor: float) -> None:
    result = fit(RunConfig(model, epochs=epochs), Recorder(), dataset=data.load("fashion-mnist"))
    assert result.status == "finished"
    assert result.test_acc is not None and result.test_acc >= floor, [
        round(h["test/acc"], 4) for h in result.history]
