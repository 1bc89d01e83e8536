"""The dashboard's parts on their own: bounded series, PNGs and escaped HTML, the sender's
coalescing, backoff and redraw, the terminal line, and the headless adapter."""

from __future__ import annotations

import io
import json
import math
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy
import pandas
import pytest
import torch
from PIL import Image

from dashboard import legend, panes, runlog, windows
from dashboard.adapter import Dashboard
from dashboard.connection import Unreachable
from dashboard.downsample import Ema, MinMaxSeries
from dashboard.replay import ReplayError, find_runs
from dashboard.sender import Sender
from dashboard.terminal import TerminalView, columns, cut, fitting, line
from trainers.reporting import SAMPLES_PER_S, TEST_ACC, TRAIN_ACC, TRAIN_LOSS

EVIL = '<script>alert("x")</script>&'


def test_short_series_are_drawn_exactly() -> None:
    s = MinMaxSeries(max_points=100)
    for i in range(80):
        s.add(i / 10, math.sin(i))
    assert s.points() == ([i / 10 for i in range(80)], [math.sin(i) for i in range(80)])


def test_long_series_stay_bounded_and_keep_every_buckets_extremes() -> None:
    gen = torch.Generator().manual_seed(0)
    ys = torch.randn(50_000, generator=gen).tolist()
    ys[31_337] = 99.0  # a spike must stay visible
    s = MinMaxSeries(max_points=1000)
    for i, y in enumerate(ys):
        s.add(float(i), y)
    xs_drawn, ys_drawn = s.points()
    assert len(xs_drawn) <= 1002 and s.size == 128  # 50,000 / 128 = 391 buckets of the 500 allowed
    assert 99.0 in ys_drawn and max(ys_drawn) == max(ys) and min(ys_drawn) == min(ys)
    assert xs_drawn == sorted(xs_drawn)
    # every bucket of `size` raw points is drawn as exactly its lowest and highest point
    drawn = dict(zip(xs_drawn, ys_drawn))
    for start in range(0, len(ys), s.size):
        chunk = ys[start:start + s.size]
        low, high = start + chunk.index(min(chunk)), start + chunk.index(max(chunk))
        assert drawn[float(low)] == min(chunk) and drawn[float(high)] == max(chunk)
    assert len(drawn) == len(xs_drawn) == 2 * math.ceil(len(ys) / s.size)


def test_the_points_kept_as_buckets_complete_match_the_buckets_after_every_add() -> None:
    """`points` keeps the complete buckets' points as it goes (redone when buckets merge): at every
    moment, across merges and with a bucket half filled, they are exactly the buckets' extremes."""
    ys = torch.randn(3000, generator=torch.Generator().manual_seed(1)).tolist()
    s = MinMaxSeries(max_points=40)
    for i, y in enumerate(ys):
        s.add(i / 7, y)
        expected: tuple[list[float], list[float]] = ([], [])
        for low, high in s.buckets + ([s.partial] if s.partial is not None else []):
            for point in sorted({low, high}):
                expected[0].append(point[0])
                expected[1].append(point[1])
        assert s.points() == expected, i
    assert s.size >= 128  # many merges happened


def test_non_finite_values_are_not_drawn() -> None:
    s = MinMaxSeries()
    for x, y in enumerate([1.0, math.nan, 2.0, math.inf]):
        s.add(float(x), y)
    assert s.points() == ([0.0, 2.0], [1.0, 2.0])


def test_ema_matches_bias_corrected_formula() -> None:
    ema = Ema(0.9)
    values = [ema.add(y) for y in [1.0, 2.0, 3.0]]
    raw = [0.1, 0.1 * 0.9 + 0.2, (0.1 * 0.9 + 0.2) * 0.9 + 0.3]
    assert values == pytest.approx([r / (1 - 0.9 ** (i + 1)) for i, r in enumerate(raw)])
    assert values[0] == pytest.approx(1.0)  # no pull towards zero at the start


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_png_round_trips(shape: tuple[int, int, int]) -> None:
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    encoded = panes.png(image)
    decoded = torch.from_numpy(numpy.array(Image.open(io.BytesIO(encoded)))).reshape(shape[1], shape[2], -1)
    assert torch.equal(decoded.permute(2, 0, 1), image)


