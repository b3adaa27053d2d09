"""Art.3 — eligibility of a certificate for its contracted tier (利用資格), with the proviso.

A category III certificate's validity period must be within its contracted tier (Appx1.1),
except for a transition period the certificate's CA defines (認証機関の定める移行期間). CAs carry
the unused days of the previous certificate into a renewal, so the allowance is the overlap
``previous.notAfter - new.notBefore`` (when positive), capped per CA by the catalogue and granted
only while the CA's window (inclusive Asia/Tokyo dates, compared with the new certificate's
notBefore) is open.

The *tier* of a certificate is always the strict one (``policy.tiers.classify``); the allowance
only turns a longer tier into compliance, and the finding names it. Art.3 governs category III
alone: categories I/II are checked the same way against their item's permitted periods, citing
Appx1.1 (and the CA's carry-over allowance under that citation), because the provider itself
must deliver what the item promises. The tiers' periods are counted by the configured
:class:`~policy.periods.PeriodRule` (the Civil Code by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from policy.catalogue import CertificateAuthority
from policy.category import Category
from policy.decisions import Action, Decision, Finding, Severity
from policy.facts import CertificateFacts
from policy.periods import DEFAULT_PERIOD_RULE, Period, PeriodRule, duration_en, duration_ja
from policy.tiers import Tier, admits, classify, tier_period, validity_period
from policy.timeparse import format_instant
from policy.tokyo import tokyo_date

__all__ = ["Compliance", "compliance", "compliance_decisions", "exceeds_offered_decisions",
           "transition_allowance"]

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Compliance:
    """The Art.3 verdict for one certificate against one contracted tier."""

    tier: Tier
    """The strict tier (smallest admitting, no allowance)."""
    contracted: Tier
    compliant: bool
    allowance: timedelta
    """The allowance available (overlap capped per CA; zero outside the window)."""
    overlap: timedelta
    """``previous.notAfter - new.notBefore`` when positive, else zero (uncapped)."""
    by_allowance: bool
    """Compliant only thanks to the allowance."""
    clause: str
    findings: tuple[Finding, ...]
    tier_period: Period | None = None
    """The contracted tier's period from the certificate's notBefore, counted by the configured
    rule, when the strict tier does not fit it (what a finding or decision shows); ``None`` for
    unlimited and when the strict tier fits."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tier": self.tier.value,
            "contracted": self.contracted.value,
            "compliant": self.compliant,
            "allowance_seconds": int(self.allowance.total_seconds()),
            "overlap_seconds": int(self.overlap.total_seconds()),
            "by_allowance": self.by_allowance,
            "clause": self.clause,
        }
        if self.tier_period is not None:
            out.update(self.tier_period.to_json())
        return out


def _overlap(facts: CertificateFacts, previous: CertificateFacts | None) -> timedelta:
    """``previous.notAfter − new.notBefore`` when positive, exactly as CONTRACT.md's Art.3
    computation writes it (not inclusively, unlike a validity period): a CA carrying over the
    previous certificate's remaining time gives ``notAfter = notBefore + its days − 1 s +
    (previous.notAfter − notBefore)``, which this admits to the second and one second more
    does not. A successor starting at its predecessor's ``notAfter`` or later overlaps by
    nothing."""
    if previous is None:
        return timedelta(0)
    return max(previous.not_after_utc - facts.not_before_utc, timedelta(0))


def transition_allowance(facts: CertificateFacts, previous: CertificateFacts | None,
                         ca: CertificateAuthority | None) -> timedelta:
    """Art.3 proviso: the overlap with the previous certificate, capped by the CA's
    ``transition_allowance_days``; zero without a previous certificate, without a CA allowance,
    or when the new certificate's notBefore (Tokyo day) is outside the CA's window."""
    overlap = _overlap(facts, previous)
    if ca is None or ca.transition_allowance_days is None or not overlap:
        return timedelta(0)
    if not ca.allowance_open_on(tokyo_date(facts.not_before_utc)):
        return timedelta(0)
    return min(overlap, timedelta(days=ca.transition_allowance_days))


