"""What the contract desk reads (a review of session 17): instants in Asia/Tokyo, as the
refusals state them; refusals that name their clause and read as one sentence; the exit code
docs/ledger.md gives a problem with `contract bind`'s certificate file (17)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from policy.intake import Observation
from policy.ledger import Ledger
from tests.certfactory import make_ca, make_cert
from tests.cli.test_contract_cli import _json, _ok, _run
from tests.policy.ledger_fixtures import facts

APRIL_1_JST = datetime(2026, 3, 31, 15, tzinfo=UTC)
"""A certificate that starts on 2026-04-01 00:00 JST: its UTC form names the day before."""


@pytest.fixture
def lg(tmp_path: Path) -> list[str]:
    return ["--ledger", str(tmp_path / "ledger.sqlite3")]


def _april_cert(tmp_path: Path) -> Path:
    path = tmp_path / "april.pem"
    path.write_bytes(make_cert(not_before=APRIL_1_JST, lifetime=timedelta(days=200)).pem)
    return path


def _bound(tmp_path: Path, lg: list[str]) -> Path:
    cert = _april_cert(tmp_path)
    _ok(["contract", "add", "D1", "--item", "byo", "--tier", "1y", "--at", "2026-03-01", *lg])
    return cert


def test_bind_warns_of_a_not_yet_valid_certificate_in_tokyo_time(
        tmp_path: Path, lg: list[str]) -> None:
    """Bound on 03-20 a certificate starting 04-01 00:00 JST: the warning names 04-01, not the
    UTC 03-31 a desk could take for the start day."""
    cert = _bound(tmp_path, lg)
    text = _ok(["contract", "bind", "D1", str(cert), "--at", "2026-03-20", *lg]).stdout
    assert "Warning: the certificate is not valid until 2026-04-01 00:00 JST;" in text
    assert "2026-03-31" not in text
    # --json keeps its documented form: the finding's code, instants in ISO 8601 UTC (a second
    # contract: binding D1's certificate to D1 again is refused as a repeat)
    _ok(["contract", "add", "D2", "--item", "byo", "--tier", "1y", "--at", "2026-03-01", *lg])
    out = _json(["contract", "bind", "D2", str(cert), "--at", "2026-03-20", "--json", *lg])
    [finding] = out["findings"]
    assert finding["code"] == "certificate-not-yet-valid"
    assert out["contract"]["certificate"]["not_before"] == "2026-03-31T15:00:00Z"


def test_contract_show_states_validity_and_journal_in_tokyo_time(
        tmp_path: Path, lg: list[str]) -> None:
    cert = _bound(tmp_path, lg)
    _ok(["contract", "bind", "D1", str(cert), "--at", "2026-04-01T09:30", *lg])
    text = _ok(["contract", "show", "D1", "--at", "2026-04-02", *lg]).stdout
    assert "valid 2026-04-01 00:00 JST .. 2026-10-17 23:59:59 JST" in text
    assert "Journal (happened / recorded, Asia/Tokyo):" in text
    [accepted] = [ln for ln in text.splitlines() if "application-accepted" in ln]
    assert accepted.split()[1:4] == ["2026-03-01", "00:00", "JST"]
    [bound] = [ln for ln in text.splitlines() if "certificate-bound" in ln]
    assert "2026-04-01 09:30 JST" in bound
    assert "notAfter=2026-10-17 23:59:59 JST" in bound
    assert "Z " not in text
    assert "+00:00" not in text
    shown = _json(["contract", "show", "D1", "--at", "2026-04-02", "--json", *lg])
    assert shown["journal"][0]["at"] == "2026-02-28T15:00:00.000000Z"  # --json: the journal's


def test_contract_unbound_states_when_it_was_seen_in_tokyo_time(lg: list[str]) -> None:
    with Ledger.open(lg[1], create=True) as led:
        led.report([Observation(facts=facts(tag="u"), host="web1", location="/srv/u.pem",
                                index=0, observed_at_utc=APRIL_1_JST)], at=APRIL_1_JST)
    [line] = _ok(["contract", "unbound", *lg]).stdout.splitlines()
    assert line.split()[1:5] == ["2026-04-01", "00:00", "JST", "web1:/srv/u.pem[0]"]


def test_a_second_cancellation_form_is_refused_citing_art9_2(
        tmp_path: Path, lg: list[str]) -> None:
    cert = _bound(tmp_path, lg)
    _ok(["contract", "bind", "D1", str(cert), "--at", "2026-04-01", *lg])
    _ok(["contract", "cancel", "D1", "--arrived", "2026-04-02", "--at", "2026-04-02", *lg])
    code, result = _run(["contract", "cancel", "D1", "--arrived", "2026-04-03",
                         "--at", "2026-04-03", *lg])
    assert code == 15
    message = str(result.exception)
    assert "already has a cancellation form" in message
    assert "Art.9(2)" in message
    shown = _json(["contract", "show", "D1", "--json", *lg])
    assert [e["kind"] for e in shown["journal"]].count("cancellation-arrived") == 1


@pytest.mark.parametrize(("which", "index", "said"), [
    ("server", ["--index", "3"], "--index 3 is out of range"),
    ("ca", [], "holds only CA certificates"),
])
def test_bind_refuses_a_file_without_the_certificate_asked_for_with_17(
        tmp_path: Path, lg: list[str], which: str, index: list[str], said: str) -> None:
    """docs/ledger.md: 17 is `contract bind`'s certificate file; scripts tell it from 15, a
    refusal by the contract's state."""
    cert = _bound(tmp_path, lg)
    if which == "ca":
        cert.write_bytes(make_ca().cert.public_bytes(Encoding.PEM))
    code, result = _run(["contract", "bind", "D1", str(cert), *index, "--at", "2026-04-01",
                         "--json", *lg])
    assert code == 17
    assert said in str(result.exception)
    assert json.loads(result.stdout)["error"]["exit_code"] == 17


def test_an_application_refused_under_two_clauses_reads_as_one_sentence(
        lg: list[str]) -> None:
    code, result = _run(["contract", "add", "C2", "--item", "globalsign-ov", "--tier", "1y",
                         "--country", "US", "--migrating", "--at", "2026-03-01", *lg])
    assert code == 16
    message = str(result.exception)
    assert ".;" not in message
    assert "under this item; Art.7(2): " in message

