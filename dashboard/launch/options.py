"""The command line's option bundles and their checks, shared by `run`, `demo` and `replay`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dashboard.server import DEFAULT_ENV_DIR, DEFAULT_HOST, DEFAULT_PORT
from dashboard.sweep import SETTINGS as SCATTER_SETTINGS
from dashboard.windows import DEFAULT_SMOOTHING
from trainers.errors import did_you_mean
from trainers.settings import BY_NAME, EVERY_RUN, FLOAT, INT, MAX_SEED, NAME, Setting

PORT = click.IntRange(1, 65535)

SCATTER_HELP = ("The setting a sweep's scatter puts against the final test accuracy (e.g. weight-decay); "
                "by default the lr when it varies, else another that does.")


def check_scatter(value: str | None) -> str | None:
    """`--scatter`'s setting as the config names it (batch-size -> batch_size), checked."""
    if value is None:
        return None
    name = value.strip().replace("-", "_").lower()
    if name not in SCATTER_SETTINGS:
        hyphenated = [s.replace("_", "-") for s in SCATTER_SETTINGS]
        raise click.BadParameter(f"{value!r} is not a setting{did_you_mean(name, hyphenated)}; choose one of "
                                 f"{', '.join(hyphenated)}")
    return name


SMOOTH_HELP = ("Weight of the smoothed trace drawn over each faint raw per-batch trace (an EMA, as "
               "TensorBoard's); 0: the raw trace alone. Run logs stay raw.")


def options(*options: Any) -> Any:
    """One decorator applying click options in the order listed (as if stacked above the command)."""
    def apply(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command
    return apply


server_options = options(
    click.option("--host", default=DEFAULT_HOST, show_default=True,
                 help="Address to listen on; anything but loopback is reachable from other machines."),
    click.option("--port", type=PORT, default=DEFAULT_PORT, show_default=True, help="Port to listen on."),
    click.option("--env-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_ENV_DIR,
                 show_default=True, help="Folder for Visdom's saved envs."),
    click.option("--login", is_flag=True,
                 help="Require Visdom's login, with VISDOM_USERNAME and VISDOM_PASSWORD from the environment."),
)


def parse_seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        seeds = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write whole numbers separated by commas, e.g. 0,1,2") from None
    if not all(0 <= seed <= MAX_SEED for seed in seeds) or len(set(seeds)) < len(seeds):
        raise click.BadParameter(f"{value!r}: each seed once, each from 0 to 2**63-1")
    return seeds


def setting_option(setting: Setting) -> Any:
    """The option of `livetrain run` that gives every run `setting` (trainers.settings)."""
    if setting.kind == INT:
        kind: Any = click.IntRange(min=setting.low, max=setting.high)
    elif setting.kind == FLOAT:
        kind = click.FloatRange(min=setting.low, max=setting.high, min_open=setting.high is None,
                                max_open=setting.high_open)
    elif setting.kind == NAME:
        kind = click.Choice(setting.choices)
    else:
        raise ValueError(f"no option for a setting of kind {setting.kind}")
    return click.option(f"--{setting.flag}", setting.name, type=kind, default=setting.default,
                        show_default=setting.default is not None, help=setting.help or None)


# `run`'s options for every run, one per setting declared so (--data-dir is among view_options)
setting_options = options(*(setting_option(BY_NAME[name]) for name in EVERY_RUN if name != "data_dir"))

# how runs are drawn, for `run` and `replay` alike
draw_options = options(
    click.option("--smooth", type=click.FloatRange(0, 1, max_open=True), default=DEFAULT_SMOOTHING,
                 show_default=True, help=SMOOTH_HELP),
    click.option("--scatter", metavar="SETTING", callback=lambda ctx, param, value: check_scatter(value),
                 help=SCATTER_HELP),
)

view_options = options(
    click.option("--env", default=None,
                 help="Visdom env to draw into [default: one per launch, livetrain_<its folder>]."),
    click.option("--visdom-url", default=None,
                 help="A running Visdom server (http://HOST:PORT) to draw into; by default the local one, "
                      "started when none answers."),
    click.option("--headless", is_flag=True, help="No server: terminal progress and run logs only (replay later)."),
    click.option("--no-server", is_flag=True, help="Never start a server; fail if none answers."),
    click.option("--keep-serving/--no-keep-serving", default=True, show_default=True,
                 help="After the runs end, keep a server this command started up until Ctrl-C."),
    click.option("--no-control", is_flag=True,
                 help="No Control pane on the page, and `livetrain control` refused: nobody can stop, pause or "
                      "change the runs while they train."),
    draw_options,
    click.option("--log-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
                 help="Where each launch makes its folder of run logs and checkpoints."),
    click.option("--data-dir", type=click.Path(path_type=Path), default=None,
                 help="Folder holding the data sets [default: $LIVETRAIN_DATA, ./data, Debian's package]."),
)
