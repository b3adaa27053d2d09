"""The ledger: an append-only journal of contract events in one SQLite file.

Why it is built the way it is:

* **Nothing is lost.** Every write is one ``BEGIN IMMEDIATE`` transaction in WAL mode: a crash
  leaves either the whole event or none of it. Several processes (the daemon, a CLI, a script)
  may write at once: SQLite serialises them on the write lock, ``busy_timeout`` waits for it and
  a bounded retry loop covers the cases SQLite reports as busy without waiting.
* **Append-only.** Triggers abort any ``UPDATE`` or ``DELETE`` of the journal, so not even a
  bug (or a hand-run ``sqlite3``) can rewrite history. State is derived by folding, never stored.
* **Idempotent intake.** The agent re-reports what it sees on every resync; the ``sightings``
  table (primary key ``host, location, index``) remembers what is where, so the same observation
  twice records nothing. Re-observing a certificate after it was reported gone is new, and is
  recorded.
* **Self-describing.** ``PRAGMA application_id`` marks the file as a certescrow ledger and
  ``PRAGMA user_version`` holds the schema version: another SQLite file, or one written by a
  newer certescrow, is refused with a clear :class:`LedgerError` instead of being "migrated".
* **Two times.** Every journal row carries when the event happened in the world (``at_utc``,
  the event's own instant) and when the ledger learned of it (``recorded_utc``, the caller's
  ``now``: the real clock enters at the CLI edge, never here). Reading "as of T" uses the first
  (everything recorded so far); ``as_recorded`` adds the second (what the ledger knew then).
* **Refuses what the terms rule out.** ``append`` folds the contract at the event's instant and
  lets :func:`policy.state.check_event` refuse (CONTRACT.md "What the ledger refuses"); an event
  dated after ``now`` is refused too: the ledger records what happened.
* **Reading never fails because of one event.** An event that cannot be decoded or applied is
  skipped and described in :attr:`Ledger.problems`; every other event is still read.
* **Versioned.** ``PRAGMA user_version`` is the schema version. An older ledger is migrated
  by the first write (or ``certescrow policy migrate``), one version step at a time, in the
  transaction that stamps the new version; opening never migrates. A reader (``read_only``)
  reads it as it is from :data:`READABLE_FROM` on and refuses an older one: a reader that
  migrated would break a still-running older writer (on PostgreSQL it fails every write once
  the keys changed under it) and would need the owner's privileges to read.
* **Paths round-trip.** A location is ``os.fsdecode``'d text and may hold lone surrogates
  (SQLite TEXT cannot): the ``sightings`` keys store the bytes (``surrogateescape``), and the
  JSON payload escapes them (``\\udcXX``), both exact inverses.
* **Private.** Created ``0600`` inside a directory created ``0700``.

The SQL lives in the methods below the ``# --- SQL`` markers of each section, so that another
backend can implement the same methods.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

try:
    import orjson
except ImportError:  # pragma: no cover - a platform orjson has no wheel for (see pyproject)
    orjson = None  # type: ignore[assignment]

from .catalogue import Catalogue
from .decisions import Decision
from .errors import (
    ContractStateError,
    FutureEventError,
    LedgerError,
    PolicyError,
    UnknownContractError,
)
from .evaluate import decision_from_json
from .events import (
    ApplicationAccepted,
    CertificateBound,
    CertificateGone,
    CertificateObserved,
    ContractChanged,
    Event,
    RenewalMade,
    Terminated,
    event_to_json,
    instant_to_text,
    instant_to_tokyo_text,
    kind_phrase,
    text_to_instant,
)
from .facts import storable
from .intake import Binding, IntakeReceipt, Observation
from .projection import (
    NO_DUE,
    ProjectionRow,
    build_row,
    decode_event,
    eval_key,
    fold_key,
    fold_problem_text,
)
from .settings import PolicySettings
from .sqlitetext import sqlite_reason
from .state import (
    ContractState,
    FoldProblem,
    check_event,
    check_history,
    check_repeat,
    facts_evaluable,
    fold,
    needs_history_check,
    state_from_json,
)
from .storage import StorageConflictError, is_postgres_dsn, refuse_conninfo
from .tokyo import require_aware, tokyo_date

__all__ = [
    "APPLICATION_ID",
    "READABLE_FROM",
    "SCHEMA_VERSION",
    "BatchReceipt",
    "JournalEntry",
    "JournalProblem",
    "Ledger",
]

APPLICATION_ID = 0x43455254
"""``PRAGMA application_id`` of a certescrow ledger ("CERT")."""
SCHEMA_VERSION = 3
"""1: the first format. 2: ``recorded_utc`` is the caller's ``now`` in the fixed-width
microsecond form of ``at_utc`` (version 1 let SQLite's clock fill it in milliseconds), and the
``sightings`` keys are bytes so that any file name round-trips. 3: the projection
(``projection``, ``projection_actions``: each contract's folded state and due actions,
:mod:`policy.projection`), back-filled from the journal by the migration."""
READABLE_FROM = 3
"""The oldest schema version a reader reads as it is, on both backends: the readers query the
projection (version 3); what came after (PostgreSQL's version 4) changed only index keys, and
each query by location names both the digest and the location, which an older key serves as
well. A reader refuses an older ledger, naming ``certescrow policy migrate``."""
BUSY_TIMEOUT_S = 30.0
_REFRESH_CHUNK = 200
_RETRIES = 50

PROJECTION_SCHEMA = (
    # Derived, rebuilt from the journal at will (policy verify --repair): no history here.
    """CREATE TABLE IF NOT EXISTS projection (
    contract_id  TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    last_at      TEXT NOT NULL,
    fold_key     TEXT NOT NULL,
    eval_key     TEXT NOT NULL,
    evaluated_on TEXT NOT NULL,
    fresh_until  TEXT NOT NULL,
    next_due     TEXT,
    decisions    TEXT NOT NULL,
    problems     TEXT
)""",
    # Stored in policy actions' order (WITHOUT ROWID: clustered on the key), each row with
    # its contract's freshness, so the sweep is one sequential scan with no join.
    """CREATE TABLE IF NOT EXISTS projection_actions (
    due_key      TEXT NOT NULL,
    sev_key      INTEGER NOT NULL,
    contract_id  TEXT NOT NULL,
    action       TEXT NOT NULL,
    ordinal      INTEGER NOT NULL,
    due          TEXT,
    keys         TEXT NOT NULL,
    evaluated_on TEXT NOT NULL,
    fresh_until  TEXT NOT NULL,
    last_at      TEXT NOT NULL,
    clause       TEXT NOT NULL,
    explanation  TEXT NOT NULL,
    unpriced     TEXT,
    body         TEXT NOT NULL,
    PRIMARY KEY (due_key, sev_key, contract_id, action, ordinal)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS projection_actions_by_contract ON projection_actions "
    "(contract_id)",
    # Covers the sweep's questions about every row (in step? stale? problems?), so they read
    # this narrow index, not the rows with their states.
    "CREATE INDEX IF NOT EXISTS projection_fresh ON projection "
    "(eval_key, fold_key, evaluated_on, fresh_until, last_at, contract_id, problems)",
)
"""The projection's tables (version 3). ``projection``: one row per accepted contract (see
:mod:`policy.projection`); ``projection_actions``: its cached due actions, one row each,
indexed in ``policy actions``' order so that the sweep streams them sorted."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    contract_id TEXT,
    kind        TEXT NOT NULL,
    at_utc      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    dedup_key   TEXT UNIQUE,
    recorded_utc TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS journal_by_contract ON journal (contract_id, at_utc, seq);
CREATE INDEX IF NOT EXISTS journal_by_kind ON journal (kind, contract_id);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN
    SELECT RAISE(ABORT, 'the certescrow journal is append-only: events cannot be changed');
END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN
    SELECT RAISE(ABORT, 'the certescrow journal is append-only: events cannot be deleted');
END;
CREATE TABLE IF NOT EXISTS sightings (
    host        BLOB NOT NULL,
    location    BLOB NOT NULL,
    idx         INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    contract_id TEXT,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (host, location, idx)
);
CREATE TABLE IF NOT EXISTS bound_sans (
    contract_id TEXT NOT NULL,
    san         TEXT NOT NULL,
    PRIMARY KEY (contract_id, san)
);
CREATE INDEX IF NOT EXISTS bound_sans_by_san ON bound_sans (san);
""" + "\n".join(s + ";" for s in PROJECTION_SCHEMA) + "\n"

_APPEND_ONLY_UPDATE = """
CREATE TRIGGER journal_no_update BEFORE UPDATE ON journal
BEGIN
    SELECT RAISE(ABORT, 'the certescrow journal is append-only: events cannot be changed');
END;
"""

_MIGRATE_1_TO_2 = [
    # The one sanctioned rewrite of history's *format*, never its content: lift the trigger,
    # widen version 1's millisecond recorded_utc to the fixed-width microsecond form, restore it.
    "DROP TRIGGER IF EXISTS journal_no_update",
    "UPDATE journal SET recorded_utc = substr(recorded_utc, 1, 23) || '000Z' "
    "WHERE length(recorded_utc) = 24",
    _APPEND_ONLY_UPDATE.strip(),
    "UPDATE sightings SET host = CAST(host AS BLOB), location = CAST(location AS BLOB) "
    "WHERE typeof(location) = 'text' OR typeof(host) = 'text'",
]
_MIGRATIONS: dict[int, list[str]] = {1: _MIGRATE_1_TO_2, 2: list(PROJECTION_SCHEMA)}
"""Statements taking a ledger from version ``key`` to ``key + 1``."""

T = TypeVar("T")
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)



_MEMBERSHIP_SQL = (
    # Projection rows whose contract has no event (a key damaged or rewritten by hand), and
    # contracts of the journal with no row (one deleted): either puts the projection out of
    # step, so that no contract drops out of what the desk reads (the re-review of review 12).
    "SELECT (SELECT count(*) FROM projection p WHERE NOT EXISTS "  # noqa: S608 - constants only
    "(SELECT 1 FROM journal j WHERE j.contract_id = p.contract_id)), "
    # (the contracts accepted: an observation a store bound to an id no contract has makes
    # no row, and is no sign of a projection out of step)
    "(SELECT count(*) FROM (SELECT DISTINCT contract_id FROM journal "
    f"WHERE kind = '{ApplicationAccepted.KIND}' AND contract_id IS NOT NULL) j "
    "WHERE NOT EXISTS (SELECT 1 FROM projection p WHERE p.contract_id = j.contract_id)), "
    # Cached actions of a contract without a row (their contract id rewritten): `policy
    # actions` reads them as they are (the second re-review).
    "(SELECT count(*) FROM projection_actions a WHERE NOT EXISTS "
    "(SELECT 1 FROM projection p WHERE p.contract_id = a.contract_id))")


def _members_in_step(row: Sequence[Any] | None) -> bool:
    """Whether what :data:`_MEMBERSHIP_SQL` answered says the projection holds exactly the
    journal's contracts, and cached actions of those only."""
    return row is not None and tuple(row) == (0, 0, 0)


def _sqlite_target(path: Path, read_only: bool) -> tuple[str, bool]:
    """What SQLite opens ``path`` by, and whether that is a URI. A writer, or a reader that
    may write the file, opens the path itself. A reader that may not (an auditor, a ledger of
    another owner, mode 0644) opens it ``mode=ro``, and SQLite writes nothing to it.

    A WAL database is read through its index (``-shm``) beside the real file (links
    resolved): while a writer has it open the index is there; with none, SQLite makes it, in
    that directory. An opener that can do neither is refused in our words (never with
    ``immutable=1``, which skips locking: a writer starting meanwhile gives torn pages)."""
    real = Path(os.path.realpath(path))
    directory_writable = os.access(real.parent, os.W_OK)
    has_index = real.with_name(real.name + "-shm").exists()
    if not directory_writable and not has_index:
        if read_only:
            raise LedgerError(
                f"{path}: cannot read the ledger: no writer has it open, and SQLite keeps the "
                f"index it reads it through beside it, in {real.parent}, which this user may "
                "not write; read it as its owner (or while the daemon runs), or read a copy "
                f"(`sqlite3 {shlex.quote(str(real))} \".backup COPY\"`)")
        raise LedgerError(
            f"{path}: cannot open the ledger for recording: its directory {real.parent} is "
            "not writable (SQLite keeps its -wal and -shm files there)")
    if not read_only or os.access(real, os.W_OK):
        return str(path), False
    # an absolute path: "file://" and an empty authority, so a path beginning "//" is a path
    return f"file://{urllib.parse.quote(str(real))}?mode=ro", True


@dataclass(frozen=True, slots=True)
class BatchReceipt:
    """What :meth:`Ledger.record_batch` did with a fleet agent's batch."""

    recorded: int
    replay: bool
    """Already recorded: nothing was (exactly once)."""
    refused: int = 0
    """Observations refused because the rules cannot evaluate their certificate (dates at
    the ends of the calendar; ``IntakeReceipt.refused``): never recorded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    """One journal row: its sequence number, the event (``event.at_utc``: when it happened),
    and when the ledger recorded it (fixed-width ISO 8601 UTC text)."""

    seq: int
    event: Event
    recorded_utc: str

    @property
    def recorded(self) -> datetime:
        return text_to_instant(self.recorded_utc)

    def to_json(self) -> dict[str, Any]:
        # "at" (happened) and "recorded" (learned) in the same fixed-width form.
        return {"seq": self.seq, "recorded": self.recorded_utc, **event_to_json(self.event)}


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalProblem:
    """A journal event that could not be read or applied: it was skipped, the rest was read."""

    seq: int | None
    contract_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"journal event #{self.seq}" if self.seq is not None else "a journal event"
        who = f" of contract {self.contract_id}" if self.contract_id else ""
        return f"{where}{who}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "contract": self.contract_id, "message": self.message}


def _key(text: str) -> bytes:
    """A sightings key: the name's bytes (``os.fsencode``'s mapping, whatever the locale)."""
    return text.encode("utf-8", "surrogateescape")


def _unkey(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")


def _payload(event: Event) -> str:
    """The event's JSON. Lone surrogates (a non-UTF-8 file name) cannot be stored as SQLite
    TEXT: such a payload is written with ``\\u`` escapes, which ``json.loads`` reverses.
    orjson writes the same text as the json module (``ensure_ascii=False``, compact) in a
    fifth of the time, which is most of an observation's cost at intake; it refuses lone
    surrogates and integers beyond 64 bits, which take the json module's path."""
    document = event_to_json(event)
    if orjson is not None:
        try:
            return orjson.dumps(document).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(document, ensure_ascii=True, separators=(",", ":"))
    return text


