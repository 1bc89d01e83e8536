"""Past runs: the table of every run logged under a folder."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dashboard.launch.resume import launch_running
from dashboard.runlog import LOG_NAME, read, run_dirs
from dashboard.terminal import table
from trainers.reporting import FINAL_STATES, RunState, TEST_ACC, epochs_done


@dataclass
class PastRun:
    label: str
    model: str
    dataset: str
    epochs: str
    test_acc: float | None
    status: RunState  # UNKNOWN: a log that ended with no final status and is no longer written
    reason: str  # why it failed, or why its status is unknown ("" otherwise)
    duration: float | None
    path: Path
    started: float

    @property
    def said(self) -> str:
        """The status as the table says it: "finished", "failed: why", "stopped (no final status)"."""
        if self.status == RunState.UNKNOWN:
            return self.reason
        return f"{self.status}: {self.reason}" if self.reason else str(self.status)


def past_runs(log_dir: Path) -> list[PastRun]:
    """Every run logged under `log_dir` (a launch's folder or a folder of them), oldest first."""
    rows = []
    for run_dir in run_dirs(log_dir):
        path = run_dir / LOG_NAME
        record = read(path, keep_scalars=False)
        if not record.config:
            continue
        status, reason = RunState.of(record.status), ""
        if status not in FINAL_STATES:
            # not written for 2 min, or its launch's lock held by none (its launcher killed, say)
            training = time.time() - path.stat().st_mtime < 120 and launch_running(run_dir.parent) is not False
            status, reason = (RunState.RUNNING, "") if training else (RunState.UNKNOWN, "stopped (no final status)")
        elif record.states and record.states[-1].get("reason") and status == RunState.FAILED:
            reason = str(record.states[-1]["reason"])
        total = record.config.get("epochs")
        duration = (record.updated - record.started) if record.started and record.updated else None
        rows.append(PastRun(
            label=str(record.meta.get("label") or record.config.get("label") or path.parent.name),
            model=str(record.config.get("model", "?")), dataset=str(record.config.get("dataset", "?")),
            epochs=f"{epochs_done(record.x)}/{total}" if total else "?",
            test_acc=record.latest.get(TEST_ACC), status=status, reason=reason, duration=duration,
            path=path.parent, started=record.started or 0.0))
    return sorted(rows, key=lambda r: (r.started, str(r.path)))


def runs_table(rows: Sequence[PastRun], status_width: int = 48) -> str:
    """The `runs` command's table."""
    def hms(seconds: float | None) -> str:  # always h:mm:ss, so that the column lines up
        if seconds is None:
            return "-"
        seconds = int(seconds)
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    header = ("label", "model", "dataset", "epochs", "test acc", "status", "duration", "path")
    body = [(r.label, r.model, r.dataset, r.epochs, "-" if r.test_acc is None else f"{r.test_acc:.4f}",
             r.said if len(r.said) <= status_width else r.said[: status_width - 3] + "...",
             hms(r.duration), str(r.path)) for r in rows]
    return "\n".join(table(header, body))
