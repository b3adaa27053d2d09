"""PostgreSQL for tests: the local server every development machine and CI runs.

The DSN comes from ``CERTESCROW_TEST_POSTGRES`` (default: the local server, trust auth,
database ``test``). Each use gets a schema of its own, created here and dropped afterwards, so
tests never see each other's rows and leave nothing behind. When the server cannot be reached
the tests skip with the reason, except when ``CERTESCROW_REQUIRE_POSTGRES=1`` (``.ci/run`` sets
it): then they fail, so a CI without PostgreSQL cannot pass by skipping.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

DSN_ENV = "CERTESCROW_TEST_POSTGRES"
REQUIRE_ENV = "CERTESCROW_REQUIRE_POSTGRES"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def base_dsn() -> str:
    return os.environ.get(DSN_ENV) or DEFAULT_DSN


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` whose connections use ``schema`` first (libpq ``options``)."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-csearch_path={schema}"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _unreachable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); set {DSN_ENV}")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test server; yields a DSN that uses it; drops it afterwards."""
    try:
        import psycopg
    except ImportError:
        _unreachable("psycopg is not installed (pip install -e '.[test]')")
        raise
    dsn = base_dsn()
    schema = f"certescrow_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _unreachable(f"cannot connect to {dsn}: {type(exc).__name__}")
        raise
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        yield with_schema(dsn, schema)
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def refuse_locations_containing(dsn: str, marker: str) -> None:
    """Make the ledger at ``dsn`` refuse, as PostgreSQL refuses a value past one of its limits
    (SQLSTATE 54000), every sighting whose location holds ``marker``: what a file path too
    long for the sightings index did before the ledger keyed them by digest. No real value
    is refused that way now, and the refusal's handling (the writer drops that observation
    alone, the service answers 422) must still hold for the next limit."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION certescrow_test_refuse() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ "
            "BEGIN IF position(convert_to(TG_ARGV[0], 'UTF8') in NEW.location) > 0 THEN "
            "RAISE EXCEPTION 'index row size exceeds btree maximum' USING ERRCODE = '54000'; "
            "END IF; RETURN NEW; END $$")
        conn.execute(sql.SQL("CREATE OR REPLACE TRIGGER certescrow_test_refuse BEFORE INSERT "
                             "ON sightings FOR EACH ROW EXECUTE FUNCTION "
                             "certescrow_test_refuse({})").format(sql.Literal(marker)))


def as_pg_version_3(dsn: str) -> None:
    """Turn the version-4 ledger at ``dsn`` back into what version 3 made: sightings keyed by
    their location, the projection's covering index with ``problems``."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX sightings_key")
        conn.execute("ALTER TABLE sightings ADD PRIMARY KEY (host, location, idx)")
        conn.execute("DROP INDEX projection_problems; DROP INDEX projection_fresh")
        conn.execute("CREATE INDEX projection_fresh ON projection (eval_key, fold_key, "
                     "evaluated_on, fresh_until, last_at, contract_id, problems)")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
