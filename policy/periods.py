"""How the terms' periods are counted: the Civil Code (the default) or instant arithmetic.

The terms name periods in days, months and years (Art.3's tiers, Art.6(3)'s "90 days or less")
and say nothing of how to count them, so the Civil Code's general rules apply (民法第138条:
unless a statute, court order or juristic act provides otherwise). CONTRACT.md Art.3 fixes them:

* 民法第140条 — a period counted in days, weeks, months or years does not count its first day,
  unless it starts at 00:00 (Asia/Tokyo). The *reckoning day* (起算日) is ``notBefore``'s Tokyo
  date when ``notBefore`` is exactly midnight, otherwise the next day.
* N days: the last day is the reckoning day + (N − 1) days.
* 民法第143条 — months and years follow the calendar: the last day is the day before the day of
  the final month that corresponds to the reckoning day; when the final month has no such day
  (the 31st, Feb 29), the last day is that month's last day.
* 民法第141条 — a period expires at the end (24:00 JST) of its last day.
* A certificate's validity is *within* a period when its ``notAfter``'s Tokyo date is on or
  before the period's last day.

``elapsed`` keeps the older instant arithmetic for providers who read the tiers as CA-style
durations: a period of N days is N × 86,400 s from ``notBefore``, a period of N months ends at
``notBefore`` plus N calendar months in Tokyo wall time (day of month clamped at month ends), and
a certificate is within it when ``notBefore + validity <= end``. Its end is never later than the
civil-code end, so ``elapsed`` is never the more lenient reading: for a period of days at most
one day earlier, for months up to about three and a half (a start late on a short month's last
day: elapsed clamps the day of the month, the civil code runs to the end of the final month;
docs/policy.md).

Both readings reduce to one comparison, ``notAfter < end_utc`` with ``end_utc`` the period's
exclusive end (the civil code's is the Tokyo midnight after the last day), which is what
:meth:`Period.admits` does. Every bound that would leave ``datetime``'s range (a certificate
dated 9999-12-31) makes the period unbounded rather than raising: nothing representable lies
beyond it.
"""

from __future__ import annotations

import calendar
import enum
import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from .tokyo import (
    add_calendar_months,
    require_aware,
    tokyo_midnight_utc,
    tokyo_text,
    tokyo_wall,
)

__all__ = [
    "DEFAULT_PERIOD_RULE",
    "Period",
    "PeriodRule",
    "days_period",
    "duration_en",
    "duration_ja",
    "months_period",
]


class PeriodRule(enum.Enum):
    """How periods are counted. The value is the name used in ``[policy] period_rule`` and JSON."""

    CIVIL_CODE = "civil-code"
    """民法第138条–第143条: reckoning day, calendar months, expiry at the end of the last day."""
    ELAPSED = "elapsed"
    """Instant arithmetic from ``notBefore`` (N × 86,400 s; N calendar months, clamped)."""

    @classmethod
    def parse(cls, name: str) -> PeriodRule:
        """Parse a rule name; the error lists the valid names."""
        for rule in cls:
            if rule.value == name:
                return rule
        valid = ", ".join(r.value for r in cls)
        raise ValueError(f"unknown period rule {name!r}: expected one of {valid}")


