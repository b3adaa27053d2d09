"""A notice and an answer stay with the certificate they name, and a repeated record is refused.

CONTRACT.md Art.6(1)-(3): a renewal notice, its answer and a renewal concern the validity period
of one certificate; Art.9(1): "don't renew" ends the contract on the day *that* validity period
ends; "What the ledger refuses": a renewal by default before a notice was sent. docs/ledger.md
"Back-dated events": whether an event is accepted never depends on the order it was typed in.

A review reproduced, with the CLI on SQLite and PostgreSQL, a successor bound with a back-dated
``--at`` taking over the notice and "don't renew" answer recorded about its predecessor: the
contract then ended on the successor's last day (eight months late), and a renewal by default
billed a certificate no notice had been sent about. And a desk could record one termination, or
bind one certificate, twice.

Every test runs on both ledgers (tests/policy/conftest.py), with real certificates
(tests/certfactory.py) and the desk's commands (click's CliRunner) where the review used them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.x509facts import parse_der_certificate
from policy.cliutil import TESTONLY_NOW_ENV
from policy.errors import ContractStateError
from policy.events import NoticeSent
from policy.facts import CertificateFacts
from policy.intake import Binding, Observation
from policy.ledger import Ledger
from tests.certfactory import OV_OID, Issued, make_cert
from tests.cli.test_contract_cli import _json, _ok, _run

JST = timezone(timedelta(hours=9))
ONE_SECOND = timedelta(seconds=1)
NOW = "2026-11-27T10:00:00+09:00"
"""The recording clock, after every --at below (the ledger refuses a future record)."""


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=JST)


def _globalsign_ov(not_before: datetime, not_after: datetime) -> Issued:
    """A GlobalSign OV certificate (企業認証 SSL, category I), as the catalogue recognises it."""
    return make_cert(not_before=not_before, not_after=not_after, issuer_org="GlobalSign nv-sa",
                     issuer_cn="GlobalSign GCC R3 OV TLS CA 2024", policy_oids=(OV_OID,))


G1 = _globalsign_ov(jst(2025, 9, 1, 10), jst(2026, 9, 1, 9, 59, 59))
"""The contract's certificate: its validity ends on 2026-09-01 (Asia/Tokyo)."""
GB = _globalsign_ov(jst(2026, 5, 1, 10), jst(2027, 5, 1, 9, 59, 59))
"""Its successor, valid from 2026-05-01 to 2027-05-01: its notice is not due until 2027."""
NOTICE = jst(2026, 6, 3)
ANSWER = jst(2026, 6, 10)


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TESTONLY_NOW_ENV, NOW)


@pytest.fixture
def desk(ledger_location: str, tmp_path: Path) -> tuple[list[str], Path]:
    """The ``--ledger`` option (an SQLite file or a PostgreSQL schema) and a directory holding
    g1.pem and gB.pem."""
    (tmp_path / "g1.pem").write_bytes(G1.pem)
    (tmp_path / "gB.pem").write_bytes(GB.pem)
    return ["--ledger", ledger_location], tmp_path


def _noticed(cid: str, lg: list[str], certs: Path, *, answer: str | None) -> None:
    """The review's setup: added, g1 bound, the notice (and the answer) recorded about g1."""
    _ok(["contract", "add", cid, "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2025-08-25", *lg])
    _ok(["contract", "bind", cid, str(certs / "g1.pem"), "--at", "2025-09-01T10:00", *lg])
    _ok(["contract", "notify", cid, "--at", NOTICE.isoformat(), *lg])
    if answer is not None:
        _ok(["contract", "answer", cid, answer, "--at", ANSWER.isoformat(), *lg])


def _state(cid: str, lg: list[str]) -> dict[str, Any]:
    return dict(_json(["contract", "show", cid, "--json", *lg])["state"])


def _refused(args: list[str]) -> str:
    code, result = _run(args)
    assert code == 15, (result.output, result.exception)
    return str(result.exception)


def _bind_gb(cid: str, lg: list[str], certs: Path, at: datetime) -> list[str]:
    return ["contract", "bind", cid, str(certs / "gB.pem"), "--at", at.isoformat(), *lg]


# ------------------------------------- Art.9(1): "don't renew" ends g1's contract on g1's day


