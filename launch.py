"""livetrain's command line: `python launch.py COMMAND` or `livetrain COMMAND`."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from click.exceptions import NoArgsIsHelpError

# Only what every command needs: torch is imported by the commands that train or read tensors
# (run, demo, replay, data get), once their arguments are checked; --help, server, runs, data list
# and control never import it (tests/test_house.py)
from dashboard.launch.history import past_runs, runs_table
from dashboard.launch.experiment import read_experiment
from dashboard.launch.grid import plan_runs
from dashboard.launch.options import draw_options, parse_seeds, server_options, setting_options, view_options
from dashboard.launch.plan import PER_LAUNCH, check_env, check_url
from dashboard.server import Found, ServerConfig, port_state, serve, without_torch
from dashboard.windows import DrawOptions
from trainers.catalog import LOSSES, MODELS
from trainers.datasets import DATASETS, DataError, locate
from trainers.errors import EXIT_INTERRUPTED, LivetrainError
from trainers.presets import PRESETS
from trainers.settings import MAX_EPOCHS, NOT_ON_RESUME, SETTINGS

if TYPE_CHECKING:
    from dashboard.launch.run import RunRequest

DEMO_MODELS = "softmax,mlp,cnn"
DEMO_EPOCHS = 10  # the three models' 10 epochs on all of Fashion-MNIST: about 3 minutes on 2 cores

class Command(click.Command):
    """A click command whose `LivetrainError`s become click's: a usage error (exit code 2) with
    the command's --help hint, anything else one line with the error's own exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LivetrainError as exc:
            if exc.exit_code == click.UsageError.exit_code:
                raise click.UsageError(str(exc), ctx) from None
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None


class Cli(click.Group):
    """A click group whose errors are one line on stderr, `Error: ...`, never a traceback:
    exit code 2 for a usage error, 1 for anything else, 130 for Ctrl-C."""

    command_class = Command
    group_class = type  # a group inside (`data`) is a Cli too: the same error handling

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.UsageError as exc:
            hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx else ""
            message = exc.format_message()
            message = message[:-1] if hint and message.endswith(".") else message  # not ".;"
            click.echo(f"Error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Train PyTorch classifiers side by side and watch them live in Visdom."""


def run_server(config: ServerConfig) -> None:
    """Serve in the foreground, or say so and return when a Visdom server already answers."""
    try:
        if port_state(config) == Found.VISDOM:
            click.echo(f"A Visdom server already answers at {config.url}; reusing it.")
            return
        serve(config)
    except KeyboardInterrupt:
        click.echo("\nVisdom server stopped.")


@cli.command()
@server_options
def server(host: str, port: int, env_dir: Path, login: bool) -> None:
    """Run the Visdom server alone, offline (127.0.0.1:8097 by default)."""
    without_torch()  # this process only serves
    run_server(ServerConfig(host, port, env_dir, login))


def _given(ctx: click.Context, *names: str) -> list[str]:
    """Which of these options the command line gave (not their defaults)."""
    return [name for name in names if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]


def _run_request(ctx: click.Context, models: tuple[str, ...], settings: tuple[str, ...], resume: Path | None,
                 experiment: Path | None, common: dict[str, Any], **request: Any) -> RunRequest:
    from dashboard.launch.run import RunRequest

    flags = {param.name: param.opts[0] for param in ctx.command.params}
    if experiment is not None:
        clash = _given(ctx, "models", "settings") + (["resume"] if resume is not None else [])
        if clash:
            raise click.UsageError(f"{experiment} names the runs itself; drop {', '.join(flags[n] for n in clash)}", ctx)
        given = {name: common[name] for name in _given(ctx, *common)}
        configs, launch_options = read_experiment(experiment, **given)
        if request["draw"].env == PER_LAUNCH and launch_options["env"]:
            request["draw"] = replace(request["draw"], env=launch_options["env"])
        request["parallel"] = request["parallel"] or launch_options["parallel"]
        return RunRequest(configs=configs, **request)
    if resume is not None:
        given = [flags[name] for name in ("models", "settings", "seeds", *NOT_ON_RESUME)
                 if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--resume continues the runs as they were logged; drop {', '.join(given)} "
                                   "(only --epochs and --nproc may change)", ctx)
        epochs = common["epochs"] if ctx.get_parameter_source("epochs") is ParameterSource.COMMANDLINE else None
        return RunRequest(resume_dir=resume, resume_epochs=epochs, resume_nproc=common["nproc"], **request)
    return RunRequest(configs=plan_runs(models, settings, **common), **request)


DRY_RUN = click.option("--dry-run", is_flag=True,
                       help="Make every check a launch makes, print the plan (each run, the settings it changes, "
                            "what queues) and start nothing.")
RUN_EPILOG = "\b\nPresets (the course notes' recipes; --set and the options above still win):\n" + "\n".join(
    f"  {name:<15}{preset.source}\n  {'':<15}sets: {preset.describe()}" for name, preset in PRESETS.items())


@cli.command(epilog=RUN_EPILOG)
@click.option("--models", "models", multiple=True, default=[DEMO_MODELS], show_default=True,
              help=f"Runs to train side by side, comma-separated: models ({', '.join(MODELS)}) or presets (below); "
                   "your own, FILE.py:NAME (an nn.Module class, a function returning one, or a model the file "
                   "builds, e.g. seed000.py:net); repeat one for more runs (numbered mlp-1, mlp-2, with seeds seed, "
                   "seed+1), or label them NAME:LABEL (e.g. mlp:fast,mlp:slow).")
@click.option("--set", "settings", multiple=True, metavar="RUN.SETTING=VALUE",
              help="Per-run setting, by label, model or preset (all its runs), e.g. --set mlp.lr=0.05 or "
                   "--set slow.epochs=3; several values sweep, one run per value: --set mlp.lr=1e-3,1e-2 "
                   "(lists: --set mlp.hidden=200,200/512,256). Settings: "
                   f"{', '.join(k.replace('_', '-') for k in SETTINGS)}; losses: {', '.join(LOSSES)}.")
@click.option("--seeds", callback=parse_seeds, default=None, metavar="S1,S2,...",
              help="Train every run once per seed (labelled RUN-seedS), e.g. --seeds 0,1,2.")
@setting_options
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="Train at most N runs at once and queue the rest [default: the machine's cores, at least 4; "
                   "with --cluster, the cluster's CPUs].")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Continue the runs of an earlier launch (its folder) from their last checkpoints.")
