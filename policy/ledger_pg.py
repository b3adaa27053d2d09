"""The ledger on PostgreSQL: the same :class:`~policy.ledger.Ledger`, another storage.

:class:`~policy.ledger.Ledger` keeps its SQL in the ``_sql_*`` methods (and a few readers)
precisely so that a backend can supply them; this class supplies them for PostgreSQL through
psycopg 3 and a connection pool, and inherits everything else: the admission checks, the fold,
intake's idempotence, the problems list. The ledger's test suite runs on both (one
parametrised fixture), so the two cannot drift apart unnoticed.

What differs from SQLite, and why:

* **Serialised writers.** SQLite has one write lock; here every write transaction first takes
  one transaction-scoped advisory lock, so the state check and the insert it admits cannot
  interleave with another writer's, exactly as with ``BEGIN IMMEDIATE``.
* **Append-only.** A trigger function refuses ``UPDATE``, ``DELETE`` and ``TRUNCATE`` of the
  journal, whoever issues them.
* **Versioned.** PostgreSQL has no ``user_version``: the ``meta`` table holds ``format`` and
  ``schema_version``. A database whose version is newer than this code is refused; an older
  one is migrated by the first write (never by opening, see :meth:`Ledger.open`: a reader
  reads version 3 as it is) step by step inside one transaction under the schema lock (DDL is
  transactional here), which also stamps the new version; a database with a ``journal`` but
  no certescrow ``meta`` is another application's and is refused untouched.
* **Byte order.** Text columns compared or sorted by the ledger use the ``"C"`` collation, so
  the fixed-width instants sort as time and contract ids sort as on SQLite.
* **No unbounded text in an index key.** A B-tree entry holds ~2,700 bytes and a file path
  4,096, so ``sightings`` is unique on ``(host, sha256(location), idx)`` (schema version 4,
  this backend only) and every query by location compares the digest and the location; a
  projection row's ``problems`` has a partial index of its own.
* **The sweep streams.** ``states()`` reads the journal in keyset pages, so memory stays flat
  and no connection is held between pages.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .catalogue import Catalogue
from .errors import LedgerError
from .events import (
    ApplicationAccepted,
    CertificateGone,
    CertificateObserved,
    Event,
    instant_to_text,
    text_to_instant,
)
from .intake import Observation
from .ledger import (
    _INSERT_ACTION,
    _MEMBERSHIP_SQL,
    _UPSERT_PROJECTION,
    Ledger,
    _action_values,
    _key,
    _members_in_step,
    _payload,
    _projection_values,
    _time_filters,
    _unkey,
)
from .projection import ProjectionRow
from .settings import PolicySettings
from .storage import StorageConflictError, redact_dsn
from .storage_pg import describe_sqlstate, ledger_error, open_pool, translate

__all__ = ["PG_SCHEMA_VERSION", "PostgresLedger"]

T = TypeVar("T")
_WRITE_LOCK = "certescrow-ledger-write"
_SCHEMA_LOCK = "certescrow-ledger-schema"
_SWEEP_PAGE = 2048
_CHUNKED_ROWS = psycopg.pq.version() >= 170000
"""libpq 17's chunked rows mode (``Cursor.stream(size=…)``): rows in pages without a
server-side cursor; an older libpq (a system psycopg) pages through a cursor instead."""

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE journal (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        contract_id  TEXT COLLATE "C",
        kind         TEXT COLLATE "C" NOT NULL,
        at_utc       TEXT COLLATE "C" NOT NULL,
        payload      TEXT NOT NULL,
        dedup_key    TEXT UNIQUE,
        recorded_utc TEXT COLLATE "C" NOT NULL
    )""",
    "CREATE INDEX journal_by_contract ON journal (contract_id, at_utc, seq)",
    "CREATE INDEX journal_by_kind ON journal (kind, contract_id)",
    """CREATE FUNCTION certescrow_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the certescrow journal is append-only: events cannot be %',
            CASE TG_OP WHEN 'UPDATE' THEN 'changed' ELSE 'deleted' END;
    END
    $$""",
    "CREATE TRIGGER journal_no_change BEFORE UPDATE OR DELETE ON journal "
    "FOR EACH ROW EXECUTE FUNCTION certescrow_journal_append_only()",
    "CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal "
    "FOR EACH STATEMENT EXECUTE FUNCTION certescrow_journal_append_only()",
    """CREATE TABLE sightings (
        host        BYTEA NOT NULL,
        location    BYTEA NOT NULL,
        idx         INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        contract_id TEXT COLLATE "C",
        seq         BIGINT NOT NULL,
        PRIMARY KEY (host, location, idx)
    )""",
    """CREATE TABLE bound_sans (
        contract_id TEXT COLLATE "C" NOT NULL,
        san         TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (contract_id, san)
    )""",
    "CREATE INDEX bound_sans_by_san ON bound_sans (san)",
]

