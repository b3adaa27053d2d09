"""Where the ledger's tables live: an embedded SQLite file or a PostgreSQL database.

A *storage* runs SQL written once, in the subset both engines speak (``?`` placeholders,
``INSERT … ON CONFLICT``, ``RETURNING``), inside transactions, and turns every engine error into
:class:`~policy.errors.LedgerError` naming the database, never the driver's text with a
password in it. What differs stays here: SQLite takes its write lock with ``BEGIN IMMEDIATE``
and retries while another process holds it; PostgreSQL takes a connection from a pool and
serialises conflicting writers with a transaction-scoped advisory lock.

:func:`open_storage` picks the engine from the ledger's location: ``postgresql://…`` (or
``postgres://…``) is PostgreSQL through psycopg 3, anything else a path to an SQLite file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import LedgerError

__all__ = [
    "Storage",
    "StorageConflictError",
    "Transaction",
    "is_postgres_dsn",
    "normalise_dsn",
    "open_storage",
    "redact_dsn",
]


class StorageConflictError(LedgerError):
    """A uniqueness constraint refused a row (the caller decides what that means). On
    PostgreSQL the transaction is then aborted: let it end."""


class Transaction(Protocol):
    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (empty for statements without rows)."""
        ...


class Storage(Protocol):
    dialect: str
    """``sqlite`` or ``postgresql``."""
    where: str
    """The database for messages: a path, or a DSN without its password."""

    def transaction(self, *, lock: str | None = None) -> contextlib.AbstractContextManager[
            Transaction]:
        """One transaction: committed when the block ends, rolled back on any exception.
        ``lock`` names what the block must hold alone (SQLite: the whole database; PostgreSQL:
        an advisory lock on that name, so unrelated writers do not wait for each other)."""
        ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement in its own transaction."""
        ...

    def close(self) -> None: ...


def is_postgres_dsn(location: str | Path) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than an SQLite file. A DSN that
    went through :class:`pathlib.Path` (a click path option) lost one ``/``; it still counts."""
    text = str(location)
    return text.startswith(("postgresql:/", "postgres:/"))


def normalise_dsn(location: str | Path) -> str:
    """The DSN with the ``//`` a :class:`pathlib.Path` collapsed restored."""
    text = str(location)
    for scheme in ("postgresql:", "postgres:"):
        if text.startswith(scheme + "/") and not text.startswith(scheme + "//"):
            return scheme + "/" + text[len(scheme):]
    return text


def redact_dsn(dsn: str) -> str:
    """``dsn`` without a password (for messages and logs): the userinfo's password and the
    ``password`` and ``sslpassword`` query parameters go; the rest of the query stays, so the
    schema (``options=-csearch_path=…``) and the TLS settings show which ledger is meant.
    ``passfile`` stays: it names a file, it is not a secret."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return "postgresql://…"
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    # Each kept parameter as it was written (its escaping included); a key is compared
    # decoded, so ``pass%77ord=`` is still a password.
    kept = [pair for pair in parts.query.split("&") if pair and urllib.parse.unquote_plus(
        pair.split("=", 1)[0]).strip().lower() not in _SECRET_DSN_PARAMETERS]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), ""))


_SECRET_DSN_PARAMETERS = frozenset({"password", "sslpassword"})


def open_storage(location: str | Path, *, create: bool = True) -> Storage:
    """The storage at ``location`` (see the module docstring)."""
    if is_postgres_dsn(location):
        from .storage_pg import PostgresStorage

        return PostgresStorage.open(normalise_dsn(location))
    from .storage_sqlite import SqliteStorage

    return SqliteStorage.open(Path(location), create=create)

