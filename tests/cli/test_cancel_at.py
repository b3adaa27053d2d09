"""``contract cancel --arrived D --at T``: T is when the form arrived. It is never ignored in
silence: in the future or before the arrival day it is refused naming both options, and
nothing is recorded; on a later day the output says the form is dated the arrival day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.cliutil import TESTONLY_NOW_ENV
from tests.certfactory import make_cert
from tests.cli.test_contract_cli import _json, _ok, _run


@pytest.fixture
def lg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Q1, a BYO 1y contract with a certificate valid all through 2026; the clock at
    2026-11-27 10:00 JST."""
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-11-27T10:00:00+09:00")
    lg = ["--ledger", str(tmp_path / "ledger.sqlite3")]
    cert = tmp_path / "cert.pem"
    cert.write_bytes(make_cert(not_before=datetime(2026, 1, 1, tzinfo=UTC),
                               lifetime=timedelta(days=365)).pem)
    _ok(["contract", "add", "Q1", "--item", "byo", "--tier", "1y", "--at", "2026-01-05", *lg])
    _ok(["contract", "bind", "Q1", str(cert), "--at", "2026-01-05", *lg])
    return lg


def _kinds(lg: list[str]) -> list[str]:
    return [e["kind"] for e in _json(["contract", "show", "Q1", "--json", *lg])["journal"]]


@pytest.mark.parametrize(("arrived", "at"), [
    ("2026-11-20", "2026-11-28T09:00"),  # --at tomorrow, the form arrived last week
    ("2026-11-27", "2026-11-27T10:30"),  # --at later today, the form arrived today
])
def test_cancel_at_in_the_future_is_refused_naming_at_and_arrived(
        lg: list[str], arrived: str, at: str) -> None:
    code, result = _run(["contract", "cancel", "Q1", "--arrived", arrived, "--at", at, *lg])
    assert code == 15
    message = str(result.exception)
    assert message.startswith(f"--at {at.replace('T', ' ')} JST is in the future "
                              "(now 2026-11-27 10:00 JST)")
    assert f"--arrived {arrived}" in message
    assert "nothing was recorded" in message
    assert "cancellation-arrived" not in _kinds(lg)


def test_cancel_at_before_the_arrival_day_is_refused_naming_at_and_arrived(
        lg: list[str]) -> None:
    code, result = _run(["contract", "cancel", "Q1", "--arrived", "2026-11-20",
                         "--at", "2026-11-19T18:00", *lg])
    assert code == 15
    message = str(result.exception)
    assert message.startswith("--at 2026-11-19 18:00 JST is before the arrival day "
                              "--arrived 2026-11-20")
    assert "nothing was recorded" in message
    assert "cancellation-arrived" not in _kinds(lg)


def test_cancel_at_on_the_arrival_day_dates_the_form(lg: list[str]) -> None:
    out = _json(["contract", "cancel", "Q1", "--arrived", "2026-11-20",
                 "--at", "2026-11-20T15:30", "--json", *lg])
    assert out["dated"] == "2026-11-20T06:30:00Z"
    assert out["effective"] == "2026-12-20"
    journal = _json(["contract", "show", "Q1", "--json", *lg])["journal"]
    assert journal[-1]["kind"] == "cancellation-arrived"
    assert journal[-1]["at"].startswith("2026-11-20T06:30:00")


def test_cancel_at_after_the_arrival_day_says_the_form_is_dated_when_it_arrived(
        lg: list[str]) -> None:
    text = _ok(["contract", "cancel", "Q1", "--arrived", "2026-11-20",
                "--at", "2026-11-25T09:00", *lg]).stdout
    assert ("Note: --at 2026-11-25 09:00 JST is after the arrival day: the form is dated when "
            "it arrived, 2026-11-20 00:00 JST (--arrived).") in text
    journal = _json(["contract", "show", "Q1", "--json", *lg])["journal"]
    assert journal[-1]["at"].startswith("2026-11-19T15:00:00")  # 00:00 JST


def test_cancel_help_says_what_at_is(lg: list[str]) -> None:
    help_text = " ".join(_ok(["contract", "cancel", "--help"]).stdout.split())
    assert "When the form arrived" in help_text
    assert "Never in the future nor before --arrived" in help_text
