"""One view of a classified certificate: the row model every output renders.

``scan``, ``inspect``, ``agent run --once`` and the daemon's logs all describe a certificate
with a :class:`CertificateRow`, built by :func:`certificate_row` from a reading, the policy
core's classification and the certificate's place among its neighbours:

* its **role** (:func:`place_certificates`): a leaf, the chain that comes with a leaf
  (intermediate, root), a trust anchor of a trust store, or a lone CA certificate. Only a leaf
  and a lone CA certificate in a store of server certificates are contract certificates; a
  chain's own validity is a finding on its leaf's row;
* whether the private key beside it matches (:func:`pair_key`, the one key-pairing rule);
* the host findings the agent adds: the expiry windows (:class:`~agent.monitoring.ExpiryWindows`),
  a key that does not match, a chain that expires first.

No contract rule lives here: those are :func:`policy.classification.classify_certificate`'s.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from policy.classification import CertificateClassification, clock_finding, days_left
from policy.decisions import SEVERITY_TEXT, Action, Decision, Finding, Severity
from policy.facts import unevaluable
from policy.rules.art6 import end_of_validity, never_expires

from .monitoring import CONTRACT_FINDINGS, ExitMode, ExpiryWindows, worst_counted
from .records import CertificateRecord, FileResult, KeyRecord

__all__ = [
    "CLOCK_FINDINGS",
    "CONTRACT_ROLES",
    "MAX_CHAIN",
    "NO_CONTRACT_JSON",
    "CertificateRow",
    "FileRow",
    "KeyPairing",
    "KeysBeside",
    "Placement",
    "Role",
    "advice_for",
    "certificate_row",
    "clock_severity",
    "key_json",
    "pair_key",
    "place_certificates",
    "what_to_do",
]


class Role(enum.StrEnum):
    """What a certificate is where it was found (JSON ``role``)."""

    LEAF = "leaf"
    """A server (end-entity) certificate: basicConstraints CA is not set."""
    INTERMEDIATE = "intermediate"
    """A CA certificate that comes with a leaf (``chain.pem``, ``fullchain.pem`` positions >= 1,
    a bundle beside the leaf) and is not self-signed."""
    ROOT = "root"
    """A self-signed CA certificate that comes with a leaf."""
    TRUST_ANCHOR = "trust-anchor"
    """A self-signed CA certificate in a directory of CA certificates only (``/etc/ssl/certs``)."""
    CA = "ca"
    """A lone CA certificate: no leaf it belongs to."""


CONTRACT_ROLES = frozenset({Role.LEAF})
"""Roles that are contract certificates (tier, compliance, actions). A lone CA certificate in a
store of server certificates is too (:attr:`Placement.contract_view`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """A certificate's role among its neighbours, and (for a leaf) the CA certificates that
    came with it, nearest first."""

    role: Role
    contract_view: bool
    """Whether the policy core's contract view (tier, compliance, actions, ``ca-certificate``)
    applies: for leaves, and for a lone CA certificate among server certificates."""
    chain: tuple[CertificateRecord, ...] = ()


_LEAF_ALONE = Placement(role=Role.LEAF, contract_view=True)
"""A leaf without CA certificates beside it: most of a store's, one shared placement."""

MAX_CHAIN = 8
"""CA certificates followed up from a leaf. Real chains have two or three; a hostile directory
of thousands of CA certificates chaining to each other must not make pairing quadratic."""


def place_certificates(results: Sequence[FileResult]) -> dict[tuple[str, int], Placement]:
    """The placement of every certificate of ``results``, the files of one directory.

    A CA certificate is a leaf's chain when it is in the same file as a leaf, or when a leaf of
    the directory chains up to it by issuer name (``chain.pem`` beside ``cert.pem``). A CA
    certificate no leaf chains to is lone: in a directory that holds leaves it is a CA
    certificate in a store of server certificates (the only case that keeps ``ca-certificate``);
    in a directory of CA certificates only it is a trust anchor (self-signed) or a CA.
    Linear in the number of certificates: each issuer name's chain is walked once (at most
    :data:`MAX_CHAIN` steps, no recursion) and shared by the leaves it issued.
    """
    first: dict[str, CertificateRecord] = {}
    in_file: dict[tuple[str, str], CertificateRecord] = {}
    cas: list[CertificateRecord] = []
    leaves: list[CertificateRecord] = []
    leaf_files: set[str] = set()
    for result in results:
        for record in result.certificates:
            if record.facts.is_ca:
                cas.append(record)
                first.setdefault(record.facts.subject, record)
                in_file.setdefault((record.path, record.facts.subject), record)
            else:
                leaves.append(record)
                leaf_files.add(record.path)
    memo: dict[str, tuple[CertificateRecord, ...]] = {}
    out: dict[tuple[str, int], Placement] = {}
    chained: set[tuple[str, int]] = set()
    for leaf in leaves:
        # fullchain.pem: the issuer in the leaf's own file first
        nearest = (in_file.get((leaf.path, leaf.facts.issuer)) or first.get(leaf.facts.issuer)
                   if cas else None)
        if nearest is None:
            out[(leaf.path, leaf.index)] = _LEAF_ALONE
            continue
        above = () if nearest.facts.self_signed else _chain_above(
            nearest.facts.issuer, first, memo)
        chain = tuple(c for n, c in enumerate((nearest, *above))
                      if n == 0 or c.facts.sha256 != nearest.facts.sha256)[:MAX_CHAIN]
        chained.update((c.path, c.index) for c in chain)
        out[(leaf.path, leaf.index)] = Placement(role=Role.LEAF, contract_view=True,
                                                 chain=chain)
    # The same CA certificate in chain.pem as in fullchain.pem after the leaf is the chain too.
    chain_shas = {record.facts.sha256 for record in cas
                  if (record.path, record.index) in chained or record.path in leaf_files}
    for record in cas:
        key = (record.path, record.index)
        if key in chained or record.facts.sha256 in chain_shas:
            role = Role.ROOT if record.facts.self_signed else Role.INTERMEDIATE
            out[key] = Placement(role=role, contract_view=False)
        elif leaves:
            out[key] = Placement(role=Role.CA, contract_view=True)
        else:
            role = Role.TRUST_ANCHOR if record.facts.self_signed else Role.CA
            out[key] = Placement(role=role, contract_view=False)
    return out


def _chain_above(name: str, first: dict[str, CertificateRecord],
                 memo: dict[str, tuple[CertificateRecord, ...]]) -> tuple[CertificateRecord, ...]:
    """The CA certificates issuing ``name`` upwards (at most :data:`MAX_CHAIN`), computed once
    per name."""
    if name in memo:
        return memo[name]
    chain: list[CertificateRecord] = []
    seen: set[str] = set()
    current = name
    for _ in range(MAX_CHAIN):
        issuer = first.get(current)
        if issuer is None or issuer.facts.sha256 in seen:
            break
        seen.add(issuer.facts.sha256)
        chain.append(issuer)
        if issuer.facts.self_signed:
            break
        current = issuer.facts.issuer
    memo[name] = tuple(chain)
    return memo[name]


# ---------------------------------------------------------------- key pairing


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPairing:
    """Whether a private key beside a certificate matches it: ``None`` when there is no key to
    compare with (or the certificate is not expected to have one here)."""

    matches: bool | None
    finding: Finding | None = None
    """``key-mismatch`` (critical) when a leaf's keys are there and none matches."""


@dataclass(frozen=True, slots=True)
class KeysBeside:
    """The private keys of a directory, indexed once: pairing a certificate is then a lookup,
    never a scan of the directory's keys (a flat store of 20,000 sites must not pair in
    quadratic time)."""

    spkis: frozenset[str]
    names: tuple[str, ...]
    """File names holding a comparable key, sorted (the first few go into a mismatch message)."""

    @classmethod
    def of(cls, keys: Iterable[KeyRecord], elsewhere: AbstractSet[str] = frozenset()
           ) -> KeysBeside:
        spkis = set(elsewhere)
        names: set[str] = set()
        for key in keys:
            if key.spki_sha256:
                spkis.add(key.spki_sha256)
                names.add(os.path.basename(key.path))
        return cls(spkis=frozenset(spkis), names=tuple(sorted(names)))


_NAMES_SHOWN = 3
_NO_KEYS = KeysBeside(spkis=frozenset(), names=())
_NO_PAIRING = KeyPairing(matches=None)


def pair_key(record: CertificateRecord, *, role: Role, file_keys: Sequence[KeyRecord],
             dir_keys: KeysBeside | Sequence[KeyRecord],
             elsewhere: AbstractSet[str] = frozenset()) -> KeyPairing:
    """The one key-pairing rule (scan, inspect, the daemon).

    The keys in the certificate's own file decide; without any, the keys of its directory do
    (certbot's ``cert.pem`` / ``privkey.pem``). Keys are compared by SubjectPublicKeyInfo
    SHA-256; an encrypted key nobody could open has none and is not compared. A leaf with keys
    around and none matching is critical: a server configured with that pair cannot serve the
    certificate. A CA certificate beside a key (``chain.pem``) is not expected to match: it is
    ``True`` when it does, else ``None``. ``dir_keys``: the directory's keys (pass a
    :class:`KeysBeside` built once per directory when pairing many certificates);
    ``elsewhere``: SPKI SHA-256 of the directory's keys read in another batch (a directory
    split over the scan's workers).
    """
    if record.spki_sha256 is None:
        return KeyPairing(matches=None)
    beside = KeysBeside.of(file_keys) if file_keys else _NO_KEYS
    if not beside.spkis:
        if not isinstance(dir_keys, KeysBeside):
            beside = KeysBeside.of(dir_keys, elsewhere)
        elif elsewhere:
            beside = KeysBeside(spkis=dir_keys.spkis | elsewhere, names=dir_keys.names)
        else:
            beside = dir_keys
    if not beside.spkis:
        return _NO_PAIRING
    if record.spki_sha256 in beside.spkis:
        return KeyPairing(matches=True)
    if role is not Role.LEAF:
        return KeyPairing(matches=None)
    names = list(beside.names[:_NAMES_SHOWN]) or ["its directory"]
    more = len(beside.names) - _NAMES_SHOWN
    shown = ", ".join(names) + (f" and {more} other file(s)" if more > 0 else "")
    where = f"{os.path.basename(record.path)}#{record.index}"
    return KeyPairing(matches=False, finding=Finding(
        code="key-mismatch", clause="", severity=Severity.CRITICAL,
        message=f"the certificate in {where} does not match the private key in "
                f"{shown}: a server configured with them cannot serve it"))


# ---------------------------------------------------------------- the row


NO_CONTRACT_JSON: Mapping[str, Any] = MappingProxyType({
    "item": None, "candidates": [], "category": None, "contracted_tier": None,
    "compliant": None, "by_allowance": False, "renewable": None})
"""What the JSON of a row without the contract view (a chain certificate, a trust anchor)
says instead of the classification's contract fields: each replaces its key in place."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRow:
    """One certificate at one place, with what the contract and the host make of it."""

    record: CertificateRecord
    classification: CertificateClassification
    role: Role = Role.LEAF
    contract_view: bool = True
    """``False`` for a chain certificate or a trust anchor: no tier, compliance or actions."""
    findings: tuple[Finding, ...]
    """Reader findings, then the policy core's (contract view only), then the agent's host
    findings (expiry windows, key pairing, the chain)."""
    actions: tuple[Decision, ...]
    """The policy core's actions (empty without the contract view)."""
    key_matches: bool | None
    store: str | None = None
    """The daemon's store root this certificate was found under (``None`` for ``scan``)."""
    severity: Severity = field(init=False)
    """The worst of the findings and actions, whatever the mode: what sorting shows first."""
    host_severity: Severity = field(init=False)
    contract_severity: Severity = field(init=False)

    def __post_init__(self) -> None:
        # worst_counted() for HOST and for CONTRACT, in one pass over the findings
        host = contract = Severity.OK
        for finding in self.findings:
            severity = finding.severity
            if finding.code in CONTRACT_FINDINGS:
                if severity > contract:
                    contract = severity
            elif severity > host:
                host = severity
        for action in self.actions:
            if action.severity > contract:
                contract = action.severity
        object.__setattr__(self, "host_severity", host)
        object.__setattr__(self, "contract_severity", contract)
        object.__setattr__(self, "severity", contract if contract > host else host)

    @property
    def location(self) -> str:
        return f"{self.record.path}#{self.record.index}"

    @property
    def not_after_day(self) -> date:
        """The Asia/Tokyo date the certificate ends on: the date ``days_left`` counts to."""
        return end_of_validity(self.record.facts.not_after_utc)

    def to_json(self) -> dict[str, Any]:
        """The one JSON object of a certificate (docs/agent.md lists every key)."""
        f = self.record.facts
        out: dict[str, Any] = {
            "kind": "certificate",
            "path": self.record.path,
            "index": self.record.index,
            "format": self.record.fmt,
            "role": self.role._value_,  # the enum's value without its Python property
            "store": self.store,
            **self.classification.to_json(findings=self.findings, severity=self.severity,
                                          actions=self.actions),
        }
        if not self.contract_view:
            out.update(NO_CONTRACT_JSON)
        out.update({
            "host_severity": SEVERITY_TEXT[self.host_severity],
            "contract_severity": SEVERITY_TEXT[self.contract_severity],
            "serial": f.serial,
            "issuer_org": f.issuer_org,
            "issuer_cn": f.issuer_cn,
            "key_type": f.key_type,
            "key_size": f.key_size,
            "signature_algorithm": f.signature_algorithm,
            "policy_oids": list(f.policy_oids),
            "is_ca": f.is_ca,
            "self_signed": f.self_signed,
            "key_matches": self.key_matches,
        })
        return out


def certificate_row(
    record: CertificateRecord,
    classification: CertificateClassification,
    *,
    placement: Placement,
    pairing: KeyPairing,
    at: datetime,
    windows: ExpiryWindows = ExpiryWindows(),  # noqa: B008 - frozen, immutable default
    file_findings: Sequence[Finding] = (),
    extra_findings: Sequence[Finding] = (),
    store: str | None = None,
) -> CertificateRow:
    """Build the row of ``record``: the one place that decides which findings a certificate
    shows (``file_findings``: the file's own, e.g. trailing data; ``extra_findings``: the
    daemon's escrow findings)."""
    shown: tuple[Finding, ...] = ()
    actions: tuple[Decision, ...] = ()
    if placement.contract_view:
        shown = classification.findings
        actions = classification.actions
    added: list[Finding] = []
    if _has_expiry(placement):
        added.extend(_expiry(record, classification.days_left, windows, at))
    if pairing.finding is not None:
        added.append(pairing.finding)
    if placement.chain:
        added.extend(_chain_findings(record, placement.chain, at))
    added.extend(extra_findings)
    # Most rows show the classification's findings and nothing more: then the row holds the
    # classification's tuple itself, which the certificates of one shape share (the JSON
    # renderer writes it once: agent.render).
    findings = (shown if not (record.findings or file_findings or added)
                else (*record.findings, *file_findings, *shown, *added))
    return CertificateRow(record=record, classification=classification, role=placement.role,
                          contract_view=placement.contract_view, findings=findings,
                          actions=actions, key_matches=pairing.matches, store=store)


CLOCK_FINDINGS = frozenset({"expired", "not-yet-valid", "expires-soon", "chain-expired",
                            "chain-expires-first"})
"""The row's findings that the clock alone changes, the certificate and its place unchanged:
what the daemon noted of a row when it read the file (agent/index.py ``Problem``) is current
but for these, which :func:`clock_severity` gives at any instant."""


def _has_expiry(placement: Placement) -> bool:
    """Whether the row of a certificate so placed has an expiry (a leaf, or a lone CA
    certificate among server certificates; never a trust anchor or a chain's CA)."""
    return placement.role is Role.LEAF or (placement.role is Role.CA and placement.contract_view)


def clock_severity(record: CertificateRecord, placement: Placement, *, at: datetime,
                   windows: ExpiryWindows) -> Severity:
    """The worst of the :data:`CLOCK_FINDINGS` the row of ``record`` would have at ``at``,
    without classifying it again (the heartbeat's inventory asks it of every certificate a
    minute): ``expired`` and ``not-yet-valid`` as the policy core decides them (contract view
    only, and not for dates it cannot evaluate), ``expires-soon`` and the chain's findings by
    the functions :func:`certificate_row` itself calls."""
    facts = record.facts
    worst = Severity.OK
    if placement.contract_view and unevaluable(facts) is None:
        clock = clock_finding(facts, at)
        if clock is not None:
            worst = clock.severity
    if _has_expiry(placement):
        for finding in _expiry(record, days_left(facts.not_after_utc, at), windows, at):
            worst = max(worst, finding.severity)
    if placement.chain:
        for finding in _chain_findings(record, placement.chain, at):
            worst = max(worst, finding.severity)
    return worst


def _expiry(record: CertificateRecord, days: int, windows: ExpiryWindows,
            at: datetime) -> list[Finding]:
    """``expires-soon`` for a certificate with ``days`` Asia/Tokyo days left (the
    classification's ``days_left``)."""
    facts = record.facts
    # Expired is the instant, not the Tokyo day: a certificate that ended at 02:44 JST is
    # expired all of that day (days_left 0), never also "expires in 0 day(s)".
    if (at > facts.not_after_utc or days < 0 or never_expires(facts)
            or facts.not_after_utc < facts.not_before_utc):
        return []  # expired (the policy core's `expired`) or never valid: said already
    severity = windows.severity(days)
    if severity is Severity.OK:
        return []
    day = end_of_validity(facts.not_after_utc).isoformat()
    critical = severity is Severity.CRITICAL
    window = windows.critical_days if critical else windows.warning_days
    return [Finding(code="expires-soon", clause="", severity=severity,
                    message=f"expires in {days} day(s), on {day} (Asia/Tokyo): inside the "
                            f"{'critical' if critical else 'warning'} window of {window} "
                            "day(s)")]


def _chain_findings(leaf: CertificateRecord, chain: Sequence[CertificateRecord],
                    at: datetime) -> list[Finding]:
    out: list[Finding] = []
    leaf_end = leaf.facts.not_after_utc
    for ca in chain:
        what = "root" if ca.facts.self_signed else "intermediate"
        name = ca.facts.subject_cn or ca.facts.subject
        where = f"{os.path.basename(ca.path)}#{ca.index}"
        day = end_of_validity(ca.facts.not_after_utc).isoformat()
        if at > ca.facts.not_after_utc:
            out.append(Finding(
                code="chain-expired", clause="", severity=Severity.CRITICAL,
                message=f"the {what} certificate {name} ({where}) that comes with it expired "
                        f"on {day} (Asia/Tokyo): clients reject the chain"))
        elif ca.facts.not_after_utc < leaf_end:
            leaf_day = end_of_validity(leaf_end).isoformat()
            out.append(Finding(
                code="chain-expires-first", clause="", severity=Severity.WARNING,
                message=f"the {what} certificate {name} ({where}) that comes with it expires "
                        f"on {day}, before this certificate ({leaf_day}, Asia/Tokyo)"))
    return out


# ---------------------------------------------------------------- files without certificates


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRow:
    """A readable file without certificates that still has something to say (a key file)."""

    path: str
    keys: tuple[KeyRecord, ...]
    findings: tuple[Finding, ...]

    @property
    def severity(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.OK)

    @property
    def host_severity(self) -> Severity:
        return worst_counted(self.findings, (), ExitMode.HOST)

    @property
    def contract_severity(self) -> Severity:
        return worst_counted(self.findings, (), ExitMode.CONTRACT)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "file",
            "path": self.path,
            "keys": [key_json(k) for k in self.keys],
            "severity": self.severity.name.lower(),
            "host_severity": self.host_severity.name.lower(),
            "contract_severity": self.contract_severity.name.lower(),
            "findings": [x.to_json() for x in self.findings],
        }


