"""SQLite storage: one file, WAL, transactions, permissions.

Writers serialise with ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so two writers
never both read-then-write and deadlock) and wait up to ``busy_timeout``. Readers run in WAL
snapshots, so a reader never sees a half-written entry: an entry is one row, written in one
transaction together with its audit record. ``synchronous=FULL`` makes a commit durable before
``put`` returns, so "returned success" means "on disk".
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    VaultBusyError,
    VaultError,
    VaultFormatError,
    VaultIntegrityError,
    VaultNotFoundError,
    VaultPermissionError,
)
from .secretfile import describe_uid

__all__ = [
    "AUDIT_SHAPE",
    "ENTRY_COLUMNS",
    "ENTRY_SHAPE",
    "FORMAT_VERSION",
    "META_SHAPE",
    "SCHEMA",
    "EntryRow",
    "RowShape",
    "Store",
    "check_private_dir",
    "check_private_file",
    "count_by_kind",
    "default_vault_path",
    "delete_entry",
    "delete_meta",
    "entries_except",
    "entries_sharing_key",
    "entries_with_wrapped_keys",
    "entry_blobs",
    "entry_id_by_fingerprint",
    "find_entry",
    "insert_entry",
    "integrity_check",
    "is_shared_or_system_dir",
    "is_storable_id",
    "list_entries",
    "make_private_dir",
    "match_tags",
    "meta_value",
    "name_param",
    "rows_with_invalid_text",
    "schema_differences",
    "set_wrapped_key",
    "translate_sqlite_error",
    "update_entry",
]

FORMAT_VERSION = 1
APPLICATION_ID = 0x43455256  # "CERV" in PRAGMA application_id: `file` and humans can tell

SCHEMA = """
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE entries (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    label       TEXT,
    contract_id TEXT,
    meta        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    match_tag   TEXT,
    wrapped_key BLOB NOT NULL,
    ciphertext  BLOB NOT NULL
);
CREATE INDEX entries_match ON entries(match_tag);
CREATE INDEX entries_kind ON entries(kind, created_at);
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    entry_id  TEXT,
    kind      TEXT,
    version   INTEGER,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_entry ON audit(entry_id, seq);
-- Append-only against mistakes; against an attacker the hash chain and its MAC'd head do the work.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


# ------------------------------------------------------------------ reading rows back
# Every value read back from the file is hostile input. SQLite's columns are not typed: one
# flipped bit in a record header turns an integer into NULL or text, and one in the schema
# (`INTEGER PBIMARY KEY`) stops a column from being the rowid, so it reads NULL in every row.
# `int(None)` is a TypeError, and `int("a478…")` a ValueError whose traceback prints the stored
# value. So every read checks the Python type of each value it takes against the table's shape
# below, in one place, and damage is one VaultIntegrityError that names the table, the row and
# the column, and what kind of value it found: never the value.

_INT: tuple[type, ...] = (int,)
_TEXT: tuple[type, ...] = (str,)
_BLOB: tuple[type, ...] = (bytes,)
_NONE: type = type(None)
_CLASS_NAMES: Mapping[type, str] = {int: "an integer", str: "text", bytes: "a blob",
                                    float: "a real number", _NONE: "NULL"}
_DAMAGE_ADVICE = ("`certescrow vault verify` lists the damage; restore the vault from a backup "
                  "(`certescrow vault restore`)")