_INSERT_JOURNAL_ROWS = (
    "INSERT INTO journal (seq, contract_id, kind, at_utc, payload, recorded_utc) "
    "OVERRIDING SYSTEM VALUE SELECT * FROM "
    "unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])")
_UPSERT_SIGHTING_ROWS = (
    "INSERT INTO sightings SELECT * FROM "
    "unnest(%b::bytea[], %b::bytea[], %b::int[], %b::text[], %b::text[], %b::bigint[]) "
    "ON CONFLICT (host, sha256(location), idx) DO UPDATE SET sha256 = excluded.sha256, "
    "contract_id = excluded.contract_id, seq = excluded.seq")
_INSERT_SAN_ROWS = ("INSERT INTO bound_sans SELECT * FROM unnest(%b::text[], %b::text[]) "
                    "ON CONFLICT DO NOTHING")
_INSERT_SAN = "INSERT INTO bound_sans (contract_id, san) VALUES (?, ?) ON CONFLICT DO NOTHING"


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


_PROJECTION_SCHEMA = [
    """CREATE TABLE projection (
        contract_id  TEXT COLLATE "C" PRIMARY KEY,
        state        TEXT NOT NULL,
        last_at      TEXT COLLATE "C" NOT NULL,
        fold_key     TEXT COLLATE "C" NOT NULL,
        eval_key     TEXT COLLATE "C" NOT NULL,
        evaluated_on TEXT COLLATE "C" NOT NULL,
        fresh_until  TEXT COLLATE "C" NOT NULL,
        next_due     TEXT COLLATE "C",
        decisions    TEXT NOT NULL,
        problems     TEXT
    )""",
    """CREATE TABLE projection_actions (
        due_key      TEXT COLLATE "C" NOT NULL,
        sev_key      INTEGER NOT NULL,
        contract_id  TEXT COLLATE "C" NOT NULL,
        action       TEXT COLLATE "C" NOT NULL,
        ordinal      INTEGER NOT NULL,
        due          TEXT COLLATE "C",
        keys         TEXT COLLATE "C" NOT NULL,
        evaluated_on TEXT COLLATE "C" NOT NULL,
        fresh_until  TEXT COLLATE "C" NOT NULL,
        last_at      TEXT COLLATE "C" NOT NULL,
        clause       TEXT NOT NULL,
        explanation  TEXT NOT NULL,
        unpriced     TEXT,
        body         TEXT NOT NULL,
        PRIMARY KEY (due_key, sev_key, contract_id, action, ordinal)
    )""",
    "CREATE INDEX projection_actions_by_contract ON projection_actions (contract_id)",
    "CREATE INDEX projection_fresh ON projection "
    "(eval_key, fold_key, evaluated_on, fresh_until, last_at, contract_id, problems)",
]
"""Version 3: the projection (``policy.ledger.PROJECTION_SCHEMA``, with the ``"C"`` collation
on what is compared or sorted)."""

_VERSION_4 = [
    "ALTER TABLE sightings DROP CONSTRAINT IF EXISTS sightings_pkey",
    "CREATE UNIQUE INDEX IF NOT EXISTS sightings_key ON sightings "
    "(host, sha256(location), idx)",
    "DROP INDEX IF EXISTS projection_fresh",
    "CREATE INDEX projection_fresh ON projection "
    "(eval_key, fold_key, evaluated_on, fresh_until, last_at, contract_id)",
    "CREATE INDEX IF NOT EXISTS projection_problems ON projection (contract_id) "
    "WHERE problems IS NOT NULL",
]
"""Version 4: no text of unbounded length in a B-tree key, where an entry holds at most ~2,700
bytes. Sightings are keyed by the SHA-256 of their location, not the location itself: a file
path may be 4,096 bytes, and a certificate at the end of a deep enough tree (anyone who can
make directories in a store can make one) could never be recorded. Every query by location
also compares the location itself. The projection's covering index no longer holds a
contract's ``problems`` (one text for all its unreadable events: a contract with a few dozen
made every write of its projection row fail); the few rows with problems have an index of
their own."""

