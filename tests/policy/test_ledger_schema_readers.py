"""A command that only reads never changes the ledger's schema (docs/fleet.md, "Upgrading a
PostgreSQL ledger"): it reads an older version it can read as it is, refuses an older one
naming `certescrow policy migrate`, and needs nothing but SELECT. A writer, or `policy
migrate` as the owner, migrates.

Reader commands that migrated broke an older writer still running (its `ON CONFLICT` named
the old key: SQLSTATE 42P10 on every write) and told a SELECT-only reporting role to GRANT a
privilege that no GRANT gives (ALTER needs the owner)."""

from __future__ import annotations

import json
import secrets
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from agent.main import main
from policy.errors import LedgerError
from policy.intake import Observation
from policy.ledger import SCHEMA_VERSION, Ledger
from policy.ledger_pg import PG_SCHEMA_VERSION
from tests.pgdb import as_pg_version_3, postgres_schema
from tests.policy.ledger_fixtures import T0, accepted, bound, facts, utc

AT = "2026-12-01"
"""The readers' --at: c1's certificate (from 2026-01-15, 300 days) has ended, c2 has none."""

READERS = [
    ["policy", "actions", "--json"],
    ["policy", "actions"],
    ["contract", "show", "c1", "--json"],
    ["contract", "list", "--json"],
    ["contract", "unbound", "--json"],
    ["policy", "forecast", "--json"],
    ["policy", "verify", "--json"],
    ["fleet", "hosts", "--json"],
]


def run(*args: str) -> tuple[int, str, str]:
    """The command as `certescrow` runs it (``main``: an error is its `Error:` line and exit
    status), in click's runner's isolation."""
    with CliRunner().isolation() as (out, err, _):
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        return int(exited.value.code or 0), out.getvalue().decode(), err.getvalue().decode()


def _fill(location: str) -> None:
    with Ledger.open(location) as ledger:
        ledger.append(accepted("c1"), now=T0)
        ledger.append(bound("c1"), now=T0)
        ledger.append(accepted("c2", at=utc(2026, 2, 1)), now=utc(2026, 2, 1))
        ledger.report([Observation(facts=facts(tag="unbound"), host="web1",
                                   location="/srv/other.pem", index=0,
                                   observed_at_utc=utc(2026, 3, 1))], at=utc(2026, 3, 1))


def _answers(location: str, readers: list[list[str]] = READERS) -> list[tuple[int, str]]:
    answers = []
    for command in readers:
        code, out, err = run(*command, "--at", AT, "--ledger", location)
        assert (code, err) == (0, ""), command
        answers.append((code, out))
    return answers


# ------------------------------------------------------------------ PostgreSQL
def _pg_version(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert row is not None
    return int(row[0])




def _as_pg_version_2(dsn: str) -> None:
    """Before the projection (tests/policy/test_projection.py builds it the same way)."""
    as_pg_version_3(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE projection; DROP TABLE projection_actions")
        conn.execute("DELETE FROM meta WHERE key = 'projected_seq'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def _still_keyed_by_location(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('sightings_key') IS NULL AND "
                           "to_regclass('sightings_pkey') IS NOT NULL").fetchone()
    return bool(row and row[0])


@contextmanager
def _select_only_role(dsn: str) -> Iterator[str]:
    """A reporting role: LOGIN, USAGE on the ledger's schema, SELECT on its tables."""
    role = f"certescrow_reader_{secrets.token_hex(4)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None
        schema, who = sql.Identifier(row[0]), sql.Identifier(role)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(who))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, who))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema,
                                                                                      who))
    parts = urllib.parse.urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    try:
        yield urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{host}"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(who))  # its grants
            conn.execute(sql.SQL("DROP ROLE {}").format(who))


def test_readers_leave_a_version_3_postgresql_ledger_at_3_and_answer_as_on_4() -> None:
    with postgres_schema() as dsn:
        _fill(dsn)
        on_4 = _answers(dsn)
        assert json.loads(on_4[0][1])  # actions are due: the answers say something
        assert _pg_version(dsn) == PG_SCHEMA_VERSION == 4
        as_pg_version_3(dsn)
        assert _answers(dsn) == on_4
        assert _pg_version(dsn) == 3
        assert _still_keyed_by_location(dsn)  # an older writer's ON CONFLICT still matches


def test_a_select_only_role_reads_a_version_4_and_a_version_3_ledger() -> None:
    with postgres_schema() as dsn:
        _fill(dsn)
        as_owner = _answers(dsn, READERS)  # (`fleet hosts` as the owner makes its tables)
        with _select_only_role(dsn) as reader:

            def answers() -> list[tuple[int, str]]:  # the DSN they print is the reader's
                return [(code, out.replace(reader, dsn))
                        for code, out in _answers(reader, READERS)]

            assert answers() == as_owner
            as_pg_version_3(dsn)
            assert answers() == as_owner
            assert _pg_version(dsn) == 3
            # migrating needs the owner, and says so
            code, _, err = run("policy", "migrate", "--ledger", reader)
            assert code == 13
            assert "connected as the ledger's owner (SQLSTATE 42501)" in err
            assert "GRANT" not in err  # no grant lets a role change tables it does not own
            assert _pg_version(dsn) == 3