@dataclass(frozen=True, slots=True, kw_only=True)
class RowShape:
    """The Python types each column of ``table`` may read back as (SQLite's storage classes:
    ``int``, ``str``, ``bytes``, ``None``). A value of any other type is damage."""

    table: str
    columns: Mapping[str, tuple[type, ...]]

    def select(self, names: Sequence[str]) -> str:
        """``rowid, NAME, …``: the column list of a checked read (the rowid names the row)."""
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            raise ValueError(f"{self.table} has no column {unknown[0]}")  # a bug of ours
        return ", ".join(("rowid", *names))

    def damage(self, row: Sequence[object], names: Sequence[str]) -> str | None:
        """What is wrong with ``row`` (``rowid`` first, as :meth:`select` reads it; a leading
        None for an aggregate, which has no row), or None when each of the columns ``names``
        holds a type its column may hold. Names the row and column, never the value."""
        rowid, values = row[0], row[1:]
        for name, value in zip(names, values, strict=True):
            if type(value) in self.columns[name]:
                continue
            where = (f"{self.table} row {rowid}" if type(rowid) is int
                     else f"table {self.table}")
            expected = " or ".join(_CLASS_NAMES[t] for t in self.columns[name])
            found = _CLASS_NAMES.get(type(value), "a value of another type")
            return (f"{where}: column {name} holds {found} where {expected} belongs (the "
                    "file was damaged or altered)")
        return None

    def checked(self, row: Sequence[object], names: Sequence[str]) -> tuple[object, ...]:
        """The values of ``row`` after the rowid, or :class:`VaultIntegrityError` when
        :meth:`damage` finds any: the read of every command but ``verify``, which reports
        each damaged row with :meth:`damage` and goes on."""
        problem = self.damage(row, names)
        if problem is not None:
            raise VaultIntegrityError(f"{problem}; {_DAMAGE_ADVICE}")
        return tuple(row[1:])

    def records(self, rows: Iterable[Sequence[object]], names: Sequence[str], *,
                damaged: list[str] | None = None) -> Iterator[dict[str, object]]:
        """Each of ``rows`` as ``{name: value}``, checked: a damaged row raises, or with a
        ``damaged`` list is described there and left out (``verify``)."""
        for row in rows:
            if damaged is not None:
                problem = self.damage(row, names)
                if problem is not None:
                    damaged.append(problem)
                    continue
            yield dict(zip(names, self.checked(row, names), strict=True))


META_SHAPE = RowShape(table="meta", columns={"name": _TEXT, "value": (bytes, str)})
# Label and contract id: text, or a file name's bytes that are not UTF-8 (see name_param).
ENTRY_SHAPE = RowShape(table="entries", columns={
    "id": _TEXT, "kind": _TEXT, "version": _INT, "label": (str, bytes, _NONE),
    "contract_id": (str, bytes, _NONE), "meta": _TEXT, "created_at": _TEXT,
    "updated_at": _TEXT, "size": _INT, "fingerprint": _TEXT, "match_tag": (str, _NONE),
    "wrapped_key": _BLOB, "ciphertext": _BLOB})
AUDIT_SHAPE = RowShape(table="audit", columns={
    "seq": _INT, "at": _TEXT, "actor": _TEXT, "action": _TEXT, "entry_id": (str, _NONE),
    "kind": (str, _NONE), "version": (int, _NONE), "detail": _TEXT, "prev_hash": _TEXT,
    "hash": _TEXT})



