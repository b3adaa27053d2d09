"""What the policy core knows about a certificate: plain values, no ``cryptography`` objects.

The agent (or a test) turns a parsed X.509 certificate into :class:`CertificateFacts` before the
rules see it, so the rules stay pure and the policy package never imports a crypto library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from .tokyo import require_aware

__all__ = ["CertificateFacts"]

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
