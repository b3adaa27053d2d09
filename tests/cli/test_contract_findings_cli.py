"""The reviewer's reproductions of session 17, in the CLI forms the desk uses: an expired
certificate's `notify` the ledger refuses (N2), `exceeds-item-periods` and `item-mismatch`
that `policy classify` reported and the contract never did (S3), and `item-mismatch` on a
BYO contract with a GlobalSign certificate."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policy.cliutil import TESTONLY_NOW_ENV
from tests.certfactory import OV_OID, make_cert
from tests.cli.test_contract_cli import _json, _ok, _run
from tests.policy.factsutil import utc

GLOBALSIGN_OV: dict[str, Any] = {"issuer_org": "GlobalSign nv-sa",
                                 "issuer_cn": "GlobalSign GCC R3 OV TLS CA 2024",
                                 "policy_oids": (OV_OID,)}


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recording clock, after every --at below (the ledger refuses a future record)."""
    monkeypatch.setenv(TESTONLY_NOW_ENV, "2027-06-01T10:00:00+09:00")


@pytest.fixture
def lg(tmp_path: Path) -> list[str]:
    return ["--ledger", str(tmp_path / "l1.sqlite3")]


def _pem(tmp_path: Path, name: str, not_before: datetime, not_after: datetime,
         **issuer: Any) -> str:
    path = tmp_path / name
    path.write_bytes(make_cert(not_before=not_before, not_after=not_after, **issuer).pem)
    return str(path)


def _actions(lg: list[str], at: str) -> list[tuple[str, str, str]]:
    return [(a["contract"], a["action"], a["clause"])
            for a in _json(["policy", "actions", "--json", "--at", at, *lg])
            if a["action"] != "fee-owed"]


# ---------------------------------------------------------------- 1. N2: the missed notice

def _n2(tmp_path: Path, lg: list[str], item: str = "globalsign-ov") -> None:
    """Validity 2025-09-02 12:00 .. 2026-09-01 23:59:59 JST: its last second is the last
    second of the Tokyo day the ledger takes a notice on."""
    cert = _pem(tmp_path, "n2.pem", utc(2025, 9, 2, 3), utc(2026, 9, 1, 14, 59, 59),
                **GLOBALSIGN_OV)
    _ok(["contract", "add", "N2", "--item", item, "--tier", "1y", "--at", "2025-09-01", *lg])
    _ok(["contract", "bind", "N2", cert, "--at", "2025-09-02T13:00:00", *lg])


@pytest.mark.parametrize("item", ["globalsign-ov", "byo"])
def test_art6_1_notify_is_listed_and_accepted_up_to_the_last_second_of_validity(
        tmp_path: Path, lg: list[str], item: str) -> None:
    _n2(tmp_path, lg, item)
    last_second = "2026-09-01T23:59:59+09:00"
    assert ("N2", "notify", "Art.6(1)") in _actions(lg, last_second)
    _ok(["contract", "notify", "N2", "--at", last_second, *lg])
    assert [a for a in _actions(lg, "2026-11-30") if a[1] in ("notify", "notice-missed")] == []


@pytest.mark.parametrize("item", ["globalsign-ov", "byo"])
def test_art6_1_after_the_validity_period_no_notify_is_listed_and_the_miss_is_said(
        tmp_path: Path, lg: list[str], item: str) -> None:
    """The reviewer's N2 on 2026-11-30: `2026-06-03 overdue N2 notify Art.6(1)` listed
    forever while `contract notify N2` was refused (exit 15)."""
    _n2(tmp_path, lg, item)
    for at in ("2026-09-02T00:00:00+09:00", "2026-11-30"):
        listed = _actions(lg, at)
        assert ("N2", "notify", "Art.6(1)") not in listed
        assert ("N2", "notice-missed", "Art.6(1)") in listed
    code, result = _run(["contract", "notify", "N2", "--at", "2026-09-02T00:00:00+09:00",
                         *lg])
    assert code == 15  # the ledger refuses it as before
    assert "validity period ended on 2026-09-01" in result.output + str(result.exception)
    (missed,) = [a for a in _json(["contract", "show", "N2", "--json", "--at", "2026-11-30",
                                   *lg])["actions"] if a["action"] == "notice-missed"]
    assert missed["due"] == "2026-09-01"
    assert missed["computed"]["notice_due"] == "2026-06-03"
    default = "(Art.6(3))" if item == "byo" else "(Art.6(2))"
    assert default in missed["explanation"]["en"]


