"""What a contract desk typed and the ledger admitted although the terms rule it out (session 15
review), driven through `certescrow contract …` against a real SQLite ledger with real
certificates, at the edges (times Asia/Tokyo):

* Art.6(2): a renewal "by default" after the customer answered in time (renew or don't renew;
  an early answer, before the notice, is an answer too), but not after a late one;
* Art.10: a designated billing day belongs to a default renewal only;
* Art.5: a change to the service already in use changes nothing and bills nothing;
* Art.8: the item is abolished on its product end, for add, renew and change alike, and an
  Art.8 termination may take effect on the last day before it;
* Art.9(2): the cancellation form fixes the termination day, and a record naming another day is
  refused (as Art.9(1) and the Art.6(3) proviso already are).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.certfactory import make_cert
from tests.cli.test_contract_cli import _json, _ok, _run
from tests.policy.test_contract_fixed_end_cli import (
    ROOT,
    _clock,
    _ov,
    _refused,
    _state,
    at,
    jst,
)

__all__ = ["_clock"]  # the recording clock (2027-06-01 JST), after every --at below


@pytest.fixture
def lg(tmp_path: Path) -> list[str]:
    return ["--ledger", str(tmp_path / "ledger.sqlite3")]


def _config(tmp_path: Path, *, product_end: str | None = None) -> Path:
    """A one-time fee of 5,000 yen for a change (Art.10), and, with ``product_end``, a catalogue
    copy saying the CA ends globalsign-ov on that day (Art.8)."""
    text = '[policy.prices]\nchange_fee = 5000\n'
    if product_end is not None:
        catalogue = (ROOT / "policy" / "data" / "catalogue.toml").read_text(encoding="utf-8")
        amended = tmp_path / "amended.toml"
        amended.write_text(catalogue.replace(
            'handle = "globalsign-ov"\n',
            f'handle = "globalsign-ov"\nproduct_end = {product_end}\n', 1), encoding="utf-8")
        text = f'[policy]\ncatalogue = "{amended}"\n' + text
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config


def _fees(cid: str, lg: list[str], when: str, *, config: Path | None = None
          ) -> list[tuple[str, str, Any]]:
    """(fee, arises, amount) of every fee the contract's journal gave rise to."""
    shown = _json(["contract", "show", cid, "--json", "--at", when, *lg], config=config)
    return [(f["computed"]["fee"], f["computed"]["arises"], f["computed"]["amount_yen"])
            for f in shown["fees"]]


# ------------------------------------------------ 1. Art.6(2): no default after an answer


def _r1(tmp_path: Path, lg: list[str]) -> None:
    """globalsign-ov 6m; a GlobalSign OV certificate 2026-01-31 00:00 .. 07-30 23:59:59; the
    notice on 05-01 makes the answer deadline 05-31."""
    pem = tmp_path / "r1.pem"
    pem.write_bytes(make_cert(
        not_before=jst(2026, 1, 31), not_after=jst(2026, 7, 30, 23, 59, 59),
        issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 OV TLS CA 2024",
        policy_oids=("2.23.140.1.2.2",)).pem)
    _ok(["contract", "add", "R1", "--item", "globalsign-ov", "--tier", "6m",
         "--at", "2026-01-20", *lg])
    _ok(["contract", "bind", "R1", str(pem), "--at", "2026-01-31", *lg])
    assert "answer due by 2026-05-31" in _ok(["contract", "notify", "R1", "--at", "2026-05-01",
                                              *lg]).stdout