def default_vault_path() -> Path:
    """``$XDG_DATA_HOME/certescrow/vault.sqlite3`` (``~/.local/share`` when unset): the per-user
    vault when neither ``--vault`` nor ``[vault].path`` names one."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "certescrow" / "vault.sqlite3"


# Directories that are shared or belong to the system: advice to `chmod 700` one of them would
# break the machine (/tmp) or other users' access (/home). Their contents may still be private.
_SYSTEM_DIRS = frozenset({"/", "/tmp", "/var/tmp", "/dev/shm", "/etc", "/var", "/var/lib",  # noqa: S108 - names compared, not used
                          "/var/local", "/var/opt", "/usr", "/usr/local", "/opt", "/srv",
                          "/run", "/mnt", "/media", "/home", "/root", "/Users"})


def is_shared_or_system_dir(directory: Path, st: os.stat_result | None = None) -> bool:
    """True for a directory whose mode is not the user's to tighten: sticky (``/tmp``), owned
    by someone else, a system directory, a home directory or the root of home directories."""
    try:
        st = st or directory.stat()
        resolved = directory.resolve()
    except OSError:
        return True
    if st.st_mode & stat.S_ISVTX or st.st_uid != os.geteuid():
        return True
    if str(resolved) in _SYSTEM_DIRS:
        return True
    with contextlib.suppress(RuntimeError, KeyError, OSError):
        home = Path.home().resolve()
        if resolved in (home, home.parent):
            return True
    return False


# Who can write a directory decides what is in it: they can put a file there before us, or
# replace ours. So a directory that holds the vault or its master key must belong to this
# process's user (or to root, who can do anything anyway) and be writable by nobody else:
# OpenSSH's StrictModes rule. A sticky world-writable directory (/tmp) is writable by others.
_WRITABLE_BY_OTHERS = 0o022


def check_private_dir(directory: Path, *, holds: str | None = None) -> None:
    """Refuse ``directory`` as the home of the vault or, given ``holds`` (``"key file PATH"``),
    of a master key file. Both must belong to this process's user or root; the vault's must be
    mode 0700 (its metadata are stored unencrypted), a key file's writable by its owner only
    (the key file itself is 0600, so reading the directory reveals only its name).

    The one check of where a vault secret may live: the vault file (:meth:`Store.open`), a
    new vault (:mod:`vault.lifecycle`) and every key file read or written
    (:mod:`vault.keysource`)."""
    try:
        st = directory.stat()
    except FileNotFoundError:
        raise VaultNotFoundError(f"directory {directory} does not exist") from None
    mode = stat.S_IMODE(st.st_mode)
    subject = f"vault directory {directory}" if holds is None \
        else f"directory {directory} of {holds}"
    if holds is None:
        need = "the vault needs a private directory of its own"
        elsewhere = ("(--vault PATH or [vault] path), such as the default "
                     f"{default_vault_path()}, whose directory is created 0700")
    else:
        need = (f"whoever else can write there could have planted {holds} or could replace "
                "it, and so hold a copy of the master key")
        elsewhere = ("(--key-file FILE or [vault] key_file; `certescrow vault init` creates "
                     "a missing directory 0700)")
    loose = st.st_mode & (0o077 if holds is None else _WRITABLE_BY_OTHERS)
    shared = is_shared_or_system_dir(directory, st)
    if loose and shared:
        raise VaultPermissionError(
            f"{subject} has mode {mode:04o} and is a shared or system directory: {need}. Do "
            f"not change the mode of this one; choose a private directory instead {elsewhere}")
    if loose:
        fix = f"chmod 700 {directory}" if holds is None else f"chmod go-w {directory}"
        raise VaultPermissionError(f"{subject} has mode {mode:04o}; {need} ({fix})")
    if st.st_uid not in (os.geteuid(), 0):
        raise VaultPermissionError(
            f"{subject} belongs to {describe_uid(st.st_uid)}, not to "
            f"{describe_uid(os.geteuid())} that runs this command: {need}. Choose a private "
            f"directory of your own instead {elsewhere}")


def check_private_file(path: Path) -> None:
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise VaultPermissionError(f"vault {path} is not a regular file")
    if st.st_mode & 0o177:
        raise VaultPermissionError(
            f"vault {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 or "
            f"stricter (chmod 600 {path})"
        )


def translate_sqlite_error(path: Path, exc: sqlite3.Error) -> VaultError:
    """A clear vault error for what SQLite reports (a locked file, a damaged one)."""
    text = str(exc)
    if "decode to UTF-8" in text:
        # sqlite3's message quotes the stored bytes: never repeat it.
        return VaultIntegrityError(f"vault {path} is damaged or was altered (a stored text "
                                   "value is not valid UTF-8); run `certescrow vault verify`, "
                                   "and restore it from a backup (`certescrow vault restore`)")
    if isinstance(exc, sqlite3.OperationalError) and any(
            words in text for words in ("no such column", "no such table", "has no column")):
        # The format check passed, so the schema was ours: a damaged or altered one. The
        # message quotes the (stored) schema's name, so it is not repeated.
        return VaultIntegrityError(f"vault {path} is damaged or was altered (its schema is not "
                                   "the vault format's); run `certescrow vault verify`, and "
                                   "restore it from a backup (`certescrow vault restore`)")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return VaultBusyError(f"vault {path} is busy: another process held its write lock too "
                              "long; try again")
    if isinstance(exc, sqlite3.DatabaseError) and (
            "malformed" in text or "not a database" in text or "disk image" in text
            or "corrupt" in text or "short read" in text):
        return VaultIntegrityError(f"vault {path} is damaged or truncated ({text}); restore it "
                                   "from a backup (`certescrow vault restore`)")
    return VaultError(f"vault {path}: storage error: {text}")


class Store:
    """The SQLite file. Knows tables and transactions, nothing of cryptography."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.busy_timeout_ms = 30_000

    @contextlib.contextmanager
    def write_or_skip(self, wait_ms: int) -> Iterator[sqlite3.Connection]:
        """:meth:`write`, waiting at most ``wait_ms`` for the lock (:class:`VaultBusyError`
        after that): for housekeeping that can as well be done by the next open."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            with self.write() as conn:
                self.conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
                yield conn
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")

    @classmethod
    def open(cls, path: Path, *, create: bool = False, busy_timeout_s: float = 30.0) -> Store:
        path = Path(path)
        if not path.exists():
            if not create:
                raise VaultNotFoundError(f"no vault at {path}; create one with `certescrow "
                                         "vault init`")
            _make_private_dir(path.parent)
            # O_EXCL: two concurrent `init`s cannot both think they created it.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it meanwhile
            else:
                os.fchmod(fd, 0o600)
                os.close(fd)
        check_private_dir(path.parent)
        check_private_file(path)
        if not create and path.stat().st_size == 0:
            # Connecting would write a database header into it; an empty file is not a vault.
            raise VaultNotFoundError(f"{path} is an empty file, not a vault; move it away, "
                                     "then create the vault with `certescrow vault init`")
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                check_private_file(side)
        old_umask = os.umask(0o077)  # SQLite creates -wal/-shm with the database's mode anyway
        try:
            conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                store_busy_ms = int(busy_timeout_s * 1000)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                store = cls(path, conn)
                store.busy_timeout_ms = store_busy_ms
                if store._is_empty():
                    store._initialise_schema()
                store._check_format()
            except sqlite3.Error as exc:
                conn.close()
                raise translate_sqlite_error(path, exc) from None
            except UnicodeDecodeError:
                # SQLite's message about a damaged schema quotes the schema's bytes, and
                # sqlite3 fails to decode them: the message is lost, the damage is not.
                conn.close()
                raise VaultIntegrityError(
                    f"vault {path} is damaged or was altered (its schema cannot be read); "
                    "restore it from a backup (`certescrow vault restore`)") from None
            except BaseException:
                conn.close()
                raise
        finally:
            os.umask(old_umask)
        return store

    def _is_empty(self) -> bool:
        row = self.conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        return int(row[0]) == 0

    def _initialise_schema(self) -> None:
        with self.write() as conn:
            if int(conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]):
                return  # another process initialised it while we waited for the lock
            for statement in SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")

    def _check_format(self) -> None:
        app = int(self.conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if app != APPLICATION_ID:
            raise VaultFormatError(f"{self.path} is not a certescrow vault")
        if version != FORMAT_VERSION:
            raise VaultFormatError(
                f"vault {self.path} has format version {version}; this release reads version "
                f"{FORMAT_VERSION} (upgrade certescrow)"
            )

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken up front (BEGIN IMMEDIATE)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate_sqlite_error(self.path, exc) from None
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise translate_sqlite_error(self.path, exc) from None

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot over several statements."""
        try:
            self.conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise translate_sqlite_error(self.path, exc) from None
        try:
            yield self.conn
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("COMMIT")

    def get_meta(self, name: str) -> bytes | None:
        return meta_value(self.conn, name)

    @staticmethod
    def set_meta(conn: sqlite3.Connection, name: str, value: bytes) -> None:
        conn.execute("INSERT INTO meta(name, value) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))

    def close(self) -> None:
        self.conn.close()


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) with mode 0700; an existing one is left alone."""
    _make_private_dir(directory)


def _make_private_dir(directory: Path) -> None:
    if directory.exists():
        return
    old_umask = os.umask(0o077)
    try:
        directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    finally:
        os.umask(old_umask)


# ------------------------------------------------------------------ the entries table
# Every statement on `entries` lives here; the service decides what to seal and check. Rows are
# returned as dicts keyed by column name (the metadata columns; blobs only where asked for).

ENTRY_COLUMNS = ("id", "kind", "version", "label", "contract_id", "meta", "created_at",
                 "updated_at", "size", "fingerprint", "match_tag")
_COLUMNS_SQL = ", ".join(ENTRY_COLUMNS)
_SELECT_SQL = ENTRY_SHAPE.select(ENTRY_COLUMNS)  # rowid first: a damaged row is named by it

EntryRow = dict[str, Any]

# Labels and contract ids may be file names, which are bytes: `vault import` labels an entry
# with its file's name, and a name that is not UTF-8 reaches us as `os.fsdecode` text holding
# lone surrogates (PEP 383), which SQLite's TEXT cannot hold. Such a value is stored as a BLOB
# of the name's bytes and read back as the same text: it round-trips exactly.
_NAME_COLUMNS = ("label", "contract_id")


def name_param(value: str | None) -> str | bytes | None:
    """``value`` as stored in a name column: TEXT when it is UTF-8, else a BLOB of its bytes
    (``surrogateescape``; a surrogate that is not an escaped byte raises ``UnicodeError``)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
    return value