# What a queued intake row is (``Ledger._send_intake``).
_JOURNAL, _SIGHTING, _SAN = "journal", "sighting", "san"


def _seen_with_binding(payload: str, obs: Observation) -> bool:
    """Whether the event that put the sighting at ``obs``'s place (its ``payload``) was
    observed with ``obs``'s binding (an event that cannot be read says no)."""
    try:
        seen = json.loads(payload).get("binding")
    except (ValueError, AttributeError):
        return False
    b = obs.binding
    return bool(seen == {
        "category": None if b.category is None else b.category.value,
        "item": b.item,
        "tier": None if b.tier is None else b.tier.value,
        "match_by_san": b.match_by_san,
    })


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Ledger:
    """The embedded :class:`policy.intake.Intake`: contract events in one SQLite file."""

    concurrent_reads = False
    """Whether reads may run in several threads at once (an SQLite connection is one
    thread's)."""
    _BODY_BYTES = "CAST(a.body AS BLOB)"
    """A cached action's ``--json`` element as the UTF-8 bytes the command writes (no decoding
    and encoding again of 126 MB over 100,000 contracts)."""
    _RAW = "CAST({} AS BLOB)"
    """A projection column as it is stored, for :func:`_stored_row` to decode: SQLite decodes
    TEXT as UTF-8 while a cursor is fetched, so one damaged byte in one row would stop the
    whole read with an error that quotes the row (a derived row is never worth that)."""
    target_version = SCHEMA_VERSION
    """The schema version this certescrow writes: a write first migrates an older ledger."""
    upgrading_doc = 'docs/ledger.md, "Format and safety"'
    """Where the refusal of a ledger too old to read sends its reader."""

    def __init__(self, conn: sqlite3.Connection, path: Path,
                 settings: PolicySettings | None = None,
                 catalogue: Catalogue | None = None) -> None:
        self._conn = conn
        self.path = path
        self.where = str(path)
        """The ledger as messages name it (a DSN without its password)."""
        self.read_only = False
        """Opened by a command that only reads (:meth:`open`): it never writes or migrates."""
        self.opened_version = 0
        """The ledger's schema version as :meth:`open` found it (0: it made a new ledger)."""
        self.schema_version = 0
        """The ledger's schema version now: :attr:`opened_version` until a write (or
        :meth:`migrate`) brought it up to :attr:`target_version`."""
        self.settings = settings or PolicySettings()
        """The provider's settings the admission checks use (answer deadline, period rule)."""
        self._catalogue = catalogue
        self._keys: tuple[str, str] | None = None
        # The contracts a write transaction touched (their projection rows are rebuilt before
        # it commits) and the latest recording time among its rows, per thread.
        self._tx = threading.local()
        self.problems: list[JournalProblem] = []
        """Events skipped while reading (each once), for the caller to report."""
        self._problem_keys: set[tuple[int | None, str | None, str]] = set()
        # One connection may be shared by the daemon's threads: a transaction must not
        # interleave with another thread's statements on it.
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path | str, *, create: bool = True, read_only: bool = False,
             settings: PolicySettings | None = None,
             catalogue: Catalogue | None = None) -> Ledger:
        """Open (and with ``create``, create) the ledger at ``path``. ``settings`` are the
        provider's settings the admission checks apply; ``settings`` and ``catalogue``
        (default: the embedded one) are those the projection's cached decisions are evaluated
        with (a reader with others evaluates again).

        Opening never migrates a ledger this certescrow reads as it is (version
        :data:`READABLE_FROM` on): its first write does (:meth:`migrate`). A command that only
        reads must not change the schema under an older writer still running (on PostgreSQL
        that writer then fails every write), nor need the owner's privileges. ``read_only`` is
        such a command: it never creates (whatever ``create`` says), writes or migrates, and a
        ledger older than :data:`READABLE_FROM` is refused, naming the command that migrates
        it; a writer migrates that one as it opens it (it could not read it otherwise).

        Raises :class:`LedgerError` when the file is not a certescrow ledger, was written by a
        newer certescrow, is too old for a reader, or cannot be created or read (the message
        names the file and why).
        """
        create = create and not read_only
        if is_postgres_dsn(path):  # --ledger postgresql://… (issue 13): policy/ledger_pg.py
            from .ledger_pg import PostgresLedger

            return PostgresLedger.open_dsn(path, create=create, read_only=read_only,
                                           settings=settings, catalogue=catalogue)
        refuse_conninfo(path)
        path = Path(path).expanduser()
        if path.is_dir():
            raise LedgerError(f"{path}: is a directory, expected a ledger file")
        if not path.exists():
            if not create:
                raise LedgerError(f"{path}: no ledger here (nothing has been recorded yet)")
            _create_private_file(path)
        elif not os.access(path, os.R_OK):
            raise LedgerError(f"{path}: cannot open the ledger: permission denied (reading it "
                              "needs read access)")
        elif not read_only and not os.access(path, os.W_OK):
            raise LedgerError(f"{path}: cannot open the ledger: permission denied (recording "
                              "needs read and write access, also for the -wal/-shm files "
                              "beside it; the listing commands need only read access)")
        try:
            target, uri = _sqlite_target(path, read_only)
            conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False, uri=uri)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the ledger: {sqlite_reason(exc)}") from None
        ledger = cls(conn, path, settings, catalogue)
        ledger.read_only = read_only
        try:
            ledger._initialise()
        except sqlite3.OperationalError as exc:  # permissions, read-only medium, locks…
            conn.close()
            raise LedgerError(f"{path}: cannot open the ledger: {sqlite_reason(exc)}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(
                f"{path}: not a certescrow ledger ({sqlite_reason(exc)})") from None
        except LedgerError:
            conn.close()
            raise
        return ledger

    def _initialise(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        app_id, version = self._header()
        if app_id not in (0, APPLICATION_ID):
            raise LedgerError(
                f"{self.path}: not a certescrow ledger (SQLite application_id "
                f"{app_id:#x}, expected {APPLICATION_ID:#x}); refusing to touch it")
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        if app_id == 0:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise LedgerError(
                    f"{self.path}: an SQLite database of another application, not a certescrow "
                    "ledger; refusing to touch it")
            if self.read_only:  # an empty file: a reader makes nothing of it
                raise LedgerError(f"{self.path}: no ledger here (nothing has been recorded yet)")
        if not self.read_only:  # setting the journal mode is a write
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.opened_version = self.schema_version = version if app_id else 0
        self._opened_at_version()

    def _opened_at_version(self) -> None:
        """What opening does with the version found (both backends): nothing from
        :data:`READABLE_FROM` on (a write migrates); before it, a reader refuses and a writer
        migrates (a new ledger, version 0, is made)."""
        if self.schema_version >= READABLE_FROM:
            return
        if self.read_only:
            raise LedgerError(
                f"the ledger at {self.where} is schema {self.schema_version}; this certescrow "
                f"uses {self.target_version} (it reads schema {READABLE_FROM} and later without "
                "migrating them): run "
                f"`certescrow policy migrate --ledger {shlex.quote(self.where)}` as the "
                f"ledger's owner (see {self.upgrading_doc})")
        self.migrate()

    def _newer(self, version: int) -> LedgerError:
        return LedgerError(
            f"{self.where}: ledger schema version {version} was written by a newer certescrow "
            f"(this one reads up to version {self.target_version}); upgrade certescrow")

    def migrate(self) -> int:
        """Bring the schema up to :attr:`target_version`, as every write does first
        (``certescrow policy migrate`` alone: the owner, before the new version's writers
        start): one version step at a time, in the one transaction that stamps the new
        version, so a failed migration changes nothing. Returns the version found (the target:
        there was nothing to do; 0: a new ledger). Refused on a ledger opened ``read_only``."""
        if self.read_only:
            raise LedgerError(f"{self.where}: opened for reading only: nothing is written to "
                              "it, its schema is not migrated")
        if self.schema_version >= self.target_version:
            return self.schema_version
        found = self._migrate_locked()
        self.schema_version = self.target_version
        return found

    def _migrate_locked(self) -> int:
        """:meth:`migrate`'s work, in the backend's transaction under its lock."""
        return self._transact(self._create_schema)

    def _header(self) -> tuple[int, int]:
        app_id = int(self._conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        return app_id, version

    def _create_schema(self) -> int:
        # Re-checked inside the write lock: two processes may create or migrate it at once.
        app_id, version = self._header()
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
            return version
        if app_id == APPLICATION_ID:
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    self._conn.execute(statement)
            if version < 3:
                self._backfill_projection()
        else:
            for statement in _split_sql(_SCHEMA):
                self._conn.execute(statement)
            self._sql_set_watermark()
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('format', 'certescrow-ledger')")
        self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return version if app_id == APPLICATION_ID else 0

    def close(self) -> None:
        self._conn.close()

    def release(self) -> None:
        """Close a ledger whose file was deleted or replaced under this connection (H6, the
        daemon): first write the WAL into the file this connection opened and empty the WAL,
        so the ``-wal`` left at the path cannot be read as part of whatever is there now."""
        with contextlib.suppress(sqlite3.Error), self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    def _retry(self, fn: Callable[[], T]) -> T:
        delay = 0.005
        for attempt in range(_RETRIES):
            try:
                with self._lock:
                    return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == _RETRIES - 1:
                    raise LedgerError(f"{self.path}: {sqlite_reason(exc)}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in one write transaction (:meth:`_transact`), the schema migrated first
        (:meth:`migrate`: refused when opened ``read_only``)."""
        if getattr(self._tx, "writing", False):
            return fn()  # already inside this thread's write transaction (record_batch)
        self.migrate()
        return self._transact(fn)

    def _transact(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying while another writer
        holds the lock; any exception rolls everything back. The projection rows of the
        contracts it touched are rebuilt in the same transaction."""

        def attempt() -> T:
            self._conn.execute("BEGIN IMMEDIATE")
            self._begin_projection()
            self._tx.writing = True
            try:
                result = fn()
                self._project_touched()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._tx.writing = False
            self._conn.execute("COMMIT")
            return result

        return self._retry(attempt)

    # ------------------------------------------------------------------ writing
    def append(self, event: Event, *, dedup_key: str | None = None,
               now: datetime | None = None) -> int:
        """Append ``event`` after checking the contract's state at its instant admits it.

        ``now`` is when it is recorded (the real clock, read by the caller): an event dated
        after it is refused, and it is the row's ``recorded_utc``. Without ``now`` (library
        callers replaying history) the event's own instant is taken as its recording time.
        Returns the event's sequence number. Raises ``ContractStateError`` /
        ``UnknownContractError`` when the state refuses it (nothing is written then). A
        ``dedup_key`` already present makes this a no-op returning the existing sequence.
        """
        if now is not None:
            require_aware(now, "now")

        def run() -> int:
            if dedup_key is not None:
                found = self._sql_seq_by_dedup(dedup_key)
                if found is not None:
                    return found
            admitted = self._admit(event, now)
            return self._insert(admitted, dedup_key, now)

        return self._write(run)

    def append_many(self, events: Sequence[Event], *, now: datetime | None = None) -> list[int]:
        """Append several events in one transaction (all or none), each checked in turn."""
        if now is not None:
            require_aware(now, "now")

        def run() -> list[int]:
            return [self._insert(self._admit(event, now), None, now) for event in events]

        return self._write(run)

    def _admit(self, event: Event, now: datetime | None) -> Event:
        """The event as it is to be recorded, or a :class:`ContractStateError` saying why the
        terms rule it out. Runs inside the write transaction."""
        if now is not None and event.at_utc > now:
            raise FutureEventError(
                f"{kind_phrase(event)} dated {instant_to_tokyo_text(event.at_utc)} is in the "
                f"future (now {instant_to_tokyo_text(now)}): the ledger records what happened; "
                "a future time is for questions (contract show/list, policy actions --at), not "
                "for records", at_utc=event.at_utc, now_utc=now)
        if isinstance(event, CertificateBound) and not facts_evaluable(event.facts):
            raise ContractStateError(
                f"the certificate {event.facts.sha256[:16]}… has validity dates the contract "
                "rules cannot evaluate (at the ends of the representable range); not recorded")
        if isinstance(event, (CertificateBound, CertificateObserved)):
            altered = storable(event.facts)[1]
            if altered:
                raise ContractStateError(
                    f"the certificate {event.facts.sha256[:16]}…'s {', '.join(altered)} hold a "
                    "NUL character, an invalid character or more than a ledger stores; not "
                    "recorded (certescrow's reader records such a certificate escaped and "
                    "shortened, with a certificate-text-altered finding)")
        cid = event.contract_id
        if cid is None or isinstance(event, (CertificateObserved, CertificateGone)):
            return event
        entries = self.journal(cid)
        journal = [e.event for e in entries]
        state = self._state_or_none(cid, at=event.at_utc, events=journal)
        if state is None and not isinstance(event, ApplicationAccepted):
            accepted = self._sql_accepted_at(cid)
            if accepted is not None:
                # Instants, not days: on the acceptance day itself an event before its hour
                # is refused, and two equal dates would not say why.
                raise ContractStateError(
                    f"{kind_phrase(event)} dated {instant_to_tokyo_text(event.at_utc)} is "
                    f"before contract {cid!r} was accepted "
                    f"({instant_to_tokyo_text(accepted)}): a contract's events "
                    "begin with its acceptance (Art.2)")
        renewed: frozenset[str | None] = frozenset()
        if isinstance(event, RenewalMade):
            # Every renewal the journal holds, later-dated ones included: one renewal, one fee.
            everything = self._state_or_none(cid, at=_END_OF_TIME, events=journal)
            renewed = frozenset(r.certificate_sha256 for r in everything.renewals) \
                if everything is not None else frozenset()
        item = None
        if state is not None and isinstance(event, (RenewalMade, Terminated, ContractChanged)):
            # Art.8: the item's product end, from the catalogue this ledger was opened with
            # (an item an amended catalogue no longer holds has none known).
            with contextlib.suppress(PolicyError):
                item = self.catalogue.item(state.item)
        admitted = check_event(state, event, settings=self.settings, renewed=renewed,
                               item=item)
        # A repeated record is refused, naming the row that holds it (docs/ledger.md).
        check_repeat([(e.seq, e.event) for e in entries], admitted)
        if state is not None and needs_history_check(journal, admitted):
            # Back-dated: the events already recorded after it must still be admissible.
            check_history(cid, journal, admitted, settings=self.settings)
        return admitted

    def _insert(self, event: Event, dedup_key: str | None,
                recorded: datetime | None = None) -> int:
        key = dedup_key
        if isinstance(event, ApplicationAccepted):
            key = f"accepted|{event.contract_id}"
        self._touch(event.contract_id, recorded or event.at_utc)
        if key is None and getattr(self._tx, "batch_of", None) is not None:
            return self._queue_journal(event, recorded or event.at_utc)
        try:
            seq = self._sql_insert(event, key, recorded or event.at_utc)
        except (sqlite3.IntegrityError, StorageConflictError):
            if isinstance(event, ApplicationAccepted):
                raise ContractStateError(
                    f"contract {event.contract_id!r} already exists: choose another id"
                ) from None
            raise
        if isinstance(event, CertificateBound):
            self._sql_replace_sans(event.contract_id, event.facts.sans)
        return seq

    # --- SQL (writing)
    def _sql_seq_by_dedup(self, dedup_key: str) -> int | None:
        row = self._conn.execute("SELECT seq FROM journal WHERE dedup_key = ?",
                                 (dedup_key,)).fetchone()
        return None if row is None else int(row[0])

    def _sql_insert(self, event: Event, key: str | None, recorded: datetime) -> int:
        cur = self._conn.execute(
            "INSERT INTO journal (contract_id, kind, at_utc, payload, dedup_key, recorded_utc) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event.contract_id, event.KIND, instant_to_text(event.at_utc), _payload(event), key,
             instant_to_text(recorded)))
        return int(cur.lastrowid or 0)

    def _sql_accepted_at(self, contract_id: str) -> datetime | None:
        row = self._conn.execute(
            "SELECT at_utc FROM journal WHERE contract_id = ? AND kind = ? ORDER BY seq LIMIT 1",
            (contract_id, ApplicationAccepted.KIND)).fetchone()
        return None if row is None else text_to_instant(str(row[0]))

    def _sql_replace_sans(self, contract_id: str, sans: Sequence[str]) -> None:
        self._conn.execute("DELETE FROM bound_sans WHERE contract_id = ?", (contract_id,))
        self._add_sans(contract_id, sans)

    def _add_sans(self, contract_id: str, sans: Sequence[str]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO bound_sans (contract_id, san) VALUES (?, ?)",
            [(contract_id, san.lower()) for san in sans])

    # ------------------------------------------------------------------ projection
    @property
    def catalogue(self) -> Catalogue:
        """The catalogue the projection's cached decisions are evaluated with."""
        if self._catalogue is None:
            from .catalogue import load_catalogue

            self._catalogue = load_catalogue()
        return self._catalogue

    def projection_keys(self) -> tuple[str, str]:
        """This ledger's ``(fold_key, eval_key)`` (:mod:`policy.projection`)."""
        if self._keys is None:
            self._keys = (fold_key(self.settings), eval_key(self.settings, self.catalogue))
        return self._keys

    def _begin_projection(self) -> None:
        self._tx.touched = set()
        self._tx.recorded = None
        self._tx.inserted = False
        self._tx.watermark = None

    def _touch(self, contract_id: str | None, recorded: datetime) -> None:
        touched: set[str] | None = getattr(self._tx, "touched", None)
        if touched is None:
            return
        if not self._tx.inserted:
            # Whether the projection was in step with the journal before this transaction's
            # first row (read under the write lock): only then does it stay so after it.
            self._tx.inserted = True
            self._tx.watermark = self._sql_projection_in_step()
        if contract_id is None:
            return
        touched.add(contract_id)
        if self._tx.recorded is None or recorded > self._tx.recorded:
            self._tx.recorded = recorded

    def _project_touched(self) -> None:
        """Rebuild the projection rows of the contracts this transaction touched (one each,
        however many events it wrote for them: a batch of observations is one upsert per
        contract), and move the projection's watermark to the journal's last row when it was
        in step before."""
        touched: set[str] | None = getattr(self._tx, "touched", None)
        if not getattr(self._tx, "inserted", False):
            return
        recorded: datetime | None = self._tx.recorded
        self._tx.touched = set()
        self._tx.inserted = False
        today = _day_of(recorded) if recorded is not None else None
        for contract_id in sorted(touched or ()):
            self._project(contract_id, today)
        if self._tx.watermark:
            self._sql_set_watermark()

    def _project(self, contract_id: str, today: date | None) -> ProjectionRow | None:
        journal = self._sql_projection_source(contract_id)
        if today is None:
            latest = max((str(at) for _, _, at in journal), default=None)
            today = _day_of(text_to_instant(latest)) if latest else date(1970, 1, 1)
        row = build_row(contract_id, journal, settings=self.settings,
                        catalogue=self.catalogue, today=today, keys=self.projection_keys())
        if row is None:
            self._sql_drop_projection(contract_id)
        else:
            self._sql_put_projection(row)
        return row

    def _backfill_projection(self) -> None:
        """Migration to version 3: a row for every contract, its decisions evaluated for the
        day the ledger last recorded something (the ledger has no clock of its own)."""
        latest = self._sql_latest_recorded()
        today = _day_of(text_to_instant(latest)) if latest else date(1970, 1, 1)
        self._project_all(today)
        self._sql_set_watermark()

    def _project_all(self, today: date) -> int:
        """A row for every contract, from one ordered pass over the journal (not a query per
        contract: a 100,000-contract back-fill or repair). Returns the rows written."""
        written = 0
        current: str | None = None
        rows: list[tuple[int, Any, str]] = []

        def flush() -> int:
            if current is None:
                return 0
            row = build_row(current, rows, settings=self.settings, catalogue=self.catalogue,
                            today=today, keys=self.projection_keys())
            if row is None:
                return 0
            self._sql_put_projection(row)
            return 1

        for chunk in self._sql_stream(
                "SELECT contract_id, seq, payload, at_utc FROM journal "
                "WHERE contract_id IS NOT NULL ORDER BY contract_id, at_utc, seq", []):
            for contract_id, seq, payload, at_utc in chunk:
                if contract_id != current:
                    written += flush()
                    current, rows = contract_id, []
                rows.append((seq, payload, at_utc))
            self._send_queued()  # memory stays flat: queued writes go out chunk by chunk
        return written + flush()

    def _send_queued(self) -> None:
        """Send the transaction's queued writes now (PostgreSQL queues them; SQLite has
        none)."""

    def rebuild_projection(self, *, at: datetime) -> int:
        """Rewrite every contract's projection row from its journal, decisions for ``at``'s
        Tokyo day (``policy verify --repair``). Returns the number of rows written."""
        require_aware(at, "at")
        today = _day_of(at)

        def run() -> int:
            self._sql_clear_projection()
            written = self._project_all(today)
            self._sql_set_watermark()
            return written

        written = self._write(run)
        self._sql_after_rewrite()
        return written

    def refresh_projection(self, *, at: datetime,
                           stop: Callable[[], bool] = lambda: False) -> int:
        """Evaluate again, for ``at``'s Tokyo day, the rows whose cached actions no longer hold
        for it (their ``fresh_until`` has come) and store them: ``policy actions`` then reads
        them instead of evaluating them on every run (100,000 contracts three months after
        their last events: 14 % stale, +1.4 s a run). Only rows of this ledger's settings and
        catalogue, evaluated before that day and holding every event up to ``at``, are
        rewritten (a row of other settings is its own readers' to evaluate; one for a later
        day is not moved back). ``stop`` is asked between chunks (a service that is stopping
        does not wait for the rest: what is left stays for the next refresh). Returns the
        number of rows rewritten."""
        require_aware(at, "at")
        today = _day_of(at)
        mine_fold, mine_eval = self.projection_keys()

        expired = ("SELECT {} FROM projection WHERE fold_key = ? AND eval_key = ? "
                   "AND evaluated_on < ? AND fresh_until <= ? AND last_at <= ?")
        params = [mine_fold, mine_eval, today.isoformat(), today.isoformat(),
                  instant_to_text(at)]
        # A row whose id is not text is no contract's: policy verify --repair removes it.
        stale = [cid for chunk in self._retry(lambda: list(self._sql_stream(
            expired.format(self._RAW.format("contract_id")) + " ORDER BY contract_id",
            params))) for r in chunk if (cid := _stored_text(r[0])) is not None]
        # A transaction per 200 contracts: the writers (intake, the service) wait for one
        # chunk at most, never for the whole refresh. In it, the chunk's rows still expired
        # are refolded from their journals: an event that came in between is in them, and a
        # row another refresher (a second service process) stored meanwhile is left alone.

        def run(chunk: list[str]) -> int:
            still = [str(r[0]) for r in self._sql_rows(
                f"{expired.format('contract_id')} "
                f"AND contract_id IN ({','.join('?' * len(chunk))})",
                [*params, *chunk])]
            for contract_id in still:
                self._project(contract_id, today)
            return len(still)

        done = 0
        for start in range(0, len(stale), _REFRESH_CHUNK):
            if stop():
                break
            done += self._write(functools.partial(run, stale[start:start + _REFRESH_CHUNK]))
        return done

    def _sql_after_rewrite(self) -> None:
        """After the projection was written anew: nothing to do on SQLite (its sweep reads a
        clustered table, with no visibility map to bring up to date)."""

    def verify_projection(self, *, at: datetime) -> tuple[list[tuple[str, str]], int, int]:
        """Refold every contract's journal and compare with its projection row: the
        mismatches ``(contract, what differs)``, how many contracts were checked, and how many
        rows were written under other settings or rules (not compared beyond the state; readers
        evaluate those again). The cached decisions are compared with an evaluation for the
        day they were computed for."""
        require_aware(at, "at")
        mine_fold, mine_eval = self.projection_keys()
        mismatches: list[tuple[str, str]] = []
        checked = foreign = 0
        if not self._retry(self._sql_projection_in_step):
            mismatches.append(("*", "the journal holds events written without the projection "
                                    "(readers fold the journal until it is repaired)"))
        ids = self._retry(self._sql_accepted_ids)
        stored = self._retry(self._sql_projection_ids)
        stored_ids = {cid for cid in stored if cid is not None}
        if len(stored_ids) < len(stored):
            mismatches.append(("*", f"{len(stored) - len(stored_ids)} projection row(s) whose "
                                    "contract id cannot be read"))
        for contract_id in ids:
            checked += 1
            stored_ids.discard(contract_id)
            found = self._retry(functools.partial(self._sql_projection_row, contract_id))
            if found is None:
                mismatches.append((contract_id, "no projection row"))
                continue
            actual, actions = found
            if not actual.readable:
                # Named, never quoted: the stored bytes are whatever the damage made of them.
                mismatches.append((contract_id, "its projection row cannot be read ("
                                   + ", ".join(actual.unreadable)
                                   + "): readers fold the journal until it is repaired"))
                continue
            journal = self._retry(functools.partial(self._sql_projection_source, contract_id))
            day = _parse_day(actual.evaluated_on) or _day_of(at)
            expected = build_row(contract_id, journal, settings=self.settings,
                                 catalogue=self.catalogue, today=day,
                                 keys=self.projection_keys())
            if expected is None:
                mismatches.append((contract_id, "a row for a contract the journal does not hold"))
                continue
            if actual.fold_key != mine_fold or actual.eval_key != mine_eval:
                foreign += 1
            differs = _row_differences(expected, actual, actions, compare_decisions=(
                actual.fold_key == mine_fold and actual.eval_key == mine_eval),
                compare_state=actual.fold_key == mine_fold)
            if differs:
                mismatches.append((contract_id, "differs from the fold: " + ", ".join(differs)))
        for contract_id in sorted(stored_ids):
            mismatches.append((contract_id, "a row for a contract the journal does not hold"))
        return mismatches, checked, foreign

    # --- SQL (projection)
    def _sql_projection_source(self, contract_id: str) -> list[tuple[int, Any, str]]:
        return self._conn.execute(
            "SELECT seq, payload, at_utc FROM journal WHERE contract_id = ? "
            "ORDER BY at_utc, seq", (contract_id,)).fetchall()

    def _sql_accepted_ids(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT contract_id FROM journal WHERE kind = ? ORDER BY contract_id",
            (ApplicationAccepted.KIND,)).fetchall()
        return [str(r[0]) for r in rows]

    def _sql_projection_ids(self) -> list[str | None]:
        """Every projection row's contract id (``None``: one that is not text)."""
        return [_stored_text(r[0]) for r in self._sql_rows(
            f"SELECT {self._RAW.format('contract_id')} FROM projection", [])]  # noqa: S608

    def _sql_latest_recorded(self) -> str | None:
        row = self._conn.execute("SELECT max(recorded_utc) FROM journal").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def _sql_projection_in_step(self) -> bool:
        row = self._conn.execute(
            "SELECT (SELECT coalesce(max(seq), 0) FROM journal), "
            "(SELECT value FROM meta WHERE key = 'projected_seq')").fetchone()
        if row is None or str(row[0]) != str(row[1]):
            return False
        return _members_in_step(self._conn.execute(_MEMBERSHIP_SQL).fetchone())

    def _sql_set_watermark(self) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('projected_seq', "
            "(SELECT CAST(coalesce(max(seq), 0) AS TEXT) FROM journal))")

    def _sql_projection_row(self, contract_id: str
                            ) -> tuple[_StoredRow, list[tuple[Any, ...]]] | None:
        """The contract's projection row and its cached actions (``policy verify``), each
        column as :func:`_stored_row` reads it (an action's text that cannot be read is
        :data:`_UNREADABLE`, which no fold writes)."""
        rows = self._sql_rows(f"SELECT {self._row_select()} FROM projection "  # noqa: S608
                              "WHERE contract_id = ?", [contract_id])
        if not rows:
            return None
        columns = ", ".join(c if c in _ACTION_NUMBERS else self._RAW.format(c)
                            for c in _ACTION_COLUMNS.split(", "))
        sql = (f"SELECT {columns} FROM projection_actions "  # noqa: S608
               "WHERE contract_id = ? ORDER BY ordinal")
        actions = [tuple(_action_value(v) for v in r)
                   for r in self._sql_rows(sql, [contract_id])]
        return _stored_row(rows[0]), actions

    def _sql_put_projection(self, row: ProjectionRow) -> None:
        self._conn.execute("DELETE FROM projection_actions WHERE contract_id = ?",
                           (row.contract_id,))
        self._conn.execute(_UPSERT_PROJECTION, _projection_values(row))
        self._conn.executemany(_INSERT_ACTION, _action_values(row))

    def _sql_drop_projection(self, contract_id: str) -> None:
        self._conn.execute("DELETE FROM projection_actions WHERE contract_id = ?",
                           (contract_id,))
        self._conn.execute("DELETE FROM projection WHERE contract_id = ?", (contract_id,))

    def _sql_clear_projection(self) -> None:
        self._conn.execute("DELETE FROM projection_actions")
        self._conn.execute("DELETE FROM projection")

    # ------------------------------------------------------------------ intake
    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        """Record observations made at ``at`` (``at`` is also their recording time). An
        observation identical to what is already known to be at its place (same host,
        location, index and certificate) records nothing. A certificate the rules cannot
        evaluate (dates at the ends of the representable range) is refused: counted in
        ``IntakeReceipt.refused``, never recorded. A certificate that replaces one another
        contract was seen with at that place ends that contract's sighting there."""
        require_aware(at, "at")

        def run() -> IntakeReceipt:
            self._tx.batch_of = observations
            try:
                return intake()
            finally:
                self._tx.batch_of = self._tx.batch = None
                self._tx.queued = []
                self._tx.payloads = {}

        def intake() -> IntakeReceipt:
            recorded = unchanged = refused = 0
            contracts: list[str | None] = []
            # (a batch's observations share one host, or a few: its key made once each)
            host_keys: dict[str, bytes] = {}
            for obs in observations:
                # refused, alone: dates the rules cannot count from, or text no backend stores
                # as it is (the agent's reader makes it storable and says so; policy.facts)
                if not facts_evaluable(obs.facts) or storable(obs.facts)[1]:
                    refused += 1
                    contracts.append(None)
                    continue
                host_key = host_keys.get(obs.host)
                if host_key is None:
                    host_key = host_keys[obs.host] = _key(obs.host)
                place = (host_key, _key(obs.location), obs.index)
                row = self._batch().get(place)
                contract = self._attribute(obs.binding, obs.facts.sans)
                # Unchanged only when the binding is the one it was seen with too: a store
                # rebound (contract, item, tier) applies to certificates already seen (H6).
                if (row is not None and row[0] == obs.facts.sha256 and row[1] == contract
                        and _seen_with_binding(row[2], obs)):
                    unchanged += 1
                    contracts.append(row[1])
                    continue
                binding = obs.binding
                event = CertificateObserved(
                    contract_id=contract, at_utc=obs.observed_at_utc, facts=obs.facts,
                    host=obs.host, location=obs.location, index=obs.index,
                    key_matches=obs.key_matches, binding_category=binding.category,
                    binding_item=binding.item, binding_tier=binding.tier,
                    match_by_san=binding.match_by_san)
                if row is not None and row[1] is not None and row[1] != contract \
                        and not self._contract_elsewhere_at(obs, row[1]):
                    self._insert(CertificateGone(
                        contract_id=row[1], at_utc=obs.observed_at_utc, host=obs.host,
                        location=obs.location, sha256s=(row[0],)), None, at)
                seq = self._insert(event, None, at)
                self._queue_sighting(obs, contract, seq, place)
                if contract is not None and not obs.facts.is_ca:
                    self._tx.queued.extend((_SAN, (contract, san.lower()))
                                           for san in obs.facts.sans)
                recorded += 1
                contracts.append(contract)
            self._send_intake()
            return IntakeReceipt(recorded=recorded, unchanged=unchanged,
                                 contracts=tuple(contracts), refused=refused)

        return self._write(run)

    def record_batch(self, *, host: str, outbox: str, sequence: int,
                     observations: Sequence[Observation], gone: Sequence[tuple[str, datetime]],
                     at: datetime, now: datetime) -> BatchReceipt:
        """A fleet agent's batch, exactly once: the places found empty, the observations and
        the batch's marker (``fleet_batches``, created by :mod:`policy.fleet_registry`) in ONE
        write transaction. A batch already marked records nothing (``replay``)."""
        require_aware(now, "now")

        def run() -> BatchReceipt:
            if self._sql_batch_marked(host, outbox, sequence):
                return BatchReceipt(recorded=0, replay=True)
            recorded = refused = 0
            for location, gone_at in gone:
                recorded += min(1, self.report_gone(host, location, at=gone_at))
            if observations:
                receipt = self.report(observations, at=at)
                recorded += receipt.recorded
                refused = receipt.refused
            self._sql_mark_batch(host, outbox, sequence, recorded, now)
            return BatchReceipt(recorded=recorded, replay=False, refused=refused)

        return self._write(run)

    def _attribute(self, binding: Binding, sans: Sequence[str]) -> str | None:
        """The contract an observation belongs to: the binding's id, else (``match_by_san``)
        the one contract whose bound certificate shares a SAN. Several candidates are
        ambiguous: the observation stays unbound rather than being guessed."""
        if binding.contract_id:
            return binding.contract_id
        if not binding.match_by_san or not sans:
            return None
        self._send_intake()  # the batch's own SANs count
        rows = self._sql_contracts_by_san(sans)
        return str(rows[0]) if len(rows) == 1 else None

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        """Record that nothing is at ``location`` any more; returns how many certificates were
        last seen there (0, and nothing recorded, when none were)."""
        require_aware(at, "at")

        def run() -> int:
            rows = self._sql_sightings_at(host, location)
            if not rows:
                return 0
            by_contract: dict[str | None, list[str]] = {}
            for sha, contract in rows:
                by_contract.setdefault(contract, []).append(sha)
            for contract, shas in by_contract.items():
                self._insert(CertificateGone(contract_id=contract, at_utc=at, host=host,
                                             location=location, sha256s=tuple(shas)), None, at)
            self._sql_drop_sightings(host, location)
            return len(rows)

        return self._write(run)

    def open_sightings(self, host: str) -> list[tuple[str, int, str]]:
        """What the ledger believes is deployed on ``host`` now: ``(location, index, sha256)``
        for every sighting not reported gone or replaced (for a restarted agent to reconcile
        with what is on disk)."""
        def run() -> list[tuple[str, int, str]]:
            # Converted a chunk at a time: at 100,000 sightings the raw rows and the converted
            # list held together were the daemon's peak at its first start (+16 MiB).
            cursor = self._conn.execute(
                "SELECT location, idx, sha256 FROM sightings WHERE host = ? "
                "ORDER BY location, idx", (_key(host),))
            out: list[tuple[str, int, str]] = []
            while chunk := cursor.fetchmany(4096):
                out.extend((_unkey(loc), int(idx), str(sha)) for loc, idx, sha in chunk)
            return out

        return self._retry(run)

    # --- intake in batches: a few statements per batch, not three per observation
    #
    # Inside ``report`` the sightings at the batch's places are read once (``_batch``), and
    # the writes that return nothing the loop needs (journal rows, with stand-ins for their
    # numbers; sightings; SANs) are queued and sent a table at a time (``_sql_send_intake``)
    # before any read that could see them and at the end: the transaction ends with the same
    # rows, numbered in the same order, as if each had been written on its own. One statement
    # a row made the daemon's first start wait on its ledger writer (each statement gives up
    # and takes back the interpreter's lock) and was two thirds of a fleet batch's time.
    def _batch(self) -> dict[tuple[bytes, bytes, int], tuple[str, str | None, str]]:
        """The sightings at the batch's places, ``(sha256, contract, payload)`` by place
        (the payload of the event that put it there), read on first use."""
        cached: dict[tuple[bytes, bytes, int], tuple[str, str | None, str]] | None = \
            getattr(self._tx, "batch", None)
        if cached is not None:
            return cached
        observations: Sequence[Observation] = self._tx.batch_of
        hosts = sorted({_key(o.host) for o in observations})
        places = sorted({_key(o.location) for o in observations})
        self._tx.batch = cached = {
            (bytes(h), bytes(loc), int(i)): (str(sha), contract, str(payload))
            for h, loc, i, sha, contract, payload in self._sql_batch_rows(hosts, places)}
        self._tx.queued = []
        self._tx.payloads = {}
        return cached

    def _queue_journal(self, event: Event, recorded: datetime) -> int:
        """Queue ``event``'s row; returns a stand-in for its number (negative), which
        :meth:`_sql_send_intake` replaces."""
        payload = _payload(event)
        stand_in = -1 - len(self._tx.payloads)
        self._tx.payloads[stand_in] = payload
        self._tx.queued.append((_JOURNAL, (event.contract_id, event.KIND,
                                           instant_to_text(event.at_utc), payload,
                                           instant_to_text(recorded), stand_in)))
        return stand_in

    def _queue_sighting(self, obs: Observation, contract: str | None, seq: int,
                        place: tuple[bytes, bytes, int]) -> None:
        """Queue the sighting of ``obs`` at ``place`` (its key, as the intake loop made it)."""
        self._batch()[place] = (obs.facts.sha256, contract, self._tx.payloads.get(seq, "{}"))
        self._tx.queued.append((_SIGHTING, (*place, obs.facts.sha256, contract, seq)))

    def _send_intake(self) -> None:
        """Write the queued rows: journal rows first (drawing their numbers, in intake
        order), then the sightings with their rows' numbers, then the SANs."""
        queued: list[tuple[str, tuple[Any, ...]]] = getattr(self._tx, "queued", [])
        if not queued:
            return
        self._tx.queued = []
        journal = [row for kind, row in queued if kind == _JOURNAL]
        numbers = self._sql_send_journal([row[:-1] for row in journal]) if journal else []
        resolved = {row[-1]: seq for row, seq in zip(journal, numbers, strict=True)}
        # One row a place: the last one written wins, as statement after statement would.
        places: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for kind, row in queued:
            if kind == _SIGHTING:
                places[row[:3]] = (*row[:-1], resolved.get(row[-1], row[-1]))
        sans = [row for kind, row in queued if kind == _SAN]
        self._sql_send_rows(list(places.values()), sans)

    def _contract_elsewhere_at(self, obs: Observation, contract: str) -> bool:
        self._send_intake()  # the batch's own sightings count
        return self._sql_contract_elsewhere_at(obs, contract)

    # --- SQL (intake)
    def _sql_batch_marked(self, host: str, outbox: str, sequence: int) -> bool:
        return self._conn.execute(
            "SELECT 1 FROM fleet_batches WHERE host = ? AND outbox = ? AND seq = ?",
            (host, outbox, sequence)).fetchone() is not None

    def _sql_mark_batch(self, host: str, outbox: str, sequence: int, recorded: int,
                        now: datetime) -> None:
        self._conn.execute(
            "INSERT INTO fleet_batches (host, outbox, seq, recorded, received_utc) "
            "VALUES (?, ?, ?, ?, ?)", (host, outbox, sequence, recorded, instant_to_text(now)))

    def _sql_batch_rows(self, hosts: list[bytes], places: list[bytes]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for host in hosts:
            for start in range(0, len(places), 500):
                chunk = places[start:start + 500]
                marks = ",".join("?" * len(chunk))
                sql = ("SELECT s.host, s.location, s.idx, s.sha256, s.contract_id, "  # noqa: S608
                       "j.payload FROM sightings s JOIN journal j ON j.seq = s.seq "
                       f"WHERE s.host = ? AND s.location IN ({marks})")
                rows.extend(self._conn.execute(sql, [host, *chunk]).fetchall())
        return rows

    def _sql_send_journal(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert journal rows ``(contract_id, kind, at_utc, payload, recorded_utc)`` in
        order; returns their numbers. Under the write lock and with an append-only journal,
        the next numbers are the ones after the larger of the highest row and the highest
        ever handed out (``AUTOINCREMENT``'s rule), inserted explicitly."""
        last = int(self._conn.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'journal'), 0), "
            "coalesce((SELECT max(seq) FROM journal), 0))").fetchone()[0])
        numbers = list(range(last + 1, last + 1 + len(rows)))
        self._conn.executemany(
            "INSERT INTO journal (seq, contract_id, kind, at_utc, payload, recorded_utc) "
            "VALUES (?, ?, ?, ?, ?, ?)", [(n, *row) for n, row in zip(numbers, rows, strict=True)])
        return numbers

    def _sql_send_rows(self, sightings: list[tuple[Any, ...]],
                       sans: list[tuple[Any, ...]]) -> None:
        if sightings:
            self._conn.executemany("INSERT OR REPLACE INTO sightings VALUES (?, ?, ?, ?, ?, ?)",
                                   sightings)
        if sans:
            self._conn.executemany(
                "INSERT OR IGNORE INTO bound_sans (contract_id, san) VALUES (?, ?)", sans)

    def _sql_contract_elsewhere_at(self, obs: Observation, contract: str) -> bool:
        """Whether ``contract`` still has a certificate at another index of the place."""
        return self._conn.execute(
            "SELECT 1 FROM sightings WHERE host = ? AND location = ? AND contract_id = ? "
            "AND idx != ?", (_key(obs.host), _key(obs.location), contract, obs.index)
        ).fetchone() is not None

    def _sql_contracts_by_san(self, sans: Sequence[str]) -> list[str]:
        marks = ",".join("?" * len(sans))
        rows = self._conn.execute(
            f"SELECT DISTINCT contract_id FROM bound_sans WHERE san IN ({marks})",  # noqa: S608
            [s.lower() for s in sans]).fetchall()
        return [str(r[0]) for r in rows]

    def _sql_sightings_at(self, host: str, location: str) -> list[tuple[str, str | None]]:
        rows = self._conn.execute(
            "SELECT sha256, contract_id FROM sightings WHERE host = ? AND location = ? "
            "ORDER BY idx", (_key(host), _key(location))).fetchall()
        return [(str(sha), contract) for sha, contract in rows]

    def _sql_drop_sightings(self, host: str, location: str) -> None:
        self._conn.execute("DELETE FROM sightings WHERE host = ? AND location = ?",
                           (_key(host), _key(location)))

    # ------------------------------------------------------------------ reading
    def _problem(self, seq: int | None, contract_id: str | None, message: str) -> None:
        key = (seq, contract_id, message)
        if key not in self._problem_keys:
            self._problem_keys.add(key)
            self.problems.append(JournalProblem(seq=seq, contract_id=contract_id,
                                                message=message))

    def _decode(self, seq: int, payload: Any, contract_id: str | None = None) -> Event | None:
        """The event of journal row ``seq``, or ``None`` (and a problem noted) when it cannot
        be read: one bad row never makes the journal unreadable."""
        event = decode_event(payload)
        if isinstance(event, str):
            self._problem(seq, contract_id, event)
            return None
        return event

    def _fold(self, contract_id: str, events: list[Event], at: datetime) -> ContractState:
        problems: list[FoldProblem] = []
        state = fold(contract_id, events, at=at, settings=self.settings, problems=problems)
        for p in problems:
            self._problem(None, contract_id, fold_problem_text(p))
        return state

    def contract_ids(self) -> list[str]:
        """Every contract ever accepted, sorted."""
        rows = self._retry(lambda: self._conn.execute(
            "SELECT DISTINCT contract_id FROM journal WHERE kind = ? ORDER BY contract_id",
            (ApplicationAccepted.KIND,)).fetchall())
        return [str(r[0]) for r in rows]

    def journal(self, contract_id: str, *, at: datetime | None = None,
                as_recorded: datetime | None = None) -> list[JournalEntry]:
        """The contract's events in journal order (``at_utc``, then sequence): those that
        happened by ``at`` and, with ``as_recorded``, were recorded by then. An unreadable
        event is left out and noted in :attr:`problems`."""
        rows = self._retry(lambda: self._sql_journal(contract_id, at, as_recorded))
        out = []
        for seq, payload, recorded in rows:
            event = self._decode(seq, payload, contract_id)
            if event is not None:
                out.append(JournalEntry(seq=int(seq), event=event, recorded_utc=str(recorded)))
        return out

    def _state_or_none(self, contract_id: str, *, at: datetime,
                       events: list[Event] | None = None) -> ContractState | None:
        """The contract as of ``at`` (``None``: not accepted by then); ``events``: its whole
        journal when the caller already read it (events after ``at`` are ignored)."""
        if events is None:
            events = [e.event for e in self.journal(contract_id, at=at)]
        try:
            # An unreadable old event must not block new ones: it is skipped (and reported by
            # the readers), as everywhere else.
            return fold(contract_id, events, at=at, settings=self.settings, problems=[])
        except UnknownContractError:
            return None

    def state(self, contract_id: str, *, at: datetime,
              as_recorded: datetime | None = None) -> ContractState:
        """The contract as of ``at`` (events after ``at`` ignored; with ``as_recorded``, also
        those recorded after it). Raises :class:`UnknownContractError` when it had not been
        accepted by then."""
        require_aware(at, "at")
        events = [e.event for e in self.journal(contract_id, at=at, as_recorded=as_recorded)]
        return self._fold(contract_id, events, at)

    def states(self, *, at: datetime,
               as_recorded: datetime | None = None) -> Iterator[ContractState]:
        """Every contract accepted by ``at``, in contract-id order: from the projection when
        it can answer (no ``as_recorded``, see :meth:`projection_answers`), else folded
        (:meth:`folded_states`). Unreadable events are skipped and noted in
        :attr:`problems`."""
        require_aware(at, "at")
        if as_recorded is None and self.projection_answers(at):
            for state, _ in self.projected(at=at):
                yield state
            return
        yield from self.folded_states(at=at, as_recorded=as_recorded)

    def projection_answers(self, at: datetime) -> bool:
        """Whether the projection answers a question about ``at`` (current knowledge): every
        contract's row holds the fold of all its events, so it answers for an ``at`` on or
        after the contract's latest event, folded with the reader's fold settings. When more
        than a few contracts have events after ``at`` (a question about the past) or rows of
        other settings, one pass over the journal is cheaper than a query per contract. A
        journal row written without the projection (by hand, by a tool that is not the
        ledger) puts it out of step: readers then fold until ``policy verify --repair``."""
        def check() -> bool:
            return self._sql_projection_in_step() and \
                self._sql_projection_unusable(at) <= _FOLD_PER_CONTRACT_MAX

        return self._retry(check)

    def projected(self, *, at: datetime
                  ) -> Iterator[tuple[ContractState, tuple[Decision, ...] | None]]:
        """Every contract accepted by ``at``, from the projection, in contract-id order, with
        its cached decisions when they hold for ``at``'s Tokyo day under this ledger's
        settings and catalogue, else ``None`` (evaluate the state). A contract the projection
        cannot answer for is folded, and so is one whose row cannot be read (a damaged row is
        a cache miss: ``policy verify`` reports it, ``--repair`` rewrites it)."""
        require_aware(at, "at")
        at_text = instant_to_text(at)
        today = _day_of(at).isoformat()
        mine_fold, mine_eval = self.projection_keys()
        for chunk in self._sql_projection_stream(
                f"SELECT {self._row_select()} FROM projection WHERE 1 = 1", []):  # noqa: S608
            for raw in chunk:
                row = _stored_row(raw)
                cid = row.contract_id
                if cid is None:
                    continue  # no contract of the journal has an id that is not text
                state = None
                if row.readable and row.fold_key == mine_fold and row.last_at <= at_text:
                    state = self._state_of_row(cid, row.state, at, row.problems)
                if state is None:
                    try:
                        yield self.state(cid, at=at), None
                    except UnknownContractError:
                        pass
                    continue
                fresh = row.eval_key == mine_eval and row.evaluated_on <= today < row.fresh_until
                yield state, _cached_decisions(row.decisions, cid) if fresh else None

    def _row_select(self) -> str:
        """The projection's columns (:data:`_ROW_COLUMNS`) as :func:`_stored_row` reads them."""
        return ", ".join(self._RAW.format(c) for c in _ROW_COLUMNS.split(", "))

    def _state_of_row(self, contract_id: str, text: str, at: datetime,
                      problems: str | None) -> ContractState | None:
        try:
            state = state_from_json(json.loads(text), at=at)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError,
                RecursionError, OverflowError):
            return None  # a damaged row: the fold answers (policy verify reports it)
        if state.contract_id != contract_id:
            return None  # another contract's state in this row: damaged too
        if problems:
            try:
                for seq, message in json.loads(problems):
                    self._problem(seq if isinstance(seq, int) else None, contract_id,
                                  str(message))
            except (ValueError, TypeError, RecursionError):
                pass
        return state

    def projected_actions(self, *, at: datetime, within: int | None = None,
                          json_body: bool = False
                          ) -> tuple[list[ContractState], Iterator[tuple[Any, ...]]]:
        """``policy actions`` from the projection: the contracts whose cached decisions do
        not hold for ``at``'s day (their states, to evaluate), and the cached actions of all
        the others, streamed in ``evaluate.sort_key`` order (``within``: due by ``at``'s day
        + ``within`` days, or without a due day), each as
        :meth:`policy.projection.ActionRow.as_tuple` (``json_body``: the element ``--json``
        prints, as UTF-8 bytes, else the text line's parts). Call only when
        :meth:`projection_answers`.
        """
        require_aware(at, "at")
        at_text = instant_to_text(at)
        fresh, params = self._fresh_filter(at)
        mine_fold = self.projection_keys()[0]
        stale: list[ContractState] = []
        # The stale ids from the covering index first (few, usually), then their rows.
        raw_id = self._RAW.format("contract_id")
        stale_ids = sorted(cid for chunk in self._sql_stream(
            f"SELECT {raw_id} FROM projection p WHERE NOT ({fresh})", params)  # noqa: S608
            for r in chunk if (cid := _stored_text(r[0])) is not None)
        for cid, row in self._projection_rows(stale_ids):
            state = None
            if row.readable and row.fold_key == mine_fold and row.last_at <= at_text:
                state = self._state_of_row(cid, row.state, at, row.problems)
            if state is None:
                try:
                    state = self.state(cid, at=at)
                except UnknownContractError:
                    continue
            stale.append(state)
        for chunk in self._sql_stream(
                f"SELECT {raw_id}, {self._RAW.format('problems')} "  # noqa: S608
                f"FROM projection p WHERE ({fresh}) "
                "AND problems IS NOT NULL ORDER BY contract_id", params):
            for raw_cid, raw_problems in chunk:
                cid, problems = _stored_text(raw_cid), _stored_text(raw_problems)
                if cid is not None and problems is not None:
                    self._state_of_row(cid, "null", at, problems)
        where, action_params = self._fresh_actions_filter(at, within)
        # The text needs the line's parts, --json the element: read only what is printed.
        shown = "NULL, a.clause, a.explanation, a.unpriced" if not json_body \
            else f"{self._BODY_BYTES}, NULL, NULL, NULL"
        sql = ("SELECT a.due_key, a.sev_key, a.contract_id, a.action, a.ordinal, "  # noqa: S608
               f"a.due, {shown} FROM projection_actions a WHERE {where} "
               "ORDER BY a.due_key, a.sev_key, a.contract_id, a.action, a.ordinal")

        evaluated = frozenset(state.contract_id for state in stale)

        def rows() -> Iterator[tuple[Any, ...]]:
            # A contract is evaluated again or read from the cache, never both: the two
            # queries are not one snapshot (a write in between), and a row's freshness and
            # its actions' copies of it can disagree (edited by hand).
            for chunk in self._sql_stream(sql, action_params):
                yield from (row for row in chunk if row[2] not in evaluated)

        return stale, rows()

    def _projection_rows(self, contract_ids: Sequence[str]
                         ) -> Iterator[tuple[str, _StoredRow]]:
        """The projection rows of ``contract_ids`` (sorted), without their actions: a query
        per 500, not one per contract (on PostgreSQL each query is a round trip; a
        100,000-contract ledger asked about a new day has thousands of stale rows)."""
        for start in range(0, len(contract_ids), 500):
            chunk = list(contract_ids[start:start + 500])
            sql = (f"SELECT {self._row_select()} FROM projection "  # noqa: S608
                   f"WHERE contract_id IN ({','.join('?' * len(chunk))}) ORDER BY contract_id")
            for raw in self._retry(functools.partial(self._sql_rows, sql, chunk)):
                row = _stored_row(raw)
                if row.contract_id is not None:
                    yield row.contract_id, row

    def projected_action_count(self, *, at: datetime, within: int | None = None,
                               excluding: Collection[str] = ()) -> int:
        """How many actions :meth:`projected_actions` streams from the projection: those
        cached for the contracts not ``excluding`` (the ones it returned to evaluate again,
        whose cached actions it leaves out)."""
        where, params = self._fresh_actions_filter(at, within)
        sql = f"SELECT count(*) FROM projection_actions a WHERE {where}"  # noqa: S608
        total = int(self._retry(lambda: self._sql_rows(sql, params))[0][0])
        ids = sorted(excluding)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            among = (f"{sql} AND a.contract_id IN ({','.join('?' * len(chunk))})")
            total -= int(self._retry(functools.partial(
                self._sql_rows, among, [*params, *chunk]))[0][0])
        return total

    def _fresh_filter(self, at: datetime) -> tuple[str, list[Any]]:
        """SQL (on ``projection p``) for a row whose cached decisions hold for ``at``."""
        today = _day_of(at).isoformat()
        mine_fold, mine_eval = self.projection_keys()
        return ("p.eval_key = ? AND p.fold_key = ? AND p.evaluated_on <= ? "
                "AND p.fresh_until > ? AND p.last_at <= ?",
                [mine_eval, mine_fold, today, today, instant_to_text(at)])

    def _fresh_actions_filter(self, at: datetime,
                              within: int | None) -> tuple[str, list[Any]]:
        today = _day_of(at).isoformat()
        where = ("a.keys = ? AND a.evaluated_on <= ? AND a.fresh_until > ? "
                 "AND a.last_at <= ?")
        params: list[Any] = ["|".join(self.projection_keys()), today, today,
                             instant_to_text(at)]
        if within is not None:
            where += " AND (a.due IS NULL OR a.due <= ?)"
            params.append((_day_of(at) + timedelta(days=within)).isoformat())
        return where, params

    def _sql_rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def folded_states(self, *, at: datetime,
                      as_recorded: datetime | None = None) -> Iterator[ContractState]:
        """Every contract accepted by ``at``, folded in one pass over the journal (the
        reference the projection is checked against), in contract-id order. Unreadable events
        are skipped and noted in :attr:`problems`."""
        require_aware(at, "at")
        with self._lock:
            cursor = self._sql_sweep(at, as_recorded)
        current: str | None = None
        events: list[Event] = []
        accepted = False
        while True:
            with self._lock:
                chunk = cursor.fetchmany(2048)
            if not chunk:
                break
            for seq, contract_id, payload in chunk:
                if contract_id != current:
                    if current is not None and accepted:
                        yield self._fold(current, events, at)
                    current, events, accepted = contract_id, [], False
                event = self._decode(seq, payload, contract_id)
                if event is None:
                    continue
                accepted = accepted or isinstance(event, ApplicationAccepted)
                events.append(event)
        if current is not None and accepted:
            yield self._fold(current, events, at)

    def unbound_observations(self, *, at: datetime | None = None,
                             as_recorded: datetime | None = None) -> list[JournalEntry]:
        """Certificates the agent sees, as of ``at``, that no contract claims: every
        observation not since replaced at its place (host, location, index) or reported gone
        from it. Sightings gone or replaced are history (the journal keeps them).

        Claimed by no contract includes an observation its agent bound to a contract id the
        ledger does not hold (a typo in the store's ``contract``): no contract listing shows
        it, so this one must (its ``contract_id`` says which id was given)."""
        rows = self._retry(lambda: self._sql_placements(at, as_recorded))
        # by place, then index: a gone event drops its place's entries without a pass over
        # every other place (which made a journal of many gone events quadratic)
        current: dict[tuple[str, str], dict[int, JournalEntry]] = {}
        contracts: set[str] = set()  # those accepted by then: a view of the past is its own
        for seq, payload, recorded in rows:
            event = self._decode(seq, payload)
            if isinstance(event, ApplicationAccepted):
                contracts.add(event.contract_id)
            elif isinstance(event, CertificateObserved):
                current.setdefault((event.host, event.location), {})[event.index] = JournalEntry(
                    seq=int(seq), event=event, recorded_utc=str(recorded))
            elif isinstance(event, CertificateGone):
                place, shas = (event.host, event.location), set(event.sha256s)
                held = current.get(place)
                if held is None:
                    continue
                for index in [i for i, e in held.items() if not shas
                              or e.event.facts.sha256 in shas]:  # type: ignore[union-attr]
                    del held[index]
                if not held:
                    del current[place]
        unbound = [e for held in current.values() for e in held.values()
                   if getattr(e.event, "contract_id", None) not in contracts]
        return sorted(unbound, key=lambda e: (e.event.at_utc, e.seq))

    def count(self) -> int:
        return int(self._retry(
            lambda: self._conn.execute("SELECT count(*) FROM journal").fetchone()[0]))

    # --- SQL (reading)
    def _sql_projection_unusable(self, at: datetime) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM projection WHERE last_at > ? OR fold_key != ?",
            (instant_to_text(at), self.projection_keys()[0])).fetchone()
        return int(row[0])

    def _sql_stream(self, sql: str, params: Sequence[Any]) -> Iterator[list[Any]]:
        """The rows of a query in chunks, without holding them all (SQLite: one cursor)."""
        with self._lock:
            cursor = self._conn.execute(sql, tuple(params))
        while True:
            with self._lock:
                chunk = cursor.fetchmany(2048)
            if not chunk:
                return
            yield chunk

    def _sql_projection_stream(self, sql: str, params: Sequence[Any]) -> Iterator[list[Any]]:
        """Projection rows (``sql`` selects from ``projection`` with a ``WHERE``) in
        contract-id order, in chunks."""
        return self._sql_stream(sql + " ORDER BY contract_id", params)

    def _sql_journal(self, contract_id: str, at: datetime | None,
                     as_recorded: datetime | None) -> list[Any]:
        sql = "SELECT seq, payload, recorded_utc FROM journal WHERE contract_id = ?"
        params: list[Any] = [contract_id]
        sql, params = _time_filters(sql, params, at, as_recorded)
        return self._conn.execute(sql + " ORDER BY at_utc, seq", params).fetchall()

    def _sql_sweep(self, at: datetime, as_recorded: datetime | None) -> sqlite3.Cursor:
        sql = "SELECT seq, contract_id, payload FROM journal WHERE contract_id IS NOT NULL"
        sql, params = _time_filters(sql, [], at, as_recorded)
        return self._conn.execute(sql + " ORDER BY contract_id, at_utc, seq", params)

    def _sql_placements(self, at: datetime | None, as_recorded: datetime | None) -> list[Any]:
        sql = "SELECT seq, payload, recorded_utc FROM journal WHERE kind IN (?, ?, ?)"
        params: list[Any] = [CertificateObserved.KIND, CertificateGone.KIND,
                             ApplicationAccepted.KIND]
        sql, params = _time_filters(sql, params, at, as_recorded)
        # Intake order (seq), as the sightings table applies them: an observation's own time
        # may trail a later gone report's.
        return self._conn.execute(sql + " ORDER BY seq", params).fetchall()


