"""Art.3 — a BYO certificate must be within its contracted tier, except for the CA's
transition period (the proviso): the overlap with the previous certificate, capped per CA."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.decisions import Action
from policy.periods import PeriodRule
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


def test_art3_proviso_globalsign_397_days_complies_in_an_ordinary_year_too() -> None:
    # The example holds in every year: GlobalSign's own "1 year" is 366 days, and
    # 366 + 31 = 397. The calendar year from 2026-04-01 has 365 days, so the calendar formula
    # alone would need 32 days of allowance; the CA's tier length (catalogue tier_days) is
    # what its transition period defines.
    nb = utc(2026, 4, 1, 3)
    prev = facts(nb - 300 * DAY, not_after=nb + 31 * DAY)
    result = compliance(facts(nb, lifetime=397 * DAY), Tier.ONE_YEAR, category=Category.III,
                        ca=GLOBALSIGN, previous=prev)
    assert result.compliant
    assert result.tier is Tier.TWO_YEARS
    assert "own 1y of 366 d" in result.findings[0].message
    one_second_more = facts(nb, lifetime=397 * DAY + timedelta(seconds=1))
    assert not compliance(one_second_more, Tier.ONE_YEAR, category=Category.III,
                          ca=GLOBALSIGN, previous=prev).compliant
    prev_30 = facts(nb - 300 * DAY, not_after=nb + 30 * DAY)
    assert not compliance(facts(nb, lifetime=397 * DAY), Tier.ONE_YEAR, category=Category.III,
                          ca=GLOBALSIGN, previous=prev_30).compliant


def test_art3_proviso_globalsign_6m_is_183_plus_31_is_214_days() -> None:
    nb = utc(2026, 4, 1, 3)
    prev = facts(nb - 100 * DAY, not_after=nb + 31 * DAY)
    assert compliance(facts(nb, lifetime=214 * DAY), Tier.SIX_MONTHS, category=Category.III,
                      ca=GLOBALSIGN, previous=prev).compliant
    assert not compliance(facts(nb, lifetime=215 * DAY), Tier.SIX_MONTHS,
                          category=Category.III, ca=GLOBALSIGN, previous=prev).compliant


JST_MIDNIGHT_2025_04_01 = utc(2025, 3, 31, 15)  # 2025-04-01 00:00 JST: 1 year ends 2026-03-31


@pytest.mark.parametrize("category", [Category.I, Category.III])
def test_art3_first_certificate_has_no_allowance_the_tiers_period_alone_decides(
        category: Category) -> None:
    """No previous certificate, no transition (CONTRACT.md Art.3): the allowance is 0 and
    GlobalSign's own 366-day "1 year" (catalogue ``tier_days``) does not apply; the desk's
    certificate from 2025-04-01 00:00 JST to 2026-04-01 23:59:59 JST is outside 1 year, whose
    last day is 2026-03-31 (it used to comply, "plus 0 days carried over")."""
    nb = JST_MIDNIGHT_2025_04_01
    last_day = facts(nb, not_after=utc(2026, 3, 31, 14, 59, 59))   # 2026-03-31 23:59:59 JST
    day_later = facts(nb, not_after=utc(2026, 4, 1, 14, 59, 59))   # 2026-04-01 23:59:59 JST
    assert day_later.not_after_utc - nb + timedelta(seconds=1) == 366 * DAY
    assert compliance(last_day, Tier.ONE_YEAR, category=category, ca=GLOBALSIGN).compliant
    result = compliance(day_later, Tier.ONE_YEAR, category=category, ca=GLOBALSIGN)
    assert not result.compliant
    assert not result.by_allowance
    (finding,) = result.findings
    assert finding.code == "non-compliant"
    assert "2026-03-31" in finding.message
    assert "carried over" not in finding.message


def test_art3_first_183_day_globalsign_6m_certificate_is_outside_a_181_day_6m() -> None:
    nb = utc(2025, 8, 31, 15)  # 2025-09-01 00:00 JST: 6 months end 2026-02-28 (181 days)
    last_day = facts(nb, lifetime=181 * DAY)
    assert not compliance(facts(nb, lifetime=183 * DAY), Tier.SIX_MONTHS,
                          category=Category.III, ca=GLOBALSIGN).compliant
    assert not compliance(facts(nb, lifetime=182 * DAY), Tier.SIX_MONTHS,
                          category=Category.III, ca=GLOBALSIGN).compliant
    assert compliance(last_day, Tier.SIX_MONTHS, category=Category.III, ca=GLOBALSIGN).compliant


def test_art3_no_overlap_no_cas_own_tier_length() -> None:
    """A previous certificate that ends when (or before) the new one starts carries nothing
    over: overlap 0, so the calendar year decides, not GlobalSign's 366 days."""
    nb = utc(2026, 4, 1, 3)  # a 365-day calendar year: 366 days is strictly 2y
    ends_at_start = facts(nb - 300 * DAY, not_after=nb)
    for previous in (ends_at_start, None):
        result = compliance(facts(nb, lifetime=366 * DAY), Tier.ONE_YEAR,
                            category=Category.III, ca=GLOBALSIGN, previous=previous)
        assert result.overlap == timedelta(0)
        assert not result.compliant
        assert compliance(facts(nb, lifetime=365 * DAY), Tier.ONE_YEAR, category=Category.III,
                          ca=GLOBALSIGN, previous=previous).compliant
    assert not compliance(facts(nb, lifetime=397 * DAY), Tier.ONE_YEAR, category=Category.III,
                          ca=GLOBALSIGN, previous=ends_at_start).compliant


