"""Art.3 — eligibility of a certificate for its contracted tier (利用資格), with the proviso.

A category III certificate's validity period must be within its contracted tier (Appx1.1),
except for a transition period the certificate's CA defines (認証機関の定める移行期間). CAs carry
the unused days of the previous certificate into a renewal, so the allowance is the overlap
``previous.notAfter - new.notBefore`` (when positive), capped per CA by the catalogue and granted
only while the CA's window (inclusive Asia/Tokyo dates, compared with the new certificate's
notBefore) is open.

The *tier* of a certificate is always the strict one (``policy.tiers.classify``); the allowance
only turns a longer tier into compliance, and the finding names it. Categories I/II are checked
the same way against their item's tier (Appx1.1), citing Appx1.1 rather than Art.3, because the
provider itself must deliver what the item promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from policy.catalogue import CertificateAuthority
from policy.category import Category
from policy.decisions import Action, Decision, Finding, Severity
from policy.facts import CertificateFacts
from policy.periods import DEFAULT_PERIOD_RULE, PeriodRule
from policy.tiers import Tier, admits, classify, validity_period
from policy.timeparse import format_instant
from policy.tokyo import tokyo_date

__all__ = ["Compliance", "compliance", "compliance_decisions", "transition_allowance"]

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

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "contracted": self.contracted.value,
            "compliant": self.compliant,
            "allowance_seconds": int(self.allowance.total_seconds()),
            "overlap_seconds": int(self.overlap.total_seconds()),
            "by_allowance": self.by_allowance,
            "clause": self.clause,
        }


def _overlap(facts: CertificateFacts, previous: CertificateFacts | None) -> timedelta:
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


def _days(delta: timedelta) -> str:
    days, seconds = divmod(int(delta.total_seconds()), 86_400)
    return f"{days} d" + (f" {seconds} s" if seconds else "")


def compliance(facts: CertificateFacts, contracted: Tier, *, category: Category,
               ca: CertificateAuthority | None,
               previous: CertificateFacts | None = None,
               rule: PeriodRule = DEFAULT_PERIOD_RULE) -> Compliance:
    """Whether the certificate complies with ``contracted`` (Art.3 for III, Appx1.1 for I/II).

    Complies when its strict tier is no longer than the contracted one, or, under the proviso,
    when the contracted tier admits it once the CA's transition allowance is added.
    """
    nb, na = facts.not_before_utc, facts.not_after_utc
    tier = classify(nb, na, rule=rule)
    clause = "Art.3" if category is Category.III else "Appx1.1"
    overlap = _overlap(facts, previous)
    allowance = transition_allowance(facts, previous, ca)
    period = validity_period(nb, na)
    # The CA's own length of the tier (GlobalSign "1 year" = 366 days) applies only inside its
    # transition window; with the allowance it makes 366 + 31 = 397 days comply in any year.
    ca_days = (ca.tier_days.get(contracted)
               if ca is not None and ca.allowance_open_on(tokyo_date(nb)) else None)
    if tier <= contracted:
        return Compliance(tier=tier, contracted=contracted, compliant=True, allowance=allowance,
                          overlap=overlap, by_allowance=False, clause=clause, findings=())
    ca_name = ca.name if ca is not None else "the issuing CA"
    by_calendar = bool(allowance) and admits(contracted, nb, na, allowance=allowance,
                                                    rule=rule)
    by_ca_length = ca_days is not None and period <= timedelta(days=ca_days) + allowance
    if by_calendar or by_ca_length:
        base = (f"{ca_name}'s own {contracted.value} of {ca_days} d" if by_ca_length
                else f"the calendar {contracted.value}")
        finding = Finding(
            code="transition-allowance",
            clause="Art.3 proviso",
            severity=Severity.INFO,
            message=(f"validity period {_days(period)} classifies as {tier.value} but complies "
                     f"with the contracted {contracted.value} under {ca_name}'s transition "
                     f"period: {base} plus {_days(allowance)} carried over from the previous "
                     f"certificate (overlap {_days(overlap)}, cap "
                     f"{ca.transition_allowance_days if ca else 0} d)"),
        )
        return Compliance(tier=tier, contracted=contracted, compliant=True, allowance=allowance,
                          overlap=overlap, by_allowance=True, clause="Art.3 proviso",
                          findings=(finding,))
    reason = ""
    if overlap and ca is not None and ca.transition_allowance_days is not None and not allowance:
        reason = (f"; {ca_name}'s transition allowance does not apply: notBefore "
                  f"{tokyo_date(nb)} is outside its window "
                  f"({ca.allowance_from or 'open'} – {ca.allowance_until or 'open'})")
    elif allowance:
        reason = (f"; even with {ca_name}'s transition allowance of {_days(allowance)} "
                  f"(overlap {_days(overlap)}, cap {ca.transition_allowance_days if ca else 0} d)"
                  " it exceeds the tier")
    elif overlap and (ca is None or ca.transition_allowance_days is None):
        reason = f"; {ca_name} has no transition allowance in the catalogue"
    finding = Finding(
        code="non-compliant",
        clause=clause,
        severity=Severity.CRITICAL if category is Category.III else Severity.WARNING,
        message=(f"validity period {_days(period)} classifies as {tier.value}, longer than the "
                 f"contracted {contracted.value}{reason}"),
    )
    return Compliance(tier=tier, contracted=contracted, compliant=False, allowance=allowance,
                      overlap=overlap, by_allowance=False, clause=clause, findings=(finding,))


def compliance_decisions(result: Compliance, facts: CertificateFacts, *,
                         contract_id: str | None) -> tuple[Decision, ...]:
    """``NON_COMPLIANT`` (due on the certificate's first Tokyo day) when it does not comply."""
    if result.compliant:
        return ()
    period = validity_period(facts.not_before_utc, facts.not_after_utc)
    return (Decision(
        action=Action.NON_COMPLIANT,
        clause=result.clause,
        due=tokyo_date(facts.not_before_utc),
        contract_id=contract_id,
        severity=Severity.CRITICAL if result.clause.startswith("Art.3") else Severity.WARNING,
        explanation_en=(f"The certificate's validity period ({_days(period)}, tier "
                        f"{result.tier.value}) exceeds the contracted {result.contracted.value}."),
        explanation_ja=(f"SSL サーバ証明書の有効期間（{_days(period)}、{result.tier.label_ja}）が"
                        f"契約の有効期間（{result.contracted.label_ja}）を超えています。"),
        computed=result.to_json(),
        facts={"sha256": facts.sha256,
               "not_before": format_instant(facts.not_before_utc),
               "not_after": format_instant(facts.not_after_utc)},
    ),)
