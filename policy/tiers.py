"""Validity periods and the Appx1.1 tiers, computed exactly as CONTRACT.md Art.3 fixes them.

Three traps this module exists to get right once:

* RFC 5280 and the Baseline Requirements count both ends of the validity inclusive, so the period
  is ``notAfter - notBefore + 1 s``: a Let's Encrypt certificate is exactly 90 days, not 90 days
  minus a second.
* Months and years are calendar periods in Asia/Tokyo (Civil Code Art.143), clamped at month
  ends, so "6 months" is not 182.5 days and its length depends on ``notBefore``.
* ``99991231235959Z`` ("no well-defined expiration") must not overflow ``datetime``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

from .tokyo import add_calendar_months, require_aware

__all__ = [
    "MONTH_SPAN_DAYS",
    "ONE_SECOND",
    "TIERS_ASCENDING",
    "Tier",
    "admits",
    "classify",
    "tier_end_utc",
    "validity_period",
]

ONE_SECOND = timedelta(seconds=1)


class Tier(enum.Enum):
    """A permitted validity period of Appx1.1. The value is the name used everywhere (CLI,
    JSON, configuration)."""

    SIX_MONTHS = "6m"
    ONE_YEAR = "1y"
    TWO_YEARS = "2y"
    THREE_YEARS = "3y"
    UNLIMITED = "unlimited"

    @property
    def months(self) -> int | None:
        """Calendar months in the tier; ``None`` for unlimited (無期限)."""
        return _MONTHS[self]

    @property
    def label_ja(self) -> str:
        return _LABEL_JA[self]

    @classmethod
    def parse(cls, name: str) -> Tier:
        """Parse a tier name; the error lists the valid names so a user can correct the input."""
        for tier in cls:
            if tier.value == name:
                return tier
        valid = ", ".join(t.value for t in cls)
        raise ValueError(f"unknown tier {name!r}: expected one of {valid}")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return TIERS_ASCENDING.index(self) < TIERS_ASCENDING.index(other)

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return self == other or self < other


_MONTHS: dict[Tier, int | None] = {
    Tier.SIX_MONTHS: 6,
    Tier.ONE_YEAR: 12,
    Tier.TWO_YEARS: 24,
    Tier.THREE_YEARS: 36,
    Tier.UNLIMITED: None,
}
_LABEL_JA: dict[Tier, str] = {
    Tier.SIX_MONTHS: "6ヶ月間",
    Tier.ONE_YEAR: "1年間",
    Tier.TWO_YEARS: "2年間",
    Tier.THREE_YEARS: "3年間",
    Tier.UNLIMITED: "無期限",
}
TIERS_ASCENDING: tuple[Tier, ...] = (
    Tier.SIX_MONTHS,
    Tier.ONE_YEAR,
    Tier.TWO_YEARS,
    Tier.THREE_YEARS,
    Tier.UNLIMITED,
)


def validity_period(not_before_utc: datetime, not_after_utc: datetime) -> timedelta:
    """``notAfter - notBefore + 1 s``: both ends inclusive (RFC 5280 §4.1.2.5, BR §6.3.2)."""
    require_aware(not_before_utc, "not_before_utc")
    require_aware(not_after_utc, "not_after_utc")
    return not_after_utc - not_before_utc + ONE_SECOND


def tier_end_utc(not_before_utc: datetime, tier: Tier) -> datetime | None:
    """The exclusive end of ``tier`` for a certificate starting at ``not_before_utc``:
    ``add_calendar(notBefore, N months)`` in Asia/Tokyo. ``None`` when the tier is unlimited or
    the end lies beyond year 9999 (then nothing representable can exceed it)."""
    months = tier.months
    if months is None:
        return None
    try:
        return add_calendar_months(not_before_utc, months)
    except (OverflowError, ValueError):
        return None


def admits(
    tier: Tier,
    not_before_utc: datetime,
    not_after_utc: datetime,
    *,
    allowance: timedelta = timedelta(0),
) -> bool:
    """Whether ``tier`` admits the certificate: ``notBefore + validity <= tier end (+ allowance)``.

    The comparison is inclusive: a certificate whose last second is the one just before the tier
    end is admitted; one second more is not. ``allowance`` is the Art.3 proviso's CA transition
    allowance (zero for the strict tier).
    """
    end = tier_end_utc(not_before_utc, tier)
    if end is None:
        return True
    # notBefore + (notAfter - notBefore + 1 s) <= end + allowance, rearranged so that
    # notAfter = 9999-12-31T23:59:59Z never has a second added to it.
    try:
        bound = end + allowance - ONE_SECOND
    except OverflowError:
        return True
    return require_aware(not_after_utc, "not_after_utc") <= bound


MONTH_SPAN_DAYS: dict[int, tuple[int, int]] = {6: (181, 184), 12: (365, 366), 24: (730, 731),
                                              36: (1095, 1096)}
"""The shortest and longest length, in whole days, of N calendar months counted (and clamped)
from any day: Aug 31 + 6 months is Feb 28 (181 days), Jul 1 + 6 months is Jan 1 (184).
Checked against the calendar for every day of a whole 400-year Gregorian cycle by the tests."""

_FIXED_OFFSET_SINCE = datetime(1952, 1, 1, tzinfo=UTC)
"""Asia/Tokyo has kept UTC+9 without DST since 1951: from here on a calendar month span is the
same length in Tokyo wall time as in UTC, so the day bounds above are exact. Should a tz
database ever give Tokyo DST again, the 400-year bounds test fails rather than the shortcut
going quietly wrong."""


def classify(not_before_utc: datetime, not_after_utc: datetime) -> Tier:
    """The smallest tier that admits the certificate (Art.3); always the strict tier.

    A period no longer than a tier's shortest possible span is admitted and one longer than its
    longest is not, without any calendar arithmetic; only a period in between (a day or three
    wide) needs the calendar. That is what makes classifying 100,000 certificates cheap.
    """
    period = validity_period(not_before_utc, not_after_utc)
    fixed_offset = not_before_utc >= _FIXED_OFFSET_SINCE
    for tier in TIERS_ASCENDING:
        months = tier.months
        if months is None:
            return tier
        if fixed_offset:
            shortest, longest = MONTH_SPAN_DAYS[months]
            if period <= timedelta(days=shortest):
                return tier
            if period > timedelta(days=longest):
                continue
        if admits(tier, not_before_utc, not_after_utc):
            return tier
    return Tier.UNLIMITED  # pragma: no cover - unlimited admits everything