def test_gallery_marks_right_and_wrong_and_escapes_class_names() -> None:
    uris = panes.data_uris(torch.zeros(3, 1, 4, 4, dtype=torch.uint8))
    classes = ["cat", EVIL, "dog"]
    text = panes.gallery_html(uris, [0, 1, 2], [0.9, 0.5, 0.25], [0, 2, 2], classes, 3.0)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert text.count(panes.RIGHT) >= 2 and panes.WRONG in text  # image 1 is wrong
    assert "2 of 3</b> right" in text and "90%" in text and "true: dog" in text
    assert text.count("data:image/png;base64,") == 3


def test_disagreement_lists_the_images_the_runs_answer_differently() -> None:
    uris = panes.data_uris(torch.zeros(5, 1, 2, 2, dtype=torch.uint8))
    true = [0, 1, 2, 0, 1]
    runs = [panes.RunPredictions("a", 0, 2.0, [0, 1, 2, 1, 2]),
            panes.RunPredictions(EVIL, 1, 2.0, [0, 2, 2, 2, 0])]
    text = panes.disagreement_html(uris, true, ["zero", "one", "two"], runs)
    assert "disagree on <b>3 of 5</b>" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert text.count("<figure") == 3
    # image 1 (run a right) comes before image 4 (both wrong)
    assert text.index("true: one") < text.rindex("true: one")
    assert "Waiting" in panes.disagreement_html(uris, true, ["zero", "one", "two"], runs[:1])


def test_disagreement_among_many_runs_lists_groups_then_the_best_and_worst() -> None:
    """Past 8 runs an image's caption lists a seed group's most common answer, once; past 8 such
    answers, the 4 best and the 4 worst on the sample. Up to 8 runs, each run's, as before."""
    true = [0, 1, 2, 0]
    few = [panes.RunPredictions(f"r{i}", i, 1.0, [0, 1, 2, i % 3]) for i in range(8)]
    assert panes.compared(few, true) == (few, "")
    grouped = [panes.RunPredictions(f"lr{g}-seed{s}", g, 1.0 + s, [g % 3, 1, 2, [0, 1, 0][s]], (f"lr{g} (3 seeds)", g))
               for g in range(3) for s in range(3)]
    shown, said = panes.compared(grouped, true)
    assert [(u.label, u.colour_index, u.x, u.predicted) for u in shown] == [
        (f"lr{g} (3 seeds)", g, 1.0, [g % 3, 1, 2, 0]) for g in range(3)]  # 2 of 3 seeds say 0 for image 3
    assert said == "9 runs, each of their 3 seed groups as one (its runs' most common answer)"
    alone = [panes.RunPredictions(f"r{i}", i, 1.0, [0, 1, 2, 0][:i % 5] + [3] * (4 - i % 5)) for i in range(12)]
    shown, said = panes.compared(alone, true)  # r_i is right on i % 5 of the 4 images
    assert [u.label for u in shown] == ["r4", "r9", "r3", "r8", "r11", "r0", "r5", "r10"]
    assert said == "12 runs: the 4 best and the 4 worst on these images"
    uris = panes.data_uris(torch.zeros(4, 1, 2, 2, dtype=torch.uint8))
    text = panes.disagreement_html(uris, true, ["zero", "one", "two", "three"], alone)
    assert said in text and "r2" not in text and text.count("&#9632;") == 8 + 8 * text.count("<figure")