def compliance(facts: CertificateFacts, contracted: Tier, *, category: Category,
               ca: CertificateAuthority | None,
               previous: CertificateFacts | None = None,
               rule: PeriodRule = DEFAULT_PERIOD_RULE) -> Compliance:
    """Whether the certificate complies with ``contracted`` (Art.3 for III, Appx1.1 for I/II),
    the tier's period counted by ``rule``.

    Complies when its strict tier is no longer than the contracted one, or, under the CA's
    carry-over allowance (Art.3 proviso for III; the same CA practice under Appx1.1 for I/II),
    when the contracted tier admits it once the allowance is added. A CA's own length of a tier
    (GlobalSign "1 year" = 366 days) is the CA's count, in seconds, as the CA defines its
    transition period, so it applies only when an allowance is granted (the certificate carries
    days over from an overlapping previous one); the contract's tier is counted by ``rule``.
    """
    nb, na = facts.not_before_utc, facts.not_after_utc
    tier = classify(nb, na, rule=rule)
    byo = category is Category.III
    clause = "Art.3" if byo else "Appx1.1"
    allowance_clause = "Art.3 proviso" if byo else "Appx1.1"
    overlap = _overlap(facts, previous)
    allowance = transition_allowance(facts, previous, ca)
    period = validity_period(nb, na)
    # The contracted tier's period in words is only needed when the strict tier does not fit
    # (a decision or finding will show it); the sweep's common case skips the calendar.
    tier_window = None if tier <= contracted else tier_period(nb, contracted, rule=rule)

    def verdict(*, compliant: bool, by_allowance: bool, clause: str,
                findings: tuple[Finding, ...]) -> Compliance:
        return Compliance(tier=tier, contracted=contracted, compliant=compliant,
                          allowance=allowance, overlap=overlap, by_allowance=by_allowance,
                          clause=clause, findings=findings, tier_period=tier_window)

    # The CA's own length of the tier (GlobalSign "1 year" = 366 days) is part of the transition
    # period the proviso exempts, so it applies only to a renewal carrying days over (a granted
    # allowance: an overlap inside the CA's window); with the allowance it makes 366 + 31 = 397
    # days comply in any year. A first certificate, or one that overlaps nothing, has no
    # transition: the tier's period alone decides (CONTRACT.md Art.3), so 366 days from
    # 2025-04-01 00:00 JST, ending 2026-04-01, is not within 1 year (last day 2026-03-31).
    ca_days = ca.tier_days.get(contracted) if ca is not None and allowance else None
    if tier <= contracted:
        return verdict(compliant=True, by_allowance=False, clause=clause, findings=())
    ca_name = ca.name if ca is not None else "the issuing CA"
    cap = ca.transition_allowance_days if ca is not None and ca.transition_allowance_days else 0
    by_calendar = bool(allowance) and admits(contracted, nb, na, allowance=allowance, rule=rule)
    by_ca_length = ca_days is not None and period <= timedelta(days=ca_days) + allowance
    if by_calendar or by_ca_length:
        base = (f"{ca_name}'s own {contracted.value} of {ca_days} days" if by_ca_length
                else f"the {contracted.value} period ({_tier_words(tier_window)})")
        finding = Finding(
            code="transition-allowance",
            clause=allowance_clause,
            severity=Severity.INFO,
            message=(f"validity period {duration_en(period)} classifies as {tier.value} but "
                     f"complies with the contracted {contracted.value} under {ca_name}'s "
                     f"transition period: {base} plus {duration_en(allowance)} carried over "
                     f"from the previous certificate (overlap {duration_en(overlap)}, "
                     f"cap {cap} days)"),
        )
        return verdict(compliant=True, by_allowance=True, clause=allowance_clause,
                       findings=(finding,))
    reason = ""
    if overlap and ca is not None and ca.transition_allowance_days is not None and not allowance:
        reason = (f"; {ca_name}'s transition allowance does not apply: notBefore "
                  f"{tokyo_date(nb)} is outside its window "
                  f"({ca.allowance_from or 'open'} – {ca.allowance_until or 'open'})")
    elif allowance:
        reason = (f"; even with {ca_name}'s transition allowance of {duration_en(allowance)} "
                  f"(overlap {duration_en(overlap)}, cap {cap} days) it exceeds the tier")
    elif overlap and (ca is None or ca.transition_allowance_days is None):
        reason = f"; {ca_name} has no transition allowance in the catalogue"
    finding = Finding(
        code="non-compliant",
        clause=clause,
        severity=Severity.CRITICAL if byo else Severity.WARNING,
        message=(f"validity period {duration_en(period)} classifies as {tier.value}, longer "
                 f"than the contracted {contracted.value} ({_tier_words(tier_window)})"
                 f"{reason}"),
    )
    return verdict(compliant=False, by_allowance=False, clause=clause, findings=(finding,))


