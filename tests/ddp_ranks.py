"""A rank's entry for the tests of one run on several processes: started by torch's elastic
launcher (spawned, so it lives in an importable module), it joins the process group, trains
`config` as its rank (maybe resumed from `run_dir`'s checkpoint, maybe asked things by a
`Scripted` inbox, which rank 0 alone reads) and returns its numbers."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import torch.distributed as dist

from trainers.config import RunConfig
from trainers.control import CONTROL, Request
from trainers.distributed import World
from trainers.loop import fit
from trainers.reporting import LR, Recorder


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


def train(config: dict[str, Any], run_dir: str | None = None, resume: bool = False,
          inbox: Scripted | None = None) -> dict[str, Any]:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
        recorder = Recorder()
        result = fit(RunConfig.from_dict(config), recorder, Path(run_dir) if run_dir else None, resume, world=world,
                     inbox=inbox)
        return {"history": result.history, "rows": len(recorder.rows),
                "confusion": [sum(map(sum, c["matrix"])) for c in recorder.of("confusion")],
                "train_loss": recorder.series("train/loss"), "status": str(result.status), "reason": result.reason,
                "lrs": [values[LR] for _, _, values in recorder.rows if LR in values],
                "controls": [payload for kind, _, _, payload in recorder.records if kind == CONTROL],
                "states": recorder.states}
    finally:
        dist.destroy_process_group()
