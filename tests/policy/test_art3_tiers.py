"""Art.3 / Appx1.1: validity periods and tiers, at every edge CONTRACT.md names."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.periods import PeriodRule
from policy.tiers import MONTH_SPAN_DAYS, Tier, admits, classify, tier_end_utc, validity_period
from policy.tokyo import TOKYO, add_calendar_months
from tests.policy.factsutil import ONE_SECOND, utc

DAY = timedelta(days=1)
ELAPSED = PeriodRule.ELAPSED
CIVIL = PeriodRule.CIVIL_CODE


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=TOKYO).astimezone(UTC)  # type: ignore[misc]


def test_art3_validity_period_counts_both_ends() -> None:
    nb = utc(2026, 1, 1)
    assert validity_period(nb, nb + 90 * DAY - ONE_SECOND) == 90 * DAY


def test_art3_lets_encrypt_90_days_minus_one_second_is_exactly_90_days() -> None:
    nb = utc(2026, 5, 1, 12, 34, 56)
    assert validity_period(nb, nb + timedelta(days=90) - ONE_SECOND) == timedelta(days=90)


def test_appx1_6m_from_jan_31_ends_jul_31() -> None:
    nb = jst(2026, 1, 31)
    for rule in PeriodRule:  # a 00:00 JST start: both readings agree (last day Jul 30)
        assert tier_end_utc(nb, Tier.SIX_MONTHS, rule=rule) == jst(2026, 7, 31)
        assert classify(nb, jst(2026, 7, 31) - ONE_SECOND, rule=rule) is Tier.SIX_MONTHS
        assert classify(nb, jst(2026, 7, 31), rule=rule) is Tier.ONE_YEAR


def test_appx1_6m_from_aug_31_clamps_to_feb_28() -> None:
    nb = jst(2026, 8, 31)
    assert tier_end_utc(nb, Tier.SIX_MONTHS, rule=ELAPSED) == jst(2027, 2, 28)
    assert classify(nb, jst(2027, 2, 28) - ONE_SECOND, rule=ELAPSED) is Tier.SIX_MONTHS
    assert classify(nb, jst(2027, 2, 28), rule=ELAPSED) is Tier.ONE_YEAR
    # 民法第143条: no Feb 31, so the last day is Feb 28 and the period ends at its end.
    assert tier_end_utc(nb, Tier.SIX_MONTHS, rule=CIVIL) == jst(2027, 3, 1)
    assert classify(nb, jst(2027, 3, 1) - ONE_SECOND, rule=CIVIL) is Tier.SIX_MONTHS
    assert classify(nb, jst(2027, 3, 1), rule=CIVIL) is Tier.ONE_YEAR


def test_appx1_6m_from_aug_31_clamps_to_feb_29_in_a_leap_year() -> None:
    nb = jst(2027, 8, 31)
    assert tier_end_utc(nb, Tier.SIX_MONTHS, rule=ELAPSED) == jst(2028, 2, 29)
    assert classify(nb, jst(2028, 2, 29) - ONE_SECOND, rule=ELAPSED) is Tier.SIX_MONTHS
    assert classify(nb, jst(2028, 2, 29), rule=ELAPSED) is Tier.ONE_YEAR
    assert tier_end_utc(nb, Tier.SIX_MONTHS, rule=CIVIL) == jst(2028, 3, 1)
    assert classify(nb, jst(2028, 2, 29, 23, 59, 59), rule=CIVIL) is Tier.SIX_MONTHS
    assert classify(nb, jst(2028, 3, 1), rule=CIVIL) is Tier.ONE_YEAR


def test_appx1_1y_from_leap_day_ends_feb_28() -> None:
    nb = jst(2028, 2, 29, 10)
    assert tier_end_utc(nb, Tier.ONE_YEAR, rule=ELAPSED) == jst(2029, 2, 28, 10)
    assert classify(nb, jst(2029, 2, 28, 10) - ONE_SECOND, rule=ELAPSED) is Tier.ONE_YEAR
    assert classify(nb, jst(2029, 2, 28, 10), rule=ELAPSED) is Tier.TWO_YEARS
    # 10:00 JST: reckoning day Mar 1, so the year's last day is 2029-02-28 (the day before
    # Mar 1) and it ends at the end of that day.
    assert tier_end_utc(nb, Tier.ONE_YEAR, rule=CIVIL) == jst(2029, 3, 1)
    assert classify(nb, jst(2029, 2, 28, 23, 59, 59), rule=CIVIL) is Tier.ONE_YEAR
    assert classify(nb, jst(2029, 3, 1), rule=CIVIL) is Tier.TWO_YEARS


def test_appx1_tier_counted_in_tokyo_not_utc_at_midnight() -> None:
    # 14:59:59Z is 23:59:59 JST on Aug 30; one second later it is Aug 31 in Tokyo, whose
    # "+6 months" clamps to Feb 28: the later start has the *earlier* tier end.
    before_midnight = utc(2026, 8, 30, 14, 59, 59)
    at_midnight = utc(2026, 8, 30, 15, 0, 0)
    assert tier_end_utc(before_midnight, Tier.SIX_MONTHS, rule=ELAPSED) == utc(2027, 2, 28, 14,
                                                                               59, 59)
    assert tier_end_utc(at_midnight, Tier.SIX_MONTHS, rule=ELAPSED) == utc(2027, 2, 27, 15, 0, 0)
    not_after = utc(2027, 2, 28, 14, 59, 58)
    assert classify(before_midnight, not_after, rule=ELAPSED) is Tier.SIX_MONTHS
    assert classify(at_midnight, not_after, rule=ELAPSED) is Tier.ONE_YEAR
    # Civil code: 23:59:59 JST on Aug 30 reckons from Aug 31, and 00:00 JST on Aug 31 counts
    # Aug 31 itself: both end at the end of Feb 28 (JST), i.e. 2027-02-28T15:00Z.
    for start in (before_midnight, at_midnight):
        assert tier_end_utc(start, Tier.SIX_MONTHS, rule=CIVIL) == utc(2027, 2, 28, 15, 0, 0)
        assert classify(start, utc(2027, 2, 28, 14, 59, 59), rule=CIVIL) is Tier.SIX_MONTHS
        assert classify(start, utc(2027, 2, 28, 15, 0, 0), rule=CIVIL) is Tier.ONE_YEAR


def test_appx1_unlimited_admits_no_well_defined_expiration() -> None:
    nb = utc(2026, 1, 1)
    forever = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert classify(nb, forever) is Tier.UNLIMITED
    assert admits(Tier.UNLIMITED, nb, forever)
    assert not admits(Tier.THREE_YEARS, nb, forever)


def test_appx1_3y_edge() -> None:
    nb = jst(2026, 4, 1)
    assert classify(nb, jst(2029, 4, 1) - ONE_SECOND) is Tier.THREE_YEARS
    assert classify(nb, jst(2029, 4, 1)) is Tier.UNLIMITED


def test_appx1_199_day_certificate_is_1y() -> None:
    # DigiCert/GlobalSign deliver "1 year" as two ~199-day certificates since 2026-03.
    nb = utc(2026, 4, 1)
    assert classify(nb, nb + 199 * DAY - ONE_SECOND) is Tier.ONE_YEAR


def test_appx1_398_day_certificate_is_2y() -> None:
    nb = utc(2025, 6, 1)
    assert classify(nb, nb + 398 * DAY - ONE_SECOND) is Tier.TWO_YEARS


# ---------------------------------------------------------------- properties

# hypothesis wants naive bounds and attaches the timezone itself.
instants = st.datetimes(min_value=datetime(2000, 1, 1),  # noqa: DTZ001
                        max_value=datetime(2090, 12, 31),  # noqa: DTZ001
                        timezones=st.just(UTC))


@settings(deadline=None)
@given(instants, st.integers(min_value=0, max_value=480))
def test_add_calendar_months_keeps_the_day_clamped_to_month_end(at: datetime,
                                                               months: int) -> None:
    local = at.astimezone(TOKYO)
    result = add_calendar_months(at, months).astimezone(TOKYO)
    index = local.year * 12 + local.month - 1 + months
    year, month0 = divmod(index, 12)
    assert (result.year, result.month) == (year, month0 + 1)
    last = calendar.monthrange(result.year, result.month)[1]
    assert result.day == min(local.day, last)
    assert result.time() == local.time()


@settings(deadline=None)
@given(instants, instants, st.sampled_from([6, 12, 24, 36]))
def test_add_calendar_months_is_monotone_in_the_start(a: datetime, b: datetime,
                                                     months: int) -> None:
    lo, hi = sorted((a, b))
    assert add_calendar_months(lo, months) <= add_calendar_months(hi, months)


@settings(deadline=None)
@given(instants, st.integers(min_value=0, max_value=240), st.integers(min_value=0, max_value=240))
def test_add_calendar_months_is_monotone_in_months(at: datetime, m1: int, m2: int) -> None:
    lo, hi = sorted((m1, m2))
    assert add_calendar_months(at, lo) <= add_calendar_months(at, hi)
    assert add_calendar_months(at, hi) >= at


rules = st.sampled_from(list(PeriodRule))


@settings(deadline=None)
@given(instants, st.integers(min_value=1, max_value=2000 * 86_400),
       st.integers(min_value=0, max_value=2000 * 86_400), rules)
def test_classify_longer_certificate_never_classifies_shorter(nb: datetime, s1: int,
                                                              s2: int, rule: PeriodRule) -> None:
    short, long_ = sorted((s1, s2))
    t_short = classify(nb, nb + timedelta(seconds=short) - ONE_SECOND, rule=rule)
    t_long = classify(nb, nb + timedelta(seconds=long_) - ONE_SECOND, rule=rule)
    assert t_short <= t_long


@settings(deadline=None)
@given(instants, st.integers(min_value=1, max_value=2000 * 86_400), rules)
def test_classify_returns_the_smallest_admitting_tier(nb: datetime, seconds: int,
                                                      rule: PeriodRule) -> None:
    na = nb + timedelta(seconds=seconds) - ONE_SECOND
    tier = classify(nb, na, rule=rule)
    assert admits(tier, nb, na, rule=rule)
    smaller = [t for t in Tier if t < tier]
    assert not any(admits(t, nb, na, rule=rule) for t in smaller)


def _calendar_classify(nb: datetime, na: datetime,
                       rule: PeriodRule = CIVIL) -> Tier:
    """The definition, with no shortcut: the first tier whose calendar end admits it."""
    return next(t for t in sorted(Tier, key=lambda t: (t.months is None, t.months or 0))
                if admits(t, nb, na, rule=rule))


def test_month_span_bounds_hold_for_every_day_of_a_400_year_cycle() -> None:
    # The Gregorian calendar repeats every 400 years, so 2000-2399 covers every start day.
    start = datetime(2000, 1, 1, tzinfo=UTC)
    for months, (shortest, longest) in MONTH_SPAN_DAYS.items():
        seen: set[int] = set()
        day = start
        while day.year < 2400:
            seen.add((add_calendar_months(day, months) - day).days)
            day += DAY
        assert (min(seen), max(seen)) == (shortest, longest), months


@settings(deadline=None, max_examples=300)
@given(st.datetimes(min_value=datetime(1950, 1, 1),  # noqa: DTZ001
                    max_value=datetime(2100, 12, 31),  # noqa: DTZ001
                    timezones=st.just(UTC)),
       st.sampled_from([0, 1, 2, 3, 4]), st.sampled_from([6, 12, 24, 36]),
       st.integers(min_value=-2 * 86_400, max_value=2 * 86_400), rules)
def test_classify_shortcut_agrees_with_the_calendar_near_every_tier_edge(
        nb: datetime, lengths: int, months: int, jitter: int, rule: PeriodRule) -> None:
    # Periods within two days of each span bound (where the shortcut hands over to the
    # calendar), on both sides, from 1950 (Tokyo still had DST) onwards.
    shortest, longest = MONTH_SPAN_DAYS[months]
    days = (shortest, longest, shortest - 1, longest + 1, longest + 2)[lengths]
    na = nb + timedelta(days=days, seconds=jitter) - ONE_SECOND
    if na < nb:
        return
    assert classify(nb, na, rule=rule) is _calendar_classify(nb, na, rule)


def test_classify_before_1952_uses_the_calendar_with_tokyo_dst() -> None:
    # 1950-07-01 00:00 JDT (UTC+10) + 6 months = 1951-01-01 00:00 JST (UTC+9): 184 days and one
    # hour in UTC, one hour longer than any 6 months since 1952, so 184 days + 30 minutes is
    # still 6m here (a day-bound shortcut would call it 1y).
    nb = datetime(1950, 7, 1, tzinfo=TOKYO).astimezone(UTC)
    assert (nb.day, nb.hour) == (30, 14)
    na = nb + 184 * DAY + timedelta(minutes=30) - ONE_SECOND
    assert classify(nb, na, rule=ELAPSED) is Tier.SIX_MONTHS
    assert _calendar_classify(nb, na, ELAPSED) is Tier.SIX_MONTHS
    assert classify(nb, na + timedelta(minutes=31), rule=ELAPSED) is Tier.ONE_YEAR


def test_classify_year_9999_not_after_is_unlimited() -> None:
    nb = utc(2026, 1, 1)
    assert classify(nb, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)) is Tier.UNLIMITED
