"""What the policy core knows about a certificate: plain values, no ``cryptography`` objects.

The agent (or a test) turns a parsed X.509 certificate into :class:`CertificateFacts` before the
rules see it, so the rules stay pure and the policy package never imports a crypto library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from .decisions import Finding, Severity
from .tokyo import TOKYO, require_aware

__all__ = ["CertificateFacts", "unevaluable"]

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


def _tokyo_year(instant: datetime) -> int:
    """The Tokyo calendar year of ``instant``; 10000 past 9999-12-31T15:00Z, 0 before
    0001-01-01 in Tokyo (both beyond what ``date`` holds)."""
    try:
        return instant.astimezone(TOKYO).year
    except OverflowError:
        return 10_000 if instant.year >= 9999 else 0


def unevaluable(facts: CertificateFacts) -> Finding | None:
    """A ``dates-out-of-range`` finding when the certificate's dates lie where the contract's
    arithmetic cannot count: a ``notBefore`` in the first or last year ``datetime`` holds (year
    1 or 9999 in Tokyo, or beyond), or a ``notAfter`` in year 1. ``None`` otherwise.

    The rules never raise for such a certificate (day arithmetic saturates at the ends of the
    range), but what they would compute is meaningless: no tier, reckoning day, notice or
    termination day can be counted from the year 1 or into the year 10000. RFC 5280's
    ``99991231235959Z`` ("no well-defined expiration") is a real ``notAfter`` and evaluable.
    Classification reports the finding instead of actions; intake and the ledger refuse such a
    certificate with it, so one hostile file can never poison a contract's journal.
    """
    nb_year = _tokyo_year(facts.not_before_utc)
    na_year = _tokyo_year(facts.not_after_utc)
    if nb_year > 1 and nb_year < 9999 and na_year > 1:
        return None
    which = "notBefore" if not 1 < nb_year < 9999 else "notAfter"
    value = facts.not_before_utc if which == "notBefore" else facts.not_after_utc
    return Finding(
        code="dates-out-of-range", clause="", severity=Severity.CRITICAL,
        message=f"{which} {value.isoformat()} lies at the end of the calendar (year 1 or 9999, "
                "Asia/Tokyo): the contract's periods, notice and termination days cannot be "
                "counted from it",
    )
