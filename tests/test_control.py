"""Requests to a training run, taken between two batches (trainers.control, trainers.steering):
a stop inside an epoch leaves a checkpoint that resumes exactly; a pause logs nothing and changes
nothing; a set changes the lr (momentum, weight decay) from the next batch, and the checkpoint
carries it; a bad request is refused with why; a request seen twice is applied once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers import data
from trainers.checkpoints import CHECKPOINT
from trainers.config import RunConfig
from trainers.control import CONTROL, Request
from trainers.loop import fit
from trainers.reporting import LR, TRAIN_LOSS, Recorder, RunState


class Scripted:
    """An inbox that hands out requests after given batches (`after[n]`: after the n-th batch of
    this process), and, while the run is paused, one of `while_paused` per wait (None: nothing
    came in that wait)."""

    def __init__(self, after: dict[int, list[Request]], while_paused: list[Request | None] = ()) -> None:
        self.after = after
        self.while_paused = list(while_paused)
        self.calls = 0

    def poll(self) -> list[Request]:
        self.calls += 1
        return self.after.get(self.calls, [])

    def wait(self, timeout: float) -> list[Request]:
        item = self.while_paused.pop(0) if self.while_paused else None
        return [item] if item is not None else []


@pytest.fixture(scope="module")
def fashion() -> data.Dataset:
    return data.load("fashion-mnist")


# dropout on, so that torch's random state matters; 1,000 images in batches of 128: 8 a epoch
CONFIG = RunConfig("mlp", epochs=3, limit=1000, seed=4, threads=1)


def losses(recorder: Recorder) -> list[tuple[int, float]]:
    return [(step, values[TRAIN_LOSS]) for step, _, values in recorder.rows if TRAIN_LOSS in values]


def controls(recorder: Recorder) -> list[dict]:
    return [payload for kind, _, _, payload in recorder.records if kind == CONTROL]


def test_a_stop_inside_an_epoch_resumes_exactly(fashion: data.Dataset, tmp_path: Path) -> None:
    whole = Recorder()
    fit(CONFIG, whole, tmp_path / "whole", dataset=fashion)
    first = Recorder()
    result = fit(CONFIG, first, tmp_path / "run", dataset=fashion,
                 inbox=Scripted({11: [Request("r1", "stop", source="page")]}))
    assert result.status == RunState.INTERRUPTED
    assert result.reason == "stopped from the page; its checkpoint at epoch 1.38 is kept"  # 11 batches: 1 + 384/1000
    assert (tmp_path / "run" / CHECKPOINT).is_file() and losses(first)[-1][0] == 11
    assert controls(first) == [{"id": "r1", "action": "stop", "values": {}, "source": "page", "applied": True}]
    rest = Recorder()
    resumed = fit(CONFIG, rest, tmp_path / "run", resume=True, dataset=fashion)
    assert resumed.status == RunState.FINISHED
    assert losses(first) + losses(rest) == losses(whole)  # bit for bit, dropout and batch order alike
    assert resumed.history == fit(CONFIG, Recorder(), dataset=fashion).history


def test_a_pause_logs_nothing_and_changes_nothing(fashion: data.Dataset) -> None:
    plain = Recorder()
    fit(CONFIG, plain, dataset=fashion)
    paused = Recorder()
    inbox = Scripted({5: [Request("p", "pause", source="page")]},
                     while_paused=[None, None, Request("r", "resume", source="page")])  # two waits, then resume
    result = fit(CONFIG, paused, dataset=fashion, inbox=inbox)
    assert result.status == RunState.FINISHED
    assert losses(paused) == losses(plain)  # the same batches, the same numbers
    assert [s for s in paused.states if s[0] in ("paused", "running")] == [
        ("running", ""), ("paused", "paused (page)"), ("running", "")]
    steps = [step for kind, step, _, _ in paused.records]
    assert steps == [5, 5]  # paused after batch 5, resumed there: no batch logged between


def test_set_changes_the_lr_from_the_next_batch_and_the_checkpoint_keeps_it(fashion: data.Dataset,
                                                                            tmp_path: Path) -> None:
    config = RunConfig("mlp", epochs=3, limit=1000, seed=4, threads=1, schedule="constant")
    first = Recorder()
    fit(config, first, tmp_path / "run", dataset=fashion,
        inbox=Scripted({3: [Request("s", "set", {"lr": 0.005}, "command line")],
                        12: [Request("t", "stop", source="command line")]}))
    lrs = [values[LR] for _, _, values in first.rows if LR in values]
    assert lrs[:3] == [1e-3] * 3 and set(lrs[3:]) == {0.005}  # batches 1-3 at 1e-3, then 0.005
    assert first.states[-1] == ("interrupted", "stopped by `livetrain control`; its checkpoint at epoch 1.51 is kept")
    rest = Recorder()
    fit(config, rest, tmp_path / "run", resume=True, dataset=fashion)
    assert {values[LR] for _, _, values in rest.rows if LR in values} == {0.005}  # carried by the checkpoint


def test_bad_requests_are_refused_with_why_and_a_second_delivery_is_applied_once(fashion: data.Dataset) -> None:
    recorder = Recorder()
    bad = [Request("a", "set", {"lr": -1.0}, "page"), Request("b", "set", {"momentum": 0.5}, "page"),
           Request("c", "resume", source="page"), Request("d", "set", {"epochs": 3.0}, "page"),
           Request("e", "set", {"lr": 0.002}, "page")]
    fit(RunConfig("mlp", epochs=1, limit=1000, threads=1, schedule="constant"), recorder, dataset=fashion,
        inbox=Scripted({2: bad, 4: [Request("e", "set", {"lr": 0.002}, "page")]}))
    said = {c["id"]: (c["applied"], c.get("reason", "")) for c in controls(recorder)}
    assert said == {
        "a": (False, "learning rate must be a positive number, not -1.0"),
        "b": (False, "momentum is SGD's setting, and this run trains with adam"),
        "c": (False, "the run is not paused"),
        "d": (False, "epochs cannot change while a run trains; lr, momentum, weight_decay can"),
        "e": (True, ""),
    }
    assert len(controls(recorder)) == 5  # "e" again after batch 4: not applied twice
    assert torch.tensor([v[LR] for _, _, v in recorder.rows if LR in v][2:]).eq(0.002).all()
