"""Parsing what the contract desk types: naive = Asia/Tokyo, bare date = 00:00 JST."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import timeparse
from policy.timeparse import format_instant, parse_date, parse_instant


def test_naive_time_is_tokyo_wall_time() -> None:
    assert parse_instant("2026-11-24T09:00") == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def test_bare_date_is_tokyo_midnight_which_is_1500_utc_the_day_before() -> None:
    assert parse_instant("2026-11-24") == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def test_z_suffix_and_explicit_offsets_are_honoured() -> None:
    assert parse_instant("2026-11-24T00:00:00Z") == datetime(2026, 11, 24, tzinfo=UTC)
    assert parse_instant("2026-11-24T00:00:00+09:00") == datetime(2026, 11, 23, 15, tzinfo=UTC)
    assert parse_instant("2026-11-24T00:00:00-05:00") == datetime(2026, 11, 24, 5, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-13-01", "2026-02-30", "24/11/2026"])
def test_unreadable_times_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601|empty time"):
        parse_instant(text)


def test_dates_parse_and_reject_with_the_expected_form() -> None:
    assert parse_date("2024-02-29") == date(2024, 2, 29)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_date("2025-02-29")


@pytest.mark.parametrize(("text", "ok"), [
    ("0002-01-01T00:00:00Z", True), ("0001-12-31T23:59:59Z", False),
    ("9997-12-31T00:00:00Z", True), ("9997-12-31T00:00:01Z", False),
    ("0001-01-01T00:00:00+09:00", False),  # before anything UTC holds: was OverflowError
    ("9999-12-31T23:59:59-12:00", False),  # after it
])
def test_instants_outside_the_contracts_range_are_refused_in_words(text: str, ok: bool) -> None:
    if ok:
        assert parse_instant(text).tzinfo is UTC
        return
    # The bounds are instants: "… 9997-12-31" read as a day refused 9997-12-31T00:00:01Z.
    with pytest.raises(ValueError, match=r"lies outside 0002-01-01T00:00:00Z … "
                       r"9997-12-31T00:00:00Z, "):
        parse_instant(text)


def test_a_date_refused_as_out_of_range_says_which_instant_it_was_read_as() -> None:
    # A bare date is Tokyo's midnight, local mean time before 1888: 0002-01-01 is refused
    # although it looks like the lower bound itself.
    with pytest.raises(ValueError, match=r"^'0002-01-01' \(read as 0001-12-31T14:41:01Z\) "
                       r"lies outside 0002-01-01T00:00:00Z … 9997-12-31T00:00:00Z, "):
        parse_instant("0002-01-01")


_FIRST = datetime(1, 1, 1)  # noqa: DTZ001 - hypothesis takes naive bounds, then adds the zone
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999_999)  # noqa: DTZ001 - as above


@settings(max_examples=3000, deadline=None)
@given(st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=st.just(UTC)))
def test_orjson_writes_an_instant_exactly_as_isoformat_does(instant: datetime) -> None:
    """format_instant takes orjson's text where orjson is installed: the same characters as
    the standard library's, at the ends of the range and with microseconds."""
    pytest.importorskip("orjson")
    assert timeparse._orjson_z(instant) == timeparse._isoformat_z(instant)


@pytest.mark.parametrize("instant", [datetime(1, 1, 1, tzinfo=UTC),
                                     datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),
                                     datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
                                     datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)])
def test_format_instant_at_the_edges(instant: datetime) -> None:
    assert format_instant(instant) == instant.isoformat().replace("+00:00", "Z")


def test_format_instant_writes_a_datetime_subclass_too() -> None:
    """A clock library's (or a test's) datetime subclass: orjson refuses it, the text is the
    same."""

    class Clock(datetime):
        pass

    instant = Clock(2026, 11, 24, 9, 30, 15, tzinfo=UTC)
    assert format_instant(instant) == "2026-11-24T09:30:15Z"
