"""CertificateFacts built directly, for rule tests that need no real certificate."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from policy.facts import CertificateFacts

ONE_SECOND = timedelta(seconds=1)
_counter = itertools.count()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def facts(not_before: datetime, *, lifetime: timedelta | None = None,
          not_after: datetime | None = None, **kw: Any) -> CertificateFacts:
    """A certificate's facts; ``lifetime`` is the inclusive validity period (notAfter =
    notBefore + lifetime - 1 s), the way CAs and CONTRACT.md count it."""
    if not_after is None:
        not_after = not_before + (lifetime or timedelta(days=90)) - ONE_SECOND
    digest = hashlib.sha256(f"{next(_counter)}".encode()).hexdigest()
    kw.setdefault("sans", ("www.example.jp",))
    return CertificateFacts(sha256=digest, not_before_utc=not_before, not_after_utc=not_after,
                            **kw)
