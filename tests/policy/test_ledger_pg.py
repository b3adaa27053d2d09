"""What only the PostgreSQL ledger has to prove: its own version stamp and foreign-table
refusal, the append-only trigger, and error messages that never carry the DSN's password."""

from __future__ import annotations

import psycopg
import pytest

from policy.errors import LedgerError
from policy.ledger import Ledger
from policy.ledger_pg import PG_SCHEMA_VERSION
from tests.pgdb import as_pg_version_3, postgres_schema
from tests.policy.ledger_fixtures import accepted


def test_a_ledger_newer_than_the_code_is_refused() -> None:
    with postgres_schema() as dsn:
        Ledger.open(dsn).close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'",
                         (str(PG_SCHEMA_VERSION + 1),))
        with pytest.raises(LedgerError, match="newer certescrow"):
            Ledger.open(dsn)


def test_a_version_3_ledger_is_migrated_to_sightings_keyed_by_digest() -> None:
    """Version 3 keyed sightings by their location: a path of a few KB overflowed the B-tree
    and its certificate was never recorded. The migration keeps every sighting and the one
    key per (host, location, index)."""
    from datetime import UTC, datetime

    from policy.intake import Observation
    from tests.policy.ledger_fixtures import facts

    at = datetime(2026, 11, 27, 3, tzinfo=UTC)
    deep = "/srv/" + "/".join(f"{n:032x}" for n in range(150)) + "/cert.pem"

    def seen(location: str, index: int = 0) -> Observation:
        return Observation(facts=facts(), host="web1", location=location, index=index,
                           observed_at_utc=at)

    with postgres_schema() as dsn:
        with Ledger.open(dsn) as ledger:
            ledger.report([seen("/srv/a.pem"), seen("/srv/b.pem", 1)], at=at)
        as_pg_version_3(dsn)
        with Ledger.open(dsn) as ledger:
            assert ledger.open_sightings("web1") == [
                ("/srv/a.pem", 0, facts().sha256), ("/srv/b.pem", 1, facts().sha256)]
            assert ledger.report([seen("/srv/a.pem"), seen(deep)], at=at).recorded == 1
            assert ledger.report([seen(deep)], at=at).recorded == 0  # found again: one key
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                ).fetchone() == (str(PG_SCHEMA_VERSION),)
            assert conn.execute("SELECT count(*) FROM sightings").fetchone() == (3,)
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("INSERT INTO sightings SELECT host, location, idx, sha256, "
                             "contract_id, seq FROM sightings LIMIT 1")


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


def test_a_password_in_the_dsns_query_never_appears() -> None:
    with pytest.raises(LedgerError) as caught:
        Ledger.open("postgresql://desk@127.0.0.1:9/ledger?password=s3cret-pw"
                    "&options=-csearch_path%3Dtenant_a&sslpassword=k3y-pw")
    assert "s3cret-pw" not in str(caught.value)
    assert "k3y-pw" not in str(caught.value)
    assert ("postgresql://desk@127.0.0.1:9/ledger?options=-csearch_path%3Dtenant_a"
            in str(caught.value))


def test_the_sweep_reads_the_same_rows_through_a_server_side_cursor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a libpq older than 17 (a system psycopg) the sweep pages through a server-side
    cursor instead of chunked rows: the same rows, the ``--json`` elements as bytes."""
    from datetime import timedelta

    import policy.ledger_pg as ledger_pg
    from tests.policy.ledger_fixtures import T0

    with postgres_schema() as dsn, Ledger.open(dsn) as ledger:
        for n in range(5):
            ledger.append(accepted(f"c{n}", at=T0 + timedelta(minutes=n)))
        at = T0 + timedelta(hours=1)  # the day the projection evaluated: its rows answer
        chunked = [list(ledger.projected_actions(at=at, json_body=json)[1])
                   for json in (False, True)]
        monkeypatch.setattr(ledger_pg, "_CHUNKED_ROWS", False)
        paged = [list(ledger.projected_actions(at=at, json_body=json)[1])
                 for json in (False, True)]
    assert paged == chunked
    assert len(chunked[0]) >= 5
    assert all(isinstance(row[6], bytes) for row in chunked[1])


def test_a_rewritten_projection_is_vacuumed_and_analysed() -> None:
    """``policy verify --repair`` (and the migration's back-fill) rewrite the projection in
    bulk: the sweep's scans are index-only only once the visibility map is up to date, which
    a server with autovacuum off (or not yet round) would leave undone."""
    from datetime import timedelta

    from tests.policy.ledger_fixtures import T0

    with postgres_schema() as dsn:
        with Ledger.open(dsn) as ledger:
            ledger.append(accepted("c1", at=T0))
            ledger.rebuild_projection(at=T0 + timedelta(hours=1))
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT relname, last_vacuum IS NOT NULL, last_analyze IS NOT NULL "
                "FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND relname LIKE 'projection%' ORDER BY relname").fetchall()
    assert rows == [("projection", True, True), ("projection_actions", True, True)]


def test_a_sweep_its_reader_stops_early_ends_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`policy actions | head -1`, or Ctrl-C: the reader closes the stream after its first
    page; the query is cancelled and the connection goes back to the pool (it hung for ever:
    the open stream held the connection's lock that leaving the transaction waits for).
    Pages of 2 rows stand in for pages of 2,048."""
    import threading
    from datetime import timedelta

    import policy.ledger_pg as ledger_pg
    from tests.policy.ledger_fixtures import T0

    monkeypatch.setattr(ledger_pg, "_SWEEP_PAGE", 2)
    with postgres_schema() as dsn, Ledger.open(dsn) as ledger:
        ledger.append_many([accepted(f"c{n}", at=T0) for n in range(6)],
                           now=T0 + timedelta(minutes=1))
        at = T0 + timedelta(hours=1)
        _, rows = ledger.projected_actions(at=at)
        assert next(rows)
        closer = threading.Thread(target=rows.close, daemon=True)
        closer.start()
        closer.join(timeout=20)
        assert not closer.is_alive(), "closing the stream hung"
        assert ledger.projected_action_count(at=at) >= 6  # the pool's connection works


def test_a_contract_with_thousands_of_unreadable_events_keeps_its_projection_row() -> None:
    """A contract's ``problems`` (one text naming each of its unreadable events) was a column
    of the projection's covering index: with enough of them (a damaged journal) the row
    outgrew a B-tree entry and every write of it failed (SQLSTATE 54000), so no batch
    touching that contract could be recorded (review 10)."""
    from datetime import UTC, datetime

    at = datetime(2026, 3, 1, tzinfo=UTC)
    with postgres_schema() as dsn:
        with Ledger.open(dsn) as ledger:
            ledger.append(accepted("bad"), now=at)
        with psycopg.connect(dsn, autocommit=True) as conn:
            # each a problem of ~50 characters: 100 KB in all, which PostgreSQL's compression
            # of an index entry cannot bring under ~2,700 bytes
            conn.execute(
                "INSERT INTO journal (contract_id, kind, at_utc, payload, recorded_utc) "
                "SELECT 'bad', 'notice-sent', t, '{not json', t FROM (SELECT to_char("
                "timestamp '2026-01-16' + n * interval '1 second', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t "
                "FROM generate_series(1, 2000) AS n) AS s")
        with Ledger.open(dsn, create=False) as ledger:
            assert ledger.rebuild_projection(at=at) == 1
            assert ledger.verify_projection(at=at)[0] == []
            [(state, _)] = list(ledger.projected(at=at))
            assert state.contract_id == "bad"
            assert sum("not valid JSON" in str(p) for p in ledger.problems) == 2000
