"""A contract whose end is fixed is never renewed, and it ends when its clause says (review 2).

Each test drives the desk commands (`certescrow contract …`, click's CliRunner) against a real
SQLite ledger, with real certificates, at the edges: the day before, of and after, 23:59:59
against 00:00 Asia/Tokyo. CONTRACT.md "What the ledger refuses", Art.6, Art.8, Art.9:

* a renewal (explicit or by default) is refused whenever the contract's termination is already
  fixed on its day, citing the clause that fixed it (Art.9(1), Art.9(2), Art.8, Art.6(3)
  proviso) and saying what the desk can do; an abolished item is never renewed (Art.8);
* a certificate that cannot be renewed (Art.6(3) proviso) ends the contract unless one that
  *can* be renewed is bound by the end of its last day: another 90-day one neither lifts nor
  moves the end, bound by the desk or observed by the agent;
* Art.6(1): the notice goes out by the day the validity period ends (「有効期間が経過する日
  までに」: that day included), and a default renewal (Art.6(2)) needs a deadline after it;
* the contract runs through its termination day, whatever the clause, and is terminated from
  the next Tokyo day;
* a termination record stands on its clause's own conditions, never before the acceptance;
* a cancellation form counts only during the validity period (Art.9(2)).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from policy.cliutil import TESTONLY_NOW_ENV
from tests.certfactory import OV_OID, make_cert
from tests.cli.test_agent_cli import detach_log_handlers, write_config
from tests.cli.test_agent_cli import run as run_main
from tests.cli.test_contract_cli import _json, _ok, _run

__all__ = ["detach_log_handlers"]  # the agent test's autouse fixture, applied here too

JST = timezone(timedelta(hours=9))
ROOT = Path(__file__).resolve().parents[2]


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=JST)


def at(instant: datetime) -> str:
    return instant.isoformat()


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recording clock, after every --at below (the ledger refuses a future record)."""
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2027-06-01T10:00:00+09:00")


@pytest.fixture
def lg(tmp_path: Path) -> list[str]:
    return ["--ledger", str(tmp_path / "ledger.sqlite3")]


_GLOBALSIGN_OV: dict[str, Any] = {"issuer_org": "GlobalSign nv-sa",
                                   "issuer_cn": "GlobalSign GCC R3 OV TLS CA 2024",
                                   "policy_oids": (OV_OID,)}
"""A certificate globalsign-ov's CA can have issued (a test CA's would be an item-mismatch)."""


def _pem(directory: Path, name: str, not_before: datetime, not_after: datetime,
         **issuer: Any) -> str:
    path = directory / name
    path.write_bytes(make_cert(not_before=not_before, not_after=not_after, **issuer).pem)
    return str(path)


def _refused(args: list[str], *, config: Path | None = None) -> str:
    """The command is refused by the contract's state (exit 15) and says why."""
    code, result = _run(args, config=config)
    assert code == 15, (result.output, result.exception)
    return str(result.exception)


def _state(cid: str, lg: list[str], when: str | None = None) -> dict[str, Any]:
    shown = _json(["contract", "show", cid, "--json", *(["--at", when] if when else []), *lg])
    return dict(shown["state"]) | {"kinds": [e["kind"] for e in shown["journal"]]}


