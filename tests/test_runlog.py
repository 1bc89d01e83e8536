"""Run logs: what a real run reported is what the log holds; a file cut mid-line loses nothing complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dashboard import runlog
from trainers import data
from trainers.config import RunConfig
from trainers.loop import fit
from trainers.reporting import TEST_ACC, TRAIN_LOSS, Recorder


class Both:
    """Sends every call to a Recorder and a RunLog."""

    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: [getattr(t, name)(*args, **kwargs) for t in self.targets]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recorder, Path]:
    run_dir = tmp_path_factory.mktemp("run")
    rec, log = Recorder(), runlog.RunLog(run_dir)
    fit(RunConfig("mlp", epochs=2, limit=1000, batch_size=100), Both(rec, log),
        dataset=data.load("fashion-mnist"))
    log.close()
    return rec, run_dir


def test_log_holds_exactly_what_the_run_reported(logged_run: tuple[Recorder, Path]) -> None:
    rec, run_dir = logged_run
    back = runlog.read(run_dir)
    assert back.skipped == 0 and back.status == "finished"
    assert back.config == rec.config_values
    assert [(r["step"], r["x"]) for r in back.scalars] == [(s, x) for s, x, _ in rec.rows]
    for name in (TRAIN_LOSS, TEST_ACC):
        assert back.series(name)[1] == rec.series(name)  # floats survive JSON exactly
    kinds = {kind for kind, *_ in rec.records}
    assert set(back.other) == kinds >= {"samples", "gallery", "predictions", "confusion", "mistakes", "calibration"}
    for kind in kinds:  # every record as reported, its step and x with it
        assert [{k: v for k, v in r.items() if k not in ("kind", "time")} for r in back.other[kind]] == rec.of(kind)
    assert back.gallery is not None and back.gallery.shape == (500, 1, 28, 28) and back.classes[0] == "T-shirt/top"
    assert back.format == runlog.LOG_FORMAT and len(back.predictions) == len(back.confusions) == 2


def test_gallery_images_are_stored_once(logged_run: tuple[Recorder, Path]) -> None:
    _, run_dir = logged_run
    kinds = [json.loads(line)["kind"] for line in (run_dir / runlog.LOG_NAME).read_text().splitlines()]
    assert kinds.count("gallery") == 1 and kinds.count("predictions") == 2


def test_every_line_is_strict_json_with_nan_as_null(tmp_path: Path) -> None:
    log = runlog.RunLog(tmp_path)
    log.scalars(1, 0.5, {"train/loss": float("nan"), "train/acc": float("inf"), "train/lr": 0.1})
    log.close()
    line = (tmp_path / runlog.LOG_NAME).read_text().strip()
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert record["train/loss"] is None and record["train/acc"] is None and record["train/lr"] == 0.1


def test_log_cut_mid_line_keeps_every_complete_record(logged_run: tuple[Recorder, Path], tmp_path: Path) -> None:
    _, run_dir = logged_run
    whole = (run_dir / runlog.LOG_NAME).read_bytes()
    ends = [i + 1 for i, b in enumerate(whole) if b == ord("\n")]
    for cut in (ends[10] - 1, ends[10] + 7, ends[-2] + 40, len(whole) - 1):
        partial = tmp_path / f"cut{cut}.jsonl"
        partial.write_bytes(whole[:cut])
        back = runlog.read(partial)
        # a record is complete once its closing brace is written, newline or not
        complete = sum(1 for end in ends if end - 1 <= cut)
        cut_inside_a_line = all(not (end - 1 <= cut < end) for end in ends) and cut not in ends
        records = (len(back.scalars) + len(back.states) + len(back.controls) + (1 if back.config else 0)
                   + sum(map(len, back.other.values())))
        assert records == complete
        assert back.skipped == (1 if cut_inside_a_line else 0)


def test_appending_to_an_existing_log_keeps_what_was_there(tmp_path: Path) -> None:
    first = runlog.RunLog(tmp_path)
    first.status("running")
    first.close()
    second = runlog.RunLog(tmp_path)
    second.status("finished")
    second.close()
    assert [s["state"] for s in runlog.read(tmp_path).states] == ["running", "finished"]
