"""Classifying one certificate against the contract: everything ``policy classify`` and the
agent report about it, from facts, a binding and a clock.

The binding (store configuration or ``--category/--item/--tier``) beats what the matchers infer,
because a certificate cannot show its contract: DigiCert Secure Server ID and Global Server ID,
and categories I and II, look the same. A certificate that matches no catalogue item and whose
binding names none is category III ``byo``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from policy.catalogue import Catalogue, CertificateAuthority, Item
from policy.category import Category
from policy.decisions import SEVERITY_TEXT, Action, Decision, Finding, Severity
from policy.facts import CertificateFacts, unevaluable
from policy.forecast import MaxValiditySchedule, br_days, embedded_schedule
from policy.intake import Binding
from policy.matchers import (
    ItemMatch,
    ItemMismatch,
    bound_item_mismatch,
    looks_like_other_items,
    match_item,
)
from policy.periods import DEFAULT_PERIOD_RULE, PeriodRule, duration_en
from policy.rules.art3 import (
    Compliance,
    compliance,
    compliance_decisions,
    exceeds_offered_decisions,
)
from policy.rules.art6 import art6_3_period, end_of_validity, renewal_decisions
from policy.rules.art8 import abolition_decisions
from policy.settings import PolicySettings
from policy.tiers import TIERS_ASCENDING, Tier, classify, validity_period
from policy.timeparse import format_instant
from policy.tokyo import tokyo_date

__all__ = [
    "CertificateClassification",
    "ContractFit",
    "PolicySettings",
    "classify_certificate",
    "clock_finding",
    "contract_fit",
    "days_left",
]


_NEW = object.__new__


@dataclass(frozen=True, kw_only=True)
class CertificateClassification:
    """What the contract says of one certificate. Without ``__slots__`` (unlike the other
    facts and decisions): the classifications of one shape are copies of the first, made by
    copying its attribute dict in one step (:meth:`with_facts`)."""

    facts: CertificateFacts
    validity_seconds: int
    tier: Tier
    """The strict tier (Art.3): the smallest that admits the certificate, no allowance."""
    item: str | None
    category: Category
    contracted_tier: Tier | None
    compliant: bool | None
    """``None`` when no contracted tier is known."""
    renewable: bool
    """``False`` for category III whose validity period is <= 90 days (Art.6(3) proviso)."""
    days_left: int
    """Asia/Tokyo calendar days from ``at``'s date to notAfter's date (negative: expired)."""
    findings: tuple[Finding, ...]
    actions: tuple[Decision, ...]
    candidates: tuple[str, ...] = ()
    """Items the certificate is consistent with when the binding did not decide."""
    ca: str | None = None
    """Catalogue key of the recognised issuing CA."""
    validation: str | None = None
    by_allowance: bool = False
    """Compliant only under the Art.3 proviso's CA transition allowance."""
    _told: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    """What :meth:`to_json` says of the fields above but the certificate's own, made on first
    use and shared by the classifications of its shape served after that (read-only)."""

    def with_facts(self, facts: CertificateFacts, *, actions: tuple[Decision, ...],
                   findings: tuple[Finding, ...]) -> CertificateClassification:
        """This classification of another certificate of the same shape (:func:`_rebased`):
        every other field, and what :meth:`to_json` made of them, shared; copied in one step."""
        new = _NEW(CertificateClassification)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.update(facts=facts, actions=actions, findings=findings)
        return new

    @property
    def severity(self) -> Severity:
        worst = [f.severity for f in self.findings] + [a.severity for a in self.actions]
        return max(worst, default=Severity.OK)

    def to_json(self, *, findings: Sequence[Finding] | None = None,
                severity: Severity | None = None,
                actions: Sequence[Decision] | None = None) -> dict[str, Any]:
        """``findings``/``severity``/``actions`` replace the classification's own, for a caller
        (the scan report) that adds findings of its own or shows other actions and would
        otherwise render these twice."""
        f = self.facts
        shown = self.findings if findings is None else findings
        acts = self.actions if actions is None else actions
        worst = self.severity if severity is None else severity
        return {
            "sha256": f.sha256,
            "subject": f.subject,
            "subject_cn": f.subject_cn,
            "issuer": f.issuer,
            "sans": list(f.sans),
            "not_before": format_instant(f.not_before_utc),
            "not_after": format_instant(f.not_after_utc),
            **self.shape_json(),
            "severity": SEVERITY_TEXT[worst],
            "findings": [x.to_json() for x in shown],
            "actions": [x.to_json() for x in acts],
        }

    def shape_json(self) -> dict[str, Any]:
        """What :meth:`to_json` says between ``not_after`` and ``severity``: the fields but the
        certificate's own, in its order. Made once and shared (read it, never change it) by the
        classifications :meth:`with_facts` copies from this one, so a renderer may remember
        what it made of it by its identity (:func:`agent.render.json_line`)."""
        told = self._told
        if told is None:
            told = self.__dict__["_told"] = {
                "validity_seconds": self.validity_seconds,
                "tier": self.tier._value_,  # the enum's value without its Python property
                "renewable": self.renewable,
                "item": self.item,
                "candidates": list(self.candidates),
                "category": self.category._value_,
                "ca": self.ca,
                "validation": self.validation,
                "contracted_tier": (self.contracted_tier._value_ if self.contracted_tier
                                    else None),
                "compliant": self.compliant,
                "by_allowance": self.by_allowance,
                "days_left": self.days_left,
            }
        return told