DEFAULT_PERIOD_RULE = PeriodRule.CIVIL_CODE
"""CONTRACT.md Art.3: the terms say nothing of how to count, so the Civil Code applies."""

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """A period of ``length`` days or months that starts at ``start_utc``, counted by ``rule``.

    ``end_utc`` is the exclusive end: the first instant no longer in the period (civil code: the
    Tokyo midnight after ``last_day``). ``None`` means the end lies beyond what ``datetime`` can
    hold, so every representable certificate is within the period. ``last_day`` is the last
    Tokyo day the period touches (inclusive), ``None`` when beyond 9999-12-31. ``reckoning_day``
    is the civil code's 起算日; ``None`` under ``elapsed``, which has none.
    """

    rule: PeriodRule
    start_utc: datetime
    length: int
    unit: str
    """``"days"`` or ``"months"`` (years are 12 months, as the calendar counts them)."""
    reckoning_day: date | None
    last_day: date | None
    end_utc: datetime | None

    def admits(self, not_after_utc: datetime, *, allowance: timedelta = timedelta(0)) -> bool:
        """Whether a certificate ending at ``not_after_utc`` is within the period, optionally
        extended by ``allowance`` (Art.3 proviso). Civil code: ``notAfter``'s Tokyo date is on or
        before the last day; elapsed: ``notBefore + validity <= end``. Both are
        ``notAfter < end_utc``, and stay exact at ``99991231235959Z``."""
        if self.end_utc is None:
            return True
        try:
            bound = self.end_utc + allowance
        except OverflowError:
            return True
        return require_aware(not_after_utc, "not_after_utc") < bound

    def filled_by(self, not_after_utc: datetime) -> bool:
        """Whether a certificate ending at ``not_after_utc`` lasts through the whole period (the
        SC-081 forecast's "fills"): civil code, its Tokyo last day is on or after the period's
        last day; elapsed, ``notAfter + 1 s`` reaches the end. An unbounded period is never
        filled."""
        if self.end_utc is None:
            return False
        if self.rule is PeriodRule.CIVIL_CODE:
            if self.last_day is None:
                return False
            try:
                return tokyo_wall(not_after_utc).date() >= self.last_day
            except OverflowError:
                return True
        return not_after_utc >= self.end_utc - timedelta(seconds=1)

    @property
    def label_en(self) -> str:
        return _label_en(self.length, self.unit)

    @property
    def label_ja(self) -> str:
        return _label_ja(self.length, self.unit)

    def explain_en(self) -> str:
        """The period in words: which rule, from when, and its last day."""
        if self.rule is PeriodRule.CIVIL_CODE:
            return _civil_text(self.unit, self.length, self.reckoning_day, self.last_day,
                               self._starts_at_midnight())[0]
        last = self.last_day.isoformat() if self.last_day is not None else "after 9999-12-31"
        start = _jst_text(self.start_utc)
        end = _jst_text(self.end_utc) if self.end_utc is not None else "after 9999-12-31"
        how = ("× 86,400 s" if self.unit == "days" else "calendar months, clamped at month ends")
        return (f"elapsed time: {self.label_en} ({how}) from {start}, ending just before "
                f"{end} (last day {last})")

    def explain_ja(self) -> str:
        """The same in Japanese, e.g.
        「起算日 2026-05-11（初日不算入、民法第140条）から 90 日、2026-08-08 満了」."""
        if self.rule is PeriodRule.CIVIL_CODE:
            return _civil_text(self.unit, self.length, self.reckoning_day, self.last_day,
                               self._starts_at_midnight())[1]
        last = self.last_day.isoformat() if self.last_day is not None else "9999-12-31 より後"
        start = _jst_text(self.start_utc, ja=True)
        end = _jst_text(self.end_utc, ja=True) if self.end_utc is not None else "9999-12-31 より後"
        return (f"経過時間による計算で {start} から {self.label_ja}、{end} の直前に満了"
                f"（末日 {last}）")

    def _starts_at_midnight(self) -> bool:
        try:
            return tokyo_wall(self.start_utc).time() == time(0)
        except OverflowError:
            return False

    def to_json(self) -> dict[str, Any]:
        """The ``computed`` fields every decision that used a period carries."""
        return dict(_period_fields(self.rule is PeriodRule.CIVIL_CODE, self.length, self.unit,
                                   self.reckoning_day, self.last_day))


@functools.lru_cache(maxsize=4096)
def _period_fields(civil: bool, length: int, unit: str, reckoning_day: date | None,
                   last_day: date | None) -> tuple[tuple[str, Any], ...]:
    """:meth:`Period.to_json`'s items, by the values they are made of: a store's certificates
    issued on the same Tokyo day share them (bounded; the caller copies them into a dict;
    ``civil``: the rule, as a bool, which hashes without a Python call)."""
    rule = PeriodRule.CIVIL_CODE if civil else PeriodRule.ELAPSED
    return (("period_rule", rule.value),
            ("period_length", f"{length} {unit}"),
            ("period_reckoning_day",
             reckoning_day.isoformat() if reckoning_day is not None else None),
            ("period_last_day", last_day.isoformat() if last_day is not None else None))


