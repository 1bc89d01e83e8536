"""The process entry of one training run: build its dashboard from a spec and train.

A worker reports only to `dashboard.Dashboard` (the run log, and Visdom when a URL is set); the
launcher follows the run logs for the terminal and the env-wide panes. Whatever ends the run
(finished, diverged, an exception, Ctrl-C) is written to the run log as its final status."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dashboard.adapter import Dashboard, DashboardOptions
from trainers.config import RunConfig
from trainers.loop import RunResult, fit


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable)."""

    config: RunConfig
    run_dir: Path
    dashboard: DashboardOptions = field(default_factory=DashboardOptions)
    colour_index: int | None = None
    resume: bool = False


def run(spec: WorkerSpec) -> RunResult:
    """Train one run, reporting to its dashboard; the final status always reaches the run log."""
    config = spec.config.resolved()
    dash = Dashboard(spec.run_dir, config.label, spec.dashboard, spec.colour_index)
    try:
        return fit(config, dash, spec.run_dir, resume=spec.resume)
    except KeyboardInterrupt:
        dash.status("interrupted", "stopped by Ctrl-C; the checkpoint of the last finished epoch is kept")
        raise
    except Exception as exc:
        dash.status("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        dash.close()