@pytest.mark.parametrize("answered_at", [
    jst(2026, 4, 20),               # early: before the notice, an answer all the same
    jst(2026, 5, 10),
    jst(2026, 5, 31, 23, 59, 59),   # the deadline's last second
])
def test_art6_2_no_renewal_by_default_after_a_timely_renew(
        tmp_path: Path, lg: list[str], answered_at: datetime) -> None:
    pem = tmp_path / "r1.pem"
    if answered_at < jst(2026, 5, 1):
        # recorded before the notice: marked early
        pem.write_bytes(make_cert(not_before=jst(2026, 1, 31),
                                  not_after=jst(2026, 7, 30, 23, 59, 59)).pem)
        _ok(["contract", "add", "R1", "--item", "globalsign-ov", "--tier", "6m",
             "--at", "2026-01-20", *lg])
        _ok(["contract", "bind", "R1", str(pem), "--at", "2026-01-31", *lg])
        early = _ok(["contract", "answer", "R1", "renew", "--at", at(answered_at), *lg]).stdout
        assert "(early: before any renewal notice)" in early
        _ok(["contract", "notify", "R1", "--at", "2026-05-01", *lg])
    else:
        _r1(tmp_path, lg)
        _ok(["contract", "answer", "R1", "renew", "--at", at(answered_at), *lg])
    message = _refused(["contract", "renew", "R1", "--default", "--designated", "2026-06-15",
                        "--at", "2026-06-01", *lg])
    assert f"answered \"renew\" on {answered_at.date().isoformat()}" in message
    assert "Art.6(2)" in message
    assert "without --default" in message
    assert "Art.10" in message
    assert _state("R1", lg, "2026-06-02")["renewals"] == []
    # The way the refusal names: the renewal the customer asked for, billed from acceptance.
    _ok(["contract", "renew", "R1", "--at", "2026-06-01", *lg])
    assert [(f, d) for f, d, _ in _fees("R1", lg, "2026-06-02") if f == "initial"] == [
        ("initial", "2026-01-20"), ("initial", "2026-06-01")]


def test_art6_2_a_late_renew_does_not_rule_the_default_out(
        tmp_path: Path, lg: list[str]) -> None:
    """An answer after the deadline is recorded and marked late (CONTRACT.md): the deadline
    passed with no answer, so the renewal was already taken as made by default."""
    _r1(tmp_path, lg)
    late = _ok(["contract", "answer", "R1", "renew", "--at", at(jst(2026, 6, 1)), *lg]).stdout
    assert "(late: after the answer deadline)" in late
    out = _ok(["contract", "renew", "R1", "--default", "--designated", "2026-06-15",
               "--at", "2026-06-01T10:00", *lg]).stdout
    assert "(by default, Art.6(2))" in out
    [renewal] = _state("R1", lg, "2026-06-02")["renewals"]
    assert (renewal["by_default"], renewal["designated"]) == (True, "2026-06-15")


def test_art6_2_a_timely_dont_renew_still_rules_the_default_out(
        tmp_path: Path, lg: list[str]) -> None:
    _r1(tmp_path, lg)
    _ok(["contract", "answer", "R1", "dont-renew", "--at", "2026-05-10", *lg])
    message = _refused(["contract", "renew", "R1", "--default", "--at", "2026-06-01", *lg])
    assert "answered \"don't renew\" on 2026-05-10, by the deadline 2026-05-31" in message


def test_art6_2_a_timely_dont_renew_then_a_late_renew_still_rules_the_default_out(
        tmp_path: Path, lg: list[str]) -> None:
    """The state kept only the last answer: a timely "don't renew" followed by a late "renew"
    let a default renewal through, which CONTRACT.md refuses after a timely "don't renew"
    (session 15). The renewal the customer asked for, not by default, is still admitted."""
    _r1(tmp_path, lg)
    _ok(["contract", "answer", "R1", "dont-renew", "--at", "2026-05-10", *lg])
    _ok(["contract", "answer", "R1", "renew", "--at", "2026-06-05", *lg])
    message = _refused(["contract", "renew", "R1", "--default", "--at", "2026-06-06", *lg])
    assert ("answered \"don't renew\" on 2026-05-10 (and renew on 2026-06-05), by the "
            "deadline 2026-05-31") in message
    assert "without --default" in message
    assert _state("R1", lg, "2026-06-07")["renewals"] == []
    _ok(["contract", "renew", "R1", "--at", "2026-06-06", *lg])
    [renewal] = _state("R1", lg, "2026-06-07")["renewals"]
    assert renewal["by_default"] is False