def _label_en(length: int, unit: str) -> str:
    if unit == "months" and length % 12 == 0:
        years = length // 12
        return f"{years} year" + ("s" if years != 1 else "")
    return f"{length} {unit if length != 1 else unit[:-1]}"


def _label_ja(length: int, unit: str) -> str:
    if unit == "months":
        if length % 12 == 0:
            return f"{length // 12} 年"
        return f"{length} ヶ月"
    return f"{length} 日"


@functools.lru_cache(maxsize=4096)
def _civil_text(unit: str, length: int, reckoning_day: date | None, last_day: date | None,
                midnight: bool) -> tuple[str, str]:
    """A civil-code period in words, English and Japanese: a function of its days alone (not of
    the instant it starts at), so the certificates issued on one Tokyo day share the text
    (bounded; every argument is a plain value)."""
    label_en, label_ja = _label_en(length, unit), _label_ja(length, unit)
    if reckoning_day is None:
        return (f"{label_en} counted by the Civil Code, reckoned from after "
                "9999-12-31: nothing representable lies beyond them",
                f"起算日が 9999-12-31 より後のため、{label_ja}の期間は満了しません")
    last_en = last_day.isoformat() if last_day is not None else "after 9999-12-31"
    last_ja = last_day.isoformat() if last_day is not None else "9999-12-31 より後"
    first_en = ("the period starts at 00:00 Tokyo time, so its first day counts (Civil Code "
                "Art.140 proviso)" if midnight
                else "the first day is not counted, Civil Code Art.140")
    first_ja = ("午前零時に始まるため初日算入、民法第140条ただし書" if midnight
                else "初日不算入、民法第140条")
    months = unit == "months"
    return (f"reckoning day {reckoning_day} ({first_en}); {label_en}"
            f"{' by the calendar (Art.143)' if months else ''}, ending at the end of {last_en} "
            "(Art.141)",
            f"起算日 {reckoning_day}（{first_ja}）から {label_ja}"
            f"{'（暦に従って計算、民法第143条）' if months else ''}、{last_ja} 満了")


def duration_en(delta: timedelta) -> str:
    """A validity period in words: ``181 days 1 s`` (whole days, then any seconds left)."""
    days, seconds = divmod(int(delta.total_seconds()), 86_400)
    text = f"{days} day" + ("" if days == 1 else "s")
    return text + (f" {seconds} s" if seconds else "")


def duration_ja(delta: timedelta) -> str:
    """The same as a Japanese contract desk writes it: 「181日」, 「181日と1秒」."""
    days, seconds = divmod(int(delta.total_seconds()), 86_400)
    return f"{days}日" + (f"と{seconds}秒" if seconds else "")


_ZONE_JA = {"JST": "（日本時間）", "JDT": "（日本夏時間）", "LMT": "（東京の地方平均時）"}
"""The Japanese words for the abbreviations :func:`policy.tokyo.tokyo_text` writes."""


def _jst_text(instant: datetime | None, *, ja: bool = False) -> str:
    if instant is None:
        return "9999-12-31"
    try:
        local = tokyo_text(instant, timespec="seconds")
    except OverflowError:  # the ends of the range: say the instant as it was given
        return instant.isoformat(sep=" ")
    if not ja:
        return local
    wall, zone = local.rsplit(" ", 1)
    return wall + _ZONE_JA.get(zone, f"（{zone}）")


def _reckoning_day(start_utc: datetime) -> date | None:
    """民法第140条: the start's Tokyo date when it is exactly 00:00 JST, else the next day;
    ``None`` when that lies beyond 9999-12-31."""
    try:
        local = tokyo_wall(start_utc)
    except OverflowError:
        return None
    day = local.date()
    if local.time() == time(0):
        return day
    return None if day == date.max else day + _DAY


