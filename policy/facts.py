"""What the policy core knows about a certificate: plain values, no ``cryptography`` objects.

The agent (or a test) turns a parsed X.509 certificate into :class:`CertificateFacts` before the
rules see it, so the rules stay pure and the policy package never imports a crypto library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .decisions import Finding, Severity
from .tokyo import require_aware

__all__ = [
    "EVALUABLE_FROM_UTC",
    "EVALUABLE_UNTIL_UTC",
    "NO_WELL_DEFINED_EXPIRATION_UTC",
    "CertificateFacts",
    "unevaluable",
]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFacts:
    """The contract-relevant content of one X.509 certificate.

    ``sha256`` is the lowercase hex SHA-256 of the DER encoding: the certificate's identity
    everywhere (ledger, vault, reports). Instants are aware UTC datetimes.
    """

    sha256: str
    not_before_utc: datetime
    not_after_utc: datetime
    subject: str = ""
    """RFC 4514 string of the subject."""
    subject_cn: str | None = None
    issuer: str = ""
    """RFC 4514 string of the issuer."""
    issuer_org: str | None = None
    issuer_cn: str | None = None
    serial: str = ""
    """Serial number as lowercase hex."""
    sans: tuple[str, ...] = ()
    """DNS names and IP addresses of the subjectAltName extension, in certificate order."""
    policy_oids: tuple[str, ...] = ()
    """certificatePolicies OIDs, dotted."""
    is_ca: bool = False
    self_signed: bool = False
    key_type: str = ""
    key_size: int | None = None
    signature_algorithm: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())
    """Free-form, sorted (name, value) pairs an adapter wants carried into explanations."""

    def __post_init__(self) -> None:
        require_aware(self.not_before_utc, "not_before_utc")
        require_aware(self.not_after_utc, "not_after_utc")
        if _SHA256_HEX.fullmatch(self.sha256) is None:
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def is_wildcard(self) -> bool:
        return any(name.startswith("*.") for name in self.sans)


EVALUABLE_FROM_UTC = datetime(2, 1, 1, tzinfo=UTC)
EVALUABLE_UNTIL_UTC = datetime(9997, 12, 31, tzinfo=UTC)
"""The instants (inclusive) the contract's arithmetic can count from: a year of room at the
start of ``datetime``'s range and two at its end for the day, month and year arithmetic of the
articles (three-year tiers, lead times, 30-day notices)."""
NO_WELL_DEFINED_EXPIRATION_UTC = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""RFC 5280 §4.1.2.5 ``99991231235959Z``: a real ``notAfter``, "no well-defined expiration"."""


def unevaluable(facts: CertificateFacts) -> Finding | None:
    """A ``dates-out-of-range`` finding when the certificate's dates lie where the contract's
    arithmetic cannot count: ``notBefore`` outside 0002-01-01 … 9997-12-31 (UTC), or
    ``notAfter`` outside it other than RFC 5280's ``99991231235959Z`` ("no well-defined
    expiration", a real and evaluable ``notAfter``). ``None`` otherwise.

    The rules never raise for such a certificate (day arithmetic saturates at the ends of the
    range), but what they would compute is meaningless: no tier, reckoning day, notice or
    termination day can be counted from the year 1 or into the year 10000. Classification
    reports the finding instead of actions; intake and the ledger refuse such a certificate, so
    one hostile file can never poison a contract's journal. One predicate for all of them.
    """
    nb, na = facts.not_before_utc, facts.not_after_utc
    if not EVALUABLE_FROM_UTC <= nb <= EVALUABLE_UNTIL_UTC:
        which, value = "notBefore", nb
    elif not (EVALUABLE_FROM_UTC <= na <= EVALUABLE_UNTIL_UTC
              or na == NO_WELL_DEFINED_EXPIRATION_UTC):
        which, value = "notAfter", na
    else:
        return None
    return Finding(
        code="dates-out-of-range", clause="", severity=Severity.CRITICAL,
        message=f"{which} {value.isoformat()} lies at the end of the calendar (outside "
                "0002-01-01 … 9997-12-31): the contract's periods, notice and termination "
                "days cannot be counted from it",
    )