_FOLD_PER_CONTRACT_MAX = 256
"""Above this many contracts the projection cannot answer for, a sweep folds the journal in one
pass rather than query each of them."""
_ROW_COLUMNS = ("contract_id, state, last_at, fold_key, eval_key, evaluated_on, fresh_until, "
                "next_due, decisions, problems")
_ROW_NULLABLE = frozenset({"next_due", "problems"})
_ACTION_COLUMNS = ("ordinal, due, due_key, sev_key, action, keys, evaluated_on, fresh_until, "
                   "last_at, clause, explanation, unpriced, body")
_ACTION_NUMBERS = frozenset({"ordinal", "sev_key"})
"""The cached actions' INTEGER columns (the others are TEXT)."""
_UNREADABLE = "\x00unreadable"
"""A cached action's text that is not UTF-8, as ``policy verify`` compares it."""
_UPSERT_PROJECTION = (
    f"INSERT INTO projection ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
    "ON CONFLICT (contract_id) DO UPDATE SET state = excluded.state, "
    "last_at = excluded.last_at, fold_key = excluded.fold_key, eval_key = excluded.eval_key, "
    "evaluated_on = excluded.evaluated_on, fresh_until = excluded.fresh_until, "
    "next_due = excluded.next_due, decisions = excluded.decisions, "
    "problems = excluded.problems")