@click.option("--cluster", metavar="ADDRESS", default=None,
              help="Train the runs on a Ray cluster: its head's HOST:PORT (what `ray start --head` printed), "
                   "or 'ray' for $RAY_ADDRESS or a Ray of its own here. Needs the ray extra.")
@click.argument("experiment", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@view_options
@server_options
@DRY_RUN
@click.pass_context
def run(ctx: click.Context, experiment: Path | None, models: tuple[str, ...], settings: tuple[str, ...], seeds: tuple[int, ...],
        parallel: int | None, resume: Path | None, cluster: str | None, dry_run: bool, env: str | None,
        visdom_url: str | None,
        headless: bool, no_server: bool, keep_serving: bool, no_control: bool, smooth: float | None, scatter: str | None,
        log_dir: Path, data_dir: Path | None, host: str, port: int, env_dir: Path, login: bool,
        **every_run: Any) -> int:
    """Train runs side by side, live in Visdom (or --headless); exit 0 only if every run finished.

    EXPERIMENT: a TOML file of runs and sweeps instead of --models/--set (see docs/experiments.md)."""
    # every_run: the settings given for every run (--lr, ...: trainers.settings' EVERY_RUN)
    common = dict(seeds=seeds, **every_run, data_dir=str(data_dir) if data_dir else None)
    draw = DrawOptions(PER_LAUNCH if env is None else check_env(env), smooth, scatter=scatter)
    request = _run_request(ctx, models, settings, resume, experiment, common, log_dir=log_dir, headless=headless,
                           visdom_url=visdom_url, server=ServerConfig(host, port, env_dir, login),
                           start_server=not no_server, draw=draw, keep_serving=keep_serving, parallel=parallel,
                           control=not no_control, cluster=cluster)
    return launched(request, dry_run)


def launched(request: RunRequest, dry_run: bool) -> int:
    """Train what `request` asks for; or, with --dry-run, check it and print its plan."""
    if dry_run:
        from dashboard.launch.dryrun import dry_run as plan

        return plan(request, sys.stdout)
    from dashboard.launch.run import run as run_launch

    return run_launch(request)


@cli.command()
@click.option("--epochs", type=click.IntRange(min=1, max=MAX_EPOCHS), default=DEMO_EPOCHS, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Train on the first N training images only [default: all 60,000].")
@click.option("--env", default="demo", show_default=True, help="Visdom env to draw into.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding Fashion-MNIST [default: $LIVETRAIN_DATA, ./data, Debian's package].")
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@server_options
@DRY_RUN
def demo(epochs: int, limit: int | None, env: str, data_dir: Path | None, log_dir: Path,
         host: str, port: int, env_dir: Path, login: bool, dry_run: bool) -> int:
    """The main job: softmax, MLP and CNN side by side on Fashion-MNIST, live; the page stays up after."""
    from dashboard.launch.run import RunRequest

    configs = plan_runs([DEMO_MODELS], [], epochs=epochs, limit=limit,
                        data_dir=str(data_dir) if data_dir else None)
    return launched(RunRequest(configs=configs, log_dir=log_dir, draw=DrawOptions(env),
                               server=ServerConfig(host, port, env_dir, login)), dry_run)


@cli.command()
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="The folder runs were logged to (or one launch's folder).")
def runs(log_dir: Path) -> None:
    """A table of past runs: label, model, data set, epochs, test accuracy, status, duration, path."""
    if log_dir.exists() and not log_dir.is_dir():
        raise click.ClickException(f"{log_dir} is not a folder; pass the folder runs were logged to with --log-dir")
    if not log_dir.is_dir():
        raise click.ClickException(f"no folder {log_dir}; runs are logged there by `livetrain run` "
                                   "(or pass --log-dir)")
    rows = past_runs(log_dir)
    if not rows:
        click.echo(f"No runs logged in {log_dir} yet; start some with `livetrain run` or `livetrain demo`.")
        return
    click.echo(runs_table(rows))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--env", default="replay", show_default=True, help="Visdom env to draw the runs into.")
@click.option("--visdom-url", default=None,
              help="A running Visdom server to draw into; by default the local one, started if none answers.")
@draw_options
@server_options
def replay(run_dirs: tuple[Path, ...], env: str, visdom_url: str | None, smooth: float | None, scatter: str | None,
           host: str, port: int, env_dir: Path, login: bool) -> None:
    """Draw logged runs (run dirs, or a folder of them) in a Visdom env, as they looked live."""
    env = check_env(env)
    visdom_url = check_url(visdom_url) if visdom_url is not None else None
    from dashboard.launch.replaying import replay_runs

    replay_runs(list(run_dirs), DrawOptions(env, smooth, scatter=scatter), visdom_url, ServerConfig(host, port, env_dir, login),
                sys.stdout)


@cli.command()
@click.argument("action", type=click.Choice(["stop", "pause", "resume", "set", "fork"]))
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("values", nargs=-1, metavar="[SETTING=VALUE]...")
@click.option("--set", "settings", multiple=True, metavar="SETTING=VALUE",
              help="fork: what the fork trains with otherwise (lr, optimizer, momentum, weight-decay, schedule, "
                   "epochs, batch-size, loss); repeatable.")
@click.option("--label", default="", help="fork: the fork's label [default: RUN-fork1, -fork2...].")
@click.option("--stop-parent", is_flag=True, help="fork: stop the run where the fork starts.")
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds to wait for the launcher and the run to answer.")
def control(action: str, run_dir: Path, values: tuple[str, ...], settings: tuple[str, ...], label: str,
            stop_parent: bool, timeout: float) -> None:
    """Ask a live launch's run (RUN_DIR; a launch's folder: all its runs) to stop, pause, resume,
    set lr, momentum or weight-decay, or fork, as the page does; prints what each run applied.

    \b
    livetrain control stop runs/2026-12-04T101502/mlp
    livetrain control set runs/2026-12-04T101502/mlp lr=0.01
    livetrain control fork runs/2026-12-04T101502/mlp --set lr=1e-4 --label mlp-slow"""
    from dashboard.launch.control import request
    from dashboard.launch.plan import PlanError

    if action != "fork" and (settings or label or stop_parent):
        raise PlanError(f"--set, --label and --stop-parent are for fork; `livetrain control {action}` takes none")
    options = {"label": label, "stop_parent": stop_parent} if action == "fork" else None
    for line in request(run_dir, action, values + settings, timeout, options):
        click.echo(line)


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder of data sets to look in first [default: $LIVETRAIN_DATA, then ./data].")
def setup(data_dir: Path | None) -> None:
    """Set up what pip does not install: Visdom's page files (once, from the npm registry; the
    server never downloads them) and Fashion-MNIST (Debian's package, as root). `make setup` in a clone."""
    from dashboard import assets
    from trainers.data import ensure_fashion_mnist

    written = assets.install()
    click.echo(f"Visdom page files: {f'installed {len(written)} files into' if written else 'all present in'} "
               f"{assets.static_dir()}")
    click.echo(f"Fashion-MNIST: {ensure_fashion_mnist(str(data_dir) if data_dir else None)}")


@cli.group()
def data() -> None:
    """The data sets: where each is on this machine, and getting one when online."""


@data.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="A folder of data sets to look in first [default: $LIVETRAIN_DATA, then ./data].")
def data_list(data_dir: Path | None) -> None:
    """Each data set, and the folder it loads from (or how to get it)."""
    for name in DATASETS:
        try:
            click.echo(f"{name:<14} {locate(name, data_dir)}")
        except DataError as exc:
            click.echo(f"{name:<14} not here: {exc}")


@data.command("get")
@click.argument("name", type=click.Choice(DATASETS))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put it [default: $LIVETRAIN_DATA, else ./data], in torchvision's layout.")
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch from this base URL instead of torchvision's mirrors (same files, same checksums).")
def data_get(name: str, data_dir: Path | None, mirror: str | None) -> None:
    """Download a data set with torchvision (checksums checked), where training finds it."""
    from trainers import download

    if mirror is not None:
        mirror = check_url(mirror)
    folder, fetched = download.get(name, data_dir, mirror)
    click.echo(f"{name}: {'downloaded into' if fetched else 'already here, in'} {folder}")


def entry(prog_name: str | None = None) -> None:
    """The program's entry (`livetrain`, `python launch.py`): run the command, then leave without
    the interpreter's teardown of torch (about 2 s), everything being flushed and closed by then."""
    try:
        cli.main(prog_name=prog_name)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry(prog_name=os.path.basename(__file__))