# ------------------------------------------------ 2. Art.10: --designated is a default's


def test_art10_designated_without_default_is_a_usage_error(
        tmp_path: Path, lg: list[str]) -> None:
    _ov(tmp_path, lg, "R2")
    code, result = _run(["contract", "renew", "R2", "--designated", "2026-12-31",
                         "--at", "2026-05-10", *lg])
    assert code == 2, result.output
    assert "--designated goes with --default" in result.output
    assert "Art.10" in result.output
    assert _state("R2", lg, "2026-05-11")["renewals"] == []
    # without it the renewal is recorded and its fee owed from the acceptance (Art.10)
    _ok(["contract", "renew", "R2", "--at", "2026-05-10", *lg])
    assert ("initial", "2026-05-10", None) in _fees("R2", lg, "2026-05-11")


def test_art10_a_default_renewal_keeps_its_designated_day(
        tmp_path: Path, lg: list[str]) -> None:
    """The other side: --designated with --default bills from the designated day."""
    _r1(tmp_path, lg)
    _ok(["contract", "renew", "R1", "--default", "--designated", "2026-06-15",
         "--at", "2026-06-01", *lg])
    assert ("initial", "2026-06-15", None) in _fees("R1", lg, "2026-06-02")


# ------------------------------------------------ 3. Art.5: a change changes the service


def test_art5_a_change_to_the_service_in_use_is_refused_and_not_billed(
        tmp_path: Path, lg: list[str]) -> None:
    config = _config(tmp_path)
    _ok(["contract", "add", "H1", "--item", "globalsign-ov", "--tier", "1y",
         "--designated-service", "svcA", "--at", "2026-01-05", *lg], config=config)
    for when in ("2026-02-01", "2026-02-02"):
        message = _refused(["contract", "change", "H1", "--service", "svcA", "--at", when,
                            *lg], config=config)
        assert "already uses service 'svcA'" in message
        assert "Art.5" in message
    assert _state("H1", lg, "2026-02-03")["changes"] == []
    # a change to another service is one, billed once; back again is another
    _ok(["contract", "change", "H1", "--service", "svcB", "--at", "2026-02-03", *lg],
        config=config)
    assert "already uses service 'svcB'" in _refused(
        ["contract", "change", "H1", "--service", "svcB", "--at", "2026-02-04", *lg],
        config=config)
    _ok(["contract", "change", "H1", "--service", "svcA", "--at", "2026-02-05", *lg],
        config=config)
    assert [f for f in _fees("H1", lg, "2026-02-06", config=config) if f[0] == "change"] == [
        ("change", "2026-02-03", 5000), ("change", "2026-02-05", 5000)]


