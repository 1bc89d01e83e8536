"""Marks where a run was changed while it trained: the math, and the traces a run's backend draws."""

from __future__ import annotations

from typing import Any

from dashboard import markers, windows
from dashboard.visdom_backend import VisdomBackend
from trainers.control import CONTROL
from trainers.reporting import TEST_ACC, TRAIN_LOSS


class QuietSender:
    """Takes a backend's registrations and marks, sends nothing (trace_data is read directly)."""

    def __init__(self) -> None:
        self.marked: list[str] = []

    def register(self, key: str, send: Any, changed: bool = True) -> None:
        pass

    def add_check(self, check: Any) -> None:
        pass

    def mark(self, key: str) -> None:
        self.marked.append(key)


def test_y_at_follows_the_curve_between_its_points_and_holds_at_its_ends() -> None:
    xs, ys = [0.0, 1.0, 2.0], [1.0, 3.0, 2.0]
    assert markers.y_at(xs, ys, 0.5) == 2.0
    assert markers.y_at(xs, ys, 1.0) == 3.0
    assert markers.y_at(xs, ys, -1.0) == 1.0
    assert markers.y_at(xs, ys, 5.0) == 2.0


def test_describe_says_each_setting_from_what_it_was_to_what_it_became() -> None:
    assert markers.describe({"lr": 0.1, "momentum": 0.0}, {"lr": 0.5}) == "lr 0.1 → 0.5"
    assert markers.describe({}, {"weight_decay": 1e-4}) == "weight decay ? → 0.0001"


def test_an_applied_change_is_a_mark_on_the_runs_first_part_curves_only() -> None:
    sender = QuietSender()
    backend = VisdomBackend(sender, windows.DrawOptions("env", smoothing=0.0), "mlp<1>")  # type: ignore[arg-type]
    backend.config({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0})
    for step in range(1, 11):
        backend.scalars(step, step / 10, {TRAIN_LOSS: float(step)})
    backend.scalars(10, 1.0, {TEST_ACC: 0.8})
    backend.record(CONTROL, 4, 0.4, {"id": "a", "action": "set", "values": {"lr": 0.5}, "applied": True})
    backend.record(CONTROL, 5, 0.5, {"id": "b", "action": "set", "values": {"lr": -1}, "applied": False,
                                     "reason": "no"})
    backend.record(CONTROL, 6, 0.6, {"id": "c", "action": "pause", "values": {}, "applied": True})
    backend.record(CONTROL, 7, 0.7, {"id": "d", "action": "set", "values": {"lr": 0.2, "momentum": 0.5},
                                     "applied": True})
    loss = backend.trace_data(TRAIN_LOSS)
    marks = [t for t in loss if t["mode"] == "markers"]
    assert [(t["x"], t["y"]) for t in marks] == [([0.4], [4.0]), ([0.7], [7.0])]
    assert marks[0]["name"] == "mlp&lt;1&gt;: lr 0.1 → 0.5 at epoch 0.4"
    assert marks[1]["name"] == "mlp&lt;1&gt;: lr 0.5 → 0.2, momentum 0.9 → 0.5 at epoch 0.7"
    assert not any(t["showlegend"] for t in marks)
    # the test accuracy (one point, at x 1.0): the marks sit on it; the dotted train part has none
    assert [t["y"] for t in backend.trace_data(TEST_ACC) if t["mode"] == "markers"] == [[0.8], [0.8]]
    part = next(w for w in windows.COMPARE_WINDOWS if w.part)
    backend.scalars(10, 1.0, {part.metric: 0.5})
    assert not [t for t in backend.trace_data(part.metric) if t["mode"] == "markers"]
    assert sender.marked.count(backend._traces_key) >= 2
