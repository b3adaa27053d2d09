"""Art.3 / Appx1.1: validity periods and tiers, at every edge CONTRACT.md names."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.tiers import Tier, admits, classify, tier_end_utc, validity_period
from policy.tokyo import TOKYO, add_calendar_months
from tests.policy.factsutil import ONE_SECOND, utc

DAY = timedelta(days=1)


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
    assert tier_end_utc(nb, Tier.SIX_MONTHS) == jst(2026, 7, 31)
    assert classify(nb, jst(2026, 7, 31) - ONE_SECOND) is Tier.SIX_MONTHS
    assert classify(nb, jst(2026, 7, 31)) is Tier.ONE_YEAR


def test_appx1_6m_from_aug_31_clamps_to_feb_28() -> None:
    nb = jst(2026, 8, 31)
    assert tier_end_utc(nb, Tier.SIX_MONTHS) == jst(2027, 2, 28)
    assert classify(nb, jst(2027, 2, 28) - ONE_SECOND) is Tier.SIX_MONTHS
    assert classify(nb, jst(2027, 2, 28)) is Tier.ONE_YEAR


def test_appx1_6m_from_aug_31_clamps_to_feb_29_in_a_leap_year() -> None:
    nb = jst(2027, 8, 31)
    assert tier_end_utc(nb, Tier.SIX_MONTHS) == jst(2028, 2, 29)
    assert classify(nb, jst(2028, 2, 29) - ONE_SECOND) is Tier.SIX_MONTHS
    assert classify(nb, jst(2028, 2, 29)) is Tier.ONE_YEAR


def test_appx1_1y_from_leap_day_ends_feb_28() -> None:
    nb = jst(2028, 2, 29, 10)
    assert tier_end_utc(nb, Tier.ONE_YEAR) == jst(2029, 2, 28, 10)
    assert classify(nb, jst(2029, 2, 28, 10) - ONE_SECOND) is Tier.ONE_YEAR
    assert classify(nb, jst(2029, 2, 28, 10)) is Tier.TWO_YEARS


def test_appx1_tier_counted_in_tokyo_not_utc_at_midnight() -> None:
    # 14:59:59Z is 23:59:59 JST on Aug 30; one second later it is Aug 31 in Tokyo, whose
    # "+6 months" clamps to Feb 28: the later start has the *earlier* tier end.
    before_midnight = utc(2026, 8, 30, 14, 59, 59)
    at_midnight = utc(2026, 8, 30, 15, 0, 0)
    assert tier_end_utc(before_midnight, Tier.SIX_MONTHS) == utc(2027, 2, 28, 14, 59, 59)
    assert tier_end_utc(at_midnight, Tier.SIX_MONTHS) == utc(2027, 2, 27, 15, 0, 0)
    not_after = utc(2027, 2, 28, 14, 59, 58)
    assert classify(before_midnight, not_after) is Tier.SIX_MONTHS
    assert classify(at_midnight, not_after) is Tier.ONE_YEAR


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


@settings(deadline=None)
@given(instants, st.integers(min_value=1, max_value=2000 * 86_400),
       st.integers(min_value=0, max_value=2000 * 86_400))
def test_classify_longer_certificate_never_classifies_shorter(nb: datetime, s1: int,
                                                              s2: int) -> None:
    short, long_ = sorted((s1, s2))
    t_short = classify(nb, nb + timedelta(seconds=short) - ONE_SECOND)
    t_long = classify(nb, nb + timedelta(seconds=long_) - ONE_SECOND)
    assert t_short <= t_long


@settings(deadline=None)
@given(instants, st.integers(min_value=1, max_value=2000 * 86_400))
def test_classify_returns_the_smallest_admitting_tier(nb: datetime, seconds: int) -> None:
    na = nb + timedelta(seconds=seconds) - ONE_SECOND
    tier = classify(nb, na)
    assert admits(tier, nb, na)
    smaller = [t for t in Tier if t < tier]
    assert not any(admits(t, nb, na) for t in smaller)
