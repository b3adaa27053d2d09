"""The embedded storage: one SQLite file (stdlib ``sqlite3``).

Every transaction is ``BEGIN IMMEDIATE``: it takes SQLite's one write lock first, so a check
and the write it allows cannot interleave with another writer's. ``busy_timeout`` waits for the
lock, and a bounded retry loop with backoff covers the cases SQLite reports as busy without
waiting; a writer that still cannot get it fails with :class:`LedgerError`, never silently.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from .errors import LedgerError
from .sqlitetext import sqlite_reason
from .storage import StorageConflictError

__all__ = ["SqliteStorage"]

BUSY_TIMEOUT_S = 30.0
_RETRIES = 50


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.IntegrityError:
            raise StorageConflictError("a row with this key already exists") from None


class SqliteStorage:
    """One SQLite connection shared by the process's threads (one lock)."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.where = str(path)
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Self:
        path = Path(path).expanduser()
        if not create and not path.is_file():
            raise LedgerError(f"{path}: no ledger here (nothing has been recorded yet)")
        try:
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the database: {sqlite_reason(exc)}") from None
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self, *, lock: str | None = None) -> Iterator[_Tx]:
        """``lock`` is ignored: SQLite has one write lock, which this takes."""
        delay = 0.005
        with self._lock:
            for attempt in range(_RETRIES):
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or attempt == _RETRIES - 1:
                        raise LedgerError(f"{self.where}: {sqlite_reason(exc)}") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
            try:
                yield _Tx(self._conn)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise LedgerError(f"{self.where}: {sqlite_reason(exc)}") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise LedgerError(f"{self.where}: {sqlite_reason(exc)}") from None

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.where}: {sqlite_reason(exc)}") from None
