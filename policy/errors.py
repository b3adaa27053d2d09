"""Errors of the policy core.

A breach of the contract is a :class:`~policy.decisions.Decision`, never an exception. These
exceptions are for input the core cannot work with: a bad catalogue, an unknown item or tier, an
unreadable ledger, an event that contradicts the journal. Each class has a message a user can act
on and a stable exit code the CLI returns.
"""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "ApplicationRefusedError",
    "CatalogueError",
    "ContractStateError",
    "FutureEventError",
    "LedgerContentError",
    "LedgerError",
    "PolicyError",
    "UnknownContractError",
    "UnknownItemError",
]


class PolicyError(Exception):
    """Root of the policy core's errors. ``exit_code`` is stable across releases."""

    exit_code = 10


class CatalogueError(PolicyError):
    """The catalogue (or the CA/B Forum schedule) file is missing, malformed or inconsistent."""

    exit_code = 11


class UnknownItemError(PolicyError):
    """An item handle, category or tier that the catalogue does not know."""

    exit_code = 12


class LedgerError(PolicyError):
    """The ledger file cannot be opened, is not a certescrow ledger, or is of a newer format."""

    exit_code = 13


class LedgerContentError(LedgerError):
    """The ledger's database refused a value of the write (its size, its text), not the write
    for a fault of its own: the same write fails the same way however often it is retried."""


class UnknownContractError(PolicyError):
    """A contract id that the ledger has no record of."""

    exit_code = 14


class ContractStateError(PolicyError):
    """An event that the contract's current state does not admit (e.g. answering a terminated
    contract)."""

    exit_code = 15


class FutureEventError(ContractStateError):
    """An event dated after the time of recording: the ledger records what happened. Carries
    the instants so that a CLI can name the option that dated the event, in the user's terms."""

    def __init__(self, message: str, *, at_utc: datetime, now_utc: datetime) -> None:
        super().__init__(message)
        self.at_utc = at_utc
        self.now_utc = now_utc


class ApplicationRefusedError(PolicyError):
    """An application the terms refuse (Art.7, Art.4(1), Art.8); nothing was recorded."""

    exit_code = 16
