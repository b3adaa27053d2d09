"""``policy forecast`` over contracts whose termination is fixed, built with the real contract
commands: a contract that ends (terminating, or terminated) has no projected renewal, shows its
termination day and clause, and is labelled with the status ``contract list`` gives it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.certfactory import make_cert
from tests.cli.test_contract_cli import _json, _ok

JST = timezone(timedelta(hours=9))


def _cert(tmp_path: Path, name: str, not_before: datetime, lifetime: timedelta) -> str:
    path = tmp_path / name
    path.write_bytes(make_cert(not_before=not_before, lifetime=lifetime).pem)
    return str(path)


@pytest.fixture
def desk(tmp_path: Path) -> list[str]:
    """A1: a BYO 90-day certificate ending 2026-08-08 (Art.6(3) proviso); D1: answered "don't
    renew", ends with its certificate on 2026-12-17 (Art.9(1)); C1: a cancellation form
    effective 2026-12-31 (Art.9(2)); K1: running on, renewals projected."""
    lg = ["--ledger", str(tmp_path / "ledger.sqlite3")]
    le90 = _cert(tmp_path, "a1.pem", datetime(2026, 5, 10, 12, 4, 5, tzinfo=JST),
                 timedelta(days=90) - timedelta(seconds=1))
    _ok(["contract", "add", "A1", "--item", "byo", "--tier", "6m", "--at", "2026-05-01", *lg])
    _ok(["contract", "bind", "A1", le90, "--at", "2026-05-10T13:00", *lg])
    d200 = _cert(tmp_path, "d1.pem", datetime(2026, 6, 1, tzinfo=JST), timedelta(days=200))
    _ok(["contract", "add", "D1", "--item", "byo", "--tier", "1y", "--at", "2026-06-01", *lg])
    _ok(["contract", "bind", "D1", d200, "--at", "2026-06-01T10:00", *lg])
    _ok(["contract", "notify", "D1", "--at", "2026-10-01", *lg])
    _ok(["contract", "answer", "D1", "dont-renew", "--at", "2026-10-05", *lg])
    c200 = _cert(tmp_path, "c1.pem", datetime(2026, 6, 1, tzinfo=JST), timedelta(days=300))
    _ok(["contract", "add", "C1", "--item", "byo", "--tier", "1y", "--at", "2026-06-01", *lg])
    _ok(["contract", "bind", "C1", c200, "--at", "2026-06-01T10:00", *lg])
    _ok(["contract", "cancel", "C1", "--arrived", "2026-11-20", "--requested", "2026-12-31",
         *lg])
    k200 = _cert(tmp_path, "k1.pem", datetime(2026, 6, 1, tzinfo=JST), timedelta(days=200))
    _ok(["contract", "add", "K1", "--item", "byo", "--tier", "1y", "--at", "2026-06-01", *lg])
    _ok(["contract", "bind", "K1", k200, "--at", "2026-06-01T10:00", *lg])
    return lg


ENDS = {"A1": ("2026-08-08", "Art.6(3) proviso"), "D1": ("2026-12-17", "Art.9(1)"),
        "C1": ("2026-12-31", "Art.9(2)")}


def test_forecast_projects_no_renewal_for_a_contract_whose_termination_is_fixed(
        desk: list[str]) -> None:
    at = "2026-11-29"
    statuses = {s["contract"]: s["status"]
                for s in _json(["contract", "list", "--json", "--at", at, *desk])}
    assert statuses == {"A1": "terminated", "D1": "terminating", "C1": "terminating",
                        "K1": "active"}
    body = _json(["policy", "forecast", "--json", "--at", at, *desk])
    outlooks = {c["contract"]: c for c in body["contracts"]}
    for cid, (day, clause) in ENDS.items():
        outlook = outlooks[cid]
        assert outlook["renewals"] == [], cid
        assert outlook["first_blocked_renewal"] is None, cid
        assert (outlook["terminated_on"], outlook["termination_clause"]) == (day, clause), cid
        assert outlook["status"] == statuses[cid], cid
    assert outlooks["A1"]["currently_blocked"] is True  # why it ended
    running = outlooks["K1"]
    assert running["status"] == "active"
    assert running["terminated_on"] is None
    assert running["renewals"][0]["renewal_day"] == "2026-12-18"


def test_forecast_table_labels_a_terminating_contract_as_contract_list_does(
        desk: list[str]) -> None:
    table = _ok(["policy", "forecast", "--at", "2026-11-29", *desk]).stdout
    listed = _ok(["contract", "list", "--at", "2026-11-29", *desk]).stdout
    rows = {line.split()[0]: line for line in table.splitlines()
            if line.split() and line.split()[0] in ("A1", "D1", "C1", "K1")}
    for cid, (day, clause) in ENDS.items():
        [listed_row] = [ln for ln in listed.splitlines() if ln.startswith(f"{cid} ")]
        status = listed_row.split()[4]
        assert rows[cid].split()[4] == status, rows[cid]
        assert f"none: terminates on {day} ({clause})" in rows[cid]
    assert rows["D1"].split()[4] == "terminating"
    assert "terminated" not in rows["D1"].replace("terminates", "")
    assert rows["K1"].split()[4:6] == ["active", "2026-12-18"]


def test_forecast_before_the_proviso_day_shows_the_contract_terminating(
        desk: list[str]) -> None:
    """On 2026-06-01 A1 still runs until 2026-08-08: terminating, with no renewal projected
    (a renewable certificate bound before then would lift it)."""
    body = _json(["policy", "forecast", "--json", "--at", "2026-06-01", *desk])
    a1 = next(c for c in body["contracts"] if c["contract"] == "A1")
    assert (a1["status"], a1["terminated_on"], a1["renewals"]) == ("terminating", "2026-08-08",
                                                                   [])
    shown = _json(["contract", "show", "A1", "--json", "--at", "2026-06-01", *desk])
    assert shown["state"]["status"] == a1["status"]
