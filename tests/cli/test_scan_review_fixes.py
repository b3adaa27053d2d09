"""What a reviewer trying ``certescrow scan`` found, each pinned where a user sees it: the
exit status and ``UNKNOWN:`` line of a file with too many problems, that message's numbers,
CSV cells a spreadsheet would run as formulas, a certificate both expired and "expiring in 0
days", findings listed twice on a merged row, and an error naming an option nobody typed."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.main import certescrow
from tests.agent.certbot_store import certbot_store, make_intermediate
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
AT = "2026-02-01T12:00:00"  # Asia/Tokyo
BAD_BLOCK = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
"""A certificate block whose body decodes to nothing: one ``truncated`` problem each."""


def _scan(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(certescrow, ["scan", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _healthy() -> bytes:
    return make_cert(not_before=NB, lifetime=timedelta(days=300), sans=("ok.example",)).pem


# ---------------------------------------------------------------- too many problems


def test_a_healthy_certificate_before_a_thousand_bad_blocks_is_unknown_not_critical(
        tmp_path: Path) -> None:
    path = write(tmp_path / "store.pem", _healthy() + BAD_BLOCK * 1000)
    code, _out, err = _scan(str(path), "--exit-status", "--at", AT)
    assert code == 3, err
    assert "UNKNOWN:" in err
    code, out, _err = _scan(str(path), "--json", "--at", AT)
    objects = json.loads(out)
    [row] = [o for o in objects if o["kind"] == "certificate"]
    assert row["sans"] == ["ok.example"]  # the healthy certificate keeps its row...
    assert row["host_severity"] == "ok"  # ...without a page for the file's other content
    assert "more-problems" not in {f["code"] for f in row["findings"]}
    [stopped] = [o for o in objects if o["kind"] == "error" and "index" not in o]
    assert stopped["error"] == {
        "code": "more-problems",
        "message": f"reading stopped after 65 problems; the last {935 * len(BAD_BLOCK)} "
                   "byte(s) of the file were not read"}
    assert len([o for o in objects if o["kind"] == "error" and "index" in o]) == 64


def test_a_file_of_only_bad_blocks_is_unknown_too(tmp_path: Path) -> None:
    path = write(tmp_path / "only.pem", BAD_BLOCK * 1000)
    code, _out, err = _scan(str(path), "--exit-status", "--at", AT)
    assert code == 3, err
    assert "UNKNOWN:" in err


@pytest.mark.parametrize(("blocks", "stopped"), [(64, False), (65, True)])
def test_the_listing_cap_sits_at_64_problems(tmp_path: Path, blocks: int,
                                             stopped: bool) -> None:
    path = write(tmp_path / "store.pem", _healthy() + BAD_BLOCK * blocks)
    code, out, err = _scan(str(path), "--json", "--exit-status", "--at", AT)
    assert code == 3, err
    errors = [o for o in json.loads(out) if o["kind"] == "error"]
    assert len([e for e in errors if "index" in e]) == 64
    whole = [e["error"] for e in errors if "index" not in e]
    # The 65th problem was the last thing in the file: nothing is unread, only unlisted.
    assert whole == ([{"code": "more-problems",
                       "message": "65 problems; only the first 64 are listed"}]
                     if stopped else [])


@pytest.mark.parametrize(("blocks", "suffix"), [
    (64, " (and 63 more problem(s))"),
    (65, " (and 64 more problem(s))"),
    (1000, " (and 64 more problem(s)); reading stopped after 65 problems; the last "
           f"{935 * len(BAD_BLOCK)} byte(s) of the file were not read"),
])
def test_an_unreadable_file_counts_its_problems_exactly(tmp_path: Path, blocks: int,
                                                        suffix: str) -> None:
    path = write(tmp_path / "only.pem", BAD_BLOCK * blocks)
    _code, out, _err = _scan(str(path), "--json", "--at", AT)
    [error] = json.loads(out)
    assert error["error"]["message"] == (
        "certificate DER is 0 bytes, shorter than its declared length: the file is "
        f"truncated{suffix}")


# ---------------------------------------------------------------- CSV formula injection


def test_a_semicolon_in_a_san_cannot_forge_another_san_in_csv(tmp_path: Path) -> None:
    """SANs were joined with ";" unescaped: one SAN ``evil.example;www.bank.example`` read as
    two, one of them a bank's (review 12)."""
    from untrusted.text import unescape

    sans = ("evil.example;www.bank.example", "a.example", "back\\slash;x")
    write(tmp_path / "s" / "semi.pem", make_cert(not_before=NB, sans=sans).pem)
    code, out, err = _scan(str(tmp_path / "s"), "--csv", "--at", AT)
    assert code == 0, err
    [row] = _csv_rows(out)
    assert [unescape(v) for v in row["sans"].split(";")] == list(sans)