def _name_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def _rows(cursor: sqlite3.Cursor, *, damaged: list[str] | None = None) -> list[EntryRow]:
    """The rows of a cursor over ``rowid`` and entry columns, each checked against
    :data:`ENTRY_SHAPE`; a damaged one raises, or with a ``damaged`` list is described there
    and left out (``verify``)."""
    names = [d[0] for d in cursor.description][1:]
    rows = []
    for row in ENTRY_SHAPE.records(cursor.fetchall(), names, damaged=damaged):
        for column in _NAME_COLUMNS:
            if isinstance(row.get(column), bytes):
                row[column] = _name_value(row[column])
        rows.append(row)
    return rows


def is_storable_id(entry_id: str) -> bool:
    """Whether ``entry_id`` can be compared with stored ids at all. An id typed on the command
    line is ``os.fsdecode``d: its bytes that are not UTF-8 are lone surrogates (PEP 383), which
    SQLite cannot bind (``UnicodeEncodeError``, a traceback quoting them). Stored ids are
    hexadecimal, so such an id names no entry and no audit record."""
    try:
        entry_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_entry(conn: sqlite3.Connection, entry_id: str) -> list[EntryRow]:
    """The row with id ``entry_id``; else the rows (at most two) whose id starts with it, when
    it is a hex prefix of at least four characters. The caller decides on ambiguity."""
    if not is_storable_id(entry_id):
        return []
    rows = _rows(conn.execute(f"SELECT {_SELECT_SQL} FROM entries WHERE id = ?", (entry_id,)))  # noqa: S608 - constant column list
    if not rows and 4 <= len(entry_id) < 16 and all(c in "0123456789abcdef" for c in entry_id):
        rows = _rows(conn.execute(f"SELECT {_SELECT_SQL} FROM entries WHERE id LIKE ? "  # noqa: S608 - constant column list
                                  "LIMIT 2", (entry_id + "%",)))
    return rows


