"""The contract CLI over the ledger's refusals, its two times and a journal with bad events
(issues 9, 10, 11), in the forms a contract desk types."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.cliutil import TESTONLY_NOW_ENV
from policy.intake import Observation
from policy.ledger import Ledger
from tests.certfactory import make_cert
from tests.cli.test_contract_cli import _json, _ok, _run
from tests.policy.ledger_fixtures import T0, facts


@pytest.fixture
def lg(tmp_path: Path) -> list[str]:
    return ["--ledger", str(tmp_path / "ledger.sqlite3")]


def _cert(tmp_path: Path, *, not_before: datetime, days: int, name: str = "cert.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(make_cert(not_before=not_before, lifetime=timedelta(days=days)).pem)
    return path


def test_recording_an_event_in_the_future_is_refused(lg: list[str]) -> None:
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()  # noqa: TID251 - the test's clock
    code, result = _run(["contract", "add", "F1", "--item", "byo", "--tier", "1y",
                         "--at", future, *lg])
    assert code == 15
    assert "the ledger records what happened" in str(result.exception)
    assert not Path(lg[1]).exists() or _json(["contract", "list", "--json", *lg]) == []


def test_terminate_offers_only_the_clauses_that_end_a_contract(lg: list[str]) -> None:
    _ok(["contract", "add", "T1", "--item", "byo", "--tier", "1y", "--at", "2026-01-05", *lg])
    code, result = _run(["contract", "terminate", "T1", "--effective", "2026-03-31",
                         "--clause", "Art.99", "--at", "2026-02-01", *lg])
    assert code == 2
    assert "Art.6(3) proviso" in result.output
    assert "Art.9(2)" in result.output
    # Art.9(2) ends a contract on a cancellation form: one is recorded (arrived 02-01, so it
    # takes effect on 03-03) before the termination that cites it
    cert = _cert(Path(lg[1]).parent, not_before=datetime(2026, 1, 5, tzinfo=UTC), days=365)
    _ok(["contract", "bind", "T1", str(cert), "--at", "2026-01-06", *lg])
    _ok(["contract", "cancel", "T1", "--arrived", "2026-02-01", "--requested", "2026-03-31",
         "--at", "2026-02-01", *lg])
    out = _json(["contract", "terminate", "T1", "--effective", "2026-03-31", "--clause",
                 "Art.9(2)", "--at", "2026-02-01", "--json", *lg])
    assert out["terminated_on"] == "2026-03-31"


def test_a_late_answer_is_recorded_and_show_says_so(tmp_path: Path, lg: list[str]) -> None:
    cert = _cert(tmp_path, not_before=datetime(2026, 1, 1, tzinfo=UTC), days=300)
    _ok(["contract", "add", "A1", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2025-12-20", *lg])
    _ok(["contract", "bind", "A1", str(cert), "--at", "2026-01-02", *lg])
    _ok(["contract", "notify", "A1", "--at", "2026-08-01", *lg])  # deadline 2026-08-31
    answered = _ok(["contract", "answer", "A1", "renew", "--at", "2026-09-01", *lg]).stdout
    assert "(late: after the answer deadline)" in answered
    shown = _json(["contract", "show", "A1", "--json", "--at", "2026-09-02", *lg])
    assert shown["state"]["answer_timing"] == "late"
    assert shown["journal"][-1]["timing"] == "late"
    assert "answer        renew 2026-09-01 (late)" in _ok(
        ["contract", "show", "A1", "--at", "2026-09-02", *lg]).stdout


def test_a_cancellation_entered_late_counts_from_its_arrival(
        tmp_path: Path, lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The form arrived on 03-01 and was entered in November: as of 04-01 it had taken effect
    (03-31); the ledger only learned of it in November."""
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-01-05T10:00:00+09:00")  # the recording clock
    _ok(["contract", "add", "Q1", "--item", "byo", "--tier", "1y", *lg])
    cert = _cert(tmp_path, not_before=datetime(2026, 1, 1, tzinfo=UTC), days=365)
    _ok(["contract", "bind", "Q1", str(cert), *lg])
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-11-10T10:00:00+09:00")
    _ok(["contract", "cancel", "Q1", "--arrived", "2026-03-01", *lg])
    monkeypatch.delenv(TESTONLY_NOW_ENV)
    april = _json(["contract", "show", "Q1", "--json", "--at", "2026-04-01", *lg])
    assert april["state"]["status"] == "terminated"
    assert april["state"]["terminated_on"] == "2026-03-31"
    known = _json(["contract", "show", "Q1", "--json", "--at", "2026-04-01",
                   "--as-recorded", "2026-04-01", *lg])
    assert known["state"]["status"] == "active"
    assert [e["kind"] for e in known["journal"]] == ["application-accepted",
                                                     "certificate-bound"]
    text = _ok(["contract", "show", "Q1", "--at", "2026-04-01", *lg]).stdout
    [line] = [ln for ln in text.splitlines() if "cancellation-arrived" in ln]
    fields = line.split()
    assert fields[1:4] == ["2026-03-01", "00:00", "JST"]  # happened: the day it arrived
    assert fields[4:7] == ["2026-11-10", "10:00", "JST"]  # recorded


