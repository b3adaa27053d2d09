"""The interface the agent reports to.

The agent never writes the ledger directly: it hands :class:`Observation` values to an
:class:`Intake`. The embedded implementation is the SQLite ledger (``policy.ledger``); a remote
policy core can implement the same protocol later without the agent or the rules changing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .category import Category
from .facts import CertificateFacts
from .tiers import Tier
from .tokyo import require_aware

__all__ = ["Binding", "Intake", "IntakeReceipt", "Observation"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """What a store's configuration says its certificates are to the contract.

    All fields optional: an empty binding means "unbound" (a certificate that matches no
    catalogue item is then treated as BYO, category III). ``match_by_san`` asks the ledger to
    find the contract whose bound certificates share a SAN with the observed one.
    """

    contract_id: str | None = None
    category: Category | None = None
    item: str | None = None
    tier: Tier | None = None
    match_by_san: bool = False

    @property
    def is_empty(self) -> bool:
        return not (self.contract_id or self.category or self.item or self.tier
                    or self.match_by_san)


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One certificate seen at one place at one time.

    Identity for idempotent intake is ``(host, location, index, facts.sha256)``: reporting the
    same observation twice records nothing new.
    """

    facts: CertificateFacts
    host: str
    location: str
    """File path, or ``host:port`` for a live server."""
    index: int
    """Position of the certificate inside its file (0-based)."""
    observed_at_utc: datetime
    binding: Binding = Binding()
    key_matches: bool | None = None
    """Whether the private key found beside it matches; ``None`` when no key was found."""

    def __post_init__(self) -> None:
        require_aware(self.observed_at_utc, "observed_at_utc")


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeReceipt:
    """What intake did with a batch: how many observations were new, and the contracts they
    were attributed to (``None`` for unbound certificates)."""

    recorded: int
    unchanged: int
    contracts: tuple[str | None, ...]
    refused: int = 0
    """Observations refused because the rules cannot evaluate their certificate (dates at
    the ends of the representable range): never recorded, the agent reports them itself."""
    queued: bool = False
    """The observations were only queued for a ledger elsewhere (a fleet agent's outbox):
    ``recorded`` then counts what was queued, and nothing is known yet of what is new."""


class Intake(Protocol):
    """Where the agent reports what it saw. Implementations must be idempotent."""

    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        """Record observations made at ``at``; duplicates of earlier reports change nothing."""
        ...

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        """Record that nothing is at ``location`` any more; returns how many certificates were
        last seen there."""
        ...