def test_art9_1_a_successor_bound_before_a_recorded_dont_renew_is_refused_naming_it(
        desk: tuple[list[str], Path]) -> None:
    """The review's reproduction: gB bound dated 2026-05-01, after the notice (06-03) and the
    "don't renew" (06-10) about g1 were recorded. It would make both speak of gB and move the
    end to 2027-05-01; it is refused, naming the clause and the event, and nothing changes."""
    lg, certs = desk
    _noticed("OO2", lg, certs, answer="dont-renew")
    message = _refused(_bind_gb("OO2", lg, certs, jst(2026, 5, 1, 10)))
    assert "a certificate-bound event dated 2026-05-01 10:00 JST is refused" in message
    assert "a notice-sent event dated 2026-06-03 00:00 JST" in message
    assert "Art.6(1)" in message
    assert f"about certificate {G1.sha256[:16]}" in message
    assert "TIME after 2026-06-10 00:00 JST" in message  # after the answer, the last about g1
    state = _state("OO2", lg)
    assert state["certificate"]["sha256"] == G1.sha256
    assert (state["terminated_on"], state["termination_clause"]) == ("2026-09-01", "Art.9(1)")


def test_art9_1_one_second_before_the_answer_is_refused_at_its_instant_admitted(
        desk: tuple[list[str], Path]) -> None:
    """The boundary, by the instant: gB bound one second before the answer would take the
    answer about g1 away from it (refused); bound at the answer's instant it comes after it in
    the journal, and the answer keeps ending the contract on g1's last day (Art.9(1))."""
    lg, certs = desk
    _noticed("OO2", lg, certs, answer="dont-renew")
    message = _refused(_bind_gb("OO2", lg, certs, ANSWER - ONE_SECOND))
    assert "an answer-received event dated 2026-06-10 00:00 JST" in message
    assert "Art.6(2)" in message
    _ok(_bind_gb("OO2", lg, certs, ANSWER))
    state = _state("OO2", lg)
    assert state["certificate"]["sha256"] == GB.sha256
    assert (state["terminated_on"], state["termination_clause"]) == ("2026-09-01", "Art.9(1)")
    assert state["notice_sent"] is None  # gB's cycle starts with no notice
    assert state["answer"] is None


# ------------------------------------- Art.6(2): no default renewal before gB's own notice


def test_art6_2_a_successor_bound_before_the_notice_about_g1_is_refused_at_its_instant_not(
        desk: tuple[list[str], Path]) -> None:
    """The second reproduction: with the notice about g1 only, gB bound back-dated let a
    renewal by default on 2026-07-04 bill gB, whose notice is not due before 2027-01-31. The
    bind is refused one second before the notice; at the notice's instant it is admitted, and
    gB starts with no notice, so the default renewal is refused (Art.6(2))."""
    lg, certs = desk
    _noticed("OO1", lg, certs, answer=None)
    message = _refused(_bind_gb("OO1", lg, certs, NOTICE - ONE_SECOND))
    assert "a notice-sent event dated 2026-06-03 00:00 JST" in message
    assert "Art.6(1)" in message
    _ok(_bind_gb("OO1", lg, certs, NOTICE))
    assert _state("OO1", lg)["notice_sent"] is None
    message = _refused(["contract", "renew", "OO1", "--default", "--at", "2026-07-04", *lg])
    assert "no renewal notice was recorded for this certificate" in message
    assert "Art.6(2)" in message


def test_art6_2_without_the_successor_the_default_renewal_of_g1_is_admitted(
        desk: tuple[list[str], Path]) -> None:
    """The other side: the same notice and day, g1 still the contract's: the deadline
    (2026-07-03) passed unanswered, and the renewal by default is recorded, for g1."""
    lg, certs = desk
    _noticed("OO1", lg, certs, answer=None)
    _ok(["contract", "renew", "OO1", "--default", "--at", "2026-07-04", *lg])
    assert _state("OO1", lg)["renewals"][0]["certificate"] == G1.sha256


# ------------------------------------- the fold: what the agent saw, dated before, is admitted


def _observed(ledger: Ledger, cid: str, facts: CertificateFacts, at: datetime) -> None:
    """The agent reports ``facts`` seen at ``at`` (delivered late: recorded at NOW)."""
    ledger.report([Observation(facts=facts, host="web1", location="/etc/ssl/gB.pem", index=0,
                               observed_at_utc=at, binding=Binding(contract_id=cid))],
                  at=datetime.fromisoformat(NOW))


