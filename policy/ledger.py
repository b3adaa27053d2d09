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
* **Private.** Created ``0600`` inside a directory created ``0700``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from .errors import ContractStateError, LedgerError, UnknownContractError
from .events import (
    ApplicationAccepted,
    CertificateBound,
    CertificateGone,
    CertificateObserved,
    Event,
    event_from_json,
    event_to_json,
    instant_to_text,
)
from .intake import Binding, IntakeReceipt, Observation
from .state import ContractState, check_event, fold
from .tokyo import require_aware

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "JournalEntry",
    "Ledger",
]

APPLICATION_ID = 0x43455254
"""``PRAGMA application_id`` of a certescrow ledger ("CERT")."""
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
_RETRIES = 50

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
    host        TEXT NOT NULL,
    location    TEXT NOT NULL,
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
"""

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    """One journal row: its sequence number, the event, and when the ledger wrote it."""

    seq: int
    event: Event
    recorded_utc: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "recorded": self.recorded_utc, **event_to_json(self.event)}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Ledger:
    """The embedded :class:`policy.intake.Intake`: contract events in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        # One connection may be shared by the daemon's threads: a transaction must not
        # interleave with another thread's statements on it.
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Ledger:
        """Open (and with ``create``, create) the ledger at ``path``.

        Raises :class:`LedgerError` when the file is not a certescrow ledger, was written by a
        newer certescrow, or cannot be created or read (the message names the file and why).
        """
        path = Path(path).expanduser()
        if path.is_dir():
            raise LedgerError(f"{path}: is a directory, expected a ledger file")
        if not path.exists():
            if not create:
                raise LedgerError(f"{path}: no ledger here (nothing has been recorded yet)")
            _create_private_file(path)
        elif not os.access(path, os.R_OK | os.W_OK):
            raise LedgerError(f"{path}: cannot open the ledger: permission denied (it needs "
                              "read and write access, also for the -wal/-shm files beside it)")
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the ledger: {exc}") from None
        ledger = cls(conn, path)
        try:
            ledger._initialise()
        except sqlite3.OperationalError as exc:  # permissions, read-only medium, locks…
            conn.close()
            raise LedgerError(f"{path}: cannot open the ledger: {exc}") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(
                f"{path}: not a certescrow ledger (SQLite says: {exc})") from None
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
            raise LedgerError(
                f"{self.path}: ledger schema version {version} was written by a newer certescrow"
                f" (this one reads up to version {SCHEMA_VERSION}); upgrade certescrow")
        if app_id == 0:
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise LedgerError(
                    f"{self.path}: an SQLite database of another application, not a certescrow "
                    "ledger; refusing to touch it")
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if app_id == 0 or version < SCHEMA_VERSION:
            self._write(self._create_schema)

    def _header(self) -> tuple[int, int]:
        app_id = int(self._conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        return app_id, version

    def _create_schema(self) -> None:
        # Re-checked inside the write lock: two processes may create a new ledger at once.
        app_id, version = self._header()
        if app_id == APPLICATION_ID and version >= SCHEMA_VERSION:
            return
        for statement in _split_sql(_SCHEMA):
            self._conn.execute(statement)
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('format', 'certescrow-ledger')")
        self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
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
                    raise LedgerError(f"{self.path}: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retrying while another writer
        holds the lock; any exception rolls everything back."""

        def attempt() -> T:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

        return self._retry(attempt)

    # ------------------------------------------------------------------ writing
    def append(self, event: Event, *, dedup_key: str | None = None) -> int:
        """Append ``event`` after checking the contract's state at its instant admits it.

        Returns the event's sequence number. Raises ``ContractStateError`` /
        ``UnknownContractError`` when the state refuses it (nothing is written then). A
        ``dedup_key`` already present makes this a no-op returning the existing sequence.
        """

        def run() -> int:
            if dedup_key is not None:
                row = self._conn.execute("SELECT seq FROM journal WHERE dedup_key = ?",
                                         (dedup_key,)).fetchone()
                if row is not None:
                    return int(row[0])
            if event.contract_id is not None and not isinstance(
                    event, (CertificateObserved, CertificateGone)):
                state = self._state_or_none(event.contract_id, at=event.at_utc)
                check_event(state, event)
            return self._insert(event, dedup_key)

        return self._write(run)

    def _insert(self, event: Event, dedup_key: str | None) -> int:
        key = dedup_key
        if isinstance(event, ApplicationAccepted):
            key = f"accepted|{event.contract_id}"
        payload = json.dumps(event_to_json(event), ensure_ascii=False, separators=(",", ":"))
        try:
            cur = self._conn.execute(
                "INSERT INTO journal (contract_id, kind, at_utc, payload, dedup_key) "
                "VALUES (?, ?, ?, ?, ?)",
                (event.contract_id, event.KIND, instant_to_text(event.at_utc), payload, key))
        except sqlite3.IntegrityError:
            if isinstance(event, ApplicationAccepted):
                raise ContractStateError(
                    f"contract {event.contract_id!r} already exists: choose another id"
                ) from None
            raise
        seq = int(cur.lastrowid or 0)
        if isinstance(event, CertificateBound):
            self._conn.execute("DELETE FROM bound_sans WHERE contract_id = ?",
                               (event.contract_id,))
            self._add_sans(event.contract_id, event.facts.sans)
        return seq

    def _add_sans(self, contract_id: str, sans: Sequence[str]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO bound_sans (contract_id, san) VALUES (?, ?)",
            [(contract_id, san.lower()) for san in sans])

    def append_many(self, events: Sequence[Event]) -> list[int]:
        """Append several events in one transaction (all or none), each checked in turn."""

        def run() -> list[int]:
            out = []
            for event in events:
                if event.contract_id is not None and not isinstance(
                        event, (CertificateObserved, CertificateGone)):
                    check_event(self._state_or_none(event.contract_id, at=event.at_utc), event)
                out.append(self._insert(event, None))
            return out

        return self._write(run)

    # ------------------------------------------------------------------ intake
    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        """Record observations made at ``at``. An observation identical to what is already known
        to be at its place (same host, location, index and certificate) records nothing."""
        require_aware(at, "at")

        def run() -> IntakeReceipt:
            recorded = unchanged = 0
            contracts: list[str | None] = []
            for obs in observations:
                row = self._conn.execute(
                    "SELECT sha256, contract_id FROM sightings "
                    "WHERE host = ? AND location = ? AND idx = ?",
                    (obs.host, obs.location, obs.index)).fetchone()
                if row is not None and row[0] == obs.facts.sha256:
                    unchanged += 1
                    contracts.append(row[1])
                    continue
                contract = self._attribute(obs.binding, obs.facts.sans)
                binding = obs.binding
                event = CertificateObserved(
                    contract_id=contract, at_utc=obs.observed_at_utc, facts=obs.facts,
                    host=obs.host, location=obs.location, index=obs.index,
                    key_matches=obs.key_matches, binding_category=binding.category,
                    binding_item=binding.item, binding_tier=binding.tier,
                    match_by_san=binding.match_by_san)
                seq = self._insert(event, None)
                self._conn.execute(
                    "INSERT OR REPLACE INTO sightings VALUES (?, ?, ?, ?, ?, ?)",
                    (obs.host, obs.location, obs.index, obs.facts.sha256, contract, seq))
                if contract is not None and not obs.facts.is_ca:
                    self._add_sans(contract, obs.facts.sans)
                recorded += 1
                contracts.append(contract)
            return IntakeReceipt(recorded=recorded, unchanged=unchanged,
                                 contracts=tuple(contracts))

        return self._write(run)

    def _attribute(self, binding: Binding, sans: Sequence[str]) -> str | None:
        """The contract an observation belongs to: the binding's id, else (``match_by_san``)
        the one contract whose bound certificate shares a SAN. Several candidates are
        ambiguous: the observation stays unbound rather than being guessed."""
        if binding.contract_id:
            return binding.contract_id
        if not binding.match_by_san or not sans:
            return None
        marks = ",".join("?" * len(sans))
        rows = self._conn.execute(
            f"SELECT DISTINCT contract_id FROM bound_sans WHERE san IN ({marks})",  # noqa: S608
            [s.lower() for s in sans]).fetchall()
        return str(rows[0][0]) if len(rows) == 1 else None

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        """Record that nothing is at ``location`` any more; returns how many certificates were
        last seen there (0, and nothing recorded, when none were)."""
        require_aware(at, "at")

        def run() -> int:
            rows = self._conn.execute(
                "SELECT sha256, contract_id FROM sightings WHERE host = ? AND location = ? "
                "ORDER BY idx", (host, location)).fetchall()
            if not rows:
                return 0
            by_contract: dict[str | None, list[str]] = {}
            for sha, contract in rows:
                by_contract.setdefault(contract, []).append(sha)
            for contract, shas in by_contract.items():
                self._insert(CertificateGone(contract_id=contract, at_utc=at, host=host,
                                             location=location, sha256s=tuple(shas)), None)
            self._conn.execute("DELETE FROM sightings WHERE host = ? AND location = ?",
                               (host, location))
            return len(rows)

        return self._write(run)

    # ------------------------------------------------------------------ reading
    def contract_ids(self) -> list[str]:
        """Every contract ever accepted, sorted."""
        rows = self._retry(lambda: self._conn.execute(
            "SELECT DISTINCT contract_id FROM journal WHERE kind = ? ORDER BY contract_id",
            (ApplicationAccepted.KIND,)).fetchall())
        return [str(r[0]) for r in rows]

    def journal(self, contract_id: str, *, at: datetime | None = None) -> list[JournalEntry]:
        """The contract's events in journal order (``at_utc``, then sequence), up to ``at``."""
        sql = ("SELECT seq, payload, recorded_utc FROM journal WHERE contract_id = ?")
        params: list[Any] = [contract_id]
        if at is not None:
            sql += " AND at_utc <= ?"
            params.append(instant_to_text(at))
        sql += " ORDER BY at_utc, seq"
        rows = self._retry(lambda: self._conn.execute(sql, params).fetchall())
        return [JournalEntry(seq=int(seq), event=self._decode(seq, payload),
                             recorded_utc=str(recorded)) for seq, payload, recorded in rows]

    def _decode(self, seq: int, payload: str) -> Event:
        try:
            return event_from_json(json.loads(payload))
        except ValueError as exc:
            raise LedgerError(f"{self.path}: journal event #{seq} cannot be read: {exc}") from None

    def _state_or_none(self, contract_id: str, *, at: datetime) -> ContractState | None:
        events = [e.event for e in self.journal(contract_id, at=at)]
        try:
            return fold(contract_id, events, at=at)
        except UnknownContractError:
            return None

    def state(self, contract_id: str, *, at: datetime) -> ContractState:
        """The contract as of ``at`` (events after ``at`` ignored). Raises
        :class:`UnknownContractError` when it had not been accepted by then."""
        require_aware(at, "at")
        return fold(contract_id, [e.event for e in self.journal(contract_id, at=at)], at=at)

    def states(self, *, at: datetime) -> Iterator[ContractState]:
        """Every contract accepted by ``at``, folded in one pass over the journal (the sweep
        ``policy actions`` and the benchmark use), in contract-id order."""
        require_aware(at, "at")
        with self._lock:
            cursor = self._conn.execute(
                "SELECT contract_id, payload FROM journal "
                "WHERE contract_id IS NOT NULL AND at_utc <= ? "
                "ORDER BY contract_id, at_utc, seq", (instant_to_text(at),))
        current: str | None = None
        events: list[Event] = []
        accepted = False
        while True:
            with self._lock:
                chunk = cursor.fetchmany(2048)
            if not chunk:
                break
            for contract_id, payload in chunk:
                if contract_id != current:
                    if current is not None and accepted:
                        yield fold(current, events, at=at)
                    current, events, accepted = contract_id, [], False
                try:
                    event = event_from_json(json.loads(payload))
                except ValueError as exc:
                    raise LedgerError(f"{self.path}: an event of contract {contract_id!r} "
                                      f"cannot be read: {exc}") from None
                accepted = accepted or isinstance(event, ApplicationAccepted)
                events.append(event)
        if current is not None and accepted:
            yield fold(current, events, at=at)

    def unbound_observations(self, *, at: datetime | None = None) -> list[JournalEntry]:
        """Certificates the agent saw that no contract claims (kept, never dropped)."""
        sql = ("SELECT seq, payload, recorded_utc FROM journal "
               "WHERE contract_id IS NULL AND kind = ?")
        params: list[Any] = [CertificateObserved.KIND]
        if at is not None:
            sql += " AND at_utc <= ?"
            params.append(instant_to_text(at))
        rows = self._retry(
            lambda: self._conn.execute(sql + " ORDER BY at_utc, seq", params).fetchall())
        return [JournalEntry(seq=int(s), event=self._decode(s, p), recorded_utc=str(r))
                for s, p, r in rows]

    def count(self) -> int:
        return int(self._retry(
            lambda: self._conn.execute("SELECT count(*) FROM journal").fetchone()[0]))


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