def _resolve_item(facts: CertificateFacts, match: ItemMatch, binding: Binding,
                  catalogue: Catalogue, findings: list[Finding]
                  ) -> tuple[Item | None, Category, tuple[str, ...], ItemMismatch | None]:
    """Binding first, matchers second, BYO last; with the bound item's mismatch (Art.1)."""
    if binding.item:
        item = catalogue.item(binding.item)
        if binding.category is not None and binding.category is not item.category:
            findings.append(Finding(
                code="binding-category-mismatch", clause="Art.1", severity=Severity.WARNING,
                message=f"the binding says category {binding.category.value} but item "
                        f"{item.handle} is category {item.category.value}; the item decides",
            ))
        mismatch = (bound_item_mismatch(facts, item, catalogue, level=match.validation)
                    or looks_like_other_items(item, match.candidates))
        if mismatch is not None:
            findings.append(mismatch.finding)
        return item, item.category, (), mismatch
    candidates = [catalogue.items[h] for h in match.candidates]
    if binding.category is Category.III:
        return catalogue.byo_item(), Category.III, (), None
    if binding.category is not None:
        candidates = [c for c in candidates if c.category is binding.category]
        if not candidates:
            findings.append(Finding(
                code="item-unidentified", clause="Art.1", severity=Severity.WARNING,
                message=f"bound to category {binding.category.value} but the certificate "
                        "matches none of its items; bind an item to check it",
            ))
            return None, binding.category, (), None
    if not candidates:
        return catalogue.byo_item(), Category.III, (), None
    if len(candidates) == 1:
        return candidates[0], candidates[0].category, (), None
    handles = tuple(c.handle for c in candidates)
    categories = sorted({c.category for c in candidates}, key=lambda c: len(c.value))
    findings.append(Finding(
        code="ambiguous-item", clause="Art.1", severity=Severity.INFO,
        message=f"the certificate fits {', '.join(handles)}; it cannot show which (nor category"
                " I vs II): bind the contract's item to decide",
    ))
    return None, categories[0], handles, None


def _contracted_tier(binding: Binding, item: Item | None,
                     candidates: tuple[str, ...], catalogue: Catalogue,
                     findings: list[Finding]) -> Tier | None:
    if binding.tier is not None:
        if item is not None and binding.tier not in item.tiers:
            findings.append(Finding(
                code="tier-not-offered", clause="Appx1.1", severity=Severity.WARNING,
                message=f"item {item.handle} is not offered for {binding.tier.value} "
                        f"(Appx1.1: {', '.join(t.value for t in item.tiers)})",
            ))
        return binding.tier
    if item is not None:
        return item.tiers[0] if len(item.tiers) == 1 else None
    tiers = {catalogue.items[h].tiers for h in candidates}
    if len(tiers) == 1:
        (only,) = tiers
        return only[0] if len(only) == 1 else None
    return None