@pytest.mark.parametrize("answer", [None, "dont-renew"])
def test_a_newer_certificate_observed_before_the_notice_starts_a_cycle_of_its_own(
        desk: tuple[list[str], Path], ledger_location: str, answer: str | None) -> None:
    """Observations are always admitted (the agent reports what it sees), so the fold itself
    keeps a notice and an answer with the certificate they name: gB, seen from 2026-05-01,
    has no notice (no renewal by default on 07-04), and the "don't renew" about g1 still ends
    the contract on g1's last day (Art.9(1)), not gB's."""
    lg, certs = desk
    _noticed("OO3", lg, certs, answer=answer)
    gb = parse_der_certificate(GB.der).facts
    with Ledger.open(ledger_location) as ledger:
        _observed(ledger, "OO3", gb, jst(2026, 5, 1, 12))
        current = ledger.state("OO3", at=jst(2026, 7, 4)).certificate
        assert current is not None
        assert current.sha256 == GB.sha256
    state = _state("OO3", lg)
    assert state["notice_sent"] is None
    assert state["answer"] is None
    if answer is None:
        assert state["terminated_on"] is None
        message = _refused(["contract", "renew", "OO3", "--default", "--at", "2026-07-04", *lg])
        assert "no renewal notice was recorded for this certificate" in message
    else:
        assert (state["terminated_on"], state["termination_clause"]) == (
            "2026-09-01", "Art.9(1)")
    # A back-dated record that leaves those events alone is not refused for them.
    _ok(["contract", "change", "OO3", "--service", "svc-b", "--at", "2026-05-20", *lg])


def test_a_notice_about_the_observed_successor_is_its_notice(
        desk: tuple[list[str], Path], ledger_location: str) -> None:
    """The other side: once gB is the contract's, a notice names gB and starts its cycle; the
    default renewal follows its unanswered deadline."""
    lg, certs = desk
    _noticed("OO4", lg, certs, answer=None)
    with Ledger.open(ledger_location) as ledger:
        _observed(ledger, "OO4", parse_der_certificate(GB.der).facts, jst(2026, 5, 1, 12))
    _ok(["contract", "notify", "OO4", "--at", "2026-07-01", *lg])
    assert _state("OO4", lg)["notice_sent"] == "2026-07-01"
    _refused(["contract", "renew", "OO4", "--default", "--at", "2026-07-31", *lg])  # deadline
    _ok(["contract", "renew", "OO4", "--default", "--at", "2026-08-01", *lg])
    assert _state("OO4", lg)["renewals"][0]["certificate"] == GB.sha256


def test_the_ledger_refuses_a_notice_about_a_certificate_that_is_not_the_contracts(
        desk: tuple[list[str], Path], ledger_location: str) -> None:
    """A library caller naming another certificate is refused (Art.6(1)); the current one is
    recorded."""
    lg, certs = desk
    _noticed("OO5", lg, certs, answer=None)
    with Ledger.open(ledger_location) as ledger:
        before = ledger.count()
        with pytest.raises(ContractStateError, match=r"not the contract's certificate.*Art\.6"):
            ledger.append(NoticeSent(contract_id="OO5", at_utc=jst(2026, 6, 4),
                                     certificate_sha256=GB.sha256),
                          now=datetime.fromisoformat(NOW))
        assert ledger.count() == before
        ledger.append(NoticeSent(contract_id="OO5", at_utc=jst(2026, 6, 4),
                                 certificate_sha256=G1.sha256), now=datetime.fromisoformat(NOW))
        assert ledger.count() == before + 1
        state = ledger.state("OO5", at=jst(2026, 6, 5))
        assert state.notice_sent is not None
        assert state.notice_sent.isoformat() == "2026-06-03"


# ------------------------------------- repeated records


def _journal_kinds(cid: str, lg: list[str]) -> list[str]:
    return [e["kind"] for e in _json(["contract", "show", cid, "--json", *lg])["journal"]]