def _civil_end(last_day: date | None) -> datetime | None:
    """The instant the civil-code period expires: the end (24:00 JST) of its last day."""
    if last_day is None or last_day == date.max:
        return None
    return tokyo_midnight_utc(last_day + _DAY)


def _last_touched(end_utc: datetime | None) -> date | None:
    """The last Tokyo day an exclusive end ``end_utc`` leaves inside the period."""
    if end_utc is None:
        return None
    try:
        return tokyo_wall(end_utc - timedelta(microseconds=1)).date()
    except OverflowError:
        return None


_MIDNIGHT = time(0)


@functools.lru_cache(maxsize=4096)
def _civil_days(local_day: date, midnight: bool, days: int
                ) -> tuple[date | None, date | None, datetime | None]:
    """(reckoning day, last day, exclusive end) of a civil-code period of ``days`` days that
    starts on Tokyo day ``local_day`` (``midnight``: at 00:00 JST): a function of the day, not
    of the instant, so the certificates issued on one day share it (bounded)."""
    reckoning = local_day if midnight else (None if local_day == date.max
                                            else local_day + _DAY)
    last: date | None = None
    if reckoning is not None:
        try:
            last = reckoning + timedelta(days=days - 1)
        except OverflowError:
            last = None
    return reckoning, last, _civil_end(last)


def days_period(start_utc: datetime, days: int, *, rule: PeriodRule) -> Period:
    """A period of ``days`` days (``days >= 1``) that starts at ``start_utc``."""
    require_aware(start_utc, "start_utc")
    if days < 1:
        raise ValueError(f"a period has at least one day, got {days}")
    if rule is PeriodRule.CIVIL_CODE:
        try:
            local = tokyo_wall(start_utc)
        except OverflowError:
            reckoning, last, civil_end = None, None, None
        else:
            reckoning, last, civil_end = _civil_days(local.date(), local.time() == _MIDNIGHT,
                                                     days)
        return Period(rule=rule, start_utc=start_utc, length=days, unit="days",
                      reckoning_day=reckoning, last_day=last, end_utc=civil_end)
    try:
        end: datetime | None = start_utc + timedelta(days=days)
    except OverflowError:
        end = None
    return Period(rule=rule, start_utc=start_utc, length=days, unit="days", reckoning_day=None,
                  last_day=_last_touched(end), end_utc=end)


def months_period(start_utc: datetime, months: int, *, rule: PeriodRule) -> Period:
    """A period of ``months`` calendar months (``months >= 1``; a year is 12) from
    ``start_utc``."""
    require_aware(start_utc, "start_utc")
    if months < 1:
        raise ValueError(f"a period has at least one month, got {months}")
    if rule is PeriodRule.CIVIL_CODE:
        reckoning = _reckoning_day(start_utc)
        last = None if reckoning is None else _civil_month_last_day(reckoning, months)
        return Period(rule=rule, start_utc=start_utc, length=months, unit="months",
                      reckoning_day=reckoning, last_day=last, end_utc=_civil_end(last))
    try:
        end: datetime | None = add_calendar_months(start_utc, months)
    except (OverflowError, ValueError):
        end = None
    return Period(rule=rule, start_utc=start_utc, length=months, unit="months",
                  reckoning_day=None, last_day=_last_touched(end), end_utc=end)


def _civil_month_last_day(reckoning: date, months: int) -> date | None:
    """民法第143条第2項: the day before the day of the final month corresponding to the
    reckoning day; that month's last day when it has no corresponding day."""
    index = reckoning.year * 12 + (reckoning.month - 1) + months
    year, month0 = divmod(index, 12)
    if year > date.max.year:
        return None
    month = month0 + 1
    month_days = calendar.monthrange(year, month)[1]
    if reckoning.day > month_days:
        return date(year, month, month_days)
    corresponding = date(year, month, reckoning.day)
    return corresponding - _DAY