_MIGRATIONS: dict[int, list[str]] = {2: _PROJECTION_SCHEMA, 3: _VERSION_4}
"""Statements taking a PostgreSQL ledger from version ``key`` to ``key + 1`` (PostgreSQL
ledgers began at version 2)."""
_FIRST_VERSION = 2
PG_SCHEMA_VERSION = 4
"""The PostgreSQL ledger's own numbering (SQLite's is :data:`policy.ledger.SCHEMA_VERSION`):
2 and 3 as on SQLite, 4 no unbounded text in an index key (:data:`_VERSION_4`)."""


def _digest(location: bytes) -> bytes:
    """A sightings key's digest, as ``sha256(location)`` computes it in the server."""
    return hashlib.sha256(location).digest()


class _Pager:
    """``fetchmany`` over the sweep, one keyset page per call (no connection held between)."""

    def __init__(self, ledger: PostgresLedger, sql: str, params: list[Any]) -> None:
        self._ledger = ledger
        self._sql = sql
        self._params = params
        self._after: tuple[str, str, int] | None = None
        self._done = False

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        if self._done:
            return []
        sql, params = self._sql, list(self._params)
        if self._after is not None:
            sql += " AND (contract_id, at_utc, seq) > (?, ?, ?)"
            params.extend(self._after)
        rows = self._ledger._q(sql + ' ORDER BY contract_id, at_utc, seq LIMIT ?',
                               [*params, size])
        if len(rows) < size:
            self._done = True
        if rows:
            seq, contract_id, _text, at_utc = rows[-1]
            self._after = (contract_id, at_utc, seq)
        return [(seq, contract_id, payload) for seq, contract_id, payload, _ in rows]


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database (see the module docstring)."""

    _BODY_BYTES = "convert_to(a.body, 'UTF8')"  # bytea: raw bytes in binary results
    _RAW = "{}"
    """PostgreSQL's TEXT is valid UTF-8 by construction: read as it is. (What it holds may
    still not decode to the shape the ledger wrote; readers check that on both backends.)"""
    concurrent_reads = True  # each read takes a connection of the pool
    target_version = PG_SCHEMA_VERSION
    upgrading_doc = 'docs/fleet.md, "Upgrading a PostgreSQL ledger"'

    def __init__(self, pool: ConnectionPool[Any], dsn: str,
                 settings: PolicySettings | None = None,
                 catalogue: Catalogue | None = None) -> None:
        super().__init__(None, Path(redact_dsn(dsn)), settings,  # type: ignore[arg-type]
                         catalogue)
        self._pool = pool
        self.where = redact_dsn(dsn)
        self._local = threading.local()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open_dsn(cls, dsn: str, *, create: bool = True, read_only: bool = False,
                 settings: PolicySettings | None = None,
                 catalogue: Catalogue | None = None) -> PostgresLedger:
        """:meth:`Ledger.open` on PostgreSQL (its ``create`` and ``read_only``)."""
        pool = open_pool(dsn)
        ledger = cls(pool, dsn, settings, catalogue)
        ledger.read_only = read_only
        try:
            ledger._initialise_pg(create=create and not read_only)
        except BaseException:
            pool.close()
            raise
        return ledger

    def _initialise_pg(self, *, create: bool) -> None:
        """Check what the database holds, and make a new ledger there with ``create``; an
        existing one is left at its version (:meth:`Ledger.open`: a write migrates it). Reads
        only, under the schema lock (a migration's transaction holds it until it commits), so
        a role with nothing but ``SELECT`` on the tables can open it."""
        def run() -> bool:  # whether it made a new ledger
            self._q("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [_SCHEMA_LOCK])
            meta = self._q("SELECT to_regclass('meta') IS NOT NULL, "
                           "to_regclass('journal') IS NOT NULL")[0]
            has_meta, has_journal = bool(meta[0]), bool(meta[1])
            values = dict(self._q("SELECT key, value FROM meta")) if has_meta else {}
            if (has_meta or has_journal) and values.get("format") != "certescrow-ledger":
                raise LedgerError(f"{self.where}: the database holds tables of another "
                                  "application, not a certescrow ledger; refusing to touch it")
            if has_meta:
                self.opened_version = self.schema_version = self._version_of(values)
                return False
            # No table may also mean no schema: a search_path naming only schemas that do
            # not exist leaves current_schema() NULL, and that is a mistyped DSN, not an
            # empty ledger (CREATE would fail with the same SQLSTATE).
            if self._q("SELECT current_schema()")[0][0] is None:
                raise LedgerError(f"{self.where}: {describe_sqlstate('3F000')}")
            if not create:
                raise LedgerError(f"{self.where}: no ledger here (nothing has been "
                                  "recorded yet)")
            for statement in _SCHEMA:
                self._q(statement)
            self._q("INSERT INTO meta VALUES ('format', 'certescrow-ledger')")
            self._q("INSERT INTO meta VALUES ('schema_version', ?)", [str(_FIRST_VERSION)])
            # brought up to date in the transaction that made it: no reader sees it older
            self._upgrade_from(_FIRST_VERSION)
            return True

        if self._transaction(run, lock=None):
            self.schema_version = PG_SCHEMA_VERSION
            self._sql_after_rewrite()  # the back-filled projection
        self._opened_at_version()

    def _version_of(self, meta: dict[str, str]) -> int:
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise LedgerError(f"{self.where}: the ledger's schema version is not a "
                              "number; refusing to touch it") from None
        if version > PG_SCHEMA_VERSION:
            raise self._newer(version)
        return version

    def _migrate_locked(self) -> int:
        def run() -> int:
            self._q("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [_SCHEMA_LOCK])
            # read again under the lock: another writer may have migrated it since it opened
            version = self._version_of(dict(self._q("SELECT key, value FROM meta")))
            self._upgrade_from(version)
            return version

        found = self._transaction(run, lock=None)
        if found < 3:
            self._sql_after_rewrite()  # the back-filled projection
        return found

    def _upgrade_from(self, version: int) -> None:
        """The steps from ``version`` to :data:`PG_SCHEMA_VERSION` and the new stamp, in the
        caller's transaction (it holds the schema lock; DDL is transactional here)."""
        for step in range(version, PG_SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                self._q(statement)
        if version < 3:
            self._backfill_projection()
        if version < PG_SCHEMA_VERSION:
            self._q("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    [str(PG_SCHEMA_VERSION)])

    def close(self) -> None:
        self._pool.close()

    def release(self) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement: in this thread's transaction when there is one, else on its own."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        try:
            if conn is not None:
                self._flush(conn)
                return _rows(conn, sql, params)
            with self._pool.connection() as own:
                return _rows(own, sql, params)
        except psycopg.errors.IntegrityError:
            raise StorageConflictError("a row with this key already exists") from None
        except (psycopg.Error, PoolTimeout) as exc:
            raise ledger_error(self.where, exc) from None

    @contextmanager
    def _connection_for_transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            self._local.conn = conn
            self._local.pending = []
            try:
                yield conn
            finally:
                self._local.conn = None
                self._local.pending = []
                self._local.batch = None

    def _send_queued(self) -> None:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._flush(conn)

    def _defer(self, sql: str, params: Sequence[Any]) -> None:
        self._local.pending.append((translate(sql), tuple(params)))

    def _flush(self, conn: psycopg.Connection[Any]) -> None:
        """Send the queued writes (the projection's rows): consecutive statements of one text
        as one ``executemany`` (one pipeline, no cursor a row)."""
        pending: list[tuple[str, tuple[Any, ...]]] = getattr(self._local, "pending", [])
        if not pending:
            return
        self._local.pending = []
        try:
            with conn.cursor() as cur:
                start = 0
                while start < len(pending):
                    sql = pending[start][0]
                    end = start + 1
                    while end < len(pending) and pending[end][0] == sql:
                        end += 1
                    cur.executemany(sql, [params for _, params in pending[start:end]])
                    start = end
        except psycopg.errors.IntegrityError:
            raise StorageConflictError("a row with this key already exists") from None

    def _transaction(self, fn: Callable[[], T], *, lock: str | None) -> T:
        if getattr(self._local, "conn", None) is not None:
            return fn()  # already inside this thread's transaction
        try:
            with self._connection_for_transaction() as conn:
                if lock is not None:
                    self._q("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [lock])
                self._begin_projection()
                result = fn()
                self._project_touched()
                self._flush(conn)
                return result
        except (psycopg.Error, PoolTimeout) as exc:
            raise ledger_error(self.where, exc) from None

    def _retry(self, fn: Callable[[], T]) -> T:
        return self._transaction(fn, lock=None)

    def _write(self, fn: Callable[[], T]) -> T:
        self.migrate()  # the schema first (refused when opened read_only)
        return self._transaction(fn, lock=_WRITE_LOCK)

    # --- SQL (writing)
    def _sql_seq_by_dedup(self, dedup_key: str) -> int | None:
        rows = self._q("SELECT seq FROM journal WHERE dedup_key = ?", [dedup_key])
        return None if not rows else int(rows[0][0])

    def _sql_insert(self, event: Event, key: str | None, recorded: datetime) -> int:
        rows = self._q(
            "INSERT INTO journal (contract_id, kind, at_utc, payload, dedup_key, recorded_utc) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
            [event.contract_id, event.KIND, instant_to_text(event.at_utc), _payload(event), key,
             instant_to_text(recorded)])
        return int(rows[0][0])

    def _sql_accepted_at(self, contract_id: str) -> datetime | None:
        rows = self._q("SELECT at_utc FROM journal WHERE contract_id = ? AND kind = ? "
                       "ORDER BY seq LIMIT 1", [contract_id, ApplicationAccepted.KIND])
        return None if not rows else text_to_instant(str(rows[0][0]))

    def _sql_replace_sans(self, contract_id: str, sans: Sequence[str]) -> None:
        self._q("DELETE FROM bound_sans WHERE contract_id = ?", [contract_id])
        self._add_sans(contract_id, sans)

    def _add_sans(self, contract_id: str, sans: Sequence[str]) -> None:
        for san in sans:
            self._q(_INSERT_SAN, [contract_id, san.lower()])

    # --- SQL (intake)
    def _sql_batch_marked(self, host: str, outbox: str, sequence: int) -> bool:
        return bool(self._q("SELECT 1 FROM fleet_batches WHERE host = ? AND outbox = ? "
                            "AND seq = ?", [host, outbox, sequence]))

    def _sql_mark_batch(self, host: str, outbox: str, sequence: int, recorded: int,
                        now: datetime) -> None:
        self._q("INSERT INTO fleet_batches (host, outbox, seq, recorded, received_utc) "
                "VALUES (?, ?, ?, ?, ?)", [host, outbox, sequence, recorded, instant_to_text(now)])

    def _sql_batch_rows(self, hosts: list[bytes], places: list[bytes]) -> list[tuple[Any, ...]]:
        return self._q("SELECT s.host, s.location, s.idx, s.sha256, s.contract_id, j.payload "
                       "FROM sightings s JOIN journal j ON j.seq = s.seq "
                       "WHERE s.host = ANY(?) AND sha256(s.location) = ANY(?) "
                       "AND s.location = ANY(?)",
                       [hosts, [_digest(place) for place in places], places])

    def _sql_send_journal(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """One statement for the rows, whatever their number. Their numbers are drawn first,
        one each (the writers' lock is held, so they are the identity's next ones), sorted
        into intake order and inserted explicitly."""
        drawn = sorted(int(r[0]) for r in self._q(
            "SELECT nextval(pg_get_serial_sequence('journal', 'seq')) "
            "FROM generate_series(1, ?)", [len(rows)]))
        self._bulk(_INSERT_JOURNAL_ROWS, [drawn, *_columns(rows)])
        return drawn

    def _sql_send_rows(self, sightings: list[tuple[Any, ...]],
                       sans: list[tuple[Any, ...]]) -> None:
        if sightings:
            self._bulk(_UPSERT_SIGHTING_ROWS, _columns(sightings))
        if sans:
            self._bulk(_INSERT_SAN_ROWS, _columns(sans))

    def _bulk(self, sql: str, arrays: list[list[Any]]) -> None:
        """One statement over whole columns (``unnest`` of binary arrays: psycopg's text
        arrays escape every element through a regex, which cost more than the rows)."""
        conn: psycopg.Connection[Any] = self._local.conn
        self._flush(conn)
        try:
            conn.execute(sql, arrays)
        except psycopg.errors.IntegrityError:
            raise StorageConflictError("a row with this key already exists") from None
        except psycopg.Error as exc:
            raise ledger_error(self.where, exc) from None

    def _sql_contract_elsewhere_at(self, obs: Observation, contract: str) -> bool:
        return bool(self._q(
            "SELECT 1 FROM sightings WHERE host = ? AND sha256(location) = ? AND location = ? "
            "AND contract_id = ? AND idx != ?",
            [_key(obs.host), _digest(place := _key(obs.location)), place, contract, obs.index]))

    def _sql_contracts_by_san(self, sans: Sequence[str]) -> list[str]:
        rows = self._q("SELECT DISTINCT contract_id FROM bound_sans WHERE san = ANY(?)",
                       [[s.lower() for s in sans]])
        return [str(r[0]) for r in rows]

    def _sql_sightings_at(self, host: str, location: str) -> list[tuple[str, str | None]]:
        place = _key(location)
        rows = self._q("SELECT sha256, contract_id FROM sightings WHERE host = ? AND "
                       "sha256(location) = ? AND location = ? ORDER BY idx",
                       [_key(host), _digest(place), place])
        return [(str(sha), contract) for sha, contract in rows]

    def _sql_drop_sightings(self, host: str, location: str) -> None:
        place = _key(location)
        self._q("DELETE FROM sightings WHERE host = ? AND sha256(location) = ? "
                "AND location = ?", [_key(host), _digest(place), place])

    def open_sightings(self, host: str) -> list[tuple[str, int, str]]:
        rows = self._q("SELECT location, idx, sha256 FROM sightings WHERE host = ? "
                       "ORDER BY location, idx", [_key(host)])
        return [(_unkey(bytes(loc)), int(idx), str(sha)) for loc, idx, sha in rows]

    # --- SQL (projection)
    def _sql_projection_source(self, contract_id: str) -> list[tuple[int, Any, str]]:
        return self._q("SELECT seq, payload, at_utc FROM journal WHERE contract_id = ? "
                       "ORDER BY at_utc, seq", [contract_id])

    def _sql_accepted_ids(self) -> list[str]:
        return self.contract_ids()

    def _sql_latest_recorded(self) -> str | None:
        rows = self._q("SELECT max(recorded_utc) FROM journal")
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def _sql_projection_in_step(self) -> bool:
        rows = self._q("SELECT (SELECT coalesce(max(seq), 0) FROM journal), "
                       "(SELECT value FROM meta WHERE key = 'projected_seq')")
        if not rows or str(rows[0][0]) != str(rows[0][1]):
            return False
        members = self._q(_MEMBERSHIP_SQL)
        return _members_in_step(members[0] if members else None)

    def _sql_set_watermark(self) -> None:
        self._q("INSERT INTO meta (key, value) SELECT 'projected_seq', "
                "CAST(coalesce(max(seq), 0) AS TEXT) FROM journal "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


    def _sql_put_projection(self, row: ProjectionRow) -> None:
        # Queued with the transaction's other writes: sent in one pipeline before the next
        # read or the commit.
        self._defer("DELETE FROM projection_actions WHERE contract_id = ?", [row.contract_id])
        self._defer(_UPSERT_PROJECTION, _projection_values(row))
        for values in _action_values(row):
            self._defer(_INSERT_ACTION, values)

    def _sql_drop_projection(self, contract_id: str) -> None:
        self._defer("DELETE FROM projection_actions WHERE contract_id = ?", [contract_id])
        self._defer("DELETE FROM projection WHERE contract_id = ?", [contract_id])

    def _sql_after_rewrite(self) -> None:
        """``VACUUM (ANALYZE)`` the projection once it was rewritten: the sweep's questions
        (in step? stale? how many?) are index-only scans only where the visibility map says
        the pages are all-visible, and the planner needs statistics of the new rows.
        Autovacuum would get there within a minute or so; the desk's next ``policy actions``
        should not wait for it (100,000 contracts: 0.6 s of scans, 0.1 s after). It is an
        optimisation: a role that does not own the tables gets a warning from the server,
        and an error here leaves the repaired ledger as it is."""
        try:
            with self._pool.connection() as conn:  # autocommit: VACUUM runs outside one
                conn.execute("VACUUM (ANALYZE) projection, projection_actions")
        except (psycopg.Error, PoolTimeout):
            pass

    def _sql_clear_projection(self) -> None:
        self._q("DELETE FROM projection_actions")
        self._q("DELETE FROM projection")

    def _sql_projection_unusable(self, at: datetime) -> int:
        rows = self._q("SELECT count(*) FROM projection WHERE last_at > ? OR fold_key != ?",
                       [instant_to_text(at), self.projection_keys()[0]])
        return int(rows[0][0])

    def _sql_rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._q(sql, params)

    def _sql_stream(self, sql: str, params: Sequence[Any]) -> Iterator[list[Any]]:
        """The rows of a query in chunks through a server-side cursor: memory stays flat
        however many rows there are (one pool connection held while it is read)."""
        own: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if own is not None:  # inside this thread's transaction: read what it sees
            self._flush(own)
            with own.cursor(name=f"certescrow_stream_{id(sql)}", binary=True) as cur:
                cur.execute(translate(sql), tuple(params))
                yield from iter(lambda: cur.fetchmany(_SWEEP_PAGE), [])
                return
        try:
            with self._pool.connection() as conn, conn.transaction():
                if _CHUNKED_ROWS:
                    # The server sends every row without waiting for a FETCH: it reads and
                    # sends the next rows while this process renders the last ones (a
                    # server-side cursor's round trip a page made the two take turns).
                    rows = conn.cursor().stream(translate(sql), tuple(params),
                                                binary=True, size=_SWEEP_PAGE)
                    try:
                        yield from iter(lambda: list(itertools.islice(rows, _SWEEP_PAGE)), [])
                    finally:
                        # A reader that stops early (`| head`, Ctrl-C): the stream holds the
                        # connection's lock until it is closed (it cancels the query), and
                        # leaving the transaction takes that lock: closed first, or it hangs.
                        rows.close()
                    return
                with conn.cursor(name="certescrow_stream", binary=True) as cur:
                    cur.execute(translate(sql), tuple(params))
                    yield from iter(lambda: cur.fetchmany(_SWEEP_PAGE), [])
        except (psycopg.Error, PoolTimeout) as exc:
            raise ledger_error(self.where, exc) from None

    # --- SQL (reading)
    def contract_ids(self) -> list[str]:
        rows = self._q("SELECT DISTINCT contract_id FROM journal WHERE kind = ? "
                       "ORDER BY contract_id", [ApplicationAccepted.KIND])
        return [str(r[0]) for r in rows]

    def count(self) -> int:
        return int(self._q("SELECT count(*) FROM journal")[0][0])

    def _sql_journal(self, contract_id: str, at: datetime | None,
                     as_recorded: datetime | None) -> list[Any]:
        sql = "SELECT seq, payload, recorded_utc FROM journal WHERE contract_id = ?"
        sql, params = _time_filters(sql, [contract_id], at, as_recorded)
        return self._q(sql + " ORDER BY at_utc, seq", params)

    def _sql_sweep(self, at: datetime, as_recorded: datetime | None) -> Any:
        sql = ("SELECT seq, contract_id, payload, at_utc FROM journal "
               "WHERE contract_id IS NOT NULL")
        sql, params = _time_filters(sql, [], at, as_recorded)
        return _Pager(self, sql, params)

    def _sql_placements(self, at: datetime | None, as_recorded: datetime | None) -> list[Any]:
        sql = "SELECT seq, payload, recorded_utc FROM journal WHERE kind IN (?, ?, ?)"
        sql, params = _time_filters(sql, [CertificateObserved.KIND, CertificateGone.KIND,
                                          ApplicationAccepted.KIND], at, as_recorded)
        return self._q(sql + " ORDER BY seq", params)


def _rows(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> list[Any]:
    cur = conn.execute(translate(sql), tuple(params))
    return cur.fetchall() if cur.description is not None else []
