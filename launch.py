"""livetrain's command line: `python launch.py COMMAND` or `livetrain COMMAND`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from dashboard import assets
from dashboard.replay import ReplayError, replay as replay_runs
from dashboard.server import (
    DEFAULT_ENV_DIR, DEFAULT_HOST, DEFAULT_PORT, ServerConfig, ServerError, port_state, serve, start_background,
)

PORT = click.IntRange(1, 65535)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Train PyTorch classifiers side by side and watch them live in Visdom."""


def _server_options(command: click.Command) -> click.Command:
    for option in reversed(
        [
            click.option("--host", default=DEFAULT_HOST, show_default=True,
                         help="Address to listen on; anything but loopback is reachable from other machines."),
            click.option("--port", type=PORT, default=DEFAULT_PORT, show_default=True, help="Port to listen on."),
            click.option("--env-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_ENV_DIR,
                         show_default=True, help="Folder for Visdom's saved envs."),
            click.option("--login", is_flag=True,
                         help="Require Visdom's login, with VISDOM_USERNAME and VISDOM_PASSWORD from the environment."),
        ]
    ):
        command = option(command)
    return command


def run_server(config: ServerConfig) -> None:
    """Serve in the foreground, or say so and return when a Visdom server already answers."""
    try:
        if port_state(config) == "visdom":
            click.echo(f"A Visdom server already answers at {config.url}; reusing it.")
            return
        serve(config)
    except (ServerError, assets.AssetError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\nVisdom server stopped.")


@cli.command()
@_server_options
def server(host: str, port: int, env_dir: Path, login: bool) -> None:
    """Run the Visdom server alone, offline (127.0.0.1:8097 by default)."""
    run_server(ServerConfig(host, port, env_dir, login))


@cli.command()
@_server_options
def demo(host: str, port: int, env_dir: Path, login: bool) -> None:
    """The main job: start the dashboard server and print its address (Ctrl-C stops it)."""
    run_server(ServerConfig(host, port, env_dir, login))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--env", default="replay", show_default=True, help="Visdom env to draw the runs into.")
@click.option("--visdom-url", default=None,
              help="A running Visdom server to draw into; by default the local one, started if none answers.")
@click.option("--smooth", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Also draw an exponentially smoothed trace per batch metric, with this weight (e.g. 0.9).")
@_server_options
def replay(run_dirs: tuple[Path, ...], env: str, visdom_url: str | None, smooth: float | None,
           host: str, port: int, env_dir: Path, login: bool) -> None:
    """Draw logged runs (run dirs, or a folder of them) in a Visdom env, as they looked live."""
    config = ServerConfig(host, port, env_dir, login)
    started = None
    try:
        if visdom_url is None and port_state(config) == "free":
            started = start_background(config)
        url = visdom_url or config.url
        done = replay_runs(list(run_dirs), url, env, smoothing=smooth)
    except (ReplayError, ServerError, assets.AssetError) as exc:
        if started is not None:
            started.stop()
        raise click.ClickException(str(exc)) from None
    note = f" ({done.skipped_lines} incomplete log lines skipped)" if done.skipped_lines else ""
    click.echo(f"Replayed {len(done.labels)} run(s): {', '.join(done.labels)}{note}. See {url}/env/{env}")
    if started is not None:
        click.echo("The Visdom server started for this replay runs until Ctrl-C.")
        try:
            while started.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            click.echo("\nVisdom server stopped.")
        finally:
            started.stop()


if __name__ == "__main__":
    cli(prog_name=os.path.basename(__file__))