def _beyond_every_offered_period(facts: CertificateFacts, item: Item | None,
                                 candidates: tuple[str, ...], catalogue: Catalogue,
                                 category: Category, *, ca: CertificateAuthority | None,
                                 previous: CertificateFacts | None,
                                 rule: PeriodRule, tier: Tier, contract_id: str | None
                                 ) -> tuple[Finding, tuple[Decision, ...]] | None:
    """With no contracted tier: a certificate longer than every period its item offers (the
    longest of Appx1.1's rows for it, the CA's carry-over allowance included) cannot comply with
    any contract for the item, whichever tier is bound later (CONTRACT.md Art.3: "a finding even
    with no contracted tier"). For an item that is still ambiguous, the longest period any
    candidate offers. ``tier``: the certificate's strict tier. The finding, and the
    ``NON_COMPLIANT`` decision that puts it before the desk."""
    offered = item.tiers if item is not None else tuple(
        t for handle in candidates for t in catalogue.items[handle].tiers)
    if not offered or Tier.UNLIMITED in offered:
        return None  # unlimited admits everything
    longest = max(offered, key=TIERS_ASCENDING.index)
    if tier <= longest:
        return None  # the strict tier fits: compliance() says compliant without an allowance
    result = compliance(facts, longest, category=category, ca=ca, previous=previous,
                        rule=rule)
    if result.compliant:
        return None
    name = item.handle if item is not None else " / ".join(candidates)
    clause = "Art.3" if category is Category.III else "Appx1.1"
    window = result.tier_period.explain_en() if result.tier_period is not None else ""
    period = validity_period(facts.not_before_utc, facts.not_after_utc)
    return Finding(
        code="exceeds-item-periods", clause=clause,
        severity=Severity.CRITICAL if category is Category.III else Severity.WARNING,
        message=f"validity period {duration_en(period)} is longer than every period {name} "
                f"offers (longest {longest.value}: {window}); no tier of the item admits it",
    ), exceeds_offered_decisions(result, facts, offered_by=name, contract_id=contract_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Resolved:
    """What the certificate is to the contract: item, category, contracted tier, CA."""

    match: ItemMatch
    item: Item | None
    category: Category
    candidates: tuple[str, ...]
    contracted: Tier | None
    ca: CertificateAuthority | None
    mismatch: ItemMismatch | None
    """The bound item cannot be the certificate's (Art.1), and why."""


def _resolve(facts: CertificateFacts, catalogue: Catalogue, binding: Binding,
             findings: list[Finding], issuer_ca: CertificateAuthority | None) -> _Resolved:
    """``issuer_ca``: ``catalogue.ca_for_issuer(facts.issuer_org)`` (the caller needs it too)."""
    match = match_item(facts, catalogue)
    findings.extend(match.findings)
    item, category, candidates, mismatch = _resolve_item(facts, match, binding, catalogue,
                                                         findings)
    contracted = _contracted_tier(binding, item, candidates, catalogue, findings)
    ca: CertificateAuthority | None = match.ca or issuer_ca
    if ca is None and item is not None and item.ca in catalogue.cas and item.ca != "any":
        ca = catalogue.ca_of(item)
    if ca is not None and not ca.organisations:
        ca = None
    return _Resolved(match=match, item=item, category=category, candidates=candidates,
                     contracted=contracted, ca=ca, mismatch=mismatch)


_RESOLVED: dict[tuple[Any, ...], tuple[Catalogue, Binding, _Resolved, tuple[Finding, ...]]] = {}
_RESOLVED_MAX = 1024


def _resolve_shared(facts: CertificateFacts, catalogue: Catalogue, binding: Binding,
                    issuer_ca: CertificateAuthority | None
                    ) -> tuple[_Resolved, tuple[Finding, ...]]:
    """:func:`_resolve` and the findings it adds, remembered: a store's certificates come from a
    handful of issuers, and what the certificate is to the contract depends on nothing else
    about it. The key holds every fact :func:`~policy.matchers.match_item`,
    :func:`~policy.matchers.bound_item_mismatch` and the binding rules read (policy OIDs,
    issuer O and CN, CA flag, wildcard SAN); the catalogue and binding are compared by identity
    (kept in the entry, so an id is never reused while it is cached). Bounded."""
    key = (id(catalogue), id(binding), facts.policy_oids, facts.issuer_org, facts.issuer_cn,
           facts.is_ca, facts.is_wildcard)
    hit = _RESOLVED.get(key)
    if hit is not None and hit[0] is catalogue and hit[1] is binding:
        return hit[2], hit[3]
    findings: list[Finding] = []
    resolved = _resolve(facts, catalogue, binding, findings, issuer_ca)
    if len(_RESOLVED) >= _RESOLVED_MAX:
        _RESOLVED.clear()
    _RESOLVED[key] = (catalogue, binding, resolved, tuple(findings))
    return resolved, tuple(findings)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractFit:
    """What the contract's item and tier make of its certificate: what ``policy classify``
    reports of the binding and the periods, for the ledger's contracts."""

    compliance: Compliance | None
    """Art.3 / Appx1.1 against the contracted tier; ``None`` when no tier is contracted."""
    findings: tuple[Finding, ...]
    """``item-mismatch`` (Art.1), then ``non-compliant`` / ``transition-allowance`` against the
    contracted tier, or ``exceeds-item-periods`` without one."""
    decisions: tuple[Decision, ...]
    """``ITEM_MISMATCH``, ``NON_COMPLIANT`` (against the contracted tier, or every tier the item
    offers): the findings a desk acts on."""


def _fit(facts: CertificateFacts, resolved: _Resolved, catalogue: Catalogue, *, tier: Tier,
         previous: CertificateFacts | None, rule: PeriodRule,
         contract_id: str | None) -> ContractFit:
    """:class:`ContractFit` of a resolved certificate but the resolution's own findings (the
    classification has them already). The one place both paths decide it."""
    findings: list[Finding] = []
    decisions: list[Decision] = []
    if resolved.mismatch is not None:
        decisions.append(_mismatch_decision(resolved.mismatch, facts, contract_id))
    result: Compliance | None = None
    if resolved.contracted is not None:
        result = compliance(facts, resolved.contracted, category=resolved.category,
                            ca=resolved.ca, previous=previous, rule=rule)
        findings.extend(result.findings)
        decisions.extend(compliance_decisions(result, facts, contract_id=contract_id))
    else:
        beyond = _beyond_every_offered_period(
            facts, resolved.item, resolved.candidates, catalogue, resolved.category,
            ca=resolved.ca, previous=previous, rule=rule, tier=tier, contract_id=contract_id)
        if beyond is not None:
            findings.append(beyond[0])
            decisions.extend(beyond[1])
    return ContractFit(compliance=result, findings=tuple(findings), decisions=tuple(decisions))


def _mismatch_decision(mismatch: ItemMismatch, facts: CertificateFacts,
                       contract_id: str | None) -> Decision:
    """``ITEM_MISMATCH``: the desk's side of the finding, in catalogue words only (the
    finding may quote the certificate's issuer; this is printed as it is). Due from the
    certificate's first Tokyo day, like ``NON_COMPLIANT``: it was never the item's."""
    return Decision(
        action=Action.ITEM_MISMATCH,
        clause="Art.1",
        due=tokyo_date(facts.not_before_utc),
        contract_id=contract_id,
        severity=Severity.WARNING,
        explanation_en=(f"The certificate cannot be a certificate of the bound item "
                        f"{mismatch.item}: {mismatch.reason_en}. Bind a certificate of the "
                        "item, or check the contract's item."),
        explanation_ja=(f"SSL サーバ証明書は紐付けた品目 {mismatch.item} のものではありません"
                        f"（{mismatch.reason_ja}）。品目に対応する証明書を紐付けるか、契約の品目を"
                        "確認してください。"),
        computed={"item": mismatch.item, "reason": mismatch.kind},
        facts={"sha256": facts.sha256,
               "not_before": format_instant(facts.not_before_utc),
               "not_after": format_instant(facts.not_after_utc)},
    )


def contract_fit(facts: CertificateFacts, catalogue: Catalogue, *, binding: Binding,
                 previous: CertificateFacts | None = None,
                 rule: PeriodRule = DEFAULT_PERIOD_RULE) -> ContractFit:
    """The item, tier and period findings and decisions exactly as
    :func:`classify_certificate` makes them (the same :func:`_resolve` and :func:`_fit`),
    without the rest of the classification: what a contract sweep needs. A contract with no
    tier still hears of a certificate no tier of its item admits (``exceeds-item-periods``),
    and every contract of one whose CA cannot have issued it (``item-mismatch``)."""
    resolve_findings: list[Finding] = []
    resolved = _resolve(facts, catalogue, binding, resolve_findings,
                        catalogue.ca_for_issuer(facts.issuer_org))
    fit = _fit(facts, resolved, catalogue,
               tier=classify(facts.not_before_utc, facts.not_after_utc, rule=rule),
               previous=previous, rule=rule, contract_id=binding.contract_id)
    mismatch = (resolved.mismatch.finding,) if resolved.mismatch is not None else ()
    return ContractFit(compliance=fit.compliance, findings=mismatch + fit.findings,
                       decisions=fit.decisions)


def classify_certificate(
    facts: CertificateFacts,
    catalogue: Catalogue,
    *,
    binding: Binding,
    at: datetime,
    previous: CertificateFacts | None = None,
    settings: PolicySettings = PolicySettings(),  # noqa: B008 - frozen, immutable default
    schedule: MaxValiditySchedule | None = None,
    first_observed: date | None = None,
) -> CertificateClassification:
    """Tier, item, compliance, renewability, findings and due actions for one certificate.

    ``previous`` is the contract's previous certificate (for the Art.3 proviso's transition
    allowance). ``schedule`` defaults to the embedded SC-081 schedule. ``first_observed``:
    the Tokyo day the certificate was first seen, when the caller remembers it; otherwise, for
    a certificate no contract binds, ``at``'s day -- a classification without a ledger
    observes it now, and Art.6(1) puts no notice before that day. A certificate its binding
    gives to a contract keeps its own day: the ledger knows when that contract took it
    (``policy actions``), and "due today" would hide a notice it has overdue.
    """
    sched = schedule if schedule is not None else embedded_schedule()
    key = _shape_key(facts, catalogue, binding, at, previous, settings, sched, first_observed)
    if key is None:
        return _classify(facts, catalogue, binding=binding, at=at, previous=previous,
                         settings=settings, sched=sched, first_observed=first_observed)
    hit = _SHAPES.get(key)
    if hit is not None and hit[0] is catalogue and hit[1] is binding and hit[2] is settings \
            and hit[3] is sched:
        return _rebased(hit[4], facts, at)
    result = _classify(facts, catalogue, binding=binding, at=at, previous=previous,
                       settings=settings, sched=sched, first_observed=first_observed)
    if all(_rebasable(d.facts) for d in result.actions):
        # Made before the first copy, so that every classification of the shape shares them
        # (a caller that builds many rows before rendering one: the daemon's batches).
        result.shape_json()
        for decision in result.actions:
            decision.shape_json()
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[key] = (catalogue, binding, settings, sched, result)
    return result


# ---------------------------------------------------------------- certificates of one shape
# A store's certificates come from a few issuers, in a few lengths, issued on a few hundred
# days; what the contract says of one is the same for every certificate of its shape, but for
# its own SHA-256 and instants, which only the decisions' ``facts`` carry. The shape is what
# the rules read, at the resolution they read it: Asia/Tokyo days (the Civil Code counts days,
# and from the next day unless the period starts at 00:00 JST), the validity period to the
# second (its words, the BR day count), the BR maximum of the day it was issued and its UTC
# date (the BR finding names it), the issuer facts the matchers read, the clock and whether
# the certificate is expired or not yet valid at it (that finding, which names its instant, is
# made for each certificate). Only a certificate with no previous one, counted by the Civil
# Code, well inside the calendar and not ending before it starts, has a shape: a carried-over
# allowance is counted in seconds, ``elapsed`` counts instants. The tests compare every field
# of a rebased classification with one computed afresh, at the day boundaries.

_SHAPES: dict[tuple[Any, ...], tuple[Catalogue, Binding, PolicySettings, MaxValiditySchedule,
                                     CertificateClassification]] = {}
_SHAPES_MAX = 1024
"""~6 KB an entry (the first certificate's classification and its JSON): 6 MB at most, for
stores of a few hundred shapes (a store of certificates whose lengths differ to the second has
as many shapes as certificates, and the memo only costs a lookup and a store each)."""
_SHAPE_FROM = datetime(1953, 1, 1, tzinfo=UTC)
_SHAPE_UNTIL = datetime(9990, 1, 1, tzinfo=UTC)
_NINE_HOURS = timedelta(hours=9)
_MIDNIGHT = time(0)
_FACT_KEYS = frozenset(("sha256", "not_before", "not_after", "validity_seconds"))


def _shape_key(facts: CertificateFacts, catalogue: Catalogue, binding: Binding, at: datetime,
               previous: CertificateFacts | None, settings: PolicySettings,
               sched: MaxValiditySchedule, first_observed: date | None
               ) -> tuple[Any, ...] | None:
    """The certificate's shape (see above), ``None`` when it has none."""
    nb, na = facts.not_before_utc, facts.not_after_utc
    if (previous is not None or settings.period_rule is not PeriodRule.CIVIL_CODE
            or nb.tzinfo is not UTC or na.tzinfo is not UTC or at.tzinfo is not UTC
            or not _SHAPE_FROM <= nb <= na < _SHAPE_UNTIL):
        return None
    wall_nb, wall_na = nb + _NINE_HOURS, na + _NINE_HOURS  # Tokyo wall time, fixed since 1952
    return (id(catalogue), id(binding), id(settings), id(sched), at, first_observed,
            facts.policy_oids, facts.issuer_org, facts.issuer_cn, facts.is_ca,
            facts.is_wildcard, not facts.sans, wall_nb.date(), wall_nb.time() == _MIDNIGHT,
            wall_na.date(), wall_na.time() == _MIDNIGHT, na - nb, nb.date(),
            None if sched.steps_on_utc_days else sched.max_days_at(nb), at < nb, at > na)


def _rebasable(used: Mapping[str, Any]) -> bool:
    """Whether a decision's ``facts`` are only what :func:`_rebased` rewrites."""
    return set(used) <= _FACT_KEYS


def _rebased(template: CertificateClassification, facts: CertificateFacts,
             at: datetime) -> CertificateClassification:
    """``template`` (a certificate of the same shape) told of ``facts``."""
    actions = template.actions
    if actions:
        values = {"sha256": facts.sha256, "not_before": format_instant(facts.not_before_utc),
                  "not_after": format_instant(facts.not_after_utc),
                  "validity_seconds": template.validity_seconds}
        actions = tuple(d.with_facts({k: values[k] for k in d.facts}) for d in actions)
    findings = template.findings
    if template.facts.not_after_utc < at or at < template.facts.not_before_utc:
        # an expired or not-yet-valid certificate's finding names its own instant
        findings = tuple(
            _expired(facts.not_after_utc, template.days_left) if f.code == "expired"
            else _not_yet_valid(facts.not_before_utc) if f.code == "not-yet-valid" else f
            for f in findings)
    return template.with_facts(facts, actions=actions, findings=findings)


def days_left(not_after_utc: datetime, at: datetime) -> int:
    """Days from ``at``'s Asia/Tokyo date to the last day of validity (negative: expired
    that many days ago)."""
    return (end_of_validity(not_after_utc) - tokyo_date(at)).days


def clock_finding(facts: CertificateFacts, at: datetime) -> Finding | None:
    """``expired`` (critical) after notAfter, else ``not-yet-valid`` (a warning) before
    notBefore: what the clock alone changes of a classification. The agent's heartbeat asks
    it of every certificate it holds, without classifying them again."""
    if at > facts.not_after_utc:
        return _expired(facts.not_after_utc, days_left(facts.not_after_utc, at))
    if at < facts.not_before_utc:
        return _not_yet_valid(facts.not_before_utc)
    return None


def _expired(not_after_utc: datetime, days_left: int) -> Finding:
    return Finding(
        code="expired", clause="", severity=Severity.CRITICAL,
        message=f"expired on {format_instant(not_after_utc)} ({-days_left} day(s) ago, "
                "Asia/Tokyo)")


def _not_yet_valid(not_before_utc: datetime) -> Finding:
    return Finding(code="not-yet-valid", clause="", severity=Severity.WARNING,
                   message=f"not valid before {format_instant(not_before_utc)}")


def _classify(facts: CertificateFacts, catalogue: Catalogue, *, binding: Binding,
              at: datetime, previous: CertificateFacts | None, settings: PolicySettings,
              sched: MaxValiditySchedule, first_observed: date | None
              ) -> CertificateClassification:
    """:func:`classify_certificate` computed."""
    findings: list[Finding] = []
    nb, na = facts.not_before_utc, facts.not_after_utc
    period = validity_period(nb, na)
    seconds = int(period.total_seconds())
    rule = settings.period_rule
    tier = classify(nb, na, rule=rule)
    today = tokyo_date(at)
    left = days_left(na, at)

    issuer_ca = catalogue.ca_for_issuer(facts.issuer_org)
    resolved, resolve_findings = _resolve_shared(facts, catalogue, binding, issuer_ca)
    findings.extend(resolve_findings)
    match, item, category = resolved.match, resolved.item, resolved.category
    candidates, contracted, ca = resolved.candidates, resolved.contracted, resolved.ca

    out_of_range = unevaluable(facts)
    if out_of_range is not None:
        # Nothing the contract computes means anything at the ends of the calendar: the
        # finding, and no actions (issue 9: a finding, never an exception).
        findings.append(out_of_range)
        return CertificateClassification(
            facts=facts, validity_seconds=seconds, tier=tier,
            item=item.handle if item is not None else None, category=category,
            contracted_tier=contracted, compliant=None, renewable=True, days_left=left,
            findings=tuple(findings), actions=(), candidates=candidates,
            ca=ca.key if ca is not None else None, validation=match.validation)

    if na < nb:
        findings.append(Finding(
            code="inverted-validity",
            clause="Art.3" if category is Category.III else "Appx1.1",  # Art.3 is III's only
            severity=Severity.CRITICAL,
            message=f"notAfter {format_instant(na)} is before notBefore {format_instant(nb)}: the "
                    "certificate is never valid",
        ))
    if facts.is_ca:
        findings.append(Finding(
            code="ca-certificate", clause="Art.1", severity=Severity.WARNING,
            message="a CA certificate (basicConstraints CA:TRUE), not a server certificate: "
                    "it cannot be the certificate of a contract",
        ))
    clock = clock_finding(facts, at)
    if clock is not None:
        findings.append(clock)
    if not facts.sans and not facts.is_ca:
        findings.append(Finding(
            code="no-san", clause="", severity=Severity.WARNING,
            message="no subjectAltName: browsers ignore the CN, so the certificate names no "
                    "server (BR §7.1.2.7.12)",
        ))
    public = issuer_ca is not None or sched.is_public_issuer(facts.issuer_org)
    if not facts.is_ca and public and sched.exceeds(facts):
        limit = sched.max_days_at(nb)
        findings.append(Finding(
            code="public-max-validity-exceeded", clause="BR §6.3.2", severity=Severity.WARNING,
            message=f"{br_days(period)} days ({duration_en(period)}) exceeds the {limit}-day "
                    f"maximum for a publicly trusted certificate issued on {nb.date()} "
                    f"({sched.ballot}); browsers may reject it",
        ))

    compliant: bool | None = None
    by_allowance = False
    actions: list[Decision] = []
    contract_id = binding.contract_id
    fit = _fit(facts, resolved, catalogue, tier=tier, previous=previous, rule=rule,
               contract_id=contract_id)
    if fit.compliance is not None:
        compliant = fit.compliance.compliant
        by_allowance = fit.compliance.by_allowance
    findings.extend(fit.findings)
    actions.extend(fit.decisions)

    # The proviso's period matters to category III only; reckoned once, shared with Art.6.
    proviso = art6_3_period(facts, rule) if category is Category.III else None
    blocked = proviso is not None and proviso.admits(na)
    if blocked and proviso is not None:
        findings.append(Finding(
            code="renewal-blocked", clause="Art.6(3) proviso", severity=Severity.WARNING,
            message=f"validity period {duration_en(period)} is within 90 days "
                    f"({proviso.explain_en()}): a category III contract cannot be renewed "
                    "with it",
        ))
    if not facts.is_ca:
        actions.extend(renewal_decisions(
            category=category, facts=facts, contract_id=contract_id, notice_sent=None,
            answer=None, at=at, settings=settings, proviso=proviso,
            first_observed=(first_observed if first_observed is not None
                            else today if binding.contract_id is None else None)))
    if item is not None:
        actions.extend(abolition_decisions(item, contract_id=contract_id, at=at))
    if len(actions) > 1:
        actions.sort(key=lambda d: (d.due is None, d.due or today, d.action.value))

    return CertificateClassification(
        facts=facts, validity_seconds=seconds, tier=tier,
        item=item.handle if item is not None else None, category=category,
        contracted_tier=contracted, compliant=compliant, renewable=not blocked,
        days_left=left, findings=tuple(findings), actions=tuple(actions),
        candidates=candidates, ca=ca.key if ca is not None else None,
        validation=match.validation, by_allowance=by_allowance,
    )