def key_json(key: KeyRecord) -> dict[str, Any]:
    return {"index": key.index, "key_type": key.key_type, "key_size": key.key_size,
            "encrypted": key.encrypted, "spki_sha256": key.spki_sha256,
            "mode": f"{key.mode:04o}", "owner_uid": key.owner_uid}


# ---------------------------------------------------------------- what to do

_ADVICE: dict[str, str] = {
    "expired": "renew the certificate now and deploy it (certbot: `certbot renew`, then reload "
               "the server)",
    "expires-soon": "renew and deploy before it ends; if certbot manages it, check that its "
                    "timer runs (`systemctl list-timers 'certbot*'`)",
    "not-yet-valid": "check the host's clock, or keep serving the previous certificate until "
                     "this one is valid",
    "inverted-validity": "replace it: a certificate that ends before it begins is never valid",
    "key-mismatch": "pair the certificate with its own private key (restore the key it was "
                    "issued for, or reissue) before the server reloads",
    "private-key-world-readable": "make the key file readable by its owner only (chmod 600) "
                                  "and treat the key as exposed: reissue with a new key",
    "private-key-group-readable": "make the key file readable by its owner only (chmod 600), "
                                  "unless the group is the server's own",
    "chain-expired": "install the CA's current intermediate certificate with this one "
                     "(certbot: `certbot renew --force-renewal` fetches it)",
    "chain-expires-first": "install the CA's current chain: the one deployed ends before the "
                           "certificate",
    # inspect HOST:PORT only; its message says which problem (verify_problem) and its fix
    "chain-unverified": "fix what the chain-unverified finding names (the chain the server "
                        "sends, the name or dates of its certificate, or the trust anchors: "
                        "--ca-file), reload the server, then check again with `certescrow "
                        "inspect HOST:PORT`",
    "no-san": "reissue with a subjectAltName naming the server",
    "public-max-validity-exceeded": "reissue within the CA/B Forum maximum validity: browsers "
                                    "may reject it",
    "malformed-certificate": "replace the file with a well-formed copy from the CA",
    "dates-out-of-range": "ask the CA to reissue: its dates lie at the ends of what the rules "
                          "can evaluate",
    "trailing-data": "remove the data after the last certificate block",
    "certificate-text-altered": "find where the certificate came from: a name with a NUL "
                                "character or oversized fields is a crafted certificate",
    "parser-warning": "ask the CA to reissue: the certificate's encoding is not standard",
    "non-positive-serial": "ask the CA to reissue: a serial number must be positive "
                           "(RFC 5280)",
    "renewal-blocked": "contract desk: a category III contract cannot be renewed with a "
                       "certificate of 90 days or less (Art.6(3) proviso)",
    "non-compliant": "contract desk: the validity period exceeds the contracted tier (Art.3); "
                     "reissue within the tier or change the contract",
    "ca-certificate": "move the CA certificate out of the server store, or put it beside the "
                      "server certificate it belongs to",
    "item-mismatch": "check the bound item (--item, or the store's `item`): its CA cannot have "
                     "issued this certificate",
    "tier-not-offered": "check the bound tier (--tier, or the store's `tier`)",
    "binding-category-mismatch": "check the binding: the item's category decides",
    "item-unidentified": "bind the contract's item (--item, or the store's `item`)",
    "several-cabf-policy-oids": "bind the contract's item (--item, or the store's `item`)",
    "vendor-policy-oid-mismatch": "bind the contract's item (--item, or the store's `item`)",
    "escrow-failed": "check the vault (`certescrow vault verify`) and its key source: the key "
                     "is not escrowed yet",
}