def entry_id_by_fingerprint(conn: sqlite3.Connection, fingerprint: str) -> str | None:
    row = conn.execute("SELECT rowid, id FROM entries WHERE fingerprint = ?",
                       (fingerprint,)).fetchone()
    return None if row is None else str(ENTRY_SHAPE.checked(row, ("id",))[0])


_BLOB_COLUMNS = ("wrapped_key", "ciphertext")


def entry_blobs(conn: sqlite3.Connection, entry_id: str) -> tuple[bytes, bytes] | None:
    """``(wrapped_key, ciphertext)`` of an entry."""
    row = conn.execute(f"SELECT {ENTRY_SHAPE.select(_BLOB_COLUMNS)} FROM entries WHERE id = ?",  # noqa: S608 - constant column list
                       (entry_id,)).fetchone()
    if row is None:
        return None
    wrapped_key, ciphertext = ENTRY_SHAPE.checked(row, _BLOB_COLUMNS)
    return bytes(wrapped_key), bytes(ciphertext)  # type: ignore[call-overload]  # checked: bytes


def list_entries(conn: sqlite3.Connection, *, kind: str | None = None,
                 contract_id: str | None = None) -> list[EntryRow]:
    """Metadata rows, oldest first."""
    sql = f"SELECT {_SELECT_SQL} FROM entries WHERE 1 = 1"  # noqa: S608 - constant column list
    args: list[Any] = []
    if kind is not None:
        sql += " AND kind = ?"
        args.append(kind)
    if contract_id is not None:
        sql += " AND contract_id = ?"
        args.append(name_param(contract_id))
    return _rows(conn.execute(sql + " ORDER BY created_at, id", args))


