"""Validity periods and the Appx1.1 tiers, computed exactly as CONTRACT.md Art.3 fixes them.

Three traps this module exists to get right once:

* RFC 5280 and the Baseline Requirements count both ends of the validity inclusive, so the period
  is ``notAfter - notBefore + 1 s``: a Let's Encrypt certificate is exactly 90 days, not 90 days
  minus a second.
* Months and years are calendar periods in Asia/Tokyo, so "6 months" is not 182.5 days and its
  length depends on ``notBefore``. How they are counted is the configured
  :class:`~policy.periods.PeriodRule`: the Civil Code's by default (reckoning day, month-end
  proviso, expiry at the end of the last day: 民法第140条, 第141条, 第143条), or ``elapsed``
  instant arithmetic (``notBefore`` + N calendar months, clamped at month ends).
* ``99991231235959Z`` ("no well-defined expiration") must not overflow ``datetime``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

from .periods import DEFAULT_PERIOD_RULE, Period, PeriodRule, months_period
from .tokyo import require_aware

__all__ = [
    "MONTH_SPAN_DAYS",
    "ONE_SECOND",
    "TIERS_ASCENDING",
    "Tier",
    "admits",
    "classify",
    "tier_end_utc",
    "tier_period",
    "validity_period",
]

ONE_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)


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
        return _RANK[self._value_] < _RANK[other._value_]

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return _RANK[self._value_] <= _RANK[other._value_]


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
_RANK: dict[str, int] = {tier.value: n for n, tier in enumerate(TIERS_ASCENDING)}
"""A tier's place in :data:`TIERS_ASCENDING`, by its value (hashing a ``str`` is done in C;
an ``Enum`` member hashes in Python): what ordering tiers compares."""


def validity_period(not_before_utc: datetime, not_after_utc: datetime) -> timedelta:
    """``notAfter - notBefore + 1 s``: both ends inclusive (RFC 5280 §4.1.2.5, BR §6.3.2)."""
    require_aware(not_before_utc, "not_before_utc")
    require_aware(not_after_utc, "not_after_utc")
    return not_after_utc - not_before_utc + ONE_SECOND


def tier_period(not_before_utc: datetime, tier: Tier, *,
                rule: PeriodRule = DEFAULT_PERIOD_RULE) -> Period | None:
    """The period ``tier`` gives a certificate starting at ``not_before_utc``, counted by
    ``rule``; ``None`` for unlimited (無期限)."""
    months = tier.months
    if months is None:
        return None
    return months_period(not_before_utc, months, rule=rule)


def tier_end_utc(not_before_utc: datetime, tier: Tier, *,
                 rule: PeriodRule = DEFAULT_PERIOD_RULE) -> datetime | None:
    """The exclusive end of ``tier`` for a certificate starting at ``not_before_utc``: under
    ``elapsed`` ``add_calendar(notBefore, N months)`` in Asia/Tokyo, under the civil code the
    Tokyo midnight after the period's last day. ``None`` when the tier is unlimited or the end
    lies beyond year 9999 (then nothing representable can exceed it)."""
    period = tier_period(not_before_utc, tier, rule=rule)
    return None if period is None else period.end_utc


def admits(
    tier: Tier,
    not_before_utc: datetime,
    not_after_utc: datetime,
    *,
    allowance: timedelta = timedelta(0),
    rule: PeriodRule = DEFAULT_PERIOD_RULE,
) -> bool:
    """Whether ``tier`` admits the certificate: ``notAfter`` before the tier's exclusive end
    (+ allowance). Under the civil code: ``notAfter``'s Tokyo date on or before the last day;
    under ``elapsed``: ``notBefore + validity <= end``.

    ``allowance`` is the Art.3 proviso's CA transition allowance (zero for the strict tier).
    """
    period = tier_period(not_before_utc, tier, rule=rule)
    if period is None:
        return True
    return period.admits(not_after_utc, allowance=allowance)


MONTH_SPAN_DAYS: dict[int, tuple[int, int]] = {6: (181, 184), 12: (365, 366), 24: (730, 731),
                                              36: (1095, 1096)}
"""The shortest and longest length, in whole days, of N calendar months counted (and clamped)
from any instant by ``elapsed`` arithmetic: Aug 31 + 6 months is Feb 28 (181 days), Jul 1 +
6 months is Jan 1 (184). The civil code's span from its reckoning day lies within the same
bounds, and the reckoning day is less than a day after ``notBefore``.
Checked against the calendar for every day of a whole 400-year Gregorian cycle by the tests."""

_FIXED_OFFSET_SINCE = datetime(1952, 1, 1, tzinfo=UTC)
"""Asia/Tokyo has kept UTC+9 without DST since 1951: from here on a calendar month span is the
same length in Tokyo wall time as in UTC, so the day bounds above are exact. Should a tz
database ever give Tokyo DST again, the 400-year bounds test fails rather than the shortcut
going quietly wrong."""


def classify(not_before_utc: datetime, not_after_utc: datetime, *,
             rule: PeriodRule = DEFAULT_PERIOD_RULE) -> Tier:
    """The smallest tier that admits the certificate (Art.3), counted by ``rule``; always the
    strict tier.

    A period no longer than a tier's shortest possible span is admitted and one longer than its
    longest is not, without any calendar arithmetic; only a period in between (a day or three
    wide) needs the calendar. That is what makes classifying 100,000 certificates cheap. A
    civil-code period spans at most one day more than the longest span of N calendar months
    (a non-midnight start adds the rest of its first day; the final month ends at its last day),
    so its upper bound is one day wider.
    """
    period = validity_period(not_before_utc, not_after_utc)
    fixed_offset = not_before_utc >= _FIXED_OFFSET_SINCE
    civil = rule is PeriodRule.CIVIL_CODE
    for tier, shortest, longest, longest_civil in _SPANS:
        if shortest is None:
            return tier
        if fixed_offset:
            if period <= shortest:
                return tier
            if period > (longest_civil if civil else longest):
                continue
        if admits(tier, not_before_utc, not_after_utc, rule=rule):
            return tier
    return Tier.UNLIMITED  # pragma: no cover - unlimited admits everything


def _spans() -> tuple[tuple[Tier, timedelta | None, timedelta, timedelta], ...]:
    """Per tier, ascending: its shortest span, its longest (elapsed) and its longest plus the
    civil code's day of slack (:data:`MONTH_SPAN_DAYS`), built once rather than per
    certificate; ``None`` for unlimited."""
    out: list[tuple[Tier, timedelta | None, timedelta, timedelta]] = []
    for tier in TIERS_ASCENDING:
        months = tier.months
        if months is None:
            out.append((tier, None, timedelta(0), timedelta(0)))
            continue
        shortest, longest = MONTH_SPAN_DAYS[months]
        out.append((tier, timedelta(days=shortest), timedelta(days=longest),
                    timedelta(days=longest) + _DAY))
    return tuple(out)


_SPANS = _spans()
