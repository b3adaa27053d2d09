"""The SC-081 schedule (BR §6.3.2) and what it does to tiers and contracts."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from policy.category import Category
from policy.errors import CatalogueError
from policy.forecast import (
    br_days,
    contract_outlook,
    embedded_schedule,
    load_schedule,
    tier_outlook,
)
from policy.periods import PeriodRule
from policy.tiers import Tier, tier_period
from tests.policy.factsutil import ONE_SECOND, facts, utc

SCHEDULE = embedded_schedule()
DAY = timedelta(days=1)


def test_br_day_any_part_of_a_day_counts_as_a_further_day() -> None:
    assert br_days(200 * DAY) == 200
    assert br_days(200 * DAY + ONE_SECOND) == 201
    assert br_days(199 * DAY + 23 * timedelta(hours=1)) == 200


@pytest.mark.parametrize(("at", "days"), [
    (utc(2026, 3, 14, 23, 59, 59), 398),
    (utc(2026, 3, 15, 0, 0, 0), 200),
    (utc(2027, 3, 14, 23, 59, 59), 200),
    (utc(2027, 3, 15), 100),
    (utc(2029, 3, 14, 23, 59, 59), 100),
    (utc(2029, 3, 15), 47),
    (utc(2035, 1, 1), 47),
])
def test_sc081_maximum_validity_by_issuance_date(at, days: int) -> None:  # type: ignore[no-untyped-def]
    assert SCHEDULE.max_days_at(at) == days
    assert SCHEDULE.longest_validity_at(at) == days * DAY


def test_sc081_exceeds_uses_the_br_day_rule() -> None:
    assert not SCHEDULE.exceeds(facts(utc(2026, 3, 15), lifetime=200 * DAY))
    assert SCHEDULE.exceeds(facts(utc(2026, 3, 15), lifetime=200 * DAY + ONE_SECOND))
    assert not SCHEDULE.exceeds(facts(utc(2026, 3, 14, 23, 59, 59), lifetime=398 * DAY))


def test_forecast_1y_can_no_longer_be_filled_from_2026_03_15() -> None:
    outlook = tier_outlook(Tier.ONE_YEAR, SCHEDULE, at=utc(2026, 1, 1))
    assert outlook.fills
    assert outlook.cannot_fill_from == date(2026, 3, 15)
    assert outlook.longest_days == 398
    assert outlook.longest_tier is Tier.TWO_YEARS
    later = tier_outlook(Tier.ONE_YEAR, SCHEDULE, at=utc(2026, 3, 15))
    assert not later.fills
    assert later.longest_days == 200
    assert later.longest_tier is Tier.ONE_YEAR  # 200 days is more than 6 calendar months


def test_forecast_6m_can_no_longer_be_filled_from_2027_03_15() -> None:
    outlook = tier_outlook(Tier.SIX_MONTHS, SCHEDULE, at=utc(2026, 6, 1))
    assert outlook.fills
    assert outlook.cannot_fill_from == date(2027, 3, 15)
    assert not tier_outlook(Tier.SIX_MONTHS, SCHEDULE, at=utc(2027, 3, 15)).fills


def test_forecast_2y_3y_unlimited_were_never_fillable_by_one_public_certificate() -> None:
    for tier in (Tier.TWO_YEARS, Tier.THREE_YEARS, Tier.UNLIMITED):
        outlook = tier_outlook(tier, SCHEDULE, at=utc(2026, 1, 1))
        assert outlook.never_fillable
        assert outlook.cannot_fill_from is None


def test_forecast_every_new_public_certificate_non_renewable_from_2029_03_15() -> None:
    assert SCHEDULE.non_renewable_from() == date(2029, 3, 15)
    assert tier_outlook(Tier.ONE_YEAR, SCHEDULE, at=utc(2026, 1, 1)).non_renewable_from == \
        date(2029, 3, 15)


def test_forecast_contract_next_renewals_follow_the_schedule() -> None:
    # A BYO 1y contract whose certificate ends 2026-03-20: renewed then with at most 200 days,
    # then (2026-10-06) with 200, then from 2027-04-24 with 100 days ...
    cert = facts(utc(2025, 3, 20), not_after=utc(2026, 3, 20) - ONE_SECOND)
    outlook = contract_outlook(contract_id="C-1", item="byo", category=Category.III,
                               tier=Tier.ONE_YEAR, certificate=cert, terminated_on=None,
                               schedule=SCHEDULE, at=utc(2026, 1, 1))
    days = [r.longest_days for r in outlook.renewals]
    assert days == [200, 200, 100, 100]
    assert outlook.renewals[0].renewal_utc == utc(2026, 3, 20)
    assert outlook.renewals[1].renewal_utc == utc(2026, 3, 20) + 200 * DAY
    assert all(r.fills_contracted is False for r in outlook.renewals)
    assert all(r.renewable for r in outlook.renewals)
    assert outlook.cannot_fill_from == date(2026, 3, 15)
    assert outlook.non_renewable_from == date(2029, 3, 15)
    assert not outlook.currently_blocked
    assert outlook.first_unfilled_renewal == date(2026, 3, 20)
    # 2026-03-20 +200 (2026-10-06) +200 (2027-04-24) then +100 each: 2027-08-02, 2027-11-10,
    # 2028-02-18, 2028-05-28, 2028-09-05, 2028-12-14, 2029-03-24 — the first renewal after
    # 2029-03-15, where the 47-day maximum blocks a BYO renewal.
    assert outlook.first_blocked_renewal == date(2029, 3, 24)


def test_forecast_byo_renewal_after_2029_03_15_is_blocked_by_the_90_day_rule() -> None:
    cert = facts(utc(2028, 12, 1), lifetime=100 * DAY)
    outlook = contract_outlook(contract_id="C-2", item="byo", category=Category.III,
                               tier=Tier.SIX_MONTHS, certificate=cert, terminated_on=None,
                               schedule=SCHEDULE, at=utc(2029, 1, 1))
    first, second = outlook.renewals[:2]
    assert first.renewal_utc == utc(2029, 3, 11)
    assert (first.longest_days, first.renewable) == (100, True)
    assert second.renewal_utc == utc(2029, 6, 19)
    assert (second.longest_days, second.renewable) == (47, False)


def test_forecast_lets_encrypt_byo_is_already_non_renewable() -> None:
    cert = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    outlook = contract_outlook(contract_id="C-3", item="byo", category=Category.III,
                               tier=Tier.SIX_MONTHS, certificate=cert, terminated_on=None,
                               schedule=SCHEDULE, at=utc(2026, 2, 1))
    assert outlook.currently_blocked
    assert outlook.non_renewable_from == date(2026, 2, 1)


def test_forecast_category_i_is_never_blocked_by_the_proviso() -> None:
    cert = facts(utc(2029, 1, 1), lifetime=100 * DAY)
    outlook = contract_outlook(contract_id="C-4", item="globalsign-ov", category=Category.I,
                               tier=Tier.ONE_YEAR, certificate=cert, terminated_on=None,
                               schedule=SCHEDULE, at=utc(2029, 2, 1))
    assert all(r.renewable for r in outlook.renewals)
    assert outlook.non_renewable_from is None


def test_forecast_terminated_contract_has_no_renewals() -> None:
    cert = facts(utc(2026, 1, 1), lifetime=200 * DAY)
    outlook = contract_outlook(contract_id="C-5", item="byo", category=Category.III,
                               tier=Tier.ONE_YEAR, certificate=cert,
                               terminated_on=date(2026, 7, 20), schedule=SCHEDULE,
                               at=utc(2026, 2, 1))
    assert outlook.renewals == ()


def test_schedule_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "sc.toml"
    path.write_text('passed = 2025-04-11\n[[steps]]\nmax_days = 398\n'
                    '[[steps]]\nfrom = 2027-01-01\nmax_days = 100\n'
                    '[[steps]]\nfrom = 2026-01-01\nmax_days = 50\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"steps\[2\]\.from: steps must be in ascending"):
        load_schedule(path)
    path.write_text('passed = 2025-04-11\n[[steps]]\nmax_days = 0\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"steps\[0\]\.max_days: expected a positive"):
        load_schedule(path)
    path.write_text('passed = 2025-04-11\nballots = 1\n[[steps]]\nmax_days = 1\n',
                    encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"ballots: unknown key"):
        load_schedule(path)


def test_forecast_uses_the_configured_period_rule() -> None:
    """09:00 JST on Feb 28 of a common year: 6 elapsed months end at 09:00 on Aug 28, 6
    civil-code months (reckoned from Mar 1: March to August) at the end of Aug 31. A 183-day
    certificate fills the first and not the second."""
    start = utc(2027, 2, 28, 0)  # 09:00 JST
    longest = 183 * DAY  # ends 2027-08-30 08:59:59 JST
    civil = tier_period(start, Tier.SIX_MONTHS, rule=PeriodRule.CIVIL_CODE)
    elapsed = tier_period(start, Tier.SIX_MONTHS, rule=PeriodRule.ELAPSED)
    assert civil is not None
    assert elapsed is not None
    not_after = start + longest - ONE_SECOND
    assert elapsed.filled_by(not_after)
    assert not civil.filled_by(not_after)
    assert civil.filled_by(utc(2027, 8, 31, 14, 59, 59))  # 23:59:59 JST on Aug 31
    outlook = tier_outlook(Tier.ONE_YEAR, SCHEDULE, at=utc(2026, 1, 1),
                           rule=PeriodRule.ELAPSED)
    assert outlook.period_rule is PeriodRule.ELAPSED
    assert outlook.to_json()["period_rule"] == "elapsed"
    assert tier_outlook(Tier.ONE_YEAR, SCHEDULE, at=utc(2026, 1, 1)).to_json()[
        "period_rule"] == "civil-code"


def test_forecast_proviso_counts_by_the_rule() -> None:
    """90 days + 1 s from 12:00 JST is within 90 civil-code days (it ends on the 90th day) but
    not within 90 × 86,400 s."""
    cert = facts(utc(2026, 1, 1, 3), lifetime=90 * DAY + ONE_SECOND)
    args = {"contract_id": "C-6", "item": "byo", "category": Category.III,
            "tier": Tier.SIX_MONTHS, "certificate": cert, "terminated_on": None,
            "schedule": SCHEDULE, "at": utc(2026, 2, 1)}
    assert contract_outlook(**args).currently_blocked  # type: ignore[arg-type]
    assert not contract_outlook(**args, rule=PeriodRule.ELAPSED).currently_blocked  # type: ignore[arg-type]
    assert SCHEDULE.non_renewable_from(PeriodRule.ELAPSED) == \
        SCHEDULE.non_renewable_from(PeriodRule.CIVIL_CODE) == date(2029, 3, 15)
