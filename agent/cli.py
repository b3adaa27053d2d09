"""``certescrow scan``, ``certescrow inspect`` and ``certescrow agent …`` (placeholders)."""

from __future__ import annotations

import click

__all__ = ["agent_group", "inspect_command", "scan_command"]


@click.command("scan")
def scan_command() -> None:
    """Scan certificate files or directories once."""
    raise click.ClickException("not implemented yet")


@click.command("inspect")
def inspect_command() -> None:
    """Everything about one certificate file or a live server's chain."""
    raise click.ClickException("not implemented yet")


@click.group("agent")
def agent_group() -> None:
    """The daemon that watches certificate stores."""


# `agent run` and `agent check-config` live in agent/daemon_cli.py (the daemon's shell).
from .daemon_cli import check_config_command, run_command  # noqa: E402

agent_group.add_command(run_command)
agent_group.add_command(check_config_command)