# ------------------------------------------------ 2. S3: what classify says, the desk hears

def test_appx1_bind_show_and_actions_report_a_certificate_no_tier_of_the_item_admits(
        tmp_path: Path, lg: list[str]) -> None:
    """`add S3 --item globalsign-ov` (no tier), `bind S3 gs2y.pem --json` said nothing, nor
    did `show` and `policy actions`, while `policy classify --item globalsign-ov gs2y.pem`
    reported `exceeds-item-periods [Appx1.1]`."""
    gs2y = _pem(tmp_path, "gs2y.pem", utc(2025, 1, 10, 3),
                utc(2025, 1, 10, 3) + timedelta(days=700), **GLOBALSIGN_OV)
    _ok(["contract", "add", "S3", "--item", "globalsign-ov", "--at", "2025-01-01", *lg])
    bound = _json(["contract", "bind", "S3", gs2y, "--json", "--at", "2025-02-01", *lg])
    expected = ("S3", "non-compliant", "Appx1.1")
    assert expected in [(a["contract"], a["action"], a["clause"]) for a in bound["actions"]]
    (shown,) = [a for a in _json(["contract", "show", "S3", "--json", "--at", "2025-02-01",
                                  *lg])["actions"] if a["action"] == "non-compliant"]
    assert shown["computed"]["contracted"] is None
    assert shown["computed"]["longest_offered"] == "1y"
    assert expected in _actions(lg, "2025-02-01")
    (classified,) = _json(["policy", "classify", "--json", "--item", "globalsign-ov",
                           "--at", "2025-02-01", gs2y])
    assert "exceeds-item-periods" in [f["code"] for f in classified["findings"]]
    assert [a for a in classified["actions"] if a["action"] == "non-compliant"] == [
        {**shown, "contract": None}]


def test_art1_bind_reports_a_certificate_its_items_ca_cannot_have_issued(
        tmp_path: Path, lg: list[str]) -> None:
    other = _pem(tmp_path, "other.pem", utc(2025, 6, 10, 3), utc(2025, 12, 27, 2, 59, 59),
                 issuer_org="Let's Encrypt", issuer_cn="R11")
    ours = _pem(tmp_path, "ours.pem", utc(2025, 6, 10, 3), utc(2025, 12, 27, 2, 59, 59),
                **GLOBALSIGN_OV)
    _ok(["contract", "add", "S4", "--item", "globalsign-ov", "--at", "2025-06-01", *lg])
    bound = _json(["contract", "bind", "S4", other, "--json", "--at", "2025-07-01", *lg])
    assert ("item-mismatch", "Art.1") in [(a["action"], a["clause"]) for a in bound["actions"]]
    assert ("S4", "item-mismatch", "Art.1") in _actions(lg, "2025-07-01")
    rebound = _json(["contract", "bind", "S4", ours, "--json", "--at", "2025-07-02", *lg])
    assert "item-mismatch" not in [a["action"] for a in rebound["actions"]]


# ------------------------------------------------ 3. BYO takes a certificate from any CA

def test_art1_byo_classify_with_a_globalsign_certificate_has_no_item_mismatch(
        tmp_path: Path) -> None:
    tp = _pem(tmp_path, "tp.pem", utc(2025, 1, 10, 3), utc(2026, 1, 11, 2, 59, 59),
              **GLOBALSIGN_OV)
    t1 = _pem(tmp_path, "t1.pem", utc(2025, 12, 20, 3), utc(2026, 7, 7, 2, 59, 59),
              **GLOBALSIGN_OV)
    (byo,) = _json(["policy", "classify", "--json", "--item", "byo", "--tier", "1y",
                    "--previous", tp, "--at", "2026-01-01", t1])
    assert "item-mismatch" not in [f["code"] for f in byo["findings"]]
    other = _pem(tmp_path, "other.pem", utc(2025, 12, 20, 3), utc(2026, 7, 7, 2, 59, 59),
                 issuer_org="Let's Encrypt", issuer_cn="R11")
    (ov,) = _json(["policy", "classify", "--json", "--item", "globalsign-ov", "--tier", "1y",
                   "--at", "2026-01-01", other])
    assert "item-mismatch" in [f["code"] for f in ov["findings"]]