@pytest.mark.parametrize(("offset_days", "code", "word"), [
    (-400, "certificate-expired", "expired on"),
    (30, "certificate-not-yet-valid", "is not valid until"),
])
def test_binding_a_certificate_outside_its_validity_says_so(
        tmp_path: Path, lg: list[str], offset_days: int, code: str, word: str) -> None:
    bind_at = datetime(2026, 6, 1, 3, tzinfo=UTC)
    cert = _cert(tmp_path, not_before=bind_at + timedelta(days=offset_days), days=200)
    for cid in ("B1", "B1T"):  # a second contract: binding the bound certificate is refused
        _ok(["contract", "add", cid, "--item", "byo", "--tier", "1y", "--at", "2026-01-05",
             *lg])
    out = _json(["contract", "bind", "B1", str(cert), "--at", bind_at.isoformat(), "--json", *lg])
    assert [f["code"] for f in out["findings"]] == [code]
    text = _ok(["contract", "bind", "B1T", str(cert), "--at", bind_at.isoformat(), *lg]).stdout
    assert f"Warning: the certificate {word}" in text


def test_binding_a_valid_certificate_has_no_finding(tmp_path: Path, lg: list[str]) -> None:
    cert = _cert(tmp_path, not_before=datetime(2026, 5, 1, tzinfo=UTC), days=200)
    _ok(["contract", "add", "B2", "--item", "byo", "--tier", "1y", "--at", "2026-01-05", *lg])
    out = _json(["contract", "bind", "B2", str(cert), "--at", "2026-06-01", "--json", *lg])
    assert out["findings"] == []


def test_prices_not_configured_are_said_once_per_run_as_information(lg: list[str]) -> None:
    for cid in ("P1", "P2", "P3"):
        _ok(["contract", "add", cid, "--item", "globalsign-ov", "--tier", "1y",
             "--at", "2026-06-01", *lg])
    text = _ok(["policy", "actions", "--at", "2026-06-01", *lg]).stdout
    assert text.count("not configured in [policy.prices] (") == 1
    assert text.count("Info: ") == 1
    actions = _json(["policy", "actions", "--json", "--at", "2026-06-01", *lg])
    unpriced = [a for a in actions if a["computed"].get("amount_configured") is False]
    assert unpriced
    assert all(a["severity"] == "info" for a in unpriced)