_ACTION_ADVICE: dict[Action, str] = {
    Action.NOTIFY: "contract desk: send the renewal notice (`certescrow contract notify ID`; "
                   "a certificate no contract holds is bound first: `contract bind`)",
    Action.AWAIT_ANSWER: "contract desk: the customer's answer is awaited",
    Action.ANSWER_OVERDUE: "contract desk: the customer's answer is overdue; escalate",
    Action.RENEWAL_BLOCKED: "contract desk: the contract cannot be renewed with this "
                            "certificate (Art.6(3) proviso)",
    Action.NON_COMPLIANT: "contract desk: the certificate does not comply with its tier (Art.3)",
    Action.REPLACE_CERTIFICATE: "renew the certificate and deploy it",
    Action.NOTICE_MISSED: "contract desk: the renewal notice was not sent by the last day of "
                          "validity and can no longer be (Art.6(1)); ask the customer whether "
                          "they renew, and bind the successor certificate",
}


_ADVICE_BY_VALUE: dict[str, str] = {action.value: text for action, text in _ACTION_ADVICE.items()}
# the action a finding puts before the desk gives that finding's advice (shown once)
_ADVICE_BY_VALUE[Action.ITEM_MISMATCH.value] = _ADVICE["item-mismatch"]


def what_to_do(findings: Sequence[Finding], actions: Sequence[Decision], *,
               limit: int = 2) -> list[str]:
    """Advice for the warning and critical findings and actions, worst first, at most
    ``limit`` distinct sentences: ``inspect``'s "what to do", below the findings themselves,
    so a finding without advice of its own is left to its message (pointing at ``certescrow
    inspect`` from inside its output is no advice)."""
    return advice_for([(f.code, int(f.severity)) for f in findings],
                      [(a.action.value, a.due.isoformat() if a.due is not None else None,
                        int(a.severity)) for a in actions], limit=limit, detailed=True)


def advice_for(findings: Sequence[tuple[str, int]],
               actions: Sequence[tuple[str, str | None, int]], *, limit: int = 2,
               detailed: bool = False) -> list[str]:
    """:func:`what_to_do` of findings as (code, severity) and actions as (action, due day,
    severity): what the human table keeps of a row (:class:`agent.render.TableEntry`). The
    table shows codes only, so there a finding without advice points at ``certescrow
    inspect``, which prints its message; ``detailed`` (inspect itself) leaves it out."""
    ranked: list[tuple[int, int, str]] = []
    for n, (code, severity) in enumerate(findings):
        if severity >= Severity.WARNING:
            advice = _ADVICE.get(code)
            if advice is None and detailed:
                continue
            text = advice or f"see `certescrow inspect` ({code})"
            ranked.append((-severity, n, text))
    for n, (action, due, severity) in enumerate(actions, start=len(findings)):
        if severity >= Severity.WARNING:
            text = _ADVICE_BY_VALUE.get(action, f"contract desk: {action}")
            if due is not None:
                text += f" (due {due})"
            ranked.append((-severity, n, text))
    out: list[str] = []
    for _, _, text in sorted(ranked):
        if text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out
