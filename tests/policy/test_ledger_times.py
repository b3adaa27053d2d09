"""When things happened, and when the ledger learned of them (issue 10); schema migration."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from policy.errors import LedgerError
from policy.events import (
    CancellationArrived,
    CertificateObserved,
    ContractChanged,
    event_to_json,
)
from policy.intake import Observation
from policy.ledger import SCHEMA_VERSION, Ledger
from policy.state import ContractStatus
from policy.tokyo import tokyo_midnight_utc
from tests.policy.ledger_fixtures import accepted, bound, facts, utc

ACCEPTED = utc(2026, 1, 5, 3)
ARRIVED = date(2026, 3, 1)
ENTERED = utc(2026, 11, 10, 3)
"""The cancellation form arrived on 03-01 but was entered in November."""


def _late_entered_cancellation(path: str) -> None:
    with Ledger.open(path) as ledger:
        ledger.append(accepted(at=ACCEPTED), now=ACCEPTED)
        # Art.9(2) needs a certificate in its validity period when the form arrives.
        ledger.append(bound(at=ACCEPTED, cert=facts(not_before=ACCEPTED)), now=ACCEPTED)
        ledger.append(CancellationArrived(contract_id="c1", at_utc=tokyo_midnight_utc(ARRIVED),
                                          arrived=ARRIVED), now=ENTERED)


def test_at_answers_what_was_true_then_by_everything_recorded_so_far(
        ledger_location: str) -> None:
    path = ledger_location
    _late_entered_cancellation(path)
    with Ledger.open(path, create=False) as ledger:
        april = ledger.state("c1", at=utc(2026, 4, 1, 3))
        assert april.status is ContractStatus.TERMINATED  # effective 2026-03-31
        assert april.terminated_on == date(2026, 3, 31)
        march = ledger.state("c1", at=utc(2026, 3, 2, 3))
        assert march.status is ContractStatus.TERMINATING


def test_as_recorded_answers_what_the_ledger_knew_then(ledger_location: str) -> None:
    path = ledger_location
    _late_entered_cancellation(path)
    with Ledger.open(path, create=False) as ledger:
        known_in_april = ledger.state("c1", at=utc(2026, 4, 1, 3),
                                      as_recorded=utc(2026, 4, 1, 3))
        assert known_in_april.status is ContractStatus.ACTIVE
        assert known_in_april.cancellation is None
        just_before = ENTERED - timedelta(microseconds=1)
        assert ledger.state("c1", at=just_before, as_recorded=just_before).cancellation is None
        assert ledger.state("c1", at=ENTERED, as_recorded=ENTERED).cancellation is not None
        assert [e.event.KIND for e in ledger.journal("c1", as_recorded=utc(2026, 4, 1))] == [
            "application-accepted", "certificate-bound"]
        states = list(ledger.states(at=utc(2026, 4, 1, 3), as_recorded=utc(2026, 4, 1, 3)))
        assert [s.status for s in states] == [ContractStatus.ACTIVE]


def test_each_journal_entry_carries_both_times(ledger_location: str) -> None:
    path = ledger_location
    _late_entered_cancellation(path)
    with Ledger.open(path, create=False) as ledger:
        entry = ledger.journal("c1")[-1]
    assert entry.event.at_utc == tokyo_midnight_utc(ARRIVED)
    assert entry.recorded == ENTERED
    assert entry.to_json()["at"] == "2026-02-28T15:00:00.000000Z"
    assert entry.to_json()["recorded"] == "2026-11-10T03:00:00.000000Z"


def test_observations_are_recorded_at_the_intakes_time(ledger: Ledger) -> None:
    seen = utc(2026, 2, 1)
    ledger.report([Observation(facts=facts(), host="h", location="/a.pem", index=0,
                               observed_at_utc=seen)], at=seen + timedelta(seconds=5))
    [entry] = ledger.unbound_observations()
    assert entry.event.at_utc == seen
    assert entry.recorded == seen + timedelta(seconds=5)


# ---------------------------------------------------------------- schema migration

_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, contract_id TEXT, kind TEXT NOT NULL,
    at_utc TEXT NOT NULL, payload TEXT NOT NULL, dedup_key TEXT UNIQUE,
    recorded_utc TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE INDEX journal_by_contract ON journal (contract_id, at_utc, seq);
CREATE INDEX journal_by_kind ON journal (kind, contract_id);
CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the certescrow journal is append-only: events cannot be changed');
END;
CREATE TRIGGER journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the certescrow journal is append-only: events cannot be deleted');
END;
CREATE TABLE sightings (host TEXT NOT NULL, location TEXT NOT NULL, idx INTEGER NOT NULL,
    sha256 TEXT NOT NULL, contract_id TEXT, seq INTEGER NOT NULL,
    PRIMARY KEY (host, location, idx));
CREATE TABLE bound_sans (contract_id TEXT NOT NULL, san TEXT NOT NULL,
    PRIMARY KEY (contract_id, san));
PRAGMA application_id = 1128616532;
PRAGMA user_version = 1;
"""


