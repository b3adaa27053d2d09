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
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from .dsn import dsn_has_password, redact_dsn
from .errors import LedgerError

__all__ = [
    "Storage",
    "StorageConflictError",
    "Transaction",
    "dsn_has_password",
    "is_postgres_dsn",
    "open_storage",
    "redact_dsn",
    "refuse_conninfo",
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


def is_postgres_dsn(location: str | Path) -> TypeGuard[str]:
    """Whether ``location`` names a PostgreSQL database rather than an SQLite file: a
    ``postgresql://`` or ``postgres://`` URI, as libpq reads them. A :class:`~pathlib.Path` is
    always a file (a DSN never goes through one: it would lose a ``/``)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


_CONNINFO = re.compile(
    r"(?:^|\s)(?:host|hostaddr|dbname|user|password|port|service|passfile|options|sslmode|"
    r"sslpassword|sslcert|sslkey|sslrootcert|sslcrl|requiressl|connect_timeout|"
    r"application_name|target_session_attrs|gssencmode|krbsrvname|keepalives)\s*=",
    re.IGNORECASE)
_URI_LIKE = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*:/")
"""A URI's scheme (``POSTGRESQL://``, ``postgresql+psycopg://``, ``pgsql://``, one ``/``
short…), after any blank: never a file someone meant."""


def refuse_conninfo(location: str | Path) -> None:
    """What looks like a connection string but is not a ``postgresql://`` DSN is not a ledger
    file name: a libpq ``key=value`` string, or any ``scheme:/`` (another case, another
    scheme, a ``/`` too few, a blank before it). Refused without repeating it (it may hold a
    password), instead of creating a file or directory of that name (a file whose name starts
    so can be named as ``./NAME``). A :class:`~pathlib.Path` is a file already."""
    if isinstance(location, Path) or is_postgres_dsn(location):
        return
    if not location.strip():
        raise LedgerError("an empty ledger location")
    if _URI_LIKE.match(location) or location.startswith(("postgresql:", "postgres:")):
        raise LedgerError("a ledger location that is not a PostgreSQL URI; write it as "
                          "postgresql://user@host:port/database, or postgresql:///database "
                          "for the local socket (a file of such a name: ./NAME)")
    if _CONNINFO.search(location):
        raise LedgerError("a key=value connection string is not supported as a ledger; "
                          "write it as postgresql://user@host:port/database, and keep the "
                          "password out of it (~/.pgpass or a pg_service.conf entry)")


def open_storage(location: str | Path, *, create: bool = True) -> Storage:
    """The storage at ``location`` (see the module docstring)."""
    if is_postgres_dsn(location):
        from .storage_pg import PostgresStorage

        return PostgresStorage.open(location)
    from .storage_sqlite import SqliteStorage

    return SqliteStorage.open(Path(location), create=create)