def test_a_legend_above_the_plot_while_it_takes_three_rows_then_a_line_instead() -> None:
    assert legend.rows(["softmax", "mlp", "cnn"]) == 1
    assert legend.rows([f"mlp-lr0.0{i} (3 seeds)" for i in range(4)]) == 2  # two to a row
    eight = [f"softmax-nn-lr0.00{i} (8 seeds)" for i in range(8)]
    assert legend.rows(eight) == 8  # one to a row: the plot would keep a third of its window
    shown = legend.message("env", "win", ["softmax", "mlp", "cnn"])
    assert shown == {"eid": "env", "win": "win", "layout": {"showlegend": True, "annotations": []}}
    hidden = legend.message("env", "win", eight)["layout"]
    assert hidden["showlegend"] is False and hidden["annotations"][0]["text"] == "hover for names; colours: Runs table"


def test_a_launch_of_64_runs_or_groups_has_64_colours() -> None:
    assert len({windows.colour(i) for i in range(64)}) == 64
    assert [windows.colour(i) for i in range(10)] == list(windows.PALETTE)  # tab10 first


def test_runs_pane_escapes_labels_config_and_reasons() -> None:
    run = panes.RunSummary(EVIL, config={"model": EVIL, "epochs": 3, "lr": 0.1}, status="failed", reason=EVIL,
                           x=1.5, latest={TRAIN_LOSS: 0.5, TEST_ACC: 0.8})
    text = panes.runs_html([run])
    assert "<script>" not in text and text.count("&lt;script&gt;") == 3
    assert "1.50 / 3" in text and "0.8000" in text


def test_runs_pane_tells_small_learning_rates_apart() -> None:
    """An lr sweep of 1e-5 and 3e-5 printed as 0.0000 twice hid the one setting that differs."""
    runs = [panes.RunSummary(f"r{i}", config={"lr": lr}) for i, lr in enumerate((1e-5, 3e-5, 0.001, 0.1, 0.0003))]
    text = panes.runs_html(runs)
    column = [h.rsplit(">", 1)[1] for h in text.split("</th>")[:-1]].index("lr")
    cells = [row.split("</td>")[column] for row in text.split("<tr>")[2:]]
    assert [cell.rsplit(">", 1)[1] for cell in cells] == ["1e-05", "3e-05", "0.001", "0.1", "0.0003"]


def test_runs_pane_has_a_node_column_only_for_runs_on_a_cluster() -> None:
    def column(text: str, name: str) -> list[str]:
        index = [h.rsplit(">", 1)[1] for h in text.split("</th>")[:-1]].index(name)
        return [row.split("</td>")[index].rsplit(">", 1)[1] for row in text.split("<tr>")[2:]]

    local = [panes.RunSummary("a"), panes.RunSummary("b")]
    assert ">node<" not in panes.runs_html(local)
    on_cluster = [panes.RunSummary("a", node="head a1b2c3d4"), panes.RunSummary("b", node="gpu<1> 99887766"),
                  panes.RunSummary("c")]  # c: queued, on no node yet
    assert column(panes.runs_html(on_cluster), "node") == ["head a1b2c3d4", "gpu&lt;1&gt; 99887766", ""]


