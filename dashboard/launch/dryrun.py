"""`livetrain run ... --dry-run`: the plan of a launch, printed after every check a real launch
makes (dashboard.launch.run.check), with nothing started or written.

One line per run: its label, model, seed, data set, the settings it changes from its model's
recipe (those every run changes said once, above the table), and whether it starts at once or
queues under --parallel. A 64-run sweep is 64 short lines."""

from __future__ import annotations

from dataclasses import fields
from typing import TextIO

from dashboard.launch.plan import PER_LAUNCH
from dashboard.launch.run import RunRequest, check, default_parallel
from dashboard.launch.servers import page_url
from dashboard.terminal import table
from trainers.config import RunConfig
from trainers.errors import LivetrainError
from trainers.settings import written

APART = ("model", "label", "seed", "dataset", "preset")  # columns of their own, not settings


def changes(resolved: RunConfig) -> dict[str, str]:
    """What a resolved config sets otherwise than its model's recipe (and RunConfig's defaults),
    by setting."""
    recipe = RunConfig(resolved.model, dataset=resolved.dataset).resolved()
    return {f.name.replace("_", "-"): written(getattr(resolved, f.name)) for f in fields(RunConfig)
            if f.name not in APART and getattr(resolved, f.name) != getattr(recipe, f.name)}


def plan_lines(configs: list[RunConfig], parallel: int, done: set[str] = frozenset()) -> list[str]:
    """The table of the runs (resolved configs), with what every run changes said once above it."""
    changed = [changes(config) for config in configs]
    shared = {k: v for k, v in changed[0].items() if all(c.get(k) == v for c in changed)} if changed else {}
    lines = [f"Every run: {' '.join(f'{k}={v}' for k, v in shared.items())}"] if shared else []
    todo = [c.label for c in configs if c.label not in done]
    starts = {label: "now" if i < parallel else "queued" for i, label in enumerate(todo)}
    body = [(str(i), config.label, config.model, str(config.seed), config.dataset,
             " ".join(f"{k}={v}" for k, v in change.items() if k not in shared) or "-",
             "finished" if config.label in done else starts[config.label])
            for i, (config, change) in enumerate(zip(configs, changed), 1)]
    return lines + table(("#", "label", "model", "seed", "data", "settings", "starts"), body)


def dry_run(request: RunRequest, out: TextIO) -> int:
    """Check the request as a launch would, then print its plan; 0 (a failed check raises)."""
    checked = check(request, dry_run=True)
    if checked.resumed is not None:
        configs = [run.config for run in checked.resumed]
        done = {run.config.label for run in checked.resumed if run.done}
    else:
        configs, done = checked.configs, set()
    try:
        configs = [config.resolved() for config in configs]
    except LivetrainError as exc:  # resolved by the checks already; a finished run's logged config
        raise exc.about("the plan") from None
    parallel = request.parallel or default_parallel()
    todo = len(configs) - len(done)
    queued = max(0, todo - parallel)
    datasets = ", ".join(dict.fromkeys(c.dataset for c in configs))
    what = f"resume {todo} of the {len(configs)} runs in {request.resume_dir}" if checked.resumed is not None \
        else f"train {len(configs)} run(s)"
    out.write(f"livetrain would {what} on {datasets}, {min(todo, parallel)} at a time "
              f"(--parallel {parallel}){f'; {queued} queue' if queued else ''}.\n")
    for line in plan_lines(configs, parallel, done):
        out.write(line + "\n")
    server = checked.server
    env = checked.request.draw.env
    if server is None:
        out.write("Headless: run logs only, replayed later with `livetrain replay`.\n")
    else:
        where = page_url(server, env) if env != PER_LAUNCH else f"{server.url} (an env named after the launch)"
        state = "this launch would start the server" if server.to_start else "its server answers"
        out.write(f"Live at {where}; {state}.\n")
    logs = request.resume_dir if request.resume_dir is not None else request.log_dir
    checks = ["settings", "data", "devices", f"run logs in {logs}"] + (["the Visdom server"] if server else [])
    out.write(f"Checked: {', '.join(checks)}. Nothing started (--dry-run).\n")
    return 0
