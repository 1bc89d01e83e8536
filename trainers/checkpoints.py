"""A run's checkpoint: written atomically after every epoch, read back to resume it exactly.

It holds the model's and optimizer's states, the batch order's generator, torch's RNG state, the
epochs done, the config and the per-epoch history; `torch.load(..., weights_only=True)` reads it.

A fork's checkpoint is one its parent wrote into the fork's folder (marked "fork"): the run that
loads it trains with its own config, not the one saved. Its model, batch order and RNG are the
parent's; its optimizer's state too when it trains with the same optimizer (with its own lr,
momentum and weight decay), else a fresh one; with another batch size it goes on from the same
image of the epoch's order."""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from trainers import models
from trainers.config import RunConfig
from trainers.errors import LivetrainError

CHECKPOINT = "checkpoint.pt"


class ResumeError(LivetrainError):
    """A run cannot be resumed: its checkpoint is missing, damaged or another run's."""


@dataclass(frozen=True)
class EpochPosition:
    """Where a run stands inside an epoch: the batches it has trained on, and the epoch's running
    sums (for its mean loss and accuracy). A checkpoint written there (a stop, a fork) holds it,
    with the batch order's generator as it was when the epoch began, so that a resumed run draws
    the epoch's order again and goes on from the next batch."""

    batches: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


@dataclass(frozen=True)
class Resumed:
    """What a checkpoint gives the loop back: the epochs done, the per-epoch history, where in
    the next epoch it stood (None: at its start), and the base learning rate in force then."""

    epochs_done: int
    history: list[dict[str, float]]
    position: EpochPosition | None = None
    lr: float | None = None


def save_checkpoint(run_dir: Path, epochs_done: int, config: RunConfig, model: models.Model, optimizer: Any,
                    generator_state: torch.Tensor, history: list[dict[str, float]],
                    position: EpochPosition | None = None, x: float | None = None, fork: bool = False) -> None:
    """Write the checkpoint atomically (a temp file renamed over the old one). Serialized in memory
    first and written by us: torch.save straight to a file on a full disk raises a RuntimeError
    that does not say so ("unexpected pos ..."); a write raises OSError(ENOSPC), with the file's
    name. The temp file never stays behind. Inside an epoch, `position` says where (and the
    generator's state is the one the epoch began with); `x` is the point in epochs, the default
    `epochs_done`. The config's lr is the one in force (changed from the page, maybe). `fork`: the
    checkpoint a fork starts from (see the module's doc)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "epochs_done": epochs_done, "config": config.to_dict(),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "generator": generator_state, "torch_rng": torch.get_rng_state(), "history": history,
        "x": float(epochs_done if x is None else x), "lr": config.lr,
    }
    if position is not None:
        state["position"] = asdict(position)
    if fork:
        state["fork"] = True
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tmp = run_dir / f".{CHECKPOINT}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(buffer.getbuffer())
        os.replace(tmp, run_dir / CHECKPOINT)
    except BaseException as exc:  # a full disk, or a stop (Ctrl-C, SIGTERM) during the write
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(run_dir / CHECKPOINT)
        raise


def checkpoint_x(state: dict[str, Any]) -> float:
    """The point a checkpoint holds, in epochs (older checkpoints: at an epoch's end)."""
    return float(state.get("x", state["epochs_done"]))


def read_checkpoint(path: Path, config: RunConfig) -> dict[str, Any]:
    """A run's checkpoint, checked to be whole and to belong to `config`'s model and data set."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = RunConfig.from_dict(state["config"])
        for key in ("model", "optimizer", "generator", "torch_rng", "epochs_done", "history"):
            state[key]  # noqa: B018 - raises KeyError when missing
    except Exception:  # torch.load raises many kinds (pickle, zip, EOF, runtime) on a damaged file
        raise ResumeError(f"cannot resume: the checkpoint {path} is damaged or not a livetrain checkpoint; "
                          "delete it to train that run from the start") from None
    if (saved.model, saved.dataset) != (config.model, config.dataset):
        raise ResumeError(f"cannot resume: {path} is a {saved.model} on {saved.dataset}, "
                          f"not a {config.model} on {config.dataset}")
    return state


def load_checkpoint(run_dir: Path | None, config: RunConfig, model: models.Model, optimizer: Any,
                    generator: torch.Generator) -> Resumed:
    path = (run_dir or Path(".")) / CHECKPOINT
    if run_dir is None or not path.is_file():
        raise ResumeError(f"cannot resume: no checkpoint at {path}")
    state = read_checkpoint(path, config)
    model.load_state_dict(state["model"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    position = EpochPosition(**state["position"]) if state.get("position") else None
    if not state.get("fork"):
        optimizer.load_state_dict(state["optimizer"])
        lr = state.get("lr")
        return Resumed(int(state["epochs_done"]), list(state["history"]), position, None if lr is None else float(lr))
    # a fork: the parent's state, trained on with this run's own config
    saved = RunConfig.from_dict(state["config"]).resolved()
    if saved.optimizer == config.optimizer:
        optimizer.load_state_dict(state["optimizer"])
        group = optimizer.param_groups[0]
        for name in ("lr", "momentum", "weight_decay"):  # loading the state brought the parent's
            if name in group and getattr(config, name) is not None:
                group[name] = getattr(config, name)
    if position is not None and saved.batch_size != config.batch_size:  # the same images seen, in batches of its own
        assert config.batch_size is not None
        position = replace(position, batches=position.seen // config.batch_size)
    return Resumed(int(state["epochs_done"]), list(state["history"]), position)