class FakeConnection:
    """Records posts; can be switched to fail (a dead server) or to hang (a frozen one)."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.down = False
        self.hang = threading.Event()
        self.hanging = threading.Event()  # a post is stuck in the frozen server
        self.thaw = threading.Event()

    def post(self, endpoint: str, message: dict) -> str:
        if self.hang.is_set():
            self.hanging.set()
            self.thaw.wait()
        if self.down:
            raise Unreachable("refused")
        self.posts.append(message["win"])
        return "ok"

    def forget_login(self) -> None:
        pass


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sender(conn: FakeConnection, clock: Clock | None = None) -> Sender:
    sender = Sender(conn, interval=0.05, clock=clock or time.monotonic)  # type: ignore[arg-type]
    for key in ("a", "b"):
        sender.register(key, lambda c, key=key: c.post("update", {"win": key}), changed=False)
    return sender


def test_sender_coalesces_changes_into_one_request_per_item_per_pass() -> None:
    conn = FakeConnection()
    sender = _sender(conn)
    for _ in range(1000):
        sender.mark("a")
    assert sender.flush() and conn.posts == ["a"]
    assert sender.flush() and conn.posts == ["a"]  # nothing changed: nothing sent


def test_sender_backs_off_then_redraws_everything_after_an_outage() -> None:
    conn, clock = FakeConnection(), Clock()
    sender = _sender(conn, clock)
    sender.mark("a"), sender.mark("b")
    assert sender.flush() and conn.posts == ["a", "b"]
    conn.down = True
    sender.mark("a")
    assert not sender.flush() and not sender.connected
    clock.now = 0.49
    assert not sender.flush() and sender.failures == 1  # waiting out the backoff (0.5 s): no attempt
    clock.now = 0.5
    assert not sender.flush() and sender.failures == 2  # tried again, still down: the next wait is 1 s
    clock.now = 1.49
    assert not sender.flush() and sender.failures == 2
    conn.down = False
    clock.now = 1.5
    assert sender.flush() and conn.posts == ["a", "b", "a", "b"]  # b too: the server may have lost it


def test_closing_against_a_frozen_server_does_not_hang() -> None:
    """close() gives up on a request stuck in a frozen server rather than waiting for it."""
    conn = FakeConnection()
    sender = _sender(conn)
    sender.start()
    conn.hang.set()
    sender.mark("a")
    assert conn.hanging.wait(30)  # the sender thread is inside a request that will not return
    assert sender.close(wait=0.5) is False  # something was left unsent
    assert sender._thread.is_alive()  # and close returned while its request still hung
    conn.thaw.set()


def test_terminal_line_shows_progress_metrics_and_eta() -> None:
    run = panes.RunSummary("mlp", config={"epochs": 4}, status="running", x=1.0, started=100.0, updated=110.0,
                           latest={TRAIN_LOSS: 0.41234, TRAIN_ACC: 0.85, TEST_ACC: 0.8612, SAMPLES_PER_S: 21034.0})
    text = line(run, width=5)
    assert text.startswith("mlp  ") and "epoch  2/4" in text and "25%" in text
    assert "loss 0.4123" in text and "acc 0.850" in text and "test acc 0.8612" in text
    assert "21,034 samples/s" in text and "ETA 0:30" in text and text.endswith("running")
    out = io.StringIO()
    view = TerminalView(out)
    view.draw([run]), view.draw([run])
    assert out.getvalue().count("\n") == 1  # not a terminal: a line when the epoch or status changes


def test_terminal_aligns_labels_by_display_width_and_never_cuts_them() -> None:
    """A CJK character takes two columns; a sweep's labels differ only at their ends."""
    labels = ["模型", "mlp", "baseline-wide-network-lr1e-3", "baseline-wide-network-lr1e-2"]
    runs = [panes.RunSummary(label, config={"epochs": 2}, status="running", x=0.5) for label in labels]
    width = max(columns(label) for label in labels)
    lines = [line(run, width) for run in runs]
    assert [text.split("  epoch")[0].rstrip() for text in lines] == labels
    assert len({columns(text.split("epoch")[0]) for text in lines}) == 1  # "epoch" in one column
    assert columns("模型") == 4 and columns("cafe\u0301") == 4 and cut("模型ab", 3) == "模"


def test_a_terminal_shorter_than_the_runs_shows_the_running_ones_and_counts_the_rest() -> None:
    runs = [panes.RunSummary(f"r{i}", config={"epochs": 1}, status="finished" if i < 20 else "running", x=1.0)
            for i in range(24)] + [panes.RunSummary("q", status="queued")]
    shown, more = fitting(runs, 10)
    assert [r.label for r in shown] == ["r0", "r1", "r2", "r3", "r20", "r21", "r22", "r23", "q"]  # in order
    assert more == ["... and 16 more: 16 finished"]
    assert fitting(runs[:5], 10) == (runs[:5], [])