def entries_except(conn: sqlite3.Connection, rowids: list[int], *,
                   damaged: list[str] | None = None) -> list[EntryRow]:
    """Every row but the given row ids (rows ``verify`` already found unreadable), by id; with
    a ``damaged`` list, rows with a value of the wrong type are described there and left out."""
    skip = ",".join(str(int(r)) for r in rowids)
    return _rows(conn.execute(f"SELECT {_SELECT_SQL} FROM entries "  # noqa: S608 - constant columns, integer row ids
                              f"WHERE rowid NOT IN ({skip}) ORDER BY id"), damaged=damaged)


def entries_with_wrapped_keys(conn: sqlite3.Connection) -> list[EntryRow]:
    return _rows(conn.execute(f"SELECT {_SELECT_SQL}, wrapped_key FROM entries"))  # noqa: S608 - constant column list


def entries_sharing_key(conn: sqlite3.Connection, match_tag: str, kind: str) -> list[EntryRow]:
    """Rows of ``kind`` with the same public-key tag, oldest first."""
    return _rows(conn.execute(f"SELECT {_SELECT_SQL} FROM entries WHERE match_tag = ? AND "  # noqa: S608 - constant column list
                              "kind = ? ORDER BY created_at", (match_tag, kind)))


def match_tags(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """``(id, kind, match_tag)`` of every row that has a tag, oldest first."""
    names = ("id", "kind", "match_tag")
    return [(str(i), str(k), str(t)) for i, k, t in (
        ENTRY_SHAPE.checked(row, names) for row in conn.execute(
            f"SELECT {ENTRY_SHAPE.select(names)} FROM entries "  # noqa: S608 - constant column list
            "WHERE match_tag IS NOT NULL ORDER BY created_at, id"))]


def count_by_kind(conn: sqlite3.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in conn.execute("SELECT NULL, kind, count(*) FROM entries GROUP BY kind "
                            "ORDER BY kind"):
        (kind,) = ENTRY_SHAPE.checked(row[:2], ("kind",))
        counts[str(kind)] = int(row[2])  # count(*) is SQLite's, not stored
    return counts


def meta_value(conn: sqlite3.Connection, name: str) -> bytes | None:
    """The header value ``name`` as bytes (None when there is none)."""
    row = conn.execute("SELECT rowid, value FROM meta WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    (value,) = META_SHAPE.checked(row, ("value",))
    return value if isinstance(value, bytes) else str(value).encode()


def insert_entry(conn: sqlite3.Connection, row: EntryRow, *, wrapped_key: bytes,
                 ciphertext: bytes) -> None:
    conn.execute(f"INSERT INTO entries({_COLUMNS_SQL}, wrapped_key, ciphertext) "  # noqa: S608 - constant column list
                 f"VALUES ({', '.join('?' * (len(ENTRY_COLUMNS) + 2))})",
                 (*(name_param(row[c]) if c in _NAME_COLUMNS else row[c]
                    for c in ENTRY_COLUMNS), wrapped_key, ciphertext))


def update_entry(conn: sqlite3.Connection, row: EntryRow, *, wrapped_key: bytes,
                 ciphertext: bytes) -> None:
    """A new version of an entry: label, contract id, version, time and both blobs."""
    conn.execute("UPDATE entries SET label = ?, contract_id = ?, version = ?, updated_at = ?, "
                 "wrapped_key = ?, ciphertext = ? WHERE id = ?",
                 (name_param(row["label"]), name_param(row["contract_id"]), row["version"],
                  row["updated_at"],
                  wrapped_key, ciphertext, row["id"]))


def set_wrapped_key(conn: sqlite3.Connection, entry_id: str, wrapped_key: bytes) -> None:
    conn.execute("UPDATE entries SET wrapped_key = ? WHERE id = ?", (wrapped_key, entry_id))


def delete_entry(conn: sqlite3.Connection, entry_id: str) -> None:
    conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))


def delete_meta(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM meta WHERE name = ?", (name,))


# ------------------------------------------------------------------ checks of the file

def integrity_check(conn: sqlite3.Connection) -> list[str]:
    """``PRAGMA integrity_check``'s lines (``["ok"]`` when sound). Not ``quick_check``: only
    the full check compares every index with its table, so a damaged index that would hide a
    row from a lookup by fingerprint (and let a duplicate in) is found too."""
    return [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]


def rows_with_invalid_text(conn: sqlite3.Connection) -> dict[str, list[int]]:
    """Row ids, per table, holding a TEXT value that is not UTF-8. sqlite3 refuses to return
    such a value, and its error quotes the bytes: so the bytes are read as blobs and only the
    row id is reported (a message must never quote stored content)."""
    found: dict[str, list[int]] = {}
    for table in ("meta", "entries", "audit"):
        columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]
        if not columns:
            continue
        quoted = ['"' + c.replace('"', '""') + '"' for c in columns]
        probes = ", ".join(f"CASE WHEN typeof({q}) = 'text' THEN CAST({q} AS BLOB) END"
                           for q in quoted)
        for row in conn.execute(f"SELECT rowid, {probes} FROM {table}"):  # noqa: S608 - fixed tables, quoted column names
            for value in row[1:]:
                if value is None:
                    continue
                try:
                    bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    found.setdefault(table, []).append(int(row[0]))
                    break
    return found


def _expected_schema() -> dict[bytes, bytes]:
    """Name → SQL of each object in :data:`SCHEMA`, as SQLite stores it (from ``CREATE`` to
    the end of the statement, without the comment lines before it)."""
    expected: dict[bytes, bytes] = {}
    for statement in SCHEMA.split(";\n"):
        lines = [line for line in statement.strip().splitlines() if not line.startswith("--")]
        if lines:
            text = "\n".join(lines)
            expected[text.split()[2].encode()] = text.encode()
    return expected


def schema_differences(conn: sqlite3.Connection) -> list[str]:
    """The vault's tables, indexes and triggers whose stored definition is missing or differs
    from this format's :data:`SCHEMA`. The schema is stored text like any other: one flipped
    bit (``INTEGER PBIMARY KEY``) silently turns the audit log's sequence number into NULL in
    every row. Names the object, never the stored text (read as bytes, so text that is not
    UTF-8 cannot stop the check)."""
    stored = {bytes(name): bytes(sql) for name, sql in conn.execute(
        "SELECT CAST(name AS BLOB), CAST(sql AS BLOB) FROM sqlite_schema "
        "WHERE sql IS NOT NULL AND name IS NOT NULL")}
    return [f"SQLite schema: the definition of {name.decode()} "
            + ("is missing" if name not in stored else "differs from the vault format's")
            + " (the file was damaged or altered)"
            for name, sql in _expected_schema().items() if stored.get(name) != sql]
