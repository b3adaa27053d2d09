"""Shared builders for the ledger, state and evaluation tests (POLICY-LEDGER's tests)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from policy.category import Category
from policy.events import ApplicationAccepted, CertificateBound
from policy.facts import CertificateFacts
from policy.tiers import Tier

__all__ = ["T0", "accepted", "bound", "facts", "utc"]

T0 = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
"""2026-01-15 12:00 JST."""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def facts(*, not_before: datetime = T0, lifetime: timedelta | None = None,
          not_after: datetime | None = None, sans: tuple[str, ...] = ("www.example.jp",),
          tag: str = "a", is_ca: bool = False, issuer_org: str | None = None) -> CertificateFacts:
    """Certificate facts with the inclusive lifetime CONTRACT.md uses (default 1 year-ish)."""
    if not_after is None:
        not_after = not_before + (lifetime or timedelta(days=300)) - timedelta(seconds=1)
    sha = hashlib.sha256(f"{tag}|{not_before}|{not_after}|{sans}".encode()).hexdigest()
    return CertificateFacts(sha256=sha, not_before_utc=not_before, not_after_utc=not_after,
                            sans=sans, is_ca=is_ca, issuer_org=issuer_org,
                            subject_cn=sans[0] if sans else None)


def accepted(contract_id: str = "c1", *, at: datetime = T0, item: str = "byo",
             category: Category = Category.III,
             tier: Tier | None = Tier.ONE_YEAR) -> ApplicationAccepted:
    return ApplicationAccepted(contract_id=contract_id, at_utc=at, item=item,
                               category=category, tier=tier)


def bound(contract_id: str = "c1", *, at: datetime = T0,
          cert: CertificateFacts | None = None) -> CertificateBound:
    return CertificateBound(contract_id=contract_id, at_utc=at, facts=cert or facts())