def test_art5_the_first_change_of_a_contract_without_a_service_is_a_change(
        tmp_path: Path, lg: list[str]) -> None:
    config = _config(tmp_path)
    _ok(["contract", "add", "H2", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2026-01-05", *lg], config=config)
    _ok(["contract", "change", "H2", "--service", "svcA", "--at", "2026-02-01", *lg],
        config=config)
    assert "already uses service 'svcA'" in _refused(
        ["contract", "change", "H2", "--service", "svcA", "--at", "2026-02-02", *lg],
        config=config)
    assert [f for f in _fees("H2", lg, "2026-02-03", config=config) if f[0] == "change"] == [
        ("change", "2026-02-01", 5000)]


# ------------------------------------------------ 4. Art.8: one abolition day for every step


@pytest.mark.parametrize(("when", "admitted"), [
    ("2026-09-29T23:59:59", True),   # the product's last day
    ("2026-09-30T00:00", False),     # abolished on its product end
    ("2026-09-30T18:00", False),
])
def test_art8_add_renew_and_change_are_refused_from_the_product_end(
        tmp_path: Path, lg: list[str], when: str, admitted: bool) -> None:
    config = _config(tmp_path, product_end="2026-09-30")
    _ov(tmp_path, lg, "D5", config=config)
    add = ["contract", "add", "N5", "--item", "globalsign-ov", "--tier", "1y", "--at", when,
           *lg]
    renew = ["contract", "renew", "D5", "--at", when, *lg]
    change = ["contract", "change", "D5", "--service", "svcB", "--at", when, *lg]
    if admitted:
        for args in (add, change, renew):
            _ok(args, config=config)
        assert [f for f in _fees("D5", lg, when, config=config) if f[0] == "change"] == [
            ("change", "2026-09-29", 5000)]
        return
    code, result = _run(add, config=config)
    assert code == 16, result.output  # the application refused (Art.8)
    assert "abolished on 2026-09-30" in str(result.exception)
    assert "abolished, the CA ended the product on 2026-09-30 (Art.8)" in _refused(
        renew, config=config)
    message = _refused(change, config=config)
    assert "abolished, the CA ended the product on 2026-09-30 (Art.8)" in message
    assert "svcB" in message
    state = _state("D5", lg, "2026-10-01")
    assert (state["changes"], state["renewals"]) == ([], [])


@pytest.mark.parametrize(("effective", "admitted"), [
    ("2026-09-28", False),
    ("2026-09-29", True),   # the last day the product exists: runs through it, not past it
    ("2026-09-30", True),   # later days stay the provider's to fix
])
def test_art8_a_termination_may_take_effect_the_day_before_the_product_end(
        tmp_path: Path, lg: list[str], effective: str, admitted: bool) -> None:
    config = _config(tmp_path, product_end="2026-09-30")
    _ov(tmp_path, lg, "D6", config=config)
    args = ["contract", "terminate", "D6", "--effective", effective, "--clause", "Art.8",
            "--at", "2026-09-01", *lg]
    if not admitted:
        message = _refused(args, config=config)
        assert "abolished from 2026-09-30" in message
        assert "2026-09-29 at the earliest" in message
        return
    assert _json([*args, "--json"], config=config)["terminated_on"] == effective
    if effective == "2026-09-29":
        assert _state("D6", lg, "2026-09-29T23:59:59")["status"] == "terminating"
        assert _state("D6", lg, "2026-09-30T00:00")["status"] == "terminated"


# ------------------------------------------------ 5. Art.9(2): the form fixes the day


@pytest.mark.parametrize(("effective", "admitted"), [
    ("2026-12-28", False),
    ("2026-12-29", True),   # the later of arrival + 30 (12-29) and the day named (12-29)
    ("2026-12-30", False),
    ("2027-06-30", False),  # what the reviewer typed: the journal and the state disagreed
])
def test_art9_2_a_termination_record_takes_the_day_the_form_fixed(
        tmp_path: Path, lg: list[str], effective: str, admitted: bool) -> None:
    _ov(tmp_path, lg, "X1")  # the certificate ends 2026-11-30
    assert _ok(["contract", "cancel", "X1", "--arrived", "2026-11-29", "--requested",
                "2026-12-29", *lg]).stdout.startswith("effective 2026-12-29")
    args = ["contract", "terminate", "X1", "--effective", effective, "--clause", "Art.9(2)",
            "--at", "2026-12-01", *lg]
    if admitted:
        _ok(args)
    else:
        message = _refused(args)
        assert "2026-12-29, not another day" in message
        assert "Art.9(2)" in message
    state = _state("X1", lg, "2026-12-02")
    assert (state["terminated_on"], state["termination_clause"]) == ("2026-12-29", "Art.9(2)")
    terminated = [e for e in _json(["contract", "show", "X1", "--json", "--at", "2026-12-02",
                                    *lg])["journal"] if e["kind"] == "terminated"]
    assert [e["effective"] for e in terminated] == ([effective] if admitted else [])
    assert _json(["policy", "verify", "--json", *lg])["mismatches"] == []
