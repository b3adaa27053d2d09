"""Recognising a catalogue item from what a certificate shows.

A certificate shows its issuer (organisation and CN), its CA/B Forum policy OID and its SANs;
it does not show which *contract* it belongs to. So the matcher narrows the catalogue to the
items the certificate is consistent with and returns them as candidates:

* the CA by issuer ``O=`` plus an issuing-CA CN *pattern* from the catalogue (a regex, so a new
  intermediate of the same family is recognised without a code change);
* the validation level by the CA/B Forum policy OID, of which a subscriber certificate carries
  exactly one (EV ``2.23.140.1.1``, DV ``2.23.140.1.2.1``, OV ``2.23.140.1.2.2``, IV
  ``2.23.140.1.2.3``); none or several is a finding and leaves the level open; the CA's own
  vendor OIDs are only a cross-check;
* the wildcard option by a ``*.`` SAN, for CAs whose catalogue has wildcard items.

DigiCert Secure Server ID and Global Server ID look the same in a certificate, and so do
categories I and II: those remain several candidates, and the contract binding decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy.catalogue import Catalogue, CertificateAuthority, Item
from policy.decisions import Finding, Severity
from policy.facts import CertificateFacts

__all__ = [
    "CABF_VALIDATION_OIDS",
    "ItemMatch",
    "ItemMismatch",
    "bound_item_mismatch",
    "looks_like_other_items",
    "match_item",
    "validation_level",
]

CABF_VALIDATION_OIDS: dict[str, str] = {
    "2.23.140.1.1": "ev",
    "2.23.140.1.2.1": "dv",
    "2.23.140.1.2.2": "ov",
    "2.23.140.1.2.3": "iv",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemMatch:
    """What the certificate alone says about its item."""

    ca: CertificateAuthority | None
    """The catalogue CA recognised by issuer organisation and CN pattern, else ``None``."""
    validation: str | None
    """``ev`` | ``ov`` | ``dv`` | ``iv`` from the single CA/B Forum OID, else ``None``."""
    candidates: tuple[str, ...]
    """Item handles consistent with the certificate, in catalogue order (empty: unidentified)."""
    findings: tuple[Finding, ...]

    @property
    def item(self) -> str | None:
        """The handle when exactly one item matches."""
        return self.candidates[0] if len(self.candidates) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "ca": self.ca.key if self.ca else None,
            "validation": self.validation,
            "candidates": list(self.candidates),
            "findings": [f.to_json() for f in self.findings],
        }


def validation_level(facts: CertificateFacts) -> tuple[str | None, tuple[Finding, ...]]:
    """The validation level from the CA/B Forum policy OID, with findings when there is not
    exactly one such OID."""
    levels = [(oid, CABF_VALIDATION_OIDS[oid]) for oid in dict.fromkeys(facts.policy_oids)
              if oid in CABF_VALIDATION_OIDS]
    if len(levels) == 1:
        return levels[0][1], ()
    if not levels:
        return None, (Finding(
            code="no-cabf-policy-oid", clause="", severity=Severity.INFO,
            message="no CA/B Forum validation policy OID (EV/OV/DV/IV): validation level "
                    "unknown",
        ),)
    listed = ", ".join(f"{oid} ({level})" for oid, level in levels)
    return None, (Finding(
        code="several-cabf-policy-oids", clause="", severity=Severity.WARNING,
        message=f"several CA/B Forum validation policy OIDs ({listed}): a subscriber "
                "certificate carries exactly one; validation level unknown",
    ),)


def _issuer_ca(facts: CertificateFacts, catalogue: Catalogue) -> CertificateAuthority | None:
    return catalogue.ca_for_issuer(facts.issuer_org)


def match_item(facts: CertificateFacts, catalogue: Catalogue) -> ItemMatch:
    """The catalogue items ``facts`` is consistent with (see the module docstring)."""
    level, findings_list = validation_level(facts)
    findings = list(findings_list)
    ca = _issuer_ca(facts, catalogue)
    if ca is None or facts.is_ca:
        return ItemMatch(ca=None, validation=level, candidates=(), findings=tuple(findings))
    if not ca.recognises_issuer_cn(facts.issuer_cn):
        findings.append(Finding(
            code="issuer-not-recognised", clause="Art.1", severity=Severity.INFO,
            message=f"issued by {ca.name} (O={facts.issuer_org}) but the issuing CA "
                    f"{facts.issuer_cn!r} matches none of the catalogue's patterns for its "
                    "products: item unidentified",
        ))
        return ItemMatch(ca=None, validation=level, candidates=(), findings=tuple(findings))
    for oid in facts.policy_oids:
        vendor = ca.vendor_policy_oids.get(oid)
        if vendor is not None and level is not None and vendor != level:
            findings.append(Finding(
                code="vendor-policy-oid-mismatch", clause="", severity=Severity.WARNING,
                message=f"{ca.name} policy OID {oid} says {vendor.upper()} but the CA/B Forum "
                        f"OID says {level.upper()}; the CA/B Forum OID decides",
            ))
    items = [item for item in catalogue.items.values() if item.ca == ca.key]
    if level is not None:
        items = [item for item in items if item.validation == level]
    if any(item.wildcard for item in items):
        items = [item for item in items if item.wildcard == facts.is_wildcard]
    return ItemMatch(ca=ca, validation=level, candidates=tuple(i.handle for i in items),
                     findings=tuple(findings))


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemMismatch:
    """Why the item a binding names cannot be the certificate's (Art.1): the finding
    ``item-mismatch`` (its message may quote the certificate's issuer), and the reason again in
    catalogue words only, for a decision that a desk's terminal prints."""

    item: str
    kind: str
    """``issuer`` (not the item's CA), ``validation`` (the CA/B Forum OID contradicts the
    item's level) or ``looks-like`` (the certificate matches other items of the catalogue)."""
    reason_en: str
    reason_ja: str
    finding: Finding


def bound_item_mismatch(facts: CertificateFacts, item: Item, catalogue: Catalogue, *,
                        level: str | bool | None = False) -> ItemMismatch | None:
    """An ``item-mismatch`` when the item a binding names (``--item``, a store's ``item``, a
    contract's item) cannot be the certificate's: its CA cannot have issued it (the issuer
    ``O=`` is not one of the CA's organisations), or its validation level contradicts the
    certificate's single CA/B Forum OID. Category III takes a certificate from any CA (Art.1:
    持ち込み証明書, the certificate the customer obtained), so nothing is checked for it; ``None``
    when the item can be the certificate's. ``level`` is the validation level already read by
    :func:`match_item` (``None`` = unknown), to spare reading it twice."""
    if not item.category.provider_issued or item.ca not in catalogue.cas:
        return None
    ca = catalogue.cas[item.ca]
    if not ca.recognises_org(facts.issuer_org):
        issuer = facts.issuer_org or "no organisation"
        return ItemMismatch(
            item=item.handle, kind="issuer",
            reason_en=f"{item.handle} is a {ca.name} product, and {ca.name} did not issue it",
            reason_ja=f"{item.handle} は {ca.name} の製品ですが、証明書は {ca.name} が発行した"
                      "ものではありません",
            finding=Finding(
                code="item-mismatch", clause="Art.1", severity=Severity.WARNING,
                message=f"bound to {item.handle}, a {ca.name} product, but the certificate was "
                        f"issued by {issuer!r}: {ca.name} cannot have issued it",
            ))
    if level is False:  # not given: read it from the certificate
        level, _ = validation_level(facts)
    if isinstance(level, str) and item.validation is not None and level != item.validation:
        return ItemMismatch(
            item=item.handle, kind="validation",
            reason_en=f"its CA/B Forum policy OID says {level.upper()}, and {item.handle} is "
                      f"{item.validation.upper()}",
            reason_ja=f"証明書の CA/B Forum ポリシー OID は {level.upper()} ですが、"
                      f"{item.handle} は {item.validation.upper()} です",
            finding=Finding(
                code="item-mismatch", clause="Art.1", severity=Severity.WARNING,
                message=f"bound to {item.handle} ({item.validation.upper()}) but the "
                        f"certificate's CA/B Forum policy OID says {level.upper()}: {ca.name} "
                        "does not issue it under that item",
            ))
    return None


def looks_like_other_items(item: Item, candidates: tuple[str, ...]) -> ItemMismatch | None:
    """An ``item-mismatch`` when the certificate matches catalogue items (``candidates``) and
    the bound one is not among them, e.g. a wildcard certificate bound to the item without the
    wildcard option. Not for category III: a certificate from any CA is a BYO certificate, a
    GlobalSign one included, so looking like a GlobalSign product contradicts nothing."""
    if not item.category.provider_issued or not candidates or item.handle in candidates:
        return None
    return ItemMismatch(
        item=item.handle, kind="looks-like",
        reason_en=f"it looks like {' or '.join(candidates)}",
        reason_ja=f"証明書は {'、'.join(candidates)} のものと見られます",
        finding=Finding(
            code="item-mismatch", clause="Art.1", severity=Severity.WARNING,
            message=f"bound to {item.handle} but the certificate looks like "
                    f"{' or '.join(candidates)}",
        ))