def test_art3_any_carry_over_brings_the_cas_own_tier_length() -> None:
    """One second of overlap is a transition: GlobalSign's 366 days plus that second."""
    nb = utc(2026, 4, 1, 3)
    one_second = facts(nb - 300 * DAY, not_after=nb + timedelta(seconds=1))
    result = compliance(facts(nb, lifetime=366 * DAY + timedelta(seconds=1)), Tier.ONE_YEAR,
                        category=Category.III, ca=GLOBALSIGN, previous=one_second)
    assert result.compliant
    assert result.by_allowance
    assert "own 1y of 366 d" in result.findings[0].message
    assert not compliance(facts(nb, lifetime=366 * DAY + timedelta(seconds=2)), Tier.ONE_YEAR,
                          category=Category.III, ca=GLOBALSIGN, previous=one_second).compliant


def test_art3_the_cas_own_tier_length_needs_its_window_open() -> None:
    nb = utc(2026, 4, 1, 3)
    prev = facts(nb - 300 * DAY, not_after=nb + DAY)
    closed = dataclasses.replace(GLOBALSIGN, allowance_until=date(2026, 3, 31))
    assert compliance(facts(nb, lifetime=366 * DAY), Tier.ONE_YEAR, category=Category.III,
                      ca=GLOBALSIGN, previous=prev).compliant
    assert not compliance(facts(nb, lifetime=366 * DAY), Tier.ONE_YEAR, category=Category.III,
                          ca=closed, previous=prev).compliant


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


def test_art3_overlap_is_previous_not_after_minus_new_not_before() -> None:
    """CONTRACT.md's formula to the second, ``previous.notAfter − new.notBefore`` (review 11:
    it was counted inclusively, one second more, which flipped compliance at the edge). A
    successor starting at its predecessor's notAfter overlaps by nothing."""
    new = facts(NB, lifetime=397 * DAY)
    same_second = facts(NB - 300 * DAY, not_after=NB)
    one_more = facts(NB - 300 * DAY, not_after=NB + timedelta(seconds=1))
    assert transition_allowance(new, same_second, GLOBALSIGN) == timedelta(0)
    assert transition_allowance(new, one_more, GLOBALSIGN) == timedelta(seconds=1)
    assert transition_allowance(new, previous_ending(30 * DAY), GLOBALSIGN) == 30 * DAY


