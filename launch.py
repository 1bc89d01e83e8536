"""livetrain's command line: `python launch.py COMMAND` or `livetrain COMMAND`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dashboard import assets
from dashboard.server import DEFAULT_ENV_DIR, DEFAULT_HOST, DEFAULT_PORT, ServerConfig, ServerError, port_state, serve

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


if __name__ == "__main__":
    cli(prog_name=os.path.basename(__file__))
