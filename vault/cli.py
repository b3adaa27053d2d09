"""``certescrow vault …`` (placeholder)."""

from __future__ import annotations

import click

__all__ = ["vault_group"]


@click.group("vault")
def vault_group() -> None:
    """Encrypted escrow of keys, CSRs, certificates and CA documents (Art.4(7))."""