def test_headless_dashboard_writes_the_log_that_pandas_reads(tmp_path: Path) -> None:
    dash = Dashboard(tmp_path / "run", "solo")
    assert dash.sender is None
    dash.config({"model": "mlp", "epochs": 1})
    for step in range(1, 4):
        dash.scalars(step, step / 3, {TRAIN_LOSS: 1 / step, TRAIN_ACC: 0.5})
    dash.status("finished")
    assert dash.close()
    frame = pandas.read_json(tmp_path / "run" / runlog.LOG_NAME, lines=True)
    scalars = frame[frame["kind"] == "scalars"]
    assert scalars["step"].tolist() == [1, 2, 3] and scalars[TRAIN_LOSS].tolist() == pytest.approx([1, 0.5, 1 / 3])
    record = runlog.read(tmp_path / "run")
    assert record.meta["label"] == "solo" and record.status == "finished"


def test_log_follower_reads_a_growing_log_like_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runlog, "WRITE_EVERY", 0.0)  # every batch's scalars written at once
    dash = Dashboard(tmp_path, "grow")
    follower = runlog.LogFollower(tmp_path)
    dash.config({"model": "mlp", "epochs": 2})
    assert follower.poll() and follower.record.config["epochs"] == 2
    path = tmp_path / runlog.LOG_NAME
    for step in range(1, 6):
        dash.scalars(step, step / 5, {TRAIN_LOSS: float(step)})
    with open(path, "a") as handle:
        handle.write('{"kind":"scalars","step":6,"x":1.2,')  # a record being written
    assert follower.poll() and follower.record.latest[TRAIN_LOSS] == 5.0 and follower.record.x == 1.0
    with open(path, "a") as handle:
        handle.write('"train/loss":6.0}\n')
    assert follower.poll() and follower.record.latest[TRAIN_LOSS] == 6.0 and follower.record.skipped == 0