def _version_1_ledger(path: Path) -> str:
    """A ledger exactly as version 1 wrote it: an accepted contract, an observation of its
    certificate, SQLite's millisecond clock in recorded_utc."""
    cert = facts(tag="v1")
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SCHEMA)
    conn.execute(
        "INSERT INTO journal (contract_id, kind, at_utc, payload, dedup_key, recorded_utc) "
        "VALUES ('c1', 'application-accepted', '2026-01-05T03:00:00.000000Z', ?, "
        "'accepted|c1', '2026-01-05T03:00:01.250Z')",
        ('{"kind":"application-accepted","contract":"c1","at":"2026-01-05T03:00:00.000000Z",'
         '"item":"byo","category":"III","tier":"1y"}',))
    observed = CertificateObserved(contract_id=None, at_utc=utc(2026, 1, 6), facts=cert,
                                   host="web1", location="/etc/ssl/site.pem", index=0)
    conn.execute(
        "INSERT INTO journal (contract_id, kind, at_utc, payload, recorded_utc) "
        "VALUES (NULL, 'certificate-observed', '2026-01-06T00:00:00.000000Z', ?, "
        "'2026-01-06T00:00:00.500Z')",
        (json.dumps(event_to_json(observed), ensure_ascii=False, separators=(",", ":")),))
    conn.execute(
        "INSERT INTO sightings VALUES ('web1', '/etc/ssl/site.pem', 0, ?, NULL, 2)",
        (cert.sha256,))
    conn.commit()
    conn.close()
    return cert.sha256


def test_a_version_1_ledger_is_migrated_and_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    sha = _version_1_ledger(path)
    with Ledger.open(path, create=False) as ledger:
        [entry] = ledger.journal("c1")
        assert entry.recorded_utc == "2026-01-05T03:00:01.250000Z"  # widened, same instant
        assert ledger.state("c1", at=utc(2026, 2, 1)).item == "byo"
        assert ledger.open_sightings("web1") == [("/etc/ssl/site.pem", 0, sha)]
        same = Observation(facts=facts(tag="v1"), host="web1", location="/etc/ssl/site.pem",
                           index=0, observed_at_utc=utc(2026, 2, 1))
        assert ledger.report([same], at=utc(2026, 2, 1)).unchanged == 1  # keys carried over
        ledger.append(ContractChanged(contract_id="c1", at_utc=utc(2026, 2, 1), service="s"),
                      now=utc(2026, 2, 2))
        assert ledger.journal("c1")[-1].recorded == utc(2026, 2, 2)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    # version 3: the projection, back-filled by the migration and kept up by the append
    assert conn.execute("SELECT contract_id FROM projection").fetchall() == [("c1",)]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE journal SET kind = 'x'")
    conn.close()


def test_a_failed_migration_changes_nothing(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v1.sqlite3"
    _version_1_ledger(path)
    import policy.ledger as ledger_module

    broken = [*ledger_module._MIGRATIONS[1][:2], "THIS IS NOT SQL"]
    monkeypatch.setitem(ledger_module._MIGRATIONS, 1, broken)
    with pytest.raises(LedgerError, match=r"v1\.sqlite3"):
        Ledger.open(path, create=False)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT recorded_utc FROM journal").fetchone()[0] == \
        "2026-01-05T03:00:01.250Z"
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'journal_no_update'"
                        ).fetchone()[0] == 1
    conn.close()


def test_a_bound_contract_in_a_new_ledger_uses_the_current_version(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "new.sqlite3") as ledger:
        ledger.append(accepted(), now=utc(2026, 2, 1))
        ledger.append(bound(), now=utc(2026, 2, 1))
    conn = sqlite3.connect(tmp_path / "new.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()
