"""A rank's entry for the tests of one run on several processes: started by torch's elastic
launcher (spawned, so it lives in an importable module), it joins the process group, trains
`config` as its rank (maybe resumed from `run_dir`'s checkpoint) and returns its numbers."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import torch.distributed as dist

from trainers.config import RunConfig
from trainers.distributed import World
from trainers.loop import fit
from trainers.reporting import Recorder


def train(config: dict[str, Any], run_dir: str | None = None, resume: bool = False) -> dict[str, Any]:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    try:
        world = World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))
        recorder = Recorder()
        result = fit(RunConfig.from_dict(config), recorder, Path(run_dir) if run_dir else None, resume, world=world)
        return {"history": result.history, "rows": len(recorder.rows),
                "confusion": [m.sum().item() for _, m in recorder.confusions],
                "train_loss": recorder.series("train/loss")}
    finally:
        dist.destroy_process_group()