FORMULAS = ("=1+1", "+1+1", "-1+1", "@SUM(1)", "\t=1+1", "\r=1+1")


def _csv_rows(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out)))


@pytest.mark.parametrize("san", FORMULAS)
def test_a_csv_cell_never_starts_a_formula(tmp_path: Path, san: str) -> None:
    write(tmp_path / "s" / "evil.pem", make_cert(not_before=NB, sans=(san,), cn=san).pem)
    code, out, err = _scan(str(tmp_path / "s"), "--csv", "--at", AT)
    assert code == 0, err
    [row] = _csv_rows(out)
    for cell in row.values():
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), row
    assert row["sans"][0] in ("'", "\\")  # the OWASP quote, or an escaped tab/CR


def test_a_neutralised_csv_cell_unescapes_to_the_name(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from untrusted.text import unescape

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "=cmd.pem", make_cert(not_before=NB, sans=("=1+1", "'quoted")).pem)
    write(tmp_path / "'q.pem", make_cert(not_before=NB, sans=("'=1",)).pem)
    _code, out, _err = _scan("=cmd.pem", "'q.pem", "--csv", "--at", AT)
    rows = {unescape(r["path"]): r for r in _csv_rows(out)}
    assert rows["=cmd.pem"]["path"] == "'=cmd.pem"
    assert rows["=cmd.pem"]["sans"] == "'=1+1;\\u0027quoted"  # each value neutralised
    assert [unescape(v) for v in rows["=cmd.pem"]["sans"].split(";")] == ["=1+1", "'quoted"]
    assert rows["'q.pem"]["path"] == "\\u0027q.pem"
    assert unescape(rows["'q.pem"]["sans"]) == "'=1"


def test_negative_days_left_stay_a_number_in_csv(tmp_path: Path) -> None:
    write(tmp_path / "s" / "old.pem",
          make_cert(not_before=NB, lifetime=timedelta(days=10)).pem)  # ended 2026-01-25
    _code, out, _err = _scan(str(tmp_path / "s"), "--csv", "--at", AT)
    [row] = _csv_rows(out)
    assert row["days_left"] == "-7"


# ---------------------------------------------------------------- expiry on the last day

END = datetime(2027, 1, 26, 17, 44, tzinfo=UTC)  # 2027-01-27 02:44 JST


def _codes(tmp_path: Path, at: str) -> list[str]:
    write(tmp_path / "s" / "leaf.pem",
          make_cert(not_before=END - timedelta(days=89), not_after=END).pem)
    _code, out, _err = _scan(str(tmp_path / "s"), "--json", "--at", at)
    [row] = json.loads(out)
    assert row["days_left"] == 0
    return [f["code"] for f in row["findings"]]


def test_a_certificate_that_ended_earlier_today_is_expired_only(tmp_path: Path) -> None:
    codes = _codes(tmp_path, "2027-01-27T23:59")
    assert "expired" in codes
    assert "expires-soon" not in codes


def test_a_certificate_ending_later_today_expires_soon(tmp_path: Path) -> None:
    codes = _codes(tmp_path, "2027-01-27T02:43")
    assert "expired" not in codes
    assert "expires-soon" in codes


# ---------------------------------------------------------------- merged rows


def test_a_row_merged_from_cert_and_fullchain_lists_each_finding_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    intermediate = make_intermediate(not_after=datetime(2026, 1, 20, tzinfo=UTC))
    store = certbot_store(tmp_path, intermediate=intermediate,
                          key_pem=make_cert(sans=("other.example",)).key_pem())
    _code, out, _err = _scan(str(store.live), "--at", AT)
    [line] = [x for x in out.splitlines() if "findings/actions:" in x]
    codes = line.split("findings/actions:")[1].replace(",", " ").split()
    assert "chain-expired" in codes
    assert len(codes) == len(set(codes)), line


# ---------------------------------------------------------------- option names


@pytest.mark.parametrize("mode", ["bogus", ""])
def test_a_bad_exit_status_mode_names_exit_status(tmp_path: Path, mode: str) -> None:
    code, _out, err = _scan(f"--exit-status={mode}", str(tmp_path))
    assert code == 2
    assert f"Invalid value for '--exit-status': '{mode}'" in err
    assert "--exit-mode" not in err


@pytest.mark.parametrize("text", ["=1+1", "'", "'=1", "''", "-", "a'b", "\\u0027", "\t=x", ""])
def test_unescape_inverts_csv_and_log_escapes_around_a_leading_quote(text: str) -> None:
    from untrusted.text import for_csv, for_log, unescape

    assert unescape(for_csv(text)) == text
    assert unescape(for_log(text)) == text
    assert not for_log(text).startswith("'")  # a log value never carries the CSV neutraliser
