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
