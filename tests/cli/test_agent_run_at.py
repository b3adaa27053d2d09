"""``certescrow agent run --once --at T`` with a store that feeds a SQLite ledger: T dates what
the agent sees, the real clock stamps when the ledger recorded it, and a T after the real clock
is refused (usage, exit 2) with nothing written — the ledger records what happened
(docs/ledger.md "an event dated after now")."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.timeparse import parse_instant
from tests.agent.daemon_helpers import Certbot
from tests.cli.test_agent_cli import detach_log_handlers, run, write_config

__all__ = ["detach_log_handlers"]  # the autouse fixture, imported to apply here too

PAST_AT = "2026-02-01T12:00:00+09:00"


def _now() -> datetime:
    return datetime.now(UTC)  # noqa: TID251 - the test's own view of the real clock


@pytest.fixture
def store(tmp_path: Path) -> tuple[Certbot, Path, Path]:
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, f'[policy]\nledger = "{ledger}"\n[agent]\nhost = "web1"\n'
                                    f'[[agent.stores]]\npath = "{tmp_path}/le/live"\n')
    return certbot, ledger, config


def _journal(ledger: Path) -> list[tuple[str, datetime, datetime]]:
    """(kind, happened, recorded) of every journal row, read with sqlite3 itself."""
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT kind, at_utc, recorded_utc FROM journal ORDER BY seq").fetchall()
    return [(kind, parse_instant(at), parse_instant(recorded)) for kind, at, recorded in rows]


def test_agent_run_once_with_a_future_at_writes_nothing_and_is_a_usage_error(
        store: tuple[Certbot, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, ledger, config = store
    future = (_now() + timedelta(days=90)).isoformat()
    code, out, err = run(["agent", "run", "--once", "--json", "--config", str(config),
                          "--at", future], capsys)
    assert code == 2
    assert out == ""
    assert "--at " in err
    assert "is in the future" in err
    assert "nothing was recorded" in err
    assert not ledger.exists()


def test_agent_run_once_with_a_past_at_dates_events_then_and_records_them_now(
        store: tuple[Certbot, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    certbot, ledger, config = store
    before = _now()
    code, _, _ = run(["agent", "run", "--once", "--json", "--config", str(config),
                      "--at", PAST_AT], capsys)
    after = _now()
    assert code == 0
    rows = _journal(ledger)
    assert rows
    assert {kind for kind, _, _ in rows} == {"certificate-observed"}
    for _, happened, recorded in rows:
        assert happened == parse_instant(PAST_AT)
        assert before - timedelta(milliseconds=1) <= recorded <= after
    # The file goes; the next run finds its place empty (reconciliation, report_gone): that
    # row too is recorded by the real clock, never back-dated to --at.
    for path in certbot.live.iterdir():
        path.unlink()
    before = _now()
    code, _, _ = run(["agent", "run", "--once", "--json", "--config", str(config),
                      "--at", PAST_AT], capsys)
    after = _now()
    assert code == 0
    gone = [row for row in _journal(ledger) if row[0] == "certificate-gone"]
    assert gone
    for _, _, recorded in gone:
        assert before - timedelta(milliseconds=1) <= recorded <= after