def test_batch_scalars_are_written_in_batches_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-batch scalars wait at most WRITE_EVERY s; any other record, and close, writes them first."""
    clock = [100.0]
    monkeypatch.setattr(runlog.time, "monotonic", lambda: clock[0])
    log = runlog.RunLog(tmp_path)
    log.config({"model": "mlp"})
    follower = runlog.LogFollower(tmp_path)
    assert follower.poll()
    for step in range(1, 4):
        log.scalars(step, step / 10, {TRAIN_LOSS: float(step)})
    assert not follower.poll()  # waiting
    clock[0] += runlog.WRITE_EVERY
    log.scalars(4, 0.4, {TRAIN_LOSS: 4.0})  # a quarter second on: all four written
    assert follower.poll() and follower.record.latest[TRAIN_LOSS] == 4.0
    log.scalars(5, 0.5, {TRAIN_LOSS: math.nan})
    log.status("failed", "diverged")  # the pending batch first, then the status
    log.scalars(6, 0.6, {TRAIN_LOSS: 6.0})
    log.close()
    record = runlog.read(tmp_path)
    assert [r["step"] for r in record.scalars] == [1, 2, 3, 4, 5, 6] and record.scalars[4][TRAIN_LOSS] is None
    kinds = [json.loads(line)["kind"] for line in (tmp_path / runlog.LOG_NAME).read_text().splitlines()]
    assert kinds == ["config"] + ["scalars"] * 5 + ["status", "scalars"]


def test_scalars_lines_are_the_json_of_the_record_and_reach_the_listener(tmp_path: Path) -> None:
    """The filled-in scalars lines read back as the record json.dumps would write (odd metric names,
    NaN as null); the listener (the live windows) gets each batch as written, in order."""
    log = runlog.RunLog(tmp_path)
    batches: list[list[tuple[float, Any]]] = []
    log.on_scalars = batches.append
    odd = {'say "100%"': 1.5, "back\\slash": -2.25e-7, TRAIN_LOSS: math.inf, "n": 3}
    log.scalars(1, 0.5, odd)
    log.scalars(2, 1 / 3, {TRAIN_LOSS: 0.1})
    log.close()
    rows = [json.loads(line) for line in (tmp_path / runlog.LOG_NAME).read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {"kind": "scalars", "step": 1, "x": 0.5, 'say "100%"': 1.5, "back\\slash": -2.25e-7, TRAIN_LOSS: None, "n": 3.0},
        {"kind": "scalars", "step": 2, "x": 1 / 3, TRAIN_LOSS: 0.1}]
    assert abs(rows[0]["time"] - time.time()) < 60
    assert batches == [[(0.5, odd), (1 / 3, {TRAIN_LOSS: 0.1})]]


def test_a_value_that_is_not_a_number_fails_without_losing_the_rest(tmp_path: Path) -> None:
    log = runlog.RunLog(tmp_path)
    log.scalars(1, 0.1, {TRAIN_LOSS: 1.0})
    log.scalars(2, 0.2, {TRAIN_LOSS: "lots"})  # type: ignore[dict-item]
    log.scalars(3, 0.3, {TRAIN_LOSS: 3.0})
    with pytest.raises(ValueError, match="scalars of step 2 not logged.*report numbers"):
        log.status("finished")  # the batch is written first: the status is written, then the error
    log.close()
    record = runlog.read(tmp_path)
    assert [r["step"] for r in record.scalars] == [1, 3] and record.status == "finished" and record.skipped == 0


def test_a_killed_writer_loses_at_most_its_pending_batch(tmp_path: Path) -> None:
    """SIGKILL (no close): everything but the scalars of the last WRITE_EVERY s is on disk. The
    writer notes, after each call, the step and the time it passed (in a shared 16-byte file), so
    what was lost is measured on its own clock, whatever the machine's load did to the killer's."""
    shared = tmp_path / "last-call"
    shared.write_bytes(bytes(16))
    script = (f"import mmap, struct, time\nfrom pathlib import Path\nfrom dashboard.runlog import RunLog\n"
              f"log = RunLog(Path({str(tmp_path)!r}))\nlog.config({{'model': 'mlp'}})\n"
              f"noted = open({str(shared)!r}, 'r+b')\nnote = mmap.mmap(noted.fileno(), 16)\n"
              f"for step in range(1, 100000):\n    t = time.time()\n"
              f"    log.scalars(step, step, {{'train/loss': 1.0}})\n"
              f"    struct.pack_into('<qd', note, 0, step, t)\n"
              f"    time.sleep(0.001)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    try:
        follower = runlog.LogFollower(tmp_path)
        deadline = time.monotonic() + 60
        while not follower.record.latest and time.monotonic() < deadline:  # writing scalars
            follower.poll()
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    last_step, last_call = struct.unpack("<qd", shared.read_bytes())
    record = runlog.read(tmp_path)
    steps = [r["step"] for r in record.scalars]
    assert record.config == {"model": "mlp"} and steps == list(range(1, len(steps) + 1)) and len(steps) > 100
    assert last_step >= steps[-1]
    # the calls since the last batch written span less than WRITE_EVERY (plus the call's own time)
    assert last_call - record.scalars[-1]["time"] < runlog.WRITE_EVERY + 0.1, (last_step, steps[-1])


def test_replay_names_what_to_pass_when_there_is_no_log(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no run log"):
        find_runs([tmp_path])
    with pytest.raises(ReplayError, match="does not exist"):
        find_runs([tmp_path / "nope"])


def test_per_run_windows_only_up_to_8_runs() -> None:
    from dashboard.windows import RUN_WINDOWS_UP_TO, run_windows_for

    assert RUN_WINDOWS_UP_TO == 8 and run_windows_for(8) and not run_windows_for(9)
