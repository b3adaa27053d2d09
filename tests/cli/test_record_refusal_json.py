"""Every ``contract`` command that records prints, with ``--json``, a refusal as JSON on stdout
(as ``contract add --json`` always did for its Art.7 refusals), and keeps the ``Error:`` line
on stderr and the exit status: a script reading stdout must never see nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.main import main
from tests.certfactory import make_cert
from tests.cli.test_contract_cli import _ok


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real entry point (``agent.main.main``): the exit status and both streams."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _refusal(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = _main(capsys, *args)
    assert code != 0, out
    body = json.loads(out)  # stdout is one JSON document
    [line] = err.strip().splitlines()
    assert line.startswith("Error: ")
    assert body["recorded"] is False
    assert body["error"]["exit_code"] == code
    assert line == f"Error: {body['error']['message']}"
    return code, body, line


@pytest.fixture
def desk(tmp_path: Path) -> list[str]:
    """L1: a BYO contract whose certificate lasts 90 days (cannot be renewed, Art.6(3)
    proviso); K1: a BYO contract with a 200-day certificate."""
    lg = ["--ledger", str(tmp_path / "ledger.sqlite3")]
    le90 = tmp_path / "le90.pem"
    le90.write_bytes(make_cert(not_before=datetime(2026, 8, 1, 3, tzinfo=UTC),
                               lifetime=timedelta(days=90) - timedelta(seconds=1)).pem)
    k200 = tmp_path / "k200.pem"
    k200.write_bytes(make_cert(not_before=datetime(2026, 6, 1, 3, tzinfo=UTC),
                               lifetime=timedelta(days=200)).pem)
    _ok(["contract", "add", "L1", "--item", "byo", "--tier", "6m", "--at", "2026-07-20", *lg])
    _ok(["contract", "bind", "L1", str(le90), "--at", "2026-08-01T13:00", *lg])
    _ok(["contract", "notify", "L1", "--at", "2026-08-02", *lg])
    _ok(["contract", "add", "K1", "--item", "byo", "--tier", "1y", "--at", "2026-06-01", *lg])
    _ok(["contract", "bind", "K1", str(k200), "--at", "2026-06-01T13:00", *lg])
    return lg


def _journal_kinds(lg: list[str], cid: str) -> list[str]:
    shown = json.loads(_ok(["contract", "show", cid, "--json", *lg]).stdout)
    return [e["kind"] for e in shown["journal"]]


def test_renew_refused_by_the_art6_3_proviso_prints_the_refusal_as_json(
        desk: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = _refusal(capsys, "contract", "renew", "L1", "--json", "--at",
                             "2026-08-10", *desk)
    assert code == 15
    assert body["contract"] == "L1"
    assert "Art.6(3) proviso" in body["error"]["message"]
    assert "renewal-made" not in _journal_kinds(desk, "L1")


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=2)).isoformat()  # noqa: TID251 - the test's clock


@pytest.mark.parametrize("command", [
    ["add", "N1", "--item", "byo", "--tier", "1y"],
    ["notify", "K1"],
    ["answer", "K1", "renew"],
    ["change", "K1", "--service", "cloud"],
    ["renew", "K1"],
    ["terminate", "K1", "--effective", "2027-06-30", "--clause", "Art.8"],
    ["cancel", "K1", "--arrived", "2026-11-01"],
])
def test_every_recording_command_prints_its_refusal_as_json(
        desk: list[str], capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """A future --at is refused by every recording command (exit 15): with --json, stdout
    says so as JSON, stderr keeps the one Error: line."""
    code, body, line = _refusal(capsys, "contract", *command, "--json", "--at", _future(),
                                *desk)
    assert code == 15
    assert body["contract"] == command[1]
    assert "is in the future" in line


def test_bind_of_a_missing_file_prints_exit_17_as_json(
        desk: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = _refusal(capsys, "contract", "bind", "K1", str(tmp_path / "none.pem"),
                             "--json", *desk)
    assert code == 17
    assert body["contract"] == "K1"


def test_an_unknown_contract_prints_exit_14_as_json(
        desk: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = _refusal(capsys, "contract", "notify", "NOPE", "--json", *desk)
    assert code == 14
    assert body["contract"] == "NOPE"


def test_add_keeps_its_refusals_in_the_same_shape(
        desk: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, body, _ = _refusal(capsys, "contract", "add", "R1", "--item", "globalsign-ov",
                             "--country", "US", "--json", "--at", "2026-06-01", *desk)
    assert code == 16
    assert body["accepted"] is False
    assert {r["clause"] for r in body["refusals"]} == {"Art.7(2)"}
    code, body, _ = _refusal(capsys, "contract", "add", "K1", "--item", "byo", "--json",
                             "--at", "2026-06-02", *desk)  # a second acceptance: the terms
    assert code == 15
    assert body["accepted"] is False
