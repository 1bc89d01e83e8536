"""Windows that are one module each (dashboard.panels): the numbers their trainer side computes,
against a hand computation, and the window each draws from its records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dashboard import panels
from dashboard.panels import calibration as calibration_panel
from dashboard.panels import class_accuracy as class_accuracy_panel
from dashboard.panels import filters as filters_panel
from dashboard.panels import templates as templates_panel
from dashboard.panels import tiles
from trainers.measures import Evaluation, calibration, class_accuracy, filters, scalars, templates
from trainers.reporting import TEST_ECE, TEST_WEAKEST



def passed(result=None, labels=None, classes=(), model=None) -> Evaluation:
    """A test pass as the measures read it, with what a test gives."""
    return Evaluation(result, torch.zeros(0, 1, 28, 28, dtype=torch.uint8), labels if labels is not None else torch.tensor([]),
                    classes, model, torch.tensor([], dtype=torch.long))

def test_calibration_bins_and_ece_by_hand() -> None:
    # confidence 0.95 and 0.91 (bin 0.9-1.0, one right), 0.85 and 0.81 (bin 0.8-0.9, both right),
    # 0.55 (wrong), 0.31 (right), and a confidence of exactly 1 (the last bin, right)
    result = SimpleNamespace(probability=torch.tensor([0.95, 0.91, 0.85, 0.81, 0.55, 0.31, 1.0]),
                             predicted=torch.tensor([1, 2, 3, 4, 5, 6, 7]))
    labels = torch.tensor([1, 0, 3, 4, 0, 6, 7])
    measured = calibration(passed(result, labels, tuple("abcdefgh")))
    bins = measured["bins"]
    assert [n for n, _, _ in bins] == [0, 0, 0, 1, 0, 1, 0, 0, 2, 3]
    assert bins[9][1] == pytest.approx((0.95 + 0.91 + 1.0) / 3) and bins[9][2] == pytest.approx(2 / 3)
    assert bins[8][1:] == pytest.approx([0.83, 1.0]) and bins[5][1:] == pytest.approx([0.55, 0.0])
    assert bins[3][1:] == pytest.approx([0.31, 1.0]) and bins[0] == [0, None, None]
    by_hand = (3 * abs(2 / 3 - 2.86 / 3) + 2 * abs(1 - 0.83) + abs(0 - 0.55) + abs(1 - 0.31)) / 7
    assert measured["ece"] == pytest.approx(by_hand)


def test_the_calibration_window_draws_the_latest_records_bins() -> None:
    bins = [[0, None, None]] * 8 + [[2, 0.83, 1.0], [3, 0.9533, 0.6667]]
    records = [{"step": 0, "x": 0.0, "bins": [[10, 0.1, 0.1]] + [[0, None, None]] * 9, "ece": 0.0},
               {"step": 8, "x": 1.0, "bins": bins, "ece": 0.1234}]
    message = calibration_panel.draw("env", "win", "mlp", records)
    bars, points, diagonal = message["data"]
    assert bars["y"] == [None] * 8 + [1.0, 0.6667] and bars["x"][9] == pytest.approx(0.95)
    assert (points["x"], points["y"]) == ([0.83, 0.9533], [1.0, 0.6667])  # the bins that hold images
    assert (diagonal["x"], diagonal["y"]) == ([0, 1], [0, 1])
    assert message["opts"]["title"] == "mlp: calibration, epoch 1 (ECE 0.123)" and message["win"] == "win"


def test_every_panel_has_a_kind_of_its_own_and_a_waiting_window() -> None:
    assert len(panels.BY_KIND) == len(panels.PANELS)
    names = [message["win"] for message in panels.run_placeholders("env", "mlp")]
    assert len(names) == len(set(names)) and all(panel.win("mlp") in names for panel in panels.PANELS)


def test_class_accuracy_is_each_rows_diagonal_share() -> None:
    confusion = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])  # rows the true class; class c has no image
    measured = class_accuracy(passed(SimpleNamespace(confusion=confusion), classes=("a", "<b>", "c")))
    assert measured == {"classes": ["a", "<b>", "c"], "acc": [0.8, 0.75, None]}


def test_a_passes_scalars_are_its_weakest_class_and_its_ece() -> None:
    # the weakest class is b (3 of 4 right; c has no image), the ECE that of calibration's bins
    confusion = torch.tensor([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    result = SimpleNamespace(confusion=confusion, probability=torch.tensor([0.9, 0.6]), predicted=torch.tensor([0, 1]))
    test = passed(result, torch.tensor([0, 0]), ("a", "b", "c"))
    measured = scalars({"calibration": calibration(test), "class_accuracy": class_accuracy(test)})
    assert measured == {TEST_WEAKEST: 0.75, TEST_ECE: pytest.approx((abs(1 - 0.9) + abs(0 - 0.6)) / 2)}


def test_the_class_accuracy_window_has_a_trace_per_class_from_epoch_0_and_names_the_weakest() -> None:
    records = [{"step": 0, "x": 0.0, "classes": ["T恤", "<b>Shirt</b>"], "acc": [0.1, 0.0]},
               {"step": 8, "x": 1.0, "classes": ["T恤", "<b>Shirt</b>"], "acc": [0.9, 0.6]}]
    message = class_accuracy_panel.draw("env", "win", "mlp", records)
    first, shirt = message["data"]
    assert (first["name"], first["x"], first["y"]) == ("T恤", [0.0, 1.0], [0.1, 0.9])
    assert (shirt["name"], shirt["y"]) == ("&lt;b&gt;Shirt&lt;/b&gt;", [0.0, 0.6])  # escaped: a class name is data
    assert shirt["line"]["width"] > first["line"]["width"]
    assert message["opts"]["title"] == "mlp: test accuracy per class; weakest after epoch 1: <b>Shirt</b> 0.600"


def test_the_softmax_templates_are_ws_columns_as_images() -> None:
    from trainers.models import SoftmaxRegression

    model = SoftmaxRegression(784, 3)
    model.W = torch.randn(784, 3)
    measured = templates(passed(classes=("a", "b", "c"), model=model))
    assert measured["classes"] is True and measured["names"] == ["a", "b", "c"] and measured["shape"] == [3, 28, 28]
    for k, tile in enumerate(tiles.decode(measured)):
        column = model.W[:, k].reshape(28, 28)
        assert measured["scale"][k] == pytest.approx(float(column.abs().max()))
        assert torch.tensor(tile) * measured["scale"][k] == pytest.approx(column, abs=measured["scale"][k] / 127)


def test_an_mlps_templates_are_its_strongest_first_layer_units_and_a_cnn_has_none() -> None:
    from trainers import models

    mlp = models.build("mlp", (1, 28, 28), 10, {})
    weight = models.layers(mlp)[0][1][0]
    with torch.no_grad():
        weight[7] *= 50  # the strongest unit by far
    measured = templates(passed(classes=tuple("abcdefghij"), model=mlp))
    assert measured["classes"] is False and measured["shape"] == [16, 28, 28] and measured["names"][0] == "unit 7"
    assert templates(passed(classes=tuple("abcdefghij"), model=models.build("cnn", (1, 28, 28), 10, {}))) is None
    colour = templates(passed(classes=tuple("abcdefghij"), model=models.build("softmax-nn", (3, 32, 32), 10, {})))
    assert colour["shape"] == [10, 32, 32]  # a colour input: the mean over its channels


def test_the_templates_window_tiles_each_image_under_its_name() -> None:
    from trainers.models import SoftmaxRegression

    model = SoftmaxRegression(784, 3)
    record = {"step": 5, "x": 1.0, **templates(passed(classes=("<i>a</i>", "b", "c"), model=model))}
    message = templates_panel.PANEL.draw("env", "win", "softmax", [record])
    (heat,) = message["data"]
    z = heat["z"]
    assert [a["text"] for a in message["layout"]["annotations"]] == ["&lt;i&gt;a&lt;/i&gt;", "b", "c"]
    first = tiles.decode(record)[0]
    assert [row[0:28] for row in z[tiles.GAP:tiles.GAP + 28]] == first  # the first tile, under its name
    assert message["opts"]["title"] == "softmax: weight templates (each class's weights), epoch 1"


def test_the_filters_are_the_first_convolutions_kernels_and_an_mlp_has_none() -> None:
    from trainers import models

    lenet = models.build("lenet", (1, 28, 28), 10, {})
    kernels = models.layers(lenet)[0][1][0]  # (6, 1, 5, 5)
    measured = filters(passed(classes=tuple("abcdefghij"), model=lenet))
    assert measured["layer"] == "conv2d1" and measured["shape"] == [6, 5, 5] and measured["names"][0] == "1"
    for k, tile in enumerate(tiles.decode(measured)):
        assert torch.tensor(tile) * measured["scale"][k] == pytest.approx(kernels[k, 0].detach(),
                                                                          abs=measured["scale"][k] / 127)
    assert filters(passed(classes=tuple("abcdefghij"), model=models.build("mlp", (1, 28, 28), 10, {}))) is None
    message = filters_panel.PANEL.draw("env", "win", "lenet", [{"step": 0, "x": 0.0, **measured}])
    assert message["opts"]["title"] == "lenet: first-layer filters (conv2d1: 6 of 5x5), epoch 0"
    assert len(message["layout"]["annotations"]) == 6