def _tier_words(window: Period | None) -> str:
    return "unlimited" if window is None else window.explain_en()


def compliance_decisions(result: Compliance, facts: CertificateFacts, *,
                         contract_id: str | None) -> tuple[Decision, ...]:
    """``NON_COMPLIANT`` (due on the certificate's first Tokyo day) when it does not comply.

    It names the contracted tier's period in words (rule, reckoning day, last day), so the
    reader sees why a certificate ending on a given day is outside it."""
    if result.compliant:
        return ()
    period = validity_period(facts.not_before_utc, facts.not_after_utc)
    window = result.tier_period
    why_en = f" ({window.explain_en()})" if window is not None else ""
    why_ja = f"（{window.explain_ja()}）" if window is not None else ""
    return _non_compliant(
        result, facts, contract_id=contract_id,
        explanation_en=(f"The certificate's validity period ({duration_en(period)}, tier "
                        f"{result.tier.value}) exceeds the contracted {result.contracted.value}"
                        f"{why_en}."),
        explanation_ja=(f"SSL サーバ証明書の有効期間（{duration_ja(period)}、"
                        f"{result.tier.label_ja}）が契約の有効期間（{result.contracted.label_ja}"
                        f"）を超えています{why_ja}。"),
        computed=result.to_json())


def exceeds_offered_decisions(result: Compliance, facts: CertificateFacts, *, offered_by: str,
                              contract_id: str | None) -> tuple[Decision, ...]:
    """``NON_COMPLIANT`` for a contract with no tier (an item offering several, such as
    ``globalsign-ov``'s 6 months and 1 year) whose certificate is longer than every period the
    item offers: ``result`` is its compliance with the longest tier offered (``offered_by``
    names the item, or the candidates of an ambiguous one), so no contract for the item can
    admit it whichever tier it had. Nothing when ``result`` complies. ``computed.contracted`` is
    ``null`` and ``computed.longest_offered`` the tier it was measured against."""
    if result.compliant:
        return ()
    period = validity_period(facts.not_before_utc, facts.not_after_utc)
    window = result.tier_period
    why_en = f": {window.explain_en()}" if window is not None else ""
    why_ja = f"。{window.explain_ja()}" if window is not None else ""
    return _non_compliant(
        result, facts, contract_id=contract_id,
        explanation_en=(f"The certificate's validity period ({duration_en(period)}, tier "
                        f"{result.tier.value}) is longer than every period {offered_by} offers "
                        f"(longest {result.contracted.value}{why_en}), so no tier of the item "
                        "admits it."),
        explanation_ja=(f"SSL サーバ証明書の有効期間（{duration_ja(period)}、"
                        f"{result.tier.label_ja}）が、品目 {offered_by} のいずれの有効期間"
                        f"（最長 {result.contracted.label_ja}{why_ja}）も超えており、どの有効期間の"
                        "契約にも適合しません。"),
        computed={**result.to_json(), "contracted": None,
                  "longest_offered": result.contracted.value})


def _non_compliant(result: Compliance, facts: CertificateFacts, *, contract_id: str | None,
                   explanation_en: str, explanation_ja: str,
                   computed: dict[str, Any]) -> tuple[Decision, ...]:
    """The one ``NON_COMPLIANT`` decision both cases make: due on the certificate's first Tokyo
    day, critical under Art.3 (category III), a warning under Appx1.1."""
    return (Decision(
        action=Action.NON_COMPLIANT,
        clause=result.clause,
        due=tokyo_date(facts.not_before_utc),
        contract_id=contract_id,
        severity=Severity.CRITICAL if result.clause.startswith("Art.3") else Severity.WARNING,
        explanation_en=explanation_en,
        explanation_ja=explanation_ja,
        computed=computed,
        facts={"sha256": facts.sha256,
               "not_before": format_instant(facts.not_before_utc),
               "not_after": format_instant(facts.not_after_utc)},
    ),)
