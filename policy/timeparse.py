"""Parsing the instants and dates users type (``--at``, ``--arrived``, ``--requested``).

A time without an offset is Asia/Tokyo wall time: the people who type these are the contract
desk, and the contract's days are Tokyo days. ``Z`` or an explicit offset is honoured. A bare
date means the start (00:00) of that Tokyo day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

try:  # optional (no wheel on some platforms): the same text, three times faster
    import orjson
except ImportError:  # pragma: no cover - a platform orjson ships no wheel for (see pyproject)
    orjson = None  # type: ignore[assignment]

from .facts import EVALUABLE_FROM_UTC, EVALUABLE_UNTIL_UTC
from .tokyo import TOKYO

__all__ = ["format_instant", "parse_date", "parse_instant"]


def parse_instant(text: str) -> datetime:
    """Parse ISO 8601 into an aware UTC datetime; raise ``ValueError`` with a usable message."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty time: expected ISO 8601 such as 2026-11-24T09:00 or 2026-11-24")
    candidate = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        if len(candidate) == 10:
            parsed = datetime.combine(date.fromisoformat(candidate), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: expected ISO 8601 such as "
            "2026-11-24T09:00:00+09:00, 2026-11-24T00:00:00Z or 2026-11-24 (Asia/Tokyo)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=TOKYO)
    try:
        instant = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 at +09:00 is before anything UTC holds
        instant = None
    if instant is None or not EVALUABLE_FROM_UTC <= instant <= EVALUABLE_UNTIL_UTC:
        read = "" if instant is None else f" (read as {format_instant(instant)})"
        raise ValueError(
            f"{text!r}{read} lies outside {format_instant(EVALUABLE_FROM_UTC)} … "
            f"{format_instant(EVALUABLE_UNTIL_UTC)}, the range the contract's periods, notices "
            "and terms are counted in (a time without an offset is Tokyo's)")
    return instant


def format_instant(value: datetime) -> str:
    """An instant as ISO 8601 UTC with ``Z`` (``2026-11-24T00:00:00Z``): how every command and
    explanation writes certificate times, the inverse of :func:`parse_instant`."""
    if value.tzinfo is not UTC:
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # 0001-01-01 with a +09:00 offset is before anything UTC holds
            return value.isoformat()
    return _utc_text(value)


def _isoformat_z(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _orjson_z(value: datetime) -> str:
    """:func:`_isoformat_z` in a third of the time: orjson writes a UTC datetime as
    ``isoformat`` does, ``+00:00`` as ``Z`` (the tests compare both over the whole range,
    microseconds included); a scan writes two per certificate. A subclass of ``datetime``
    (a test clock's) is not orjson's: the standard library writes it."""
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode()
    except TypeError:
        return _isoformat_z(value)


_utc_text = _isoformat_z if orjson is None else _orjson_z


def parse_date(text: str) -> date:
    """Parse a calendar date ``YYYY-MM-DD`` (a contract day, Asia/Tokyo)."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a date: expected YYYY-MM-DD") from None