def test_a_termination_recorded_twice_is_refused_naming_the_first(
        desk: tuple[list[str], Path], tmp_path: Path) -> None:
    """The review's B1: a BYO certificate within 90 days (Art.6(3) proviso) ends 2026-08-08.
    The record, entered twice, was written twice; the second is refused, naming the journal
    row, whatever its --at or reason. The record under another clause that also ends it that
    day (Art.9(1), after "don't renew") is news, and is recorded; its line says its clause."""
    lg, _ = desk
    b90 = tmp_path / "b90.pem"
    b90.write_bytes(make_cert(not_before=jst(2026, 5, 10, 12, 4, 5),
                              lifetime=timedelta(days=90)).pem)
    _ok(["contract", "add", "B1", "--item", "byo", "--tier", "1y", "--at", "2026-05-01", *lg])
    _ok(["contract", "bind", "B1", str(b90), "--at", "2026-05-11", *lg])
    first = _ok(["contract", "terminate", "B1", "--effective", "2026-08-08",
                 "--clause", "Art.6(3) proviso", "--at", "2026-06-01", *lg]).stdout
    assert "recorded: effective 2026-08-08 (Art.6(3) proviso)." in first
    seq = _json(["contract", "show", "B1", "--json", *lg])["journal"][-1]["seq"]
    for when, reason in (("2026-06-01", ""), ("2026-06-02", "again")):
        message = _refused(["contract", "terminate", "B1", "--effective", "2026-08-08",
                            "--clause", "Art.6(3) proviso", "--reason", reason,
                            "--at", when, *lg])
        assert (f"a termination effective 2026-08-08 (Art.6(3) proviso) is already recorded: "
                f"journal event #{seq}, dated 2026-06-01 00:00 JST") in message
    assert _journal_kinds("B1", lg).count("terminated") == 1
    _ok(["contract", "answer", "B1", "dont-renew", "--at", "2026-06-03", *lg])
    third = _ok(["contract", "terminate", "B1", "--effective", "2026-08-08",
                 "--clause", "Art.9(1)", "--at", "2026-06-04", *lg]).stdout
    assert "recorded: effective 2026-08-08 (Art.9(1))." in third
    assert "The contract terminates on 2026-08-08 (Art.6(3) proviso)." in third
    assert _journal_kinds("B1", lg).count("terminated") == 2


def test_binding_the_bound_certificate_again_is_refused_another_is_a_new_cycle(
        desk: tuple[list[str], Path]) -> None:
    """g1 bound twice wrote a second certificate-bound event silently; it is refused, at any
    later --at. Binding gB is recorded, and so is g1 again after it (a new cycle)."""
    lg, certs = desk
    _noticed("OO6", lg, certs, answer=None)
    message = _refused(["contract", "bind", "OO6", str(certs / "g1.pem"),
                        "--at", "2026-06-20", *lg])
    assert f"certificate {G1.sha256[:16]}… is already bound to it" in message
    assert _journal_kinds("OO6", lg).count("certificate-bound") == 1
    _ok(_bind_gb("OO6", lg, certs, jst(2026, 6, 20)))
    _ok(["contract", "bind", "OO6", str(certs / "g1.pem"), "--at", "2026-06-21", *lg])
    assert _journal_kinds("OO6", lg).count("certificate-bound") == 3


def test_a_certificate_bound_back_dated_before_its_own_bind_is_refused(
        desk: tuple[list[str], Path]) -> None:
    """The same certificate bound again dated earlier would make the recorded bind the
    repeated one: refused too, naming it."""
    lg, certs = desk
    _ok(["contract", "add", "OO7", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2025-08-25", *lg])
    _ok(["contract", "bind", "OO7", str(certs / "g1.pem"), "--at", "2025-09-02", *lg])
    message = _refused(["contract", "bind", "OO7", str(certs / "g1.pem"),
                        "--at", "2025-09-01T10:00", *lg])
    assert "already holds a certificate-bound event dated 2025-09-02 00:00 JST" in message
    assert "is already bound to it" in message


def test_an_identical_event_at_the_same_instant_is_refused_a_reminder_is_not(
        desk: tuple[list[str], Path]) -> None:
    """A notice recorded twice at one instant (a command run twice) is one record: refused,
    naming the row; one on a later day is a reminder (Art.6(1)), recorded."""
    lg, certs = desk
    _noticed("OO8", lg, certs, answer=None)
    seq = _json(["contract", "show", "OO8", "--json", *lg])["journal"][-1]["seq"]
    message = _refused(["contract", "notify", "OO8", "--at", NOTICE.isoformat(), *lg])
    assert (f"a notice-sent event dated 2026-06-03 00:00 JST with the same content is "
            f"already recorded: journal event #{seq}") in message
    _ok(["contract", "notify", "OO8", "--at", "2026-06-04", *lg])
    assert _journal_kinds("OO8", lg).count("notice-sent") == 2
