"""Periods follow the Civil Code (CONTRACT.md Art.3, 民法第138条–第143条), or ``elapsed``.

Every boundary is tested on both sides and under both rules: a start at 00:00:00 JST and at
00:00:01 JST, month ends (Jan 31, Aug 31, Feb 29), 90 days from a mid-day start, years across
Feb 29, and the CONTRACT.md examples verbatim.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.periods import PeriodRule, days_period, months_period
from policy.rules.art6 import art6_3_cannot_renew, art6_3_period
from policy.settings import PolicySettings
from policy.tiers import TIERS_ASCENDING, Tier, admits, classify, tier_period
from policy.tokyo import TOKYO
from tests.policy.factsutil import ONE_SECOND, facts

CIVIL = PeriodRule.CIVIL_CODE
ELAPSED = PeriodRule.ELAPSED
DAY = timedelta(days=1)


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)  # type: ignore[misc]


# ------------------------------------------------------------ CONTRACT.md examples verbatim

def test_contract_example_90_days_from_mid_day_end_on_aug_8() -> None:
    """notBefore 2026-05-10 12:04:05 → reckoning day 05-11 → 90 days end on 2026-08-08."""
    period = days_period(jst(2026, 5, 10, 12, 4, 5), 90, rule=CIVIL)
    assert period.reckoning_day == date(2026, 5, 11)
    assert period.last_day == date(2026, 8, 8)
    assert period.admits(jst(2026, 8, 8, 12, 4, 4))  # 90 days
    assert period.admits(jst(2026, 8, 8, 12, 4, 5))  # 90 days + 1 s
    assert period.admits(jst(2026, 8, 8, 23, 59, 59))
    assert not period.admits(jst(2026, 8, 9, 0, 0, 0))


def test_elapsed_90_days_from_mid_day_ends_at_the_same_second() -> None:
    period = days_period(jst(2026, 5, 10, 12, 4, 5), 90, rule=ELAPSED)
    assert period.end_utc == jst(2026, 8, 8, 12, 4, 5)
    assert period.last_day == date(2026, 8, 8)
    assert period.admits(jst(2026, 8, 8, 12, 4, 4))  # exactly 90 days
    assert not period.admits(jst(2026, 8, 8, 12, 4, 5))  # 90 days + 1 s


@pytest.mark.parametrize(("start", "months", "last_civil", "last_elapsed"), [
    ((2026, 1, 31), 6, date(2026, 7, 30), date(2026, 7, 30)),
    ((2025, 8, 31), 6, date(2026, 2, 28), date(2026, 2, 27)),  # February has no 31st
    ((2024, 2, 29), 12, date(2025, 2, 28), date(2025, 2, 27)),  # 2025 has no Feb 29
])
def test_contract_example_month_ends(start: tuple[int, int, int], months: int,
                                     last_civil: date, last_elapsed: date) -> None:
    nb = jst(*start)
    civil = months_period(nb, months, rule=CIVIL)
    assert civil.reckoning_day == date(*start)  # 00:00 JST: the first day counts
    assert civil.last_day == last_civil
    assert civil.admits(jst(last_civil.year, last_civil.month, last_civil.day, 23, 59, 59))
    after = last_civil + DAY
    assert not civil.admits(jst(after.year, after.month, after.day))
    elapsed = months_period(nb, months, rule=ELAPSED)
    assert elapsed.last_day == last_elapsed
    assert elapsed.admits(jst(last_elapsed.year, last_elapsed.month, last_elapsed.day, 23, 59, 59))
    nxt = last_elapsed + DAY
    assert not elapsed.admits(jst(nxt.year, nxt.month, nxt.day))


# ------------------------------------------------------------ 00:00:00 vs 00:00:01 JST

def test_civil_start_at_midnight_counts_its_first_day() -> None:
    period = days_period(jst(2026, 5, 10, 0, 0, 0), 90, rule=CIVIL)
    assert period.reckoning_day == date(2026, 5, 10)
    assert period.last_day == date(2026, 8, 7)
    assert period.admits(jst(2026, 8, 7, 23, 59, 59))
    assert not period.admits(jst(2026, 8, 8, 0, 0, 0))


def test_civil_start_one_second_after_midnight_does_not_count_its_first_day() -> None:
    period = days_period(jst(2026, 5, 10, 0, 0, 1), 90, rule=CIVIL)
    assert period.reckoning_day == date(2026, 5, 11)
    assert period.last_day == date(2026, 8, 8)
    assert period.admits(jst(2026, 8, 8, 23, 59, 59))
    assert not period.admits(jst(2026, 8, 9, 0, 0, 0))


def test_elapsed_start_at_midnight_and_one_second_after() -> None:
    at_midnight = days_period(jst(2026, 5, 10, 0, 0, 0), 90, rule=ELAPSED)
    assert at_midnight.admits(jst(2026, 8, 7, 23, 59, 59))
    assert not at_midnight.admits(jst(2026, 8, 8, 0, 0, 0))
    one_later = days_period(jst(2026, 5, 10, 0, 0, 1), 90, rule=ELAPSED)
    assert one_later.admits(jst(2026, 8, 8, 0, 0, 0))
    assert not one_later.admits(jst(2026, 8, 8, 0, 0, 1))


def test_civil_six_months_from_jan_31_one_second_after_midnight() -> None:
    """Reckoning day Feb 1: the corresponding day of August is Aug 1, so the last day is Jul 31."""
    period = months_period(jst(2026, 1, 31, 0, 0, 1), 6, rule=CIVIL)
    assert period.reckoning_day == date(2026, 2, 1)
    assert period.last_day == date(2026, 7, 31)
    assert period.admits(jst(2026, 7, 31, 23, 59, 59))
    assert not period.admits(jst(2026, 8, 1))


def test_six_months_from_apr_30_mid_day_differ_by_one_contract_day() -> None:
    civil = months_period(jst(2000, 4, 30, 9), 6, rule=CIVIL)
    elapsed = months_period(jst(2000, 4, 30, 9), 6, rule=ELAPSED)
    assert (civil.last_day, elapsed.last_day) == (date(2000, 10, 31), date(2000, 10, 30))
    assert civil.admits(jst(2000, 10, 31, 23, 59, 59))
    assert not elapsed.admits(jst(2000, 10, 30, 9))
    assert elapsed.admits(jst(2000, 10, 30, 8, 59, 59))


def test_six_months_from_feb_28_mid_day_run_to_aug_31() -> None:
    """The widest gap between the readings: 09:00 on Feb 28 of a common year reckons from
    Mar 1, the start of a month, so 6 months are March to August (民法第143条第1項)."""
    civil = months_period(jst(2001, 2, 28, 9), 6, rule=CIVIL)
    elapsed = months_period(jst(2001, 2, 28, 9), 6, rule=ELAPSED)
    assert civil.reckoning_day == date(2001, 3, 1)
    assert (civil.last_day, elapsed.last_day) == (date(2001, 8, 31), date(2001, 8, 28))
    assert civil.admits(jst(2001, 8, 31, 23, 59, 59))
    assert not civil.admits(jst(2001, 9, 1))
    assert elapsed.admits(jst(2001, 8, 28, 8, 59, 59))
    assert not elapsed.admits(jst(2001, 8, 28, 9))


def test_civil_six_months_from_aug_30_mid_day_reckons_from_aug_31() -> None:
    period = months_period(jst(2025, 8, 30, 12), 6, rule=CIVIL)
    assert period.reckoning_day == date(2025, 8, 31)
    assert period.last_day == date(2026, 2, 28)
    elapsed = months_period(jst(2025, 8, 30, 12), 6, rule=ELAPSED)
    assert elapsed.end_utc == jst(2026, 2, 28, 12)
    assert elapsed.admits(jst(2026, 2, 28, 11, 59, 59))
    assert not elapsed.admits(jst(2026, 2, 28, 12))


# ------------------------------------------------------------ years across Feb 29

def test_one_year_from_feb_28_mid_day_reckons_from_leap_day() -> None:
    """2024-02-28 12:00 → reckoning day 2024-02-29; 2025 has no Feb 29, so the last day is the
    last day of February 2025."""
    civil = months_period(jst(2024, 2, 28, 12), 12, rule=CIVIL)
    assert civil.reckoning_day == date(2024, 2, 29)
    assert civil.last_day == date(2025, 2, 28)
    assert civil.admits(jst(2025, 2, 28, 23, 59, 59))
    assert not civil.admits(jst(2025, 3, 1))
    elapsed = months_period(jst(2024, 2, 28, 12), 12, rule=ELAPSED)
    assert elapsed.admits(jst(2025, 2, 28, 11, 59, 59))
    assert not elapsed.admits(jst(2025, 2, 28, 12))


def test_four_years_from_leap_day_land_on_a_leap_day() -> None:
    civil = months_period(jst(2024, 2, 29), 48, rule=CIVIL)
    assert civil.last_day == date(2028, 2, 28)  # Feb 29 2028 exists: the day before it
    assert not civil.admits(jst(2028, 2, 29))
    two = months_period(jst(2024, 2, 29), 24, rule=CIVIL)
    assert two.last_day == date(2026, 2, 28)  # 2026 has no Feb 29: its last day
    assert two.admits(jst(2026, 2, 28, 23, 59, 59))
    assert not two.admits(jst(2026, 3, 1))
    # elapsed: Feb 29 + 48 months is Feb 29 (00:00), + 24 months is clamped to Feb 28 (00:00).
    four_elapsed = months_period(jst(2024, 2, 29), 48, rule=ELAPSED)
    assert four_elapsed.admits(jst(2028, 2, 28, 23, 59, 59))
    assert not four_elapsed.admits(jst(2028, 2, 29))
    two_elapsed = months_period(jst(2024, 2, 29), 24, rule=ELAPSED)
    assert two_elapsed.admits(jst(2026, 2, 27, 23, 59, 59))
    assert not two_elapsed.admits(jst(2026, 2, 28))


def test_one_year_from_mar_1_across_feb_29() -> None:
    civil = months_period(jst(2027, 3, 1), 12, rule=CIVIL)
    assert civil.last_day == date(2028, 2, 29)
    assert civil.admits(jst(2028, 2, 29, 23, 59, 59))
    assert not civil.admits(jst(2028, 3, 1))
    elapsed = months_period(jst(2027, 3, 1), 12, rule=ELAPSED)  # 00:00 start: the same
    assert elapsed.last_day == date(2028, 2, 29)
    assert elapsed.admits(jst(2028, 2, 29, 23, 59, 59))
    assert not elapsed.admits(jst(2028, 3, 1))
    mid_day = months_period(jst(2027, 3, 1, 12), 12, rule=CIVIL)  # reckons from Mar 2
    assert mid_day.last_day == date(2028, 3, 1)
    assert not mid_day.admits(jst(2028, 3, 2))
    mid_day_elapsed = months_period(jst(2027, 3, 1, 12), 12, rule=ELAPSED)
    assert mid_day_elapsed.admits(jst(2028, 3, 1, 11, 59, 59))
    assert not mid_day_elapsed.admits(jst(2028, 3, 1, 12))


# ------------------------------------------------------------ tiers and the proviso use the rule

def test_tier_uses_the_rule_at_the_month_end() -> None:
    nb = jst(2025, 8, 31)
    na = jst(2026, 2, 28, 12)  # ends on Feb 28: within civil-code 6 months, not elapsed ones
    assert classify(nb, na, rule=CIVIL) is Tier.SIX_MONTHS
    assert classify(nb, na, rule=ELAPSED) is Tier.ONE_YEAR
    assert admits(Tier.SIX_MONTHS, nb, na, rule=CIVIL)
    assert not admits(Tier.SIX_MONTHS, nb, na, rule=ELAPSED)
    assert classify(nb, jst(2026, 3, 1), rule=CIVIL) is Tier.ONE_YEAR


def test_art6_3_lets_encrypt_is_blocked_under_both_rules() -> None:
    le = facts(jst(2026, 5, 10, 12, 4, 5), lifetime=90 * DAY)
    assert art6_3_cannot_renew(le, CIVIL)
    assert art6_3_cannot_renew(le, ELAPSED)


def test_art6_3_ninety_days_and_one_second_from_mid_day() -> None:
    """90 days + 1 s is within 90 days under the Civil Code (notAfter's Tokyo date is the last
    day) and not under ``elapsed``."""
    f = facts(jst(2026, 5, 10, 12, 4, 5), lifetime=90 * DAY + ONE_SECOND)
    assert art6_3_cannot_renew(f, CIVIL)
    assert not art6_3_cannot_renew(f, ELAPSED)
    assert art6_3_period(f, CIVIL).last_day == date(2026, 8, 8)


def test_art6_3_ending_the_day_after_the_last_day_can_renew() -> None:
    f = facts(jst(2026, 5, 10, 12, 4, 5), not_after=jst(2026, 8, 9))
    assert not art6_3_cannot_renew(f, CIVIL)
    assert not art6_3_cannot_renew(f, ELAPSED)
    g = facts(jst(2026, 5, 10, 12, 4, 5), not_after=jst(2026, 8, 8, 23, 59, 59))
    assert art6_3_cannot_renew(g, CIVIL)


def test_period_explains_itself_in_english_and_japanese() -> None:
    period = days_period(jst(2026, 5, 10, 12, 4, 5), 90, rule=CIVIL)
    assert period.explain_ja() == ("起算日 2026-05-11（初日不算入、民法第140条）から 90 日、"
                                   "2026-08-08 満了")
    assert "reckoning day 2026-05-11" in period.explain_en()
    assert "Art.140" in period.explain_en()
    assert period.to_json()["period_rule"] == "civil-code"
    assert period.to_json()["period_last_day"] == "2026-08-08"
    months = months_period(jst(2026, 1, 31), 6, rule=CIVIL)
    assert "民法第143条" in months.explain_ja()
    assert "Art.143" in months.explain_en()
    elapsed = days_period(jst(2026, 5, 10, 12, 4, 5), 90, rule=ELAPSED)
    assert elapsed.to_json()["period_rule"] == "elapsed"
    assert "経過時間" in elapsed.explain_ja()


def test_settings_period_rule_default_and_parse() -> None:
    assert PolicySettings().period_rule is CIVIL
    assert PolicySettings.from_mapping({}).period_rule is CIVIL
    assert PolicySettings.from_mapping({"period_rule": "elapsed"}).period_rule is ELAPSED
    with pytest.raises(ValueError, match=r"policy\.period_rule.*civil-code, elapsed"):
        PolicySettings.from_mapping({"period_rule": "lunar"})
    with pytest.raises(ValueError, match=r"policy\.period_rule: expected a string"):
        PolicySettings.from_mapping({"period_rule": 90})


# ------------------------------------------------------------ properties

_STARTS = st.datetimes(min_value=datetime(1952, 1, 1),  # noqa: DTZ001 - hypothesis adds UTC
                       max_value=datetime(9990, 1, 1),  # noqa: DTZ001
                       timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))
_LENGTHS = st.integers(min_value=1, max_value=4 * 366 * 86_400)


@settings(max_examples=300, deadline=None)
@given(start=_STARTS, seconds=_LENGTHS,
       days=st.sampled_from([1, 30, 45, 47, 90, 100, 200, 398]))
def test_elapsed_days_never_more_lenient_and_at_most_one_day_apart(
        start: datetime, seconds: int, days: int) -> None:
    na = start + timedelta(seconds=seconds) - ONE_SECOND
    civil = days_period(start, days, rule=CIVIL)
    elapsed = days_period(start, days, rule=ELAPSED)
    assert civil.end_utc is not None
    assert elapsed.end_utc is not None
    assert elapsed.end_utc <= civil.end_utc <= elapsed.end_utc + DAY
    if elapsed.admits(na):
        assert civil.admits(na)
    assert elapsed.last_day is not None
    assert civil.last_day is not None
    assert 0 <= (civil.last_day - elapsed.last_day).days <= 1


@settings(max_examples=300, deadline=None)
@given(start=_STARTS, seconds=_LENGTHS)
def test_elapsed_tiers_never_more_lenient_and_at_most_one_day_apart(
        start: datetime, seconds: int) -> None:
    na = start + timedelta(seconds=seconds) - ONE_SECOND
    for tier in TIERS_ASCENDING[:-1]:
        civil, elapsed = tier_period(start, tier, rule=CIVIL), tier_period(start, tier,
                                                                          rule=ELAPSED)
        assert civil is not None
        assert elapsed is not None
        assert civil.end_utc is not None
        assert elapsed.end_utc is not None
        assert elapsed.end_utc <= civil.end_utc
        # A mid-day start on a month's last day reckons from the 1st of the next month, and
        # the Civil Code then runs to the end of the final month: Apr 30 09:00 → Oct 31
        # (elapsed: Oct 30), Feb 28 09:00 of a common year → Aug 31 (elapsed: Aug 28).
        # Everywhere else the last days are at most one day apart.
        assert elapsed.last_day is not None
        assert civil.last_day is not None
        gap = (civil.last_day - elapsed.last_day).days
        assert 0 <= gap <= 3
        if gap > 1:
            assert civil.reckoning_day is not None
            assert civil.reckoning_day.day == 1
            assert start.astimezone(TOKYO).time() != time(0)
        if elapsed.admits(na):
            assert civil.admits(na)
    assert classify(start, na, rule=CIVIL) <= classify(start, na, rule=ELAPSED)


@settings(max_examples=300, deadline=None)
@given(start=_STARTS, seconds=_LENGTHS)
def test_civil_classify_shortcut_agrees_with_the_calendar(start: datetime, seconds: int) -> None:
    """``classify`` skips the calendar outside a day-wide band; the definition never does."""
    na = start + timedelta(seconds=seconds) - ONE_SECOND
    for rule in PeriodRule:
        expected = next(t for t in TIERS_ASCENDING if admits(t, start, na, rule=rule))
        assert classify(start, na, rule=rule) is expected


@settings(max_examples=200, deadline=None)
@given(start=_STARTS, months=st.sampled_from([6, 12, 24, 36]))
def test_civil_month_period_is_within_the_rule_text(start: datetime, months: int) -> None:
    """民法第143条 from the text: the last day is the day before the corresponding day, or the
    final month's last day; the civil last day is never before the elapsed one."""
    period = months_period(start, months, rule=CIVIL)
    assert period.reckoning_day is not None
    assert period.last_day is not None
    r = period.reckoning_day
    index = r.year * 12 + r.month - 1 + months
    year, month = index // 12, index % 12 + 1
    try:
        assert period.last_day == date(year, month, r.day) - DAY
    except ValueError:
        assert (period.last_day + DAY).month != month
        assert period.last_day.month == month


def test_periods_beyond_9999_are_unbounded_not_errors() -> None:
    late = datetime(9999, 12, 31, 20, tzinfo=UTC)
    for rule in PeriodRule:
        assert days_period(late, 90, rule=rule).admits(datetime(9999, 12, 31, 23, 59, 59,
                                                                tzinfo=UTC))
        assert months_period(late, 36, rule=rule).end_utc is None
        assert classify(late, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                        rule=rule) is Tier.SIX_MONTHS
    assert art6_3_cannot_renew(facts(late, not_after=datetime(9999, 12, 31, 23, 59, 59,
                                                             tzinfo=UTC)))