_INSERT_ACTION = (
    f"INSERT INTO projection_actions (contract_id, {_ACTION_COLUMNS}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _projection_values(row: ProjectionRow) -> tuple[Any, ...]:
    return (row.contract_id, row.state, row.last_at, row.fold_key, row.eval_key,
            row.evaluated_on, row.fresh_until, row.next_due, row.decisions, row.problems)


def _action_values(row: ProjectionRow) -> list[tuple[Any, ...]]:
    return [(row.contract_id, *_action_tuple(row, a)) for a in row.actions]


def _action_tuple(row: ProjectionRow, a: Any) -> tuple[Any, ...]:
    due = a.due.isoformat() if a.due else None
    return (a.ordinal, due, due or NO_DUE, -int(a.severity), a.action,
            f"{row.fold_key}|{row.eval_key}", row.evaluated_on, row.fresh_until, row.last_at,
            a.clause, a.explanation_en, a.unpriced, a.body)


def _row_differences(expected: ProjectionRow, actual: _StoredRow,
                     actions: list[tuple[Any, ...]], *,
                     compare_decisions: bool, compare_state: bool) -> list[str]:
    """The columns of ``actual`` (and its cached ``actions``) that differ from the row the
    fold gives."""
    want = dict(zip(_ROW_COLUMNS.split(", "), _projection_values(expected), strict=True))
    names = ["last_at", "problems"]
    if compare_state:
        names.append("state")
    if compare_decisions:
        names += ["evaluated_on", "fresh_until", "next_due", "decisions"]
    out = [name for name in names if want[name] != getattr(actual, name)]
    if compare_decisions and [_action_tuple(expected, a) for a in expected.actions] != actions:
        out.append("actions")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _StoredRow:
    """A projection row as read back: each column's text, or ``None`` where it has none
    (a nullable column, or one named in ``unreadable``). A row is a cache of the journal, so
    one that cannot be read is a cache miss (the fold answers), never an error."""

    contract_id: str | None
    """``None``: the id is not text (no contract of the journal has it)."""
    state: str
    last_at: str
    fold_key: str
    eval_key: str
    evaluated_on: str
    fresh_until: str
    next_due: str | None
    decisions: str
    problems: str | None
    unreadable: tuple[str, ...]
    """The columns that are not text: bad UTF-8 (SQLite stores the bytes it is given), NULL
    where the ledger always writes text. Named in ``policy verify``'s report, never quoted."""

    @property
    def readable(self) -> bool:
        return self.contract_id is not None and not self.unreadable


def _stored_text(value: Any) -> str | None:
    """A stored column's text: ``None`` for NULL or bytes that are not UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _stored_row(raw: Sequence[Any]) -> _StoredRow:
    """The row ``Ledger._row_select`` read (the columns of :data:`_ROW_COLUMNS`)."""
    names = _ROW_COLUMNS.split(", ")
    texts = dict(zip(names, (_stored_text(v) for v in raw), strict=True))
    unreadable = tuple(name for name, value in zip(names, raw, strict=True)
                       if name != "contract_id" and texts[name] is None
                       and (value is not None or name not in _ROW_NULLABLE))
    return _StoredRow(
        contract_id=texts["contract_id"], state=texts["state"] or "",
        last_at=texts["last_at"] or "", fold_key=texts["fold_key"] or "",
        eval_key=texts["eval_key"] or "", evaluated_on=texts["evaluated_on"] or "",
        fresh_until=texts["fresh_until"] or "", next_due=texts["next_due"],
        decisions=texts["decisions"] or "", problems=texts["problems"],
        unreadable=unreadable)


def _action_value(value: Any) -> Any:
    """A cached action's column as ``policy verify`` compares it with the fold's."""
    if value is None or isinstance(value, int):
        return value
    text = _stored_text(value)
    return _UNREADABLE if text is None else text


def _cached_decisions(text: str, contract_id: str) -> tuple[Decision, ...] | None:
    """A row's cached decisions (``evaluate_contract``'s, as JSON), or ``None`` when they do
    not read back as the contract's decisions (a damaged row: the reader evaluates the
    state)."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, list):
            return None
        decisions = tuple(decision_from_json(d) for d in raw)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RecursionError,
            OverflowError):
        return None
    if any(d.contract_id != contract_id for d in decisions):
        return None
    return decisions


def _day_of(instant: datetime) -> date:
    try:
        return tokyo_date(instant)
    except OverflowError:
        return date.max if instant.year > 5000 else date.min


def _parse_day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        return None


def _time_filters(sql: str, params: list[Any], at: datetime | None,
                  as_recorded: datetime | None) -> tuple[str, list[Any]]:
    if at is not None:
        sql += " AND at_utc <= ?"
        params.append(instant_to_text(at))
    if as_recorded is not None:
        sql += " AND recorded_utc <= ?"
        params.append(instant_to_text(as_recorded))
    return sql, params


def _split_sql(script: str) -> list[str]:
    """Statements of :data:`_SCHEMA` (triggers contain ``;`` inside ``BEGIN … END``)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    return out


def _create_private_file(path: Path) -> None:
    """Create the ledger file ``0600`` (and its directory ``0700`` when it does not exist)."""
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise LedgerError(f"{path}: cannot create the ledger: {exc.strerror}") from None
    os.close(fd)
    os.chmod(path, 0o600)