def test_a_writer_migrates_the_version_3_ledger_its_readers_left_alone() -> None:
    with postgres_schema() as dsn:
        _fill(dsn)
        as_pg_version_3(dsn)
        assert run("policy", "actions", "--at", AT, "--ledger", dsn)[0] == 0
        assert _pg_version(dsn) == 3
        code, _, err = run("contract", "add", "c3", "--item", "globalsign-ov", "--tier", "1y",
                           "--at", "2026-04-01", "--ledger", dsn)
        assert (code, err) == (0, "")
        assert _pg_version(dsn) == PG_SCHEMA_VERSION
        assert not _still_keyed_by_location(dsn)


def test_policy_migrate_takes_a_postgresql_ledger_to_the_current_version() -> None:
    with postgres_schema() as dsn:
        _fill(dsn)
        on_4 = _answers(dsn)
        as_pg_version_3(dsn)
        code, out, _ = run("policy", "migrate", "--json", "--ledger", dsn)
        assert code == 0
        body = json.loads(out)
        assert body == {"ledger": body["ledger"], "ledger_exists": True, "schema_version_before": 3,
                        "schema_version": PG_SCHEMA_VERSION, "migrated": True}
        assert "postgresql://" in body["ledger"]
        assert _pg_version(dsn) == PG_SCHEMA_VERSION
        assert not _still_keyed_by_location(dsn)
        assert _answers(dsn) == on_4
        code, out, _ = run("policy", "migrate", "--ledger", dsn)
        assert code == 0
        assert out.endswith(f": schema version {PG_SCHEMA_VERSION}, up to date: nothing to "
                            "migrate.\n")


# ------------------------------------------------------------------ too old to read: both
def _sqlite_as_version_2(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE projection; DROP TABLE projection_actions; "
                       "DELETE FROM meta WHERE key = 'projected_seq'; PRAGMA user_version = 2;")
    conn.close()


def _sqlite_version(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@contextmanager
def _version_2_ledger(backend: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A ledger from before the projection, which the readers query, and the version this
    certescrow writes on that backend."""
    if backend == "sqlite":
        path = str(tmp_path / "ledger.sqlite3")
        _fill(path)
        _sqlite_as_version_2(path)
        yield path, SCHEMA_VERSION
        return
    with postgres_schema() as dsn:
        _fill(dsn)
        _as_pg_version_2(dsn)
        yield dsn, PG_SCHEMA_VERSION


def _version(location: str) -> int:
    return _pg_version(location) if location.startswith("postgresql:") else \
        _sqlite_version(location)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_ledger_too_old_to_read_is_refused_by_readers_naming_policy_migrate(
        backend: str, tmp_path: Path) -> None:
    with _version_2_ledger(backend, tmp_path) as (location, current):
        for command in READERS:
            code, out, err = run(*command, "--at", AT, "--ledger", location)
            assert code == 13, command
            assert out == ""
            assert (f"is schema 2; this certescrow uses {current} (it reads schema 3 and "
                    "later without migrating them): run `certescrow policy migrate --ledger "
                    ) in err, command
            assert "as the ledger's owner" in err
            assert _version(location) == 2
        code, out, _ = run("policy", "migrate", "--json", "--ledger", location)
        assert code == 0
        assert json.loads(out)["schema_version_before"] == 2
        assert _version(location) == current
        code, out, _ = run("policy", "actions", "--json", "--at", AT, "--ledger", location)
        assert code == 0
        assert json.loads(out)


def test_the_sqlite_refusal_names_the_ledger_to_migrate_as_a_shell_word(
        tmp_path: Path) -> None:
    path = str(tmp_path / "a ledger.sqlite3")
    _fill(path)
    _sqlite_as_version_2(path)
    code, _, err = run("contract", "show", "c1", "--ledger", path)
    assert code == 13
    assert f"`certescrow policy migrate --ledger '{path}'`" in err


# ------------------------------------------------------------------ the library
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_ledger_opened_read_only_neither_writes_nor_creates(backend: str,
                                                              tmp_path: Path) -> None:
    @contextmanager
    def location() -> Iterator[str]:
        if backend == "sqlite":
            yield str(tmp_path / "ledger.sqlite3")
        else:
            with postgres_schema() as dsn:
                yield dsn

    with location() as where:
        with pytest.raises(LedgerError, match="no ledger here"):
            Ledger.open(where, read_only=True)  # create=True is no licence to create
        assert backend == "postgresql" or not Path(where).exists()
        _fill(where)
        with Ledger.open(where, create=False, read_only=True) as ledger:
            assert ledger.contract_ids() == ["c1", "c2"]
            with pytest.raises(LedgerError, match="opened for reading only"):
                ledger.append(accepted("c9", at=utc(2026, 5, 1)), now=utc(2026, 5, 1))
            with pytest.raises(LedgerError, match="opened for reading only"):
                ledger.migrate()
        with Ledger.open(where) as ledger:
            assert ledger.contract_ids() == ["c1", "c2"]