@pytest.mark.parametrize("recorded", [[], ["--as-recorded", "2026-03-02"]])
def test_a_contract_without_a_tier_says_the_tier_is_missing_not_the_price(
        tmp_path: Path, lg: list[str], recorded: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Prices for every tier of globalsign-dv, a contract added without --tier: no price row
    can be chosen because the contract has no tier, and no command sets one later. It used to
    say "not configured in [policy.prices] (globalsign-dv initial)". ``--as-recorded`` folds
    the journal; without it the projection answers: both say the same."""
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-03-01T10:00:00+09:00")  # the recording clock
    config = tmp_path / "config.toml"
    config.write_text('[policy.prices.items.globalsign-dv]\n'
                      'initial = { "6m" = 10000, "1y" = 18000 }\nagency = 3000\n')
    _ok(["contract", "add", "T1", "--item", "globalsign-dv", "--at", "2026-03-01", *lg],
        config=config)
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-03-02T10:00:00+09:00")
    text = _ok(["policy", "actions", "--at", "2026-03-01T12:00", *recorded, *lg],
               config=config).stdout
    assert "not configured" not in text
    assert "the contract has no tier, so no price in [policy.prices] applies" in text
    assert text.splitlines()[-1] == (
        "Info: 1 contract(s) have no tier (T1), so no initial fee in [policy.prices] applies "
        "to them; the fees are owed, their amounts are shown to the customer separately "
        "(Art.10). A tier is given only by `contract add --tier`; no command sets it later.")
    actions = _json(["policy", "actions", "--json", "--at", "2026-03-01T12:00", *recorded,
                     *lg], config=config)
    (initial,) = [a for a in actions if a["computed"].get("fee") == "initial"]
    assert initial["computed"]["no_tier"] is True
    assert initial["computed"]["amount_yen"] is None
    assert "有効期間（tier）が定められていない" in initial["explanation"]["ja"]
    assert "未設定" not in initial["explanation"]["ja"]


def test_a_refusal_comparing_instants_shows_both_in_tokyo_time(lg: list[str]) -> None:
    """The desk's commands: accepted 2026-09-29 23:59, a termination dated 12:00 that day. Both
    instants are shown as docs/ledger.md promises (`YYYY-MM-DD HH:MM JST`), not two equal
    dates."""
    _ok(["contract", "add", "D3", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2026-09-29T23:59", *lg])
    code, result = _run(["contract", "terminate", "D3", "--effective", "2026-10-31",
                         "--clause", "Art.8", "--at", "2026-09-29T12:00", *lg])
    assert code == 15
    assert ("a terminated event dated 2026-09-29 12:00 JST is before contract 'D3' was "
            "accepted (2026-09-29 23:59 JST)") in str(result.exception)
    code, result = _run(["contract", "show", "D3", "--at", "2026-09-29T12:00", *lg])
    assert code == 14
    assert "as of 2026-09-29 12:00 JST" in str(result.exception)


def _ledger_with_a_bad_event(path: Path) -> None:
    with Ledger.open(path) as ledger:
        from tests.policy.ledger_fixtures import accepted

        ledger.append(accepted("GOOD", at=T0), now=T0)
        ledger.append(accepted("BAD", at=T0), now=T0)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO journal (contract_id, kind, at_utc, payload, recorded_utc) "
                 "VALUES ('BAD', 'notice-sent', '2026-01-16T00:00:00.000000Z', '{\"kind\": 7', "
                 "'2026-01-16T00:00:00.000000Z')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("command", [
    ["contract", "list"], ["contract", "list", "--json"], ["policy", "actions"],
    ["policy", "actions", "--json"], ["contract", "show", "BAD"], ["policy", "forecast"],
    ["policy", "forecast", "--json"],
])
def test_one_bad_event_is_reported_and_the_rest_shown(tmp_path: Path,
                                                      command: list[str]) -> None:
    path = tmp_path / "ledger.sqlite3"
    _ledger_with_a_bad_event(path)
    code, result = _run([*command, "--at", "2026-02-01", "--ledger", str(path)])
    assert code == 13
    assert "cannot be read (not valid JSON); skipped" in result.stderr
    assert "Traceback" not in result.output
    if command[:2] == ["contract", "list"]:
        assert "GOOD" in result.stdout
        assert "BAD" in result.stdout
    if "--json" in command:
        json.loads(result.stdout)


def test_unbound_renders_a_file_name_that_is_not_utf8(tmp_path: Path, lg: list[str]) -> None:
    name = os.fsdecode(b"/srv/caf\xe9.pem")
    with Ledger.open(Path(lg[1])) as ledger:
        ledger.report([Observation(facts=facts(tag="x"), host="web1", location=name, index=0,
                                   observed_at_utc=T0)], at=T0)
    out = _json(["contract", "unbound", "--json", *lg])
    assert out[0]["location"] == name  # \udce9 in the JSON, decoded back exactly
    assert os.fsencode(out[0]["location"]) == b"/srv/caf\xe9.pem"
    assert "web1:/srv/caf\\xe9.pem[0]" in _ok(["contract", "unbound", *lg]).stdout


def test_a_bound_file_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path,
                                                              lg: list[str]) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9\x1b[2J.pem")
    with open(raw, "wb") as out:
        out.write(make_cert(not_before=datetime(2026, 5, 1, tzinfo=UTC),
                            lifetime=timedelta(days=200)).pem)
    name = os.fsdecode(raw)
    _ok(["contract", "add", "U1", "--item", "byo", "--tier", "1y", "--at", "2026-01-05", *lg])
    _ok(["contract", "bind", "U1", name, "--at", "2026-06-01", *lg])
    text = _ok(["contract", "show", "U1", "--at", "2026-06-02", *lg]).stdout
    assert "source=" in text
    assert "caf\\xe9\\u001b[2J.pem" in text  # no raw byte, no escape sequence
    assert "\x1b" not in text
    shown = _json(["contract", "show", "U1", "--json", "--at", "2026-06-02", *lg])
    assert shown["journal"][-1]["source"] == name  # exact, through the JSON escape


def test_a_form_that_arrived_on_the_day_the_contract_was_accepted_is_recorded(
        tmp_path: Path, lg: list[str]) -> None:
    """Entered the next day without --at, the form is dated the arrival day, never before the
    acceptance it follows."""
    _ok(["contract", "add", "S1", "--item", "byo", "--tier", "1y",
         "--at", "2026-04-24T15:00", *lg])
    cert = _cert(tmp_path, not_before=datetime(2026, 4, 1, tzinfo=UTC), days=365)
    _ok(["contract", "bind", "S1", str(cert), "--at", "2026-04-24T15:00", *lg])
    out = _json(["contract", "cancel", "S1", "--arrived", "2026-04-24", "--json", *lg])
    assert out["effective"] == "2026-05-24"
    shown = _json(["contract", "show", "S1", "--json", "--at", "2026-04-25", *lg])
    assert shown["journal"][-1]["at"] == "2026-04-24T06:00:00.000000Z"  # the acceptance


# ---------------------------------------------------------------- back-dated events, dates


def _desk(tmp_path: Path, lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """README's desk block: added and bound 2026-04-01; notice and answer in November."""
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-11-27T10:00:00+09:00")
    cert = _cert(tmp_path, not_before=datetime(2026, 3, 31, 15, tzinfo=UTC), days=365)
    _ok(["contract", "add", "D1", "--item", "byo", "--tier", "1y", "--at", "2026-04-01", *lg])
    _ok(["contract", "bind", "D1", str(cert), "--at", "2026-04-01", *lg])


def test_a_cancellation_back_dated_before_the_notice_and_answer_is_refused(
        tmp_path: Path, lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Art.9(2) effective 2026-06-30 would end the contract before November's notice and
    answer: refused (exit 15), nothing recorded, `show` still in force."""
    _desk(tmp_path, lg, monkeypatch)
    _ok(["contract", "notify", "D1", "--at", "2026-11-02", *lg])
    _ok(["contract", "answer", "D1", "renew", "--at", "2026-11-05", *lg])
    code, result = _run(["contract", "cancel", "D1", "--arrived", "2026-04-24",
                         "--requested", "2026-06-30", *lg])
    assert code == 15
    assert "terminated on 2026-06-30 (Art.9(2))" in str(result.exception)
    assert "a notice-sent event dated 2026-11-02" in str(result.exception)
    shown = _json(["contract", "show", "D1", "--json", *lg])
    assert shown["state"]["status"] == "active"
    assert "cancellation-arrived" not in [e["kind"] for e in shown["journal"]]


def test_the_other_order_refuses_the_notice_so_both_orders_agree(
        tmp_path: Path, lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _desk(tmp_path, lg, monkeypatch)
    _ok(["contract", "cancel", "D1", "--arrived", "2026-04-24", "--requested", "2026-06-30",
         *lg])
    code, result = _run(["contract", "notify", "D1", "--at", "2026-11-02", *lg])
    assert code == 15
    assert "terminated on 2026-06-30 (Art.9(2))" in str(result.exception)
    shown = _json(["contract", "show", "D1", "--json", *lg])
    assert shown["state"]["terminated_on"] == "2026-06-30"
    assert [e["kind"] for e in shown["journal"]] == [
        "application-accepted", "certificate-bound", "cancellation-arrived"]


def test_a_cancellation_with_no_certificate_bound_is_refused_under_art_9_2(
        tmp_path: Path, lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-11-27T10:00:00+09:00")
    _ok(["contract", "add", "N1", "--item", "byo", "--tier", "1y", "--at", "2026-04-01", *lg])
    code, result = _run(["contract", "cancel", "N1", "--arrived", "2026-04-24", *lg])
    assert code == 15
    assert "had no certificate on 2026-04-24" in str(result.exception)
    assert "Art.9(2)" in str(result.exception)
    cert = _cert(tmp_path, not_before=datetime(2026, 3, 31, 15, tzinfo=UTC), days=365)
    _ok(["contract", "bind", "N1", str(cert), "--at", "2026-04-23", *lg])
    _ok(["contract", "cancel", "N1", "--arrived", "2026-04-24", *lg])  # now in its validity


def test_a_future_arrival_is_refused_naming_arrived_in_tokyo_time(
        lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-11-27T10:00:00+09:00")
    _ok(["contract", "add", "F2", "--item", "byo", "--tier", "1y", "--at", "2026-04-01", *lg])
    code, result = _run(["contract", "cancel", "F2", "--arrived", "2027-01-01", *lg])
    assert code == 15
    message = str(result.exception)
    assert message.startswith("--arrived 2027-01-01 is in the future (now 2026-11-27 10:00 JST)")
    assert "2026-12-31" not in message
    assert "000000" not in message


def test_a_future_at_is_refused_naming_at_in_tokyo_time(
        lg: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2026-11-27T10:00:00+09:00")
    code, result = _run(["contract", "add", "F3", "--item", "byo", "--tier", "1y",
                         "--at", "2026-11-27T10:30:15+09:00", *lg])
    assert code == 15
    message = str(result.exception)
    assert message.startswith("--at 2026-11-27 10:30:15 JST is in the future (now 2026-11-27 "
                              "10:00 JST)")
    assert "application-accepted" not in message or "an application-accepted" in message
