"""The one place where instants become contract days.

The terms are a Japanese contract: a "day" is an Asia/Tokyo calendar day. Certificates speak
UTC. Every conversion between the two goes through this module so that the boundary (Tokyo
midnight = 15:00 UTC the day before) is handled, and tested, once. How periods are counted
(the Civil Code's reckoning day and month-end proviso, or instant arithmetic) is
``policy.periods``'s business; this module only converts.

Certificates may carry any instant ``datetime`` holds, 0001-01-01 and 9999-12-31 included, and
Tokyo is nine hours ahead: 9999-12-31T15:00Z is a Tokyo day ``date`` cannot hold, and
0001-01-01 minus a day is none either. Day arithmetic here *saturates* at ``date.min`` /
``date.max`` instead of raising, so one certificate at the ends of the range is a finding for
the rules to report (``policy.facts.unevaluable``), never an exception that takes a scan down.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")

__all__ = [
    "TOKYO",
    "add_calendar_months",
    "add_days",
    "require_aware",
    "tokyo_date",
    "tokyo_midnight_utc",
    "tokyo_text",
    "tokyo_wall",
]

_MIN_UTC = datetime.min.replace(tzinfo=UTC)
_MAX_UTC = datetime.max.replace(tzinfo=UTC)
_NINE_HOURS = timedelta(hours=9)
_FIXED_FROM_DAY = date(1952, 1, 1)
_FIXED_FROM_UTC = datetime(1951, 12, 31, 15, tzinfo=UTC)
_FIXED_UNTIL_UTC = datetime(9999, 12, 31, 15, tzinfo=UTC)
"""Asia/Tokyo has kept UTC+9 without DST since 1951 (the tz database's last transition there is
1951-09-08), so between these bounds a Tokyo wall time is the UTC instant plus nine hours: the
conversions below take that shortcut, ten times cheaper than ``zoneinfo``, and fall back to it
outside (the 1948–1951 summer time, local mean time before 1888). The tests compare both over
the whole range."""


def require_aware(instant: datetime, name: str = "instant") -> datetime:
    """Refuse naive datetimes: a naive time in a contract computation is a latent 9-hour bug."""
    if instant.tzinfo is UTC:  # what certificates and parse_instant give: nothing to check
        return instant
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {instant.isoformat()}")
    return instant


def tokyo_wall(instant: datetime) -> datetime:
    """``instant`` as naive Asia/Tokyo wall time. Raises ``OverflowError`` past
    9999-12-31T15:00Z (and for an offset instant before 0001-01-01 UTC)."""
    if instant.tzinfo is UTC and _FIXED_FROM_UTC <= instant < _FIXED_UNTIL_UTC:
        return (instant + _NINE_HOURS).replace(tzinfo=None)
    return require_aware(instant).astimezone(TOKYO).replace(tzinfo=None)


def tokyo_text(instant: datetime, *, timespec: str = "minutes") -> str:
    """``instant`` as a person reads Tokyo time: ``2026-11-24 09:00 JST``. The year is always
    four digits (``strftime`` writes year 2 as ``2``) and the label is what Tokyo kept then:
    ``JST``, ``JDT`` in the summers of 1948-1951, ``LMT`` (+09:18:59) before 1888, never
    "JST" on a wall time that is not. ``timespec`` as :meth:`datetime.isoformat`. Raises
    ``OverflowError`` where :func:`tokyo_wall` does."""
    text = tokyo_wall(instant).isoformat(sep=" ", timespec=timespec)
    if instant.tzinfo is UTC and _FIXED_FROM_UTC <= instant < _FIXED_UNTIL_UTC:
        return f"{text} JST"
    return f"{text} {instant.astimezone(TOKYO).tzname()}"


def tokyo_date(instant: datetime) -> date:
    """The Asia/Tokyo calendar date on which ``instant`` falls; ``date.max`` for an instant
    from 9999-12-31T15:00Z on, whose Tokyo day (10000-01-01) ``date`` cannot hold."""
    if instant.tzinfo is UTC and _FIXED_FROM_UTC <= instant < _FIXED_UNTIL_UTC:
        return (instant + _NINE_HOURS).date()  # the hot path of every sweep: no tz work
    try:
        return tokyo_wall(instant).date()
    except OverflowError:
        return date.max if instant >= _MAX_UTC - timedelta(days=1) else date.min


def tokyo_midnight_utc(day: date) -> datetime:
    """The UTC instant at which Tokyo calendar day ``day`` begins (00:00 JST, inclusive);
    ``datetime.min`` (UTC) for 0001-01-01, which began the day before anything representable."""
    if day >= _FIXED_FROM_DAY:
        return datetime(day.year, day.month, day.day, tzinfo=UTC) - _NINE_HOURS
    try:
        return datetime.combine(day, time(0, 0), tzinfo=TOKYO).astimezone(UTC)
    except OverflowError:
        return _MIN_UTC


def add_days(day: date, days: int) -> date:
    """``day`` plus ``days`` days, saturating at ``date.min`` / ``date.max``."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def add_calendar_months(instant: datetime, months: int) -> datetime:
    """``instant`` plus ``months`` calendar months, counted in Asia/Tokyo wall time: the
    ``elapsed`` reading of a month period (``policy.periods``).

    The day of month is kept and clamped to the target month's last day (Jan 31 + 1 month =
    Feb 28, or Feb 29 in a leap year). This is instant arithmetic, not the Civil Code's count,
    which starts from a reckoning day and ends at the end of a day (民法第140条, 第143条). The
    result is returned in UTC. Tokyo has no DST since 1952, so wall-time arithmetic is exact.
    Raises ``OverflowError``/``ValueError`` past year 9999; callers treat that as unbounded.
    """
    local = require_aware(instant).astimezone(TOKYO)
    index = local.year * 12 + (local.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    last = calendar.monthrange(year, month)[1]
    shifted = local.replace(year=year, month=month, day=min(local.day, last))
    return shifted.astimezone(UTC)