def _abolished_config(tmp_path: Path, product_end: str) -> Path:
    """A configuration whose catalogue says the CA ends globalsign-ov on ``product_end``."""
    text = (ROOT / "policy" / "data" / "catalogue.toml").read_text(encoding="utf-8")
    amended = tmp_path / "amended.toml"
    amended.write_text(text.replace('handle = "globalsign-ov"\n',
                                    f'handle = "globalsign-ov"\nproduct_end = {product_end}\n', 1),
                       encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\ncatalogue = "{amended}"\n', encoding="utf-8")
    return config


def _ov(tmp_path: Path, lg: list[str], cid: str, *, config: Path | None = None) -> None:
    """Category I globalsign-ov 1y; certificate 2025-12-01 00:00 .. 2026-11-30 23:59:59 JST."""
    cert = _pem(tmp_path, f"{cid}.pem", jst(2025, 12, 1), jst(2026, 11, 30, 23, 59, 59),
            **_GLOBALSIGN_OV)
    _ok(["contract", "add", cid, "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2025-12-01", *lg], config=config)
    _ok(["contract", "bind", cid, cert, "--at", "2025-12-01", *lg], config=config)


# ------------------------------------------------ 1. no renewal once the end is fixed


def test_art9_1_a_renewal_after_a_timely_dont_renew_is_refused_and_says_the_way_back(
        tmp_path: Path, lg: list[str]) -> None:
    _ov(tmp_path, lg, "B2")
    _ok(["contract", "notify", "B2", "--at", "2026-09-01", *lg])
    _ok(["contract", "answer", "B2", "dont-renew", "--at", "2026-09-05", *lg])
    for day in ("2026-09-10", "2026-11-30T23:59:59"):  # up to the last day: fixed, not over
        message = _refused(["contract", "renew", "B2", "--at", day, *lg])
        assert "termination is already fixed for 2026-11-30 (Art.9(1)" in message
        assert "`certescrow contract answer B2 renew" in message
    state = _state("B2", lg, "2026-11-30")
    assert state["renewals"] == []
    assert "renewal-made" not in state["kinds"]
    # The way the refusal names: the customer changed their mind before the day.
    _ok(["contract", "answer", "B2", "renew", "--at", "2026-09-12", *lg])
    _ok(["contract", "renew", "B2", "--at", "2026-09-13", *lg])
    assert _state("B2", lg, "2026-09-14")["status"] == "active"


@pytest.mark.parametrize(("renewed_at", "before_answer"), [
    (jst(2026, 9, 4, 23, 59, 59), True),   # the last second before the answer
    (jst(2026, 9, 5), False),              # the answer's instant: the end is fixed
])
def test_art9_1_the_dont_renew_answer_fixes_the_end_from_its_instant(
        tmp_path: Path, lg: list[str], renewed_at: datetime, before_answer: bool) -> None:
    _ov(tmp_path, lg, "B2")
    _ok(["contract", "notify", "B2", "--at", "2026-09-01", *lg])
    _ok(["contract", "answer", "B2", "dont-renew", "--at", at(jst(2026, 9, 5)), *lg])
    args = ["contract", "renew", "B2", "--at", at(renewed_at), *lg]
    if before_answer:
        # Back-dated before the answer: the renewal comes first, so the answer already
        # recorded after it is the one the terms rule out (review 12, defect 5: as for a
        # default renewal, the journal never holds both).
        assert "cancellation form under Art.9(2)" in _refused(args)
        return
    assert "(Art.9(1)" in _refused(args)


@pytest.mark.parametrize(("renewed_at", "admitted"), [
    (jst(2026, 10, 4, 23, 59, 59), True),  # after the deadline (10-01), before the late answer
    (jst(2026, 10, 5), False),
    (jst(2026, 10, 6), False),
])
def test_art9_1_a_default_renewal_after_a_late_dont_renew_is_refused(
        tmp_path: Path, lg: list[str], renewed_at: datetime, admitted: bool) -> None:
    _ov(tmp_path, lg, "B2")
    _ok(["contract", "notify", "B2", "--at", "2026-09-01", *lg])  # deadline 2026-10-01
    late = _ok(["contract", "answer", "B2", "dont-renew", "--at", at(jst(2026, 10, 5)),
                *lg]).stdout
    assert "(late: after the answer deadline)" in late
    args = ["contract", "renew", "B2", "--default", "--at", at(renewed_at), *lg]
    if admitted:
        # Back-dated before the late answer: the renewal was taken as made first, so the
        # answer already recorded after it is the one the terms rule out (Art.9(1) no longer
        # applies): whichever was typed first, the journal never holds both.
        assert "cancellation form under Art.9(2)" in _refused(args)
        return
    message = _refused(args)
    assert "termination is already fixed for 2026-11-30 (Art.9(1)" in message
    assert "\"don't renew\" on 2026-10-05" in message
    assert _state("B2", lg, "2026-10-07")["renewals"] == []


def test_art9_1_a_default_renewal_before_a_late_dont_renew_refuses_the_answer(
        tmp_path: Path, lg: list[str]) -> None:
    """The other order: the default renewal (10-04 23:59:59) is recorded, so the late "don't
    renew" (10-05 00:00) is refused, pointing to Art.9(2)."""
    _ov(tmp_path, lg, "B2")
    _ok(["contract", "notify", "B2", "--at", "2026-09-01", *lg])
    _ok(["contract", "renew", "B2", "--default", "--at", at(jst(2026, 10, 4, 23, 59, 59)), *lg])
    assert "Art.9(2)" in _refused(["contract", "answer", "B2", "dont-renew",
                                   "--at", at(jst(2026, 10, 5)), *lg])


@pytest.mark.parametrize(("renewed_at", "admitted"), [
    (jst(2026, 7, 31, 23, 59, 59), True),  # before the form arrived
    (jst(2026, 8, 1), False),              # the form's day: the end is fixed
    (jst(2026, 8, 25), False),
    (jst(2026, 8, 31, 23, 59, 59), False),  # its last day
])
def test_art9_2_a_renewal_after_a_cancellation_form_is_refused(
        tmp_path: Path, lg: list[str], renewed_at: datetime, admitted: bool) -> None:
    _ov(tmp_path, lg, "B3")
    if admitted:
        _ok(["contract", "renew", "B3", "--at", at(renewed_at), *lg])
        _ok(["contract", "cancel", "B3", "--arrived", "2026-08-01", *lg])
        return
    assert _ok(["contract", "cancel", "B3", "--arrived", "2026-08-01",
                *lg]).stdout.startswith("effective 2026-08-31")
    message = _refused(["contract", "renew", "B3", "--at", at(renewed_at), *lg])
    assert "termination is already fixed for 2026-08-31 (Art.9(2)" in message
    assert "a new contract is the way" in message
    assert _state("B3", lg, "2026-08-31")["renewals"] == []


@pytest.mark.parametrize(("renewed_at", "admitted"), [
    (jst(2026, 6, 29, 23, 59, 59), True),
    (jst(2026, 6, 30), False),  # the CA ended the product: the item is abolished
])
def test_art8_an_abolished_item_is_never_renewed(
        tmp_path: Path, lg: list[str], renewed_at: datetime, admitted: bool) -> None:
    config = _abolished_config(tmp_path, "2026-06-30")
    _ov(tmp_path, lg, "D4", config=config)
    args = ["contract", "renew", "D4", "--at", at(renewed_at), *lg]
    if admitted:
        _ok(args, config=config)
        return
    message = _refused(args, config=config)
    assert "abolished, the CA ended the product on 2026-06-30 (Art.8)" in message
    assert "new contract" in message


def test_art8_a_default_renewal_after_the_product_end_is_refused(
        tmp_path: Path, lg: list[str]) -> None:
    config = _abolished_config(tmp_path, "2026-06-30")
    _ov(tmp_path, lg, "D4", config=config)
    _ok(["contract", "notify", "D4", "--at", "2026-09-01", *lg], config=config)
    message = _refused(["contract", "renew", "D4", "--default", "--at", "2026-10-02", *lg],
                       config=config)
    assert "(Art.8)" in message
    assert _state("D4", lg, "2026-10-03")["renewals"] == []
    # ... and `policy actions` no longer offers that renewal, nor bills it (review 11).
    actions = _json(["policy", "actions", "--json", "--at", "2026-10-02", *lg], config=config)
    assert [(a["contract"], a["action"], a["clause"]) for a in actions] == [
        ("D4", "abolish", "Art.8")]


@pytest.mark.parametrize(("product_end", "renewal_days"), [
    ("2026-06-30", []),              # abolished before the certificate ends: none
    ("2026-12-01", []),              # the day of the first renewal: refused, so none
    ("2026-12-02", ["2026-12-01"]),  # the day after: that one, and none after the end
])
def test_art8_the_forecast_projects_no_renewal_on_or_after_the_product_end(
        tmp_path: Path, lg: list[str], product_end: str, renewal_days: list[str]) -> None:
    """`policy forecast` projected renewals of an item the CA ends, which the ledger refuses
    and `policy actions` no longer offers (review 11 re-review)."""
    config = _abolished_config(tmp_path, product_end)
    _ov(tmp_path, lg, "D5", config=config)
    body = _json(["policy", "forecast", "--json", "--at", "2026-07-01", *lg], config=config)
    [outlook] = [c for c in body["contracts"] if c["contract"] == "D5"]
    assert [r["renewal_day"] for r in outlook["renewals"]] == renewal_days


# ------------------------------------------------ 2. the Art.6(3) proviso's end stands


def _le(tmp_path: Path, lg: list[str]) -> None:
    """byo 6m; a 90-day certificate 2026-03-01 10:00 .. 2026-05-30 09:59:59 JST: ends 05-30."""
    first = _pem(tmp_path, "le_a.pem", jst(2026, 3, 1, 10), jst(2026, 5, 30, 9, 59, 59))
    _ok(["contract", "add", "L1", "--item", "byo", "--tier", "6m", "--at", "2026-03-01", *lg])
    _ok(["contract", "bind", "L1", first, "--at", at(jst(2026, 3, 1, 10)), *lg])
    state = _state("L1", lg, "2026-03-02")
    assert (state["terminated_on"], state["termination_clause"]) == ("2026-05-30",
                                                                     "Art.6(3) proviso")


def test_art6_3_another_90_day_certificate_neither_lifts_nor_moves_the_end(
        tmp_path: Path, lg: list[str]) -> None:
    _le(tmp_path, lg)
    second = _pem(tmp_path, "le_b.pem", jst(2026, 4, 30, 10), jst(2026, 7, 29, 9, 59, 59))
    _ok(["contract", "bind", "L1", second, "--at", at(jst(2026, 4, 30, 10)), *lg])
    last_second = _state("L1", lg, at(jst(2026, 5, 30, 23, 59, 59)))
    assert (last_second["status"], last_second["terminated_on"],
            last_second["termination_clause"]) == ("terminating", "2026-05-30",
                                                   "Art.6(3) proviso")
    assert _state("L1", lg, at(jst(2026, 5, 31)))["status"] == "terminated"
    assert "terminated on 2026-05-30 (Art.6(3) proviso)" in _refused(
        ["contract", "change", "L1", "--service", "x", "--at", at(jst(2026, 5, 31)), *lg])
    # The text says the same day (it named the current certificate's 2026-07-29).
    shown = _ok(["contract", "show", "L1", "--at", at(jst(2026, 5, 20)), *lg]).stdout
    assert "the contract ends on 2026-05-30" in shown
    assert "2026-07-29 Asia/Tokyo" in shown  # the certificate's own end, on its line


@pytest.mark.parametrize(("bound_at", "lifted"), [
    (jst(2026, 5, 30, 23, 59, 59), True),  # by the end of the last day: "before then"
    (jst(2026, 5, 31), False),             # too late: the contract has ended
])
def test_art6_3_a_renewable_certificate_bound_in_time_lifts_the_end_even_after_another(
        tmp_path: Path, lg: list[str], bound_at: datetime, lifted: bool) -> None:
    _le(tmp_path, lg)
    second = _pem(tmp_path, "le_b.pem", jst(2026, 4, 30, 10), jst(2026, 7, 29, 9, 59, 59))
    _ok(["contract", "bind", "L1", second, "--at", at(jst(2026, 4, 30, 10)), *lg])
    yearly = _pem(tmp_path, "byo1y.pem", jst(2026, 5, 30, 10), jst(2026, 11, 29, 9, 59, 59))
    args = ["contract", "bind", "L1", yearly, "--at", at(bound_at), *lg]
    if not lifted:
        assert "terminated on 2026-05-30 (Art.6(3) proviso)" in _refused(args)
        return
    _ok(args)
    state = _state("L1", lg, "2026-06-01")
    assert (state["status"], state["terminated_on"], state["renewable"]) == ("active", None,
                                                                           True)


def test_art6_3_an_observed_90_day_successor_does_not_move_the_end(
        tmp_path: Path, lg: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The agent observes, in a store bound to the contract, another 90-day certificate
    (Ledger.report: an observed newer certificate becomes the contract's, as a bind would)."""
    _le(tmp_path, lg)
    store = tmp_path / "store"
    store.mkdir()
    _pem(store, "cert.pem", jst(2026, 4, 30, 10), jst(2026, 7, 29, 9, 59, 59))
    config = write_config(tmp_path, f'[policy]\nledger = "{lg[1]}"\n[agent]\nhost = "web1"\n'
                                    f'[[agent.stores]]\npath = "{store}"\ncontract = "L1"\n')
    code, _, err = run_main(["agent", "run", "--once", "--json", "--config", str(config),
                             "--at", at(jst(2026, 4, 30, 12))], capsys)
    assert code in (0, 3), err
    state = _state("L1", lg, at(jst(2026, 5, 30, 23, 59, 59)))
    assert state["certificate_source"] == "observed"
    assert state["certificate"]["not_after"] == "2026-07-29T00:59:59Z"
    assert (state["status"], state["terminated_on"]) == ("terminating", "2026-05-30")
    assert _state("L1", lg, at(jst(2026, 5, 31)))["status"] == "terminated"


# ------------------------------------------------ 3. the notice goes out by the last day


def _y2(tmp_path: Path, lg: list[str]) -> None:
    """globalsign-ov 1y; certificate 2025-11-01 00:00 .. 2026-10-31 23:59:59 JST."""
    cert = _pem(tmp_path, "y2.pem", jst(2025, 11, 1), jst(2026, 10, 31, 23, 59, 59),
            **_GLOBALSIGN_OV)
    _ok(["contract", "add", "Y2", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2025-11-01", *lg])
    _ok(["contract", "bind", "Y2", cert, "--at", "2025-11-01", *lg])


@pytest.mark.parametrize(("noticed_at", "admitted"), [
    (jst(2026, 10, 31, 23, 59, 59), True),  # 有効期間が経過する日までに: the last day included
    (jst(2026, 11, 1), False),
    (jst(2026, 11, 5, 10), False),
])
def test_art6_1_a_notice_after_the_last_day_of_validity_is_refused(
        tmp_path: Path, lg: list[str], noticed_at: datetime, admitted: bool) -> None:
    _y2(tmp_path, lg)
    args = ["contract", "notify", "Y2", "--at", at(noticed_at), *lg]
    if admitted:
        assert "answer due by 2026-10-31" in _ok(args).stdout
        return
    message = _refused(args)
    assert "validity period ended on 2026-10-31" in message
    assert "Art.6(1)" in message
    # and so no default renewal rests on it (Art.6(2): no notice was sent)
    assert "no renewal notice was recorded" in _refused(
        ["contract", "renew", "Y2", "--default", "--at", "2026-11-06", *lg])
    assert _state("Y2", lg, "2026-11-07")["renewals"] == []


@pytest.mark.parametrize(("noticed_on", "admitted"), [
    ("2026-10-30", True),   # deadline 10-31, after the notice
    ("2026-10-31", False),  # deadline 10-31, the notice's own day: no day to answer
])
def test_art6_2_a_default_renewal_needs_a_deadline_after_its_notice(
        tmp_path: Path, lg: list[str], noticed_on: str, admitted: bool) -> None:
    _y2(tmp_path, lg)
    _ok(["contract", "notify", "Y2", "--at", f"{noticed_on}T10:00", *lg])
    actions = [a["action"] for a in _json(["policy", "actions", "--json",
                                           "--at", "2026-11-01", *lg])]
    args = ["contract", "renew", "Y2", "--default", "--at", "2026-11-01", *lg]
    if admitted:
        assert "renew-by-default" in actions
        _ok(args)
        return
    assert "renew-by-default" not in actions
    assert "answer-overdue" in actions
    message = _refused(args)
    assert "is not after the renewal notice of 2026-10-31" in message
    assert "Art.6(2)" in message
    assert "30 day(s) after the notice, and never later than the end of validity" in message


# ------------------------------------------------ 4. the contract runs through its last day


def test_art9_1_the_contract_runs_through_its_last_day(tmp_path: Path, lg: list[str]) -> None:
    cert = _pem(tmp_path, "d1.pem", jst(2025, 11, 1), jst(2026, 10, 31, 23, 59, 59),
            **_GLOBALSIGN_OV)
    successor = _pem(tmp_path, "d1b.pem", jst(2026, 10, 31), jst(2027, 10, 30, 23, 59, 59),
                 **_GLOBALSIGN_OV)
    _ok(["contract", "add", "D1", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2025-11-01", *lg])
    _ok(["contract", "bind", "D1", cert, "--at", "2025-11-01", *lg])
    _ok(["contract", "answer", "D1", "dont-renew", "--at", "2026-09-01", *lg])
    for when in ("2026-10-31T00:00", "2026-10-31T12:00", "2026-10-31T23:59:59"):
        assert _state("D1", lg, when)["status"] == "terminating"
    assert _state("D1", lg, "2026-11-01T00:00")["status"] == "terminated"
    noon = "2026-10-31T12:00"
    _ok(["contract", "notify", "D1", "--at", noon, *lg])
    _ok(["contract", "answer", "D1", "dont-renew", "--at", noon, *lg])
    _ok(["contract", "change", "D1", "--service", "svc", "--at", noon, *lg])
    _ok(["contract", "bind", "D1", successor, "--at", "2026-10-31T23:59:59", *lg])
    message = _refused(["contract", "change", "D1", "--service", "late",
                        "--at", "2026-11-01T00:00", *lg])
    assert "terminated on 2026-10-31 (Art.9(1))" in message


def test_art6_3_the_contract_runs_to_the_end_of_the_last_day_not_to_not_after(
        tmp_path: Path, lg: list[str]) -> None:
    """The 90-day certificate is valid until 09:59:59 on 05-30; the contract until 24:00."""
    _le(tmp_path, lg)
    assert _state("L1", lg, "2026-05-30T08:00")["status"] == "terminating"
    assert _state("L1", lg, "2026-05-30T23:59:59")["status"] == "terminating"
    _ok(["contract", "change", "L1", "--service", "svc", "--at", "2026-05-30T08:00", *lg])
    _ok(["contract", "notify", "L1", "--at", "2026-05-30T09:00", *lg])
    assert _state("L1", lg, "2026-05-31T00:00")["status"] == "terminated"
    assert "terminated on 2026-05-30 (Art.6(3) proviso)" in _refused(
        ["contract", "change", "L1", "--service", "late", "--at", "2026-05-31T00:00", *lg])


def test_art9_2_the_contract_runs_through_the_day_the_form_takes_effect(
        tmp_path: Path, lg: list[str]) -> None:
    _ov(tmp_path, lg, "C1")
    _ok(["contract", "cancel", "C1", "--arrived", "2026-08-01", *lg])  # effective 08-31
    assert _state("C1", lg, "2026-08-31T23:59:59")["status"] == "terminating"
    assert _state("C1", lg, "2026-09-01T00:00")["status"] == "terminated"
    _ok(["contract", "change", "C1", "--service", "svc", "--at", "2026-08-31T23:59:59", *lg])
    assert "terminated on 2026-08-31 (Art.9(2))" in _refused(
        ["contract", "change", "C1", "--service", "late", "--at", "2026-09-01T00:00", *lg])


# ------------------------------------------------ 5. a termination record needs its clause


def _terminate(cid: str, effective: str, clause: str, lg: list[str], *,
               when: str = "2026-09-02") -> list[str]:
    return ["contract", "terminate", cid, "--effective", effective, "--clause", clause,
            "--at", when, *lg]


@pytest.mark.parametrize(("effective", "admitted"), [
    ("2026-08-30", False),  # arrival + 29
    ("2026-08-31", True),   # arrival + 30 (Art.9(2), 民法第140条)
    ("2026-09-01", False),  # the form fixed 08-31: the record says that day (session 15)
])
def test_art9_2_a_termination_record_needs_a_form_and_its_day(
        tmp_path: Path, lg: list[str], effective: str, admitted: bool) -> None:
    _ov(tmp_path, lg, "T2")
    message = _refused(_terminate("T2", "2026-08-31", "Art.9(2)", lg, when="2026-07-31"))
    assert "Art.9(2) ends a contract on a cancellation form" in message
    _ok(["contract", "cancel", "T2", "--arrived", "2026-08-01", *lg])
    args = _terminate("T2", effective, "Art.9(2)", lg, when="2026-08-05")
    if admitted:
        _ok(args)
        return
    assert "2026-08-31, not another day" in _refused(args)


@pytest.mark.parametrize(("effective", "admitted"), [
    ("2026-11-29", False),
    ("2026-11-30", True),  # the last day of validity
    ("2026-12-01", False),
])
def test_art9_1_a_termination_record_needs_a_dont_renew_and_the_last_day(
        tmp_path: Path, lg: list[str], effective: str, admitted: bool) -> None:
    _ov(tmp_path, lg, "T1")
    assert "no such answer stands" in _refused(_terminate("T1", "2026-11-30", "Art.9(1)", lg))
    _ok(["contract", "answer", "T1", "dont-renew", "--at", "2026-09-01", *lg])
    args = _terminate("T1", effective, "Art.9(1)", lg)
    if admitted:
        _ok(args)
        return
    assert "the day the certificate's validity period ends, 2026-11-30" in _refused(args)


def test_art6_3_proviso_a_termination_record_needs_category_iii_and_a_90_day_certificate(
        tmp_path: Path, lg: list[str]) -> None:
    _ov(tmp_path, lg, "P1")  # category I, a 1-year certificate
    assert "is category I" in _refused(_terminate("P1", "2026-11-30", "Art.6(3) proviso", lg))
    yearly = _pem(tmp_path, "byo1y.pem", jst(2026, 1, 1), jst(2026, 12, 31, 23, 59, 59))
    _ok(["contract", "add", "P3", "--item", "byo", "--tier", "1y", "--at", "2026-01-01", *lg])
    _ok(["contract", "bind", "P3", yearly, "--at", "2026-01-01", *lg])
    assert "can be renewed" in _refused(_terminate("P3", "2026-12-31", "Art.6(3) proviso", lg))
    _le(tmp_path, lg)
    assert "2026-05-30, not another day" in _refused(
        _terminate("L1", "2026-05-29", "Art.6(3) proviso", lg, when="2026-04-01"))
    _ok(_terminate("L1", "2026-05-30", "Art.6(3) proviso", lg, when="2026-04-01"))


@pytest.mark.parametrize(("effective", "admitted"), [
    ("2026-06-28", False),
    ("2026-06-29", True),  # the product's last day: the item is abolished on 06-30
    ("2026-06-30", True),
])
def test_art8_a_termination_record_needs_category_i_ii_and_the_product_end(
        tmp_path: Path, lg: list[str], effective: str, admitted: bool) -> None:
    _ov(tmp_path, lg, "A0")  # the embedded catalogue knows no product end
    assert "knows no product end" in _refused(_terminate("A0", "2026-06-30", "Art.8", lg))
    config = _abolished_config(tmp_path, "2026-06-30")
    _ok(["contract", "add", "A3", "--item", "byo", "--tier", "1y", "--at", "2026-01-01", *lg],
        config=config)
    assert "is category III" in _refused(_terminate("A3", "2026-06-30", "Art.8", lg),
                                          config=config)
    _ov(tmp_path, lg, "A1", config=config)
    args = _terminate("A1", effective, "Art.8", lg, when="2026-05-01")
    if admitted:
        assert _json([*args, "--json"], config=config)["terminated_on"] == effective
        return
    assert "takes effect on 2026-06-29 at the earliest" in _refused(args, config=config)


@pytest.mark.parametrize(("effective", "admitted"), [
    ("2026-01-04", False),  # the day before the acceptance
    ("2026-01-05", True),
])
def test_a_termination_record_never_takes_effect_before_the_acceptance(
        tmp_path: Path, lg: list[str], effective: str, admitted: bool) -> None:
    _ok(["contract", "add", "E1", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2026-01-05", *lg])
    # the catalogue amended afterwards: the CA had ended the product before the acceptance
    config = _abolished_config(tmp_path, "2025-12-31")
    args = _terminate("E1", effective, "Art.8", lg, when="2026-01-06")
    if admitted:
        _ok(args, config=config)
        return
    assert "was accepted on 2026-01-05" in _refused(args, config=config)


# ------------------------------------------------ 6. a form during the validity period


@pytest.mark.parametrize(("arrived", "admitted"), [
    ("2026-05-16", False),
    ("2026-05-19", False),  # the day before notBefore's Tokyo day
    ("2026-05-20", True),   # the first day of the validity period
])
def test_art9_2_a_form_before_the_validity_starts_is_refused(
        tmp_path: Path, lg: list[str], arrived: str, admitted: bool) -> None:
    cert = _pem(tmp_path, "early.pem", jst(2026, 5, 20), jst(2027, 5, 19, 23, 59, 59))
    _ok(["contract", "add", "V1", "--item", "byo", "--tier", "1y", "--at", "2026-05-15", *lg])
    _ok(["contract", "bind", "V1", cert, "--at", "2026-05-15", *lg])
    args = ["contract", "cancel", "V1", "--arrived", arrived, "--at", f"{arrived}T10:00", *lg]
    if admitted:
        _ok(args)
        return
    message = _refused(args)
    assert "before the certificate's validity period starts on 2026-05-20" in message
    assert "Art.9(2)" in message


def test_art9_2_a_form_during_the_previous_certificates_validity_counts(
        tmp_path: Path, lg: list[str]) -> None:
    """A successor bound before its validity starts: the form arrived while the certificate
    it succeeds was valid, which is what Art.9(2) asks."""
    first = _pem(tmp_path, "first.pem", jst(2025, 6, 1), jst(2026, 5, 31, 23, 59, 59))
    successor = _pem(tmp_path, "next.pem", jst(2026, 5, 25), jst(2027, 5, 24, 23, 59, 59))
    _ok(["contract", "add", "V2", "--item", "byo", "--tier", "1y", "--at", "2025-06-01", *lg])
    _ok(["contract", "bind", "V2", first, "--at", "2025-06-01", *lg])
    _ok(["contract", "bind", "V2", successor, "--at", "2026-05-20", *lg])
    assert _ok(["contract", "cancel", "V2", "--arrived", "2026-05-21", "--at",
                "2026-05-21T10:00", *lg]).stdout.startswith("effective 2026-06-20")