def test_art3_proviso_edge_of_the_carry_over_to_the_second() -> None:
    """GlobalSign "1 year" (366 days in a leap span) plus the previous certificate's remaining
    time: 397 days inclusive complies with an overlap of exactly 31 days and not with 31 days
    less one second (the reviewer's certificates: the previous ends 09:59:59, the new starts
    10:00:00 thirty-one days before; by CONTRACT.md that is 30 d 23:59:59)."""
    nb = utc(2025, 5, 31, 10)  # 19:00 in Tokyo: the calendar year gives no slack here
    new = facts(nb, lifetime=397 * DAY)
    assert new.not_after_utc == utc(2026, 7, 2, 9, 59, 59)
    exact = facts(nb - 300 * DAY, not_after=nb + 31 * DAY)
    short = facts(nb - 300 * DAY, not_after=utc(2025, 7, 1, 9, 59, 59))
    assert exact.not_after_utc - short.not_after_utc == timedelta(seconds=1)
    assert compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                      previous=exact).compliant
    assert not compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                          previous=short).compliant


@pytest.mark.parametrize("category", [Category.I, Category.II])
def test_appx1_categories_i_ii_cite_appx1_for_the_carry_over_allowance(
        category: Category) -> None:
    new = facts(NB, lifetime=397 * DAY)
    result = compliance(new, Tier.ONE_YEAR, category=category, ca=GLOBALSIGN,
                        previous=previous_ending(31 * DAY))
    assert result.compliant
    assert result.clause == "Appx1.1"
    assert result.findings[0].clause == "Appx1.1"
    assert "Art.3" not in result.findings[0].clause


def test_art3_cited_for_category_iii_only() -> None:
    new = facts(NB, lifetime=397 * DAY)
    byo = compliance(new, Tier.ONE_YEAR, category=Category.III, ca=GLOBALSIGN,
                     previous=previous_ending(31 * DAY))
    assert byo.clause == "Art.3 proviso"
    assert byo.findings[0].clause == "Art.3 proviso"


def test_art3_non_compliant_decision_names_the_period_rule_and_last_day() -> None:
    f = facts(utc(2026, 4, 1, 3), lifetime=199 * DAY)  # 12:00 JST: reckoning day Apr 2
    result = compliance(f, Tier.SIX_MONTHS, category=Category.III, ca=None)
    (decision,) = compliance_decisions(result, f, contract_id="C-9")
    assert decision.computed["period_rule"] == "civil-code"
    assert decision.computed["period_last_day"] == "2026-10-01"
    assert "2026-10-01 満了" in decision.explanation_ja
    assert "民法第143条" in decision.explanation_ja
    assert "199日" in decision.explanation_ja
    assert " d" not in decision.explanation_ja
    elapsed = compliance(f, Tier.SIX_MONTHS, category=Category.III, ca=None,
                         rule=PeriodRule.ELAPSED)
    (d2,) = compliance_decisions(elapsed, f, contract_id="C-9")
    assert d2.computed["period_rule"] == "elapsed"
    assert d2.computed["period_last_day"] == "2026-10-01"


def test_art3_six_months_civil_code_boundary_both_sides() -> None:
    nb = utc(2026, 4, 1, 3)  # 12:00 JST on Apr 1: 6 months end at the end of Oct 1 (JST)
    inside = facts(nb, not_after=utc(2026, 10, 1, 14, 59, 59))
    outside = facts(nb, not_after=utc(2026, 10, 1, 15, 0, 0))
    assert compliance(inside, Tier.SIX_MONTHS, category=Category.III, ca=None).compliant
    assert not compliance(outside, Tier.SIX_MONTHS, category=Category.III, ca=None).compliant
    assert not compliance(inside, Tier.SIX_MONTHS, category=Category.III, ca=None,
                          rule=PeriodRule.ELAPSED).compliant
    at_elapsed_end = facts(nb, not_after=utc(2026, 10, 1, 2, 59, 59))
    assert compliance(at_elapsed_end, Tier.SIX_MONTHS, category=Category.III, ca=None,
                      rule=PeriodRule.ELAPSED).compliant
