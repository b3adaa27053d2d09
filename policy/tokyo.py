"""The one place where instants become contract days.

The terms are a Japanese contract: a "day" is an Asia/Tokyo calendar day and months and years
are counted by the calendar (Civil Code Art.143). Certificates speak UTC. Every conversion
between the two goes through this module so that the boundary (Tokyo midnight = 15:00 UTC the
day before) is handled, and tested, once.
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
]


def require_aware(instant: datetime, name: str = "instant") -> datetime:
    """Refuse naive datetimes: a naive time in a contract computation is a latent 9-hour bug."""
    if instant.tzinfo is UTC:  # what certificates and parse_instant give: nothing to check
        return instant
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {instant.isoformat()}")
    return instant


def tokyo_date(instant: datetime) -> date:
    """The Asia/Tokyo calendar date on which ``instant`` falls."""
    return require_aware(instant).astimezone(TOKYO).date()


def tokyo_midnight_utc(day: date) -> datetime:
    """The UTC instant at which Tokyo calendar day ``day`` begins (00:00 JST, inclusive)."""
    return datetime.combine(day, time(0, 0), tzinfo=TOKYO).astimezone(UTC)


def add_days(day: date, days: int) -> date:
    return day + timedelta(days=days)


def add_calendar_months(instant: datetime, months: int) -> datetime:
    """``instant`` plus ``months`` calendar months, counted in Asia/Tokyo wall time.

    The day of month is kept and clamped to the target month's last day (Jan 31 + 1 month =
    Feb 28, or Feb 29 in a leap year), as the Civil Code counts month periods. The result is
    returned in UTC. Tokyo has no DST, so wall-time arithmetic is exact.
    """
    local = require_aware(instant).astimezone(TOKYO)
    index = local.year * 12 + (local.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    last = calendar.monthrange(year, month)[1]
    shifted = local.replace(year=year, month=month, day=min(local.day, last))
    return shifted.astimezone(UTC)
