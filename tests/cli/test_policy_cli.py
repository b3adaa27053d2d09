"""``certescrow policy catalogue|classify|forecast`` through click, plus one real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.main import certescrow, main
from tests.certfactory import DV_OID, OV_OID, make_cert

ROOT = Path(__file__).resolve().parents[2]
NB = datetime(2026, 1, 15, 3, tzinfo=UTC)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(certescrow, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    le = make_cert(not_before=NB, sans=("le.example.jp",), issuer_org="Let's Encrypt",
                   issuer_cn="R11")
    gs = make_cert(not_before=NB, lifetime=timedelta(days=199), sans=("*.example.jp",),
                   issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 DV TLS CA 2020",
                   policy_oids=(DV_OID,))
    dc = make_cert(not_before=NB, lifetime=timedelta(days=199), sans=("dc.example.jp",),
                   issuer_org="DigiCert Inc", issuer_cn="DigiCert TLS RSA SHA256 2020 CA1",
                   policy_oids=(OV_OID,))
    paths = {
        "le": tmp_path / "le.pem",
        "bundle": tmp_path / "bundle.pem",
        "der": tmp_path / "dc.der",
        "bad": tmp_path / "bad.pem",
        "empty": tmp_path / "empty.pem",
    }
    paths["le"].write_bytes(le.pem)
    paths["bundle"].write_bytes(gs.pem + le.pem)
    paths["der"].write_bytes(dc.der)
    paths["bad"].write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    paths["empty"].write_bytes(b"")
    return paths


# ------------------------------------------------------------------ catalogue

def test_policy_catalogue_table_lists_all_items() -> None:
    code, out, _ = run("policy", "catalogue")
    assert code == 0
    assert "terms of 2024-06-01" in out
    for handle in ("secure-server-id", "globalsign-dv-wildcard", "global-server-id-ev-cloud",
                   "byo"):
        assert handle in out
    assert "持ち込み証明書" in out


def test_policy_catalogue_json() -> None:
    code, out, _ = run("policy", "catalogue", "--json")
    assert code == 0
    body = json.loads(out)
    assert body["terms_date"] == "2024-06-01"
    assert len(body["items"]) == 15
    byo = next(i for i in body["items"] if i["handle"] == "byo")
    assert byo["tiers"] == ["6m", "1y", "2y", "3y", "unlimited"]
    assert byo["category"] == "III"


def test_policy_catalogue_from_an_amended_file_and_a_broken_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "policy" / "data" / "catalogue.toml").read_text(encoding="utf-8")
    amended = tmp_path / "amended.toml"
    amended.write_text(text.replace('handle = "globalsign-dv"\n',
                                    'handle = "globalsign-dv"\nproduct_end = 2027-03-31\n'),
                       encoding="utf-8")
    code, out, _ = run("policy", "catalogue", "--catalogue", str(amended), "--json")
    assert code == 0
    dv = next(i for i in json.loads(out)["items"] if i["handle"] == "globalsign-dv")
    assert dv["product_end"] == "2027-03-31"
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace('ca = "cybertrust"', 'ca = "nobody"', 1), encoding="utf-8")
    code, out, err = run_main(capsys, "policy", "catalogue", "--catalogue", str(broken))
    assert code == 11
    assert err.startswith(f"Error: {broken}: items[4] (sureserver-cloud).ca: unknown CA")


def test_policy_catalogue_path_from_configuration(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\ncatalogue = "{tmp_path / "missing.toml"}"\n', encoding="utf-8")
    code, _, err = run_main(capsys, "--config", str(config), "policy", "catalogue")
    # The root command validates the configuration for every command: the same bad input is
    # the same configuration error (31), naming the file and the key, whatever the command.
    assert code == 31
    assert f"{config}: policy.catalogue:" in err
    assert "catalogue file does not exist" in err


# ------------------------------------------------------------------ classify

def test_policy_classify_json_one_object_per_certificate_and_per_failed_file(
        certs: dict[str, Path]) -> None:
    code, out, err = run("policy", "classify", "--json", "--at", "2026-02-01",
                         str(certs["bundle"]), str(certs["bad"]), str(certs["der"]),
                         str(certs["empty"]))
    assert code == 17
    rows = json.loads(out)
    assert [(r["path"], r.get("index")) for r in rows] == [
        (str(certs["bundle"]), 0), (str(certs["bundle"]), 1), (str(certs["der"]), 0),
        (str(certs["bad"]), None), (str(certs["empty"]), None)]
    # each object says what it is, as scan --json's rows do (review 12: errors were mixed in
    # shapeless, under a help text promising "one object per certificate")
    assert [r["kind"] for r in rows] == ["certificate"] * 3 + ["error"] * 2
    gs, le, dc, bad, empty = rows
    for row in (gs, le, dc):
        for key in ("path", "sha256", "not_before", "not_after", "validity_seconds", "tier",
                    "renewable", "item", "findings", "index", "category", "compliant",
                    "days_left", "actions"):
            assert key in row
    assert gs["item"] == "globalsign-dv-wildcard"
    assert gs["tier"] == "1y"
    assert gs["validity_seconds"] == 199 * 86_400
    assert le["item"] == "byo"
    assert le["renewable"] is False
    assert le["not_after"] == "2026-04-15T02:59:59Z"
    assert "renewal-blocked" in [f["code"] for f in le["findings"]]
    assert dc["item"] is None
    assert len(dc["candidates"]) == 4
    assert bad["error"]["code"] == "malformed-certificate"
    assert empty["error"] == {"code": "empty", "message": "the file is empty"}
    assert f"Error: {certs['bad']}:" in err  # the failure is also said on stderr


def test_policy_classify_table_goes_on_after_a_malformed_file(certs: dict[str, Path]) -> None:
    code, out, err = run("policy", "classify", "--at", "2026-02-01", str(certs["bad"]),
                         str(certs["le"]))
    assert code == 17
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"Error: {certs['bad']}")]
    assert "cannot parse certificate" in line
    assert line.endswith("[malformed-certificate]")
    assert "ParseError {" not in line  # the parser's debug dump is not a message for people
    assert "byo" in out
    assert "renewal-blocked [Art.6(3) proviso]" in out
    assert "2026-04-15T02:59:59Z" in out


def test_policy_classify_directory_and_missing_file_are_per_file_errors(
        tmp_path: Path, certs: dict[str, Path]) -> None:
    code, out, _ = run("policy", "classify", "--json", "--at", "2026-02-01", str(tmp_path),
                       str(tmp_path / "absent.pem"), str(certs["le"]))
    assert code == 17
    rows = json.loads(out)
    assert [r.get("error", {}).get("code") for r in rows] == [None, "not-regular-file",
                                                              "not-found"]


def test_policy_classify_binding_options(certs: dict[str, Path]) -> None:
    code, out, _ = run("policy", "classify", "--json", "--at", "2026-02-01", "--item",
                       "global-server-id-cloud", str(certs["der"]))
    assert code == 0
    (row,) = json.loads(out)
    assert row["item"] == "global-server-id-cloud"
    assert row["category"] == "II"
    assert row["compliant"] is True
    code, out, _ = run("policy", "classify", "--json", "--at", "2026-02-01", "--category",
                       "III", "--tier", "6m", str(certs["der"]))
    (row,) = json.loads(out)
    assert (row["item"], row["category"], row["tier"]) == ("byo", "III", "1y")
    assert row["compliant"] is False
    assert "non-compliant" in [f["code"] for f in row["findings"]]


def test_policy_classify_previous_certificate_grants_the_globalsign_allowance(
        tmp_path: Path) -> None:
    new_nb = datetime(2027, 6, 1, 3, tzinfo=UTC)
    previous = make_cert(not_before=new_nb - timedelta(days=300),
                         not_after=new_nb + timedelta(days=31), sans=("gs.example.jp",))
    renewal = make_cert(not_before=new_nb, lifetime=timedelta(days=397), sans=("gs.example.jp",),
                        issuer_org="GlobalSign nv-sa", issuer_cn="Some GlobalSign CA")
    (tmp_path / "prev.pem").write_bytes(previous.pem)
    (tmp_path / "new.pem").write_bytes(renewal.pem)
    args = ["policy", "classify", "--json", "--at", "2027-06-02", "--tier", "1y",
            str(tmp_path / "new.pem")]
    _, out, _ = run(*args)
    assert json.loads(out)[0]["compliant"] is False
    _, out, _ = run(*args, "--previous", str(tmp_path / "prev.pem"))
    (row,) = json.loads(out)
    assert row["tier"] == "2y"
    assert row["compliant"] is True
    assert "transition-allowance" in [f["code"] for f in row["findings"]]


JST = timezone(timedelta(hours=9))


def _globalsign_ov(not_before: datetime, not_after: datetime) -> bytes:
    return make_cert(not_before=not_before, not_after=not_after, sans=("gs.example.jp",),
                     issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 OV TLS CA 2024",
                     policy_oids=(OV_OID,)).pem


def test_policy_classify_first_globalsign_certificate_gets_no_carry_over(
        tmp_path: Path) -> None:
    """The desk's command: a 366-day GlobalSign OV certificate from 2025-04-01 00:00 JST with no
    previous certificate is outside 1 year (last day 2026-03-31); it used to comply "yes*",
    "plus 0 days carried over from the previous certificate"."""
    start = datetime(2025, 4, 1, tzinfo=JST)
    (tmp_path / "g366.pem").write_bytes(
        _globalsign_ov(start, datetime(2026, 4, 1, 23, 59, 59, tzinfo=JST)))
    (tmp_path / "g365.pem").write_bytes(
        _globalsign_ov(start, datetime(2026, 3, 31, 23, 59, 59, tzinfo=JST)))
    args = ["policy", "classify", "--at", "2025-04-01", "--item", "globalsign-ov", "--tier",
            "1y"]
    _, out, _ = run(*args, "--json", str(tmp_path / "g366.pem"), str(tmp_path / "g365.pem"))
    late, last_day = json.loads(out)
    assert (late["tier"], late["compliant"]) == ("2y", False)
    assert [f["code"] for f in late["findings"] if f["code"] == "non-compliant"]
    assert (last_day["tier"], last_day["compliant"]) == ("1y", True)
    _, text, _ = run(*args, str(tmp_path / "g366.pem"))
    assert "carried over" not in text
    assert "ending at the end of 2026-03-31" in text


def test_contract_first_certificate_then_renewal_with_31_days_carried_over(
        tmp_path: Path) -> None:
    """Bound as a contract's first certificate the 366-day certificate does not comply; the
    CA's renewal product (366 + 31 = 397 days, 31 days' overlap) bound next does."""
    ledger = str(tmp_path / "ledger.sqlite3")
    first = tmp_path / "first.pem"
    first.write_bytes(_globalsign_ov(datetime(2025, 4, 1, tzinfo=JST),
                                     datetime(2026, 4, 1, 23, 59, 59, tzinfo=JST)))
    renewal_nb = datetime(2026, 3, 1, 23, 59, 59, tzinfo=JST)  # first's notAfter - 31 days
    renewal = tmp_path / "renewal.pem"
    renewal.write_bytes(_globalsign_ov(renewal_nb,
                                       renewal_nb + timedelta(days=397, seconds=-1)))
    assert run("contract", "add", "G1", "--item", "globalsign-ov", "--tier", "1y",
               "--at", "2025-03-20", "--ledger", ledger)[0] == 0
    _, out, _ = run("contract", "bind", "G1", str(first), "--at", "2025-04-01", "--json",
                    "--ledger", ledger)
    assert "non-compliant" in [a["action"] for a in json.loads(out)["actions"]]
    _, out, _ = run("contract", "bind", "G1", str(renewal), "--at", "2026-03-02", "--json",
                    "--ledger", ledger)
    bound = json.loads(out)
    assert bound["contract"]["previous_certificate"] is not None
    assert bound["contract"]["certificate"]["not_after"] == "2027-04-02T14:59:58Z"
    assert "non-compliant" not in [a["action"] for a in bound["actions"]]


def test_policy_classify_unknown_item_is_exit_12(certs: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "policy", "classify", "--item", "sectigo",
                            str(certs["le"]))
    assert code == 12
    assert "unknown item 'sectigo'" in err


def test_policy_classify_bad_at_is_a_usage_error(certs: dict[str, Path]) -> None:
    result = CliRunner().invoke(certescrow, ["policy", "classify", "--at", "yesterday",
                                             str(certs["le"])])
    assert result.exit_code == 2
    assert "cannot read 'yesterday' as a time" in result.stderr


# ------------------------------------------------------------------ forecast

def test_policy_forecast_per_tier_without_a_ledger() -> None:
    code, out, _ = run("policy", "forecast", "--at", "2026-02-01")
    assert code == 0
    assert "No ledger at" in out
    assert "2026-03-15" in out
    code, out, _ = run("policy", "forecast", "--json", "--at", "2026-02-01")
    body = json.loads(out)
    tiers = {t["tier"]: t for t in body["tiers"]}
    assert tiers["1y"]["cannot_fill_from"] == "2026-03-15"
    assert tiers["6m"]["cannot_fill_from"] == "2027-03-15"
    assert tiers["2y"]["never_fillable"] is True
    assert tiers["1y"]["non_renewable_from"] == "2029-03-15"
    assert body["contracts"] == []
    assert body["ledger"] is None


def test_policy_forecast_missing_explicit_ledger_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "policy", "forecast", "--ledger",
                            str(tmp_path / "none.sqlite3"))
    assert code == 13
    assert "no ledger here" in err


def test_policy_forecast_per_contract_from_the_ledger(tmp_path: Path,
                                                      certs: dict[str, Path]) -> None:
    ledger = str(tmp_path / "ledger.sqlite3")
    assert run("contract", "add", "BYO-1", "--item", "byo", "--tier", "1y", "--at",
               "2026-01-16", "--ledger", ledger)[0] == 0
    assert run("contract", "bind", "BYO-1", str(certs["le"]), "--at", "2026-01-16",
               "--ledger", ledger)[0] == 0
    assert run("contract", "add", "GS-1", "--item", "globalsign-ov", "--tier", "1y", "--at",
               "2026-01-16", "--ledger", ledger)[0] == 0
    code, out, _ = run("policy", "forecast", "--json", "--at", "2026-02-01", "--ledger",
                       ledger)
    assert code == 0
    contracts = {c["contract"]: c for c in json.loads(out)["contracts"]}
    byo = contracts["BYO-1"]
    assert byo["currently_blocked"] is True  # a Let's Encrypt 90-day certificate
    assert byo["non_renewable_from"] == "2026-02-01"
    # it therefore ends with that certificate (Art.6(3) proviso): no renewal is projected
    assert (byo["status"], byo["terminated_on"], byo["termination_clause"]) == (
        "terminating", "2026-04-15", "Art.6(3) proviso")
    assert byo["renewals"] == []
    gs = contracts["GS-1"]
    assert gs["certificate"] is None
    assert gs["non_renewable_from"] is None
    code, out, _ = run("policy", "forecast", "--at", "2026-02-01", "--ledger", ledger)
    assert "BYO-1" in out
    assert "NOW" in out


def test_policy_forecast_uses_the_configured_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "cfg-ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{ledger}"\n', encoding="utf-8")
    assert run("--config", str(config), "contract", "add", "X-1", "--item", "byo", "--at",
               "2026-01-16")[0] == 0
    code, out, _ = run("--config", str(config), "policy", "forecast", "--json", "--at",
                       "2026-02-01")
    assert code == 0
    body = json.loads(out)
    assert body["ledger"] == str(ledger)
    assert [c["contract"] for c in body["contracts"]] == ["X-1"]


# ------------------------------------------------------------------ a real process

def test_policy_classify_json_in_a_real_process(certs: dict[str, Path]) -> None:
    exe = Path(sys.executable).with_name("certescrow")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "agent.main"]
    proc = subprocess.run(
        [*command, "policy", "classify", "--json", "--at", "2026-02-01T09:00:00+09:00",
         str(certs["le"]), str(certs["bad"])],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"}, cwd=ROOT)
    assert proc.returncode == 17, proc.stderr
    le, bad = json.loads(proc.stdout)
    assert le["item"] == "byo"
    assert le["renewable"] is False
    assert le["days_left"] == 73
    assert bad["error"]["code"] == "malformed-certificate"
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------ verify (issue 13)

def _projection_ledger(backend: str, tmp_path: Path) -> Any:
    """A ledger with two contracts, as a location for ``--ledger``: an SQLite path, or a DSN
    in a fresh PostgreSQL schema (a context manager either way)."""
    from contextlib import contextmanager

    from policy.category import Category
    from policy.events import CertificateBound, NoticeSent
    from policy.ledger import Ledger
    from tests.pgdb import postgres_schema
    from tests.policy.ledger_fixtures import accepted, facts

    @contextmanager
    def made() -> Any:
        if backend == "sqlite":
            location = str(tmp_path / "ledger.sqlite3")
            yield location
            return
        with postgres_schema() as dsn:
            yield dsn

    @contextmanager
    def filled() -> Any:
        with made() as location:
            with Ledger.open(location) as ledger:
                ledger.append(accepted("c1", at=NB), now=NB)
                ledger.append(accepted("c2", at=NB, item="globalsign-ov",
                                       category=Category.I), now=NB)
                cert = facts(not_before=NB, lifetime=timedelta(days=199), tag="v")
                ledger.append(CertificateBound(contract_id="c2", at_utc=NB, facts=cert), now=NB)
                ledger.append(NoticeSent(contract_id="c2", at_utc=NB + timedelta(days=100)),
                              now=NB + timedelta(days=100))
            yield location

    return filled()


def _sql(location: str, statement: str) -> None:
    if location.startswith("postgresql:"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(statement)
        return
    import sqlite3

    conn = sqlite3.connect(location)
    conn.execute(statement)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_policy_verify_finds_a_corrupted_projection_row_and_repairs_it(
        backend: str, tmp_path: Path) -> None:
    with _projection_ledger(backend, tmp_path) as location:
        at = "2026-06-01"
        code, out, _ = run("policy", "verify", "--at", at, "--ledger", location)
        assert code == 0
        assert "2 contract(s) refolded from the journal" in out
        assert "0 mismatch(es)" in out
        _sql(location, "UPDATE projection SET state = replace(state, '\"item\":\"byo\"', "
                       "'\"item\":\"globalsign-dv\"') WHERE contract_id = 'c1'")
        # The sweep reads the projection: the damaged row is what `contract list` shows...
        code, out, _ = run("contract", "list", "--at", at, "--ledger", location)
        assert "globalsign-dv" in out
        # ...and verify, which refolds the journal, finds it.
        code, out, _ = run("policy", "verify", "--at", at, "--ledger", location)
        assert code == 18
        assert "1 mismatch(es)" in out
        assert "c1: differs from the fold: state" in out
        code, out, _ = run("policy", "verify", "--json", "--at", at, "--ledger", location)
        assert code == 18
        body = json.loads(out)
        assert body["mismatches"] == [{"contract": "c1",
                                       "problem": "differs from the fold: state"}]
        assert body["repaired"] is False
        code, out, _ = run("policy", "verify", "--repair", "--at", at, "--ledger", location)
        assert code == 0
        assert "c1: differs from the fold: state" in out
        assert "Repaired: the projection was rewritten from the journal (2 row(s)" in out
        assert "it now matches the fold" in out
        code, out, _ = run("policy", "verify", "--at", at, "--ledger", location)
        assert code == 0
        code, out, _ = run("contract", "list", "--at", at, "--ledger", location)
        assert "globalsign-dv" not in out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_policy_verify_finds_a_missing_row_and_a_stale_cached_action(
        backend: str, tmp_path: Path) -> None:
    with _projection_ledger(backend, tmp_path) as location:
        _sql(location, "DELETE FROM projection WHERE contract_id = 'c1'")
        _sql(location, "UPDATE projection_actions SET explanation = 'tampered' "
                       "WHERE contract_id = 'c2'")
        code, out, _ = run("policy", "verify", "--at", "2026-06-01", "--ledger", location)
        assert code == 18
        assert "c1: no projection row" in out
        assert "c2: differs from the fold: actions" in out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("at", ["2026-06-01", "2026-09-30", "2027-03-01"])
def test_policy_actions_from_the_projection_equal_the_fold(backend: str, at: str,
                                                           tmp_path: Path) -> None:
    """`--as-recorded` always folds the journal: with a time after everything recorded it
    asks the same question, so both paths must print the same bytes."""
    with _projection_ledger(backend, tmp_path) as location:
        for form in ([], ["--json"], ["--within", "30"]):
            for command in (["policy", "actions"], ["contract", "list"]):
                if form == ["--within", "30"] and command[0] == "contract":
                    continue
                args = [*command, *form, "--at", at, "--ledger", location]
                projected = run(*args)
                folded = run(*args, "--as-recorded", "2030-01-01")
                assert projected == folded
                assert projected[0] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_policy_refresh_stores_expired_actions_and_changes_no_answer(
        backend: str, tmp_path: Path) -> None:
    """`policy refresh --at` evaluates again what expired by that day; `policy actions`
    answers exactly as before (and as the fold), now from the projection; a second run has
    nothing to do."""
    with _projection_ledger(backend, tmp_path) as location:
        at = "2027-03-01"
        before = run("policy", "actions", "--json", "--at", at, "--ledger", location)
        code, out, _ = run("policy", "refresh", "--json", "--at", at, "--ledger", location)
        assert code == 0
        body = json.loads(out)
        assert body["day"] == at
        assert body["refreshed"] == 2
        assert run("policy", "actions", "--json", "--at", at, "--ledger", location) == before
        code, out, _ = run("policy", "refresh", "--at", at, "--ledger", location)
        assert code == 0
        assert out.endswith(f": 0 contract(s) evaluated again for {at} (Asia/Tokyo).\n")


def test_policy_refresh_of_a_ledger_that_is_not_there_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "policy", "refresh", "--ledger",
                            str(tmp_path / "nope.sqlite3"))
    assert code == 13
    assert "no ledger here" in err
    assert not (tmp_path / "nope.sqlite3").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_contract_both_stale_and_cached_is_listed_once(backend: str, tmp_path: Path) -> None:
    """A projection row whose freshness disagrees with its cached actions' copies (a write
    between the sweep's two queries, or an edit by hand): the contract is evaluated again and
    its cached actions are not listed as well (--json crashed mixing the two; text listed
    them twice)."""
    with _projection_ledger(backend, tmp_path) as location:
        at = "2026-04-25T18:00"  # the day c2's actions were cached for (its notice was sent)
        _sql(location, "UPDATE projection SET fresh_until = '2000-01-01' "
                       "WHERE contract_id = 'c2'")  # c2 has actions due that day
        for form in ([], ["--json"]):
            code, out, _ = run("policy", "actions", *form, "--at", at, "--ledger", location)
            assert code == 0
            assert (out, code) == run("policy", "actions", *form, "--at", at, "--ledger",
                                      location, "--as-recorded", "2030-01-01")[1::-1]
        assert json.loads(run("policy", "actions", "--json", "--at", at, "--ledger",
                              location)[1])
