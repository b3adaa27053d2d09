"""What only the PostgreSQL ledger has to prove: its own version stamp and foreign-table
refusal, the append-only trigger, and error messages that never carry the DSN's password."""

from __future__ import annotations

import psycopg
import pytest

from policy.errors import LedgerError
from policy.ledger import SCHEMA_VERSION, Ledger
from tests.pgdb import postgres_schema
from tests.policy.ledger_fixtures import accepted


def test_a_ledger_newer_than_the_code_is_refused() -> None:
    with postgres_schema() as dsn:
        Ledger.open(dsn).close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'",
                         (str(SCHEMA_VERSION + 1),))
        with pytest.raises(LedgerError, match="newer certescrow"):
            Ledger.open(dsn)


def test_tables_of_another_application_are_refused_untouched() -> None:
    with postgres_schema() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE journal (id int)")
        with pytest.raises(LedgerError, match="another application"):
            Ledger.open(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('meta')").fetchone() == (None,)


def test_open_without_create_creates_nothing() -> None:
    with postgres_schema() as dsn:
        with pytest.raises(LedgerError, match="no ledger here"):
            Ledger.open(dsn, create=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('journal')").fetchone() == (None,)


@pytest.mark.parametrize("statement", ["UPDATE journal SET kind = 'x'", "DELETE FROM journal",
                                       "TRUNCATE journal"])
def test_the_journal_is_append_only_on_postgres_too(statement: str) -> None:
    with postgres_schema() as dsn:
        with Ledger.open(dsn) as ledger:
            ledger.append(accepted())
        with psycopg.connect(dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        with Ledger.open(dsn) as ledger:
            assert ledger.count() == 1


def test_an_unreachable_database_error_carries_no_password() -> None:
    with pytest.raises(LedgerError) as caught:
        Ledger.open("postgresql://desk:s3cret-pw@127.0.0.1:9/ledger")
    assert "s3cret-pw" not in str(caught.value)
    assert "postgresql://desk@127.0.0.1:9/ledger" in str(caught.value)


def test_a_fleet_batch_and_its_marker_are_one_transaction() -> None:
    from datetime import UTC, datetime

    from policy.fleet_registry import FleetRegistry
    from policy.intake import Observation
    from policy.ledger_pg import PostgresLedger
    from tests.policy.ledger_fixtures import facts

    at = datetime(2026, 2, 1, tzinfo=UTC)
    seen = [Observation(facts=facts(tag=str(i)), host="web1", location=f"/c/{i}.pem", index=0,
                        observed_at_utc=at) for i in range(3)]
    with postgres_schema() as dsn:
        with Ledger.open(dsn) as ledger:
            FleetRegistry.open(dsn).close()
            assert isinstance(ledger, PostgresLedger)
            first = ledger.record_batch(host="web1", outbox="o", sequence=1, observations=seen,
                                        gone=[], at=at, now=at)
            again = ledger.record_batch(host="web1", outbox="o", sequence=1, observations=seen,
                                        gone=[], at=at, now=at)
            gone = ledger.record_batch(host="web1", outbox="o", sequence=2, observations=[],
                                       gone=[("/c/0.pem", at)], at=at, now=at)
            assert (first, again, gone) == ((3, False), (0, True), (1, False))
            assert ledger.count() == 4
            # A batch whose marker cannot be written records nothing at all.
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ALTER TABLE fleet_batches ADD CONSTRAINT no_three CHECK (seq < 3)")
            with pytest.raises(LedgerError):
                ledger.record_batch(host="web1", outbox="o", sequence=3,
                                    observations=[Observation(
                                        facts=facts(tag="late"), host="web1",
                                        location="/c/late.pem", index=0, observed_at_utc=at)],
                                    gone=[], at=at, now=at)
            assert ledger.count() == 4
