"""``certescrow policy …`` and ``certescrow contract …`` (placeholders)."""

from __future__ import annotations

import click

__all__ = ["contract_group", "policy_group"]


@click.group("policy")
def policy_group() -> None:
    """The contract as code: catalogue, classification, forecast, due actions."""


@click.group("contract")
def contract_group() -> None:
    """Drive a contract's life in the ledger."""
