"""What the policy core knows about a certificate: plain values, no ``cryptography`` objects.

The agent (or a test) turns a parsed X.509 certificate into :class:`CertificateFacts` before the
rules see it, so the rules stay pure and the policy package never imports a crypto library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .decisions import Finding, Severity
from .tokyo import require_aware

__all__ = [
    "EVALUABLE_FROM_UTC",
    "EVALUABLE_UNTIL_UTC",
    "FACT_LIST_LIMIT",
    "FACT_TEXT_LIMIT",
    "NO_WELL_DEFINED_EXPIRATION_UTC",
    "SAN_LIMIT",
    "CertificateFacts",
    "storable",
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
        for name in self.sans:  # a loop, not any(genexpr): read twice per certificate a scan
            if name.startswith("*."):
                return True
        return False


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


FACT_TEXT_LIMIT = 4096
"""Longest text of a fact (a subject, an issuer's organisation) the ledger and the fleet's wire
take: a certificate's field is attacker-controlled and may be megabytes."""
SAN_LIMIT = 253
"""Longest subjectAltName kept as it is: the longest DNS name. A SAN is an index key of the
ledger (PostgreSQL refuses a B-tree entry over ~2.7 kB), and a longer one names no host."""
FACT_LIST_LIMIT = 1000
"""Most SANs, policy OIDs or extra pairs kept of one certificate."""
_SHORT_LIMITS = {"serial": 256, "key_type": 64, "signature_algorithm": 256}
_TEXTS = ("subject", "subject_cn", "issuer", "issuer_org", "issuer_cn", "serial", "key_type",
          "signature_algorithm")


def _fit(text: str, limit: int) -> str:
    """``text`` with NUL written as RFC 4514 writes it in a name (``\\00``), lone surrogates as
    U+FFFD, cut to ``limit`` characters with a final "…" (no DNS name ends with it)."""
    if "\0" in text:
        text = text.replace("\0", "\\00")
    if not text.isascii() and _has_surrogate(text):
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _fits(text: str, limit: int) -> bool:
    return len(text) <= limit and "\0" not in text and (text.isascii()
                                                          or not _has_surrogate(text))


def _plain(facts: CertificateFacts) -> bool:
    """The common case, checked at once (a scan asks for every certificate)."""
    sans, oids = facts.sans, facts.policy_oids
    if (facts.extra or len(sans) > FACT_LIST_LIMIT or len(oids) > FACT_LIST_LIMIT
            or len(facts.serial) > 256 or len(facts.key_type) > 64
            or len(facts.signature_algorithm) > 256):
        return False
    named = (facts.subject, facts.issuer, facts.subject_cn or "", facts.issuer_org or "",
             facts.issuer_cn or "", *oids)
    if max(map(len, named)) > FACT_TEXT_LIMIT or (sans and max(map(len, sans)) > SAN_LIMIT):
        return False
    text = "".join((*named, *sans, facts.serial, facts.key_type, facts.signature_algorithm))
    return "\0" not in text and (text.isascii() or not _has_surrogate(text))


def storable(facts: CertificateFacts) -> tuple[CertificateFacts, tuple[str, ...]]:
    """The facts as every ledger backend and the fleet's wire take them, and the names of the
    fields that had to change (empty: ``facts`` itself).

    PostgreSQL's text holds no NUL, UTF-8 no lone surrogate, an index entry a few kilobytes: a
    certificate crafted with any of those in a name would otherwise be refused by the ledger or
    the service, and with it every observation reported beside it. Its identity (``sha256``)
    and dates are exact; only descriptive text is escaped or shortened, and the caller says so
    (the reader's ``certificate-text-altered`` finding)."""
    if _plain(facts):
        return facts, ()
    changed: dict[str, Any] = {}
    for name in _TEXTS:
        value = getattr(facts, name)
        limit = _SHORT_LIMITS.get(name, FACT_TEXT_LIMIT)
        if value is not None and not _fits(value, limit):
            changed[name] = _fit(value, limit)
    if len(facts.sans) > FACT_LIST_LIMIT or not all(_fits(s, SAN_LIMIT) for s in facts.sans):
        changed["sans"] = tuple(_fit(s, SAN_LIMIT) for s in facts.sans[:FACT_LIST_LIMIT])
    if (len(facts.policy_oids) > FACT_LIST_LIMIT
            or not all(_fits(o, FACT_TEXT_LIMIT) for o in facts.policy_oids)):
        changed["policy_oids"] = tuple(_fit(o, FACT_TEXT_LIMIT)
                                       for o in facts.policy_oids[:FACT_LIST_LIMIT])
    if (len(facts.extra) > FACT_LIST_LIMIT
            or not all(_fits(k, FACT_TEXT_LIMIT) and _fits(v, FACT_TEXT_LIMIT)
                       for k, v in facts.extra)):
        changed["extra"] = tuple((_fit(k, FACT_TEXT_LIMIT), _fit(v, FACT_TEXT_LIMIT))
                                 for k, v in facts.extra[:FACT_LIST_LIMIT])
    if not changed:
        return facts, ()
    return replace(facts, **changed), tuple(changed)
