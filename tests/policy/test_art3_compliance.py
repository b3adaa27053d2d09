"""Art.3 — a BYO certificate must be within its contracted tier, except for the CA's
transition period (the proviso): the overlap with the previous certificate, capped per CA."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.decisions import Action
from policy.rules.art3 import compliance, compliance_decisions, transition_allowance
from policy.tiers import Tier
from tests.policy.factsutil import facts, utc

DAY = timedelta(days=1)
CATALOGUE = load_catalogue()
GLOBALSIGN = CATALOGUE.cas["globalsign"]
DIGICERT = CATALOGUE.cas["digicert"]
# 2027-06-01 + 1 year spans 2028-02-29: the 1y tier is 366 days, so 397 = 366 + 31.
NB = utc(2027, 6, 1, 3)


def previous_ending(overlap: timedelta):  # type: ignore[no-untyped-def]
    return facts(NB - 300 * DAY, not_after=NB + overlap)


def test_art3_within_tier_complies() -> None:
    result = compliance(facts(NB, lifetime=199 * DAY), Tier.ONE_YEAR, category=Category.III,
                        ca=None)
    assert result.compliant
    assert result.tier is Tier.ONE_YEAR
    assert not result.findings


def test_art3_longer_than_tier_does_not_comply() -> None:
    f = facts(NB, lifetime=199 * DAY)
    result = compliance(f, Tier.SIX_MONTHS, category=Category.III, ca=None)
    assert not result.compliant
    assert result.findings[0].code == "non-compliant"
    assert result.findings[0].clause == "Art.3"
    (decision,) = compliance_decisions(result, f, contract_id="C-9")
    assert decision.action is Action.NON_COMPLIANT
    assert decision.clause == "Art.3"
    assert decision.contract_id == "C-9"


def test_art3_proviso_globalsign_397_days_complies_with_1y_after_31_days_overlap() -> None:
    new = facts(NB, lifetime=397 * DAY)
    result = compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                        previous=previous_ending(31 * DAY))
    assert result.tier is Tier.TWO_YEARS  # the reported tier stays strict
    assert result.compliant
    assert result.by_allowance
    assert result.clause == "Art.3 proviso"
    (finding,) = result.findings
    assert finding.code == "transition-allowance"
    assert "GlobalSign" in finding.message
    assert "31 d" in finding.message


def test_art3_proviso_globalsign_397_days_fails_with_30_days_overlap() -> None:
    new = facts(NB, lifetime=397 * DAY)
    result = compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                        previous=previous_ending(30 * DAY))
    assert not result.compliant
    assert "even with GlobalSign's transition allowance of 30 d" in result.findings[0].message


def test_art3_proviso_allowance_is_capped_at_31_days_for_globalsign() -> None:
    new = facts(NB, lifetime=400 * DAY)
    assert transition_allowance(new, previous_ending(60 * DAY), GLOBALSIGN) == 31 * DAY
    result = compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                        previous=previous_ending(60 * DAY))
    assert not result.compliant


def test_art3_proviso_in_a_365_day_year_397_days_needs_32_days() -> None:
    # CONTRACT.md's formula: notBefore + validity <= add_calendar(notBefore, 12 months) +
    # allowance. Without a leap day in the year the tier is 365 days, so 397 days would need
    # 32 days of allowance: the 31-day cap is one day short.
    nb = utc(2026, 4, 1, 3)
    new = facts(nb, lifetime=397 * DAY)
    prev = facts(nb - 300 * DAY, not_after=nb + 31 * DAY)
    assert not compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                          previous=prev).compliant
    assert compliance(facts(nb, lifetime=396 * DAY), Tier.ONE_YEAR, category=Category.III,
                      ca=GLOBALSIGN, previous=prev).compliant


def test_art3_proviso_outside_the_cas_window_fails() -> None:
    tokyo_day = date(2027, 6, 1)  # NB is 12:00 JST on 2027-06-01
    new = facts(NB, lifetime=397 * DAY)
    prev = previous_ending(31 * DAY)
    closed_before = dataclasses.replace(GLOBALSIGN, allowance_until=tokyo_day - DAY)
    result = compliance(new, Tier.ONE_YEAR, category=Category.III, ca=closed_before,
                        previous=prev)
    assert not result.compliant
    assert "outside its window" in result.findings[0].message
    last_day = dataclasses.replace(GLOBALSIGN, allowance_until=tokyo_day)
    assert compliance(new, Tier.ONE_YEAR, category=Category.III, ca=last_day,
                      previous=prev).compliant
    first_day = dataclasses.replace(GLOBALSIGN, allowance_from=tokyo_day)
    assert compliance(new, Tier.ONE_YEAR, category=Category.III, ca=first_day,
                      previous=prev).compliant
    not_yet = dataclasses.replace(GLOBALSIGN, allowance_from=tokyo_day + DAY)
    assert not compliance(new, Tier.ONE_YEAR, category=Category.III, ca=not_yet,
                          previous=prev).compliant


def test_art3_proviso_needs_a_ca_that_defines_an_allowance() -> None:
    assert DIGICERT.transition_allowance_days is None
    new = facts(NB, lifetime=397 * DAY)
    result = compliance(new, Tier.ONE_YEAR, category=Category.III, ca=DIGICERT,
                        previous=previous_ending(31 * DAY))
    assert not result.compliant
    assert "no transition allowance" in result.findings[0].message


def test_art3_proviso_no_overlap_no_allowance() -> None:
    new = facts(NB, lifetime=397 * DAY)
    prev = facts(NB - 400 * DAY, not_after=NB - DAY)
    assert transition_allowance(new, prev, GLOBALSIGN) == timedelta(0)
    assert transition_allowance(new, None, GLOBALSIGN) == timedelta(0)


def test_appx1_provider_issued_items_cite_the_appendix() -> None:
    f = facts(NB, lifetime=397 * DAY)
    result = compliance(f, Tier.ONE_YEAR, category=Category.I, ca=GLOBALSIGN)
    assert not result.compliant
    assert result.clause == "Appx1.1"
