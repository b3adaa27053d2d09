"""The daemon's read index on disk: what it read, at which stat identity, so that a restart
reads nothing that did not change (issue 12).

One SQLite file in the state directory (beside the ledger). A row per file: its path, a packed
entry (the stat identity it was read at — device, inode, size, mtime, ctime; :mod:`agent.index`
— whether it holds a key, and the position and SHA-256 of each certificate), the file a link
resolved to, the row's digest, and, in a table apart, what reading it produced (a
:class:`~agent.records.FileResult`, without key material, as compact JSON) with its SHA-256.
SQLite transactions make every write crash-safe: a crash loses at most the last batch, whose
files are read again. A start reads only the small rows and keeps their packed entries as they
are: a restart of 100,000 files checks 100,000 digests, decodes no result and builds no record.

Beside each file, what the daemon logged of it when it read it (``problems``: the kind of each
warning or critical finding or action, per certificate, :data:`agent.index.Problem`), so that a
restart that reads nothing again still says what is wrong: :meth:`ReadIndexFile.said` counts
them by kind and names the files with a finding of their own (a 0644 key). They are what each
file said when it was last read, not evaluated again as of now.

The file is input like any other. A file that is not an SQLite database, another program's
database, an index of another host or of another version of the records (a schema fingerprint
of every field of every record type), a row whose digest does not match, or a value of the
wrong type is discarded whole, with one log line, and the daemon reads every file again: a
row is never half-trusted, and nothing is unpickled (the codec builds only the record types it
knows, checking each value's type). The ``problems`` and ``kinds`` rows are not covered by
the rows' digests: they are only ever counted into log lines, never acted on (a row of another
shape is left out; a kind no daemon writes, or a row larger than one writes, drops them all).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import itertools
import json
import os
import re
import sqlite3
import struct
import sys
import types
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

try:
    import orjson
except ImportError:  # pragma: no cover - a platform orjson has no wheel for
    orjson = None  # type: ignore[assignment]

from policy.decisions import Finding
from policy.facts import CertificateFacts, storable

from .index import (
    FileIndex,
    KindCount,
    Problem,
    StatKey,
    is_root_bound,
    parent_of,
    worst_said_into,
)
from .logs import EventLog
from .records import CertificateRecord, FileError, FileResult, FileSkip, KeyRecord

__all__ = [
    "FORMAT",
    "READ_INDEX_NAME",
    "PersistentIndex",
    "ReadIndexFile",
    "Stored",
    "UntrustedIndexError",
    "binding_fingerprint",
    "certificate_ids",
    "certificate_rows",
    "row_digest",
    "schema_fingerprint",
]

FLUSH_EVERY = 2000
"""Changes kept in memory before they are written (the first scan of a large store)."""
RECENT = 256
"""Results read back and kept, so that one unit sees the same objects."""
READ_INDEX_NAME = "read-index.sqlite3"
"""Its name in the state directory (beside the ledger)."""
FORMAT = "certescrow-read-index"
VERSION = 6
"""3: the packed entry per file and the results in a table apart (issue 12). 4: certificate
text as :func:`policy.facts.storable` makes it (an index of 3 may hold a NUL or a megabyte in a
name, which the ledger refuses: its files are read again). 5: the ``problems`` table (an index
of 4 does not know what its files said: they are read again, once). 6: the entry's flag for an
error that depends on the store root's resolution (an index of 5 may hold one checked against
a root's former target, kept for good: its files are read again, once)."""
MAX_HOST_NAME = 255
"""The longest host name an index's ``meta`` is taken to name (the file is not trusted: a longer
one is no host a daemon wrote, and is not said or asked about)."""
_RECORD_TYPES: tuple[type[Any], ...] = (FileResult, CertificateRecord, KeyRecord, FileError,
                                        FileSkip, Finding, CertificateFacts)


class UntrustedIndexError(Exception):
    """The file on disk is not an index this daemon may trust (the message says why)."""


# ---------------------------------------------------------------- the codec

Decoder = Callable[[Any], Any]
Encoder = Callable[[Any], Any]


def _fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def schema_fingerprint() -> str:
    """Names and types of every field of every record type: an index written by a version
    whose records differ is foreign."""
    parts = []
    for cls in _RECORD_TYPES:
        hints = typing.get_type_hints(cls)
        parts.append(cls.__name__ + ":" + ",".join(f"{f.name}={hints[f.name]}"
                                                   for f in _fields(cls)))
    return hashlib.sha256(";".join(parts).encode()).hexdigest()


def _check(kind: type[Any]) -> Decoder:
    def decode(value: Any) -> Any:
        if type(value) is not kind:
            raise UntrustedIndexError(f"expected {kind.__name__}, found {type(value).__name__}")
        return value

    return decode


def _decoder(tp: Any, memo: dict[Any, Decoder]) -> Decoder:
    """A decoder for values of type ``tp`` that rejects anything else. Built once per type;
    no recursion on input (only on the fixed record types)."""
    if tp in memo:
        return memo[tp]
    decoder: Decoder
    origin = typing.get_origin(tp)
    if tp is str or tp is int or tp is bool:
        decoder = _check(tp)
    elif tp is type(None):
        decoder = _check(type(None))
    elif tp is bytes:
        def decoder(value: Any) -> Any:  # key material is never written
            raise UntrustedIndexError("key material in a read index")
    elif tp is datetime:
        def decoder(value: Any) -> Any:
            if type(value) is not str:
                raise UntrustedIndexError("instant is not text")
            instant = datetime.fromisoformat(value)
            if instant.tzinfo is None:
                raise UntrustedIndexError("instant without a time zone")
            return instant
    elif isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        enum_type = tp

        def decoder(value: Any) -> Any:
            if type(value) is not int:
                raise UntrustedIndexError(f"{enum_type.__name__} is not a number")
            return enum_type(value)
    elif origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        inner = [o for o in options if o is not type(None)]
        if len(inner) != 1 or len(options) != 2:
            raise TypeError(f"read index: no codec for {tp}")
        if inner[0] is bytes:
            decoder = _check(type(None))  # material: always written as null
        else:
            some = _decoder(inner[0], memo)

            def decoder(value: Any) -> Any:
                return None if value is None else some(value)
    elif origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0], memo)

            def decoder(value: Any) -> Any:
                if type(value) is not list:
                    raise UntrustedIndexError("expected a list")
                return tuple(item(v) for v in value)
        else:
            items = [_decoder(a, memo) for a in args]

            def decoder(value: Any) -> Any:
                if type(value) is not list or len(value) != len(items):
                    raise UntrustedIndexError("expected a fixed-length list")
                return tuple(d(v) for d, v in zip(items, value, strict=True))
    elif dataclasses.is_dataclass(tp) and tp in _RECORD_TYPES:
        cls = tp
        memo[tp] = lambda value: inner_decoder(value)  # placeholder for nested self-reference
        hints = typing.get_type_hints(cls)
        names = [f.name for f in _fields(cls)]
        parts = [(name, _decoder(hints[name], memo)) for name in names]
        expected = set(names)

        def inner_decoder(value: Any) -> Any:
            if type(value) is not dict or value.keys() != expected:
                raise UntrustedIndexError(f"malformed {cls.__name__}")
            built = cls(**{name: decode(value[name]) for name, decode in parts})
            if cls is CertificateFacts and storable(built)[1]:
                # The reader stores only what every ledger takes: anything else was not
                # written by it.
                raise UntrustedIndexError("certificate text no reading produces")
            return built

        decoder = inner_decoder
    else:
        raise TypeError(f"read index: no codec for {tp}")
    memo[tp] = decoder
    return decoder


def _encode(value: Any) -> Any:
    """Records as objects of their fields, tuples as lists, instants as ISO text, enums as
    numbers, key material as null: what orjson writes of them natively (about ten times
    faster), for when orjson is not there or refuses a value."""
    if isinstance(value, str | bool | int) or value is None:
        return int(value) if isinstance(value, enum.IntEnum) else value
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    if dataclasses.is_dataclass(value) and type(value) in _RECORD_TYPES:
        return {f.name: _encode(getattr(value, f.name)) for f in _fields(type(value))}
    raise TypeError(f"read index: cannot write a {type(value).__name__}")


def _json_dumps(value: Any) -> bytes:
    # ASCII: a file name that is not UTF-8 holds lone surrogates (os.fsdecode), which only an
    # escape carries
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def _loads(data: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # a lone surrogate escaped (a file name that is not UTF-8)
    return json.loads(data)


def _no_material(value: Any) -> None:
    if isinstance(value, bytes):
        return None  # key material is never written
    raise TypeError(f"read index: cannot write a {type(value).__name__}")


def _dump_result(result: FileResult) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(result, default=_no_material)
        except orjson.JSONEncodeError:
            pass  # an integer beyond 64 bits: the json module writes it
    return _json_dumps(_encode(result))


# ---------------------------------------------------------------- what stays in memory
#
# A file whose result is on disk is kept in memory as one ``bytes`` (~110 bytes for a file of
# one certificate): its stat identity, whether it holds a key, and per certificate its position
# and SHA-256, packed. 100,000 files of dataclasses, tuples of ints and hex strings took ~1 KB
# each. The same bytes are the row's ``entry`` on disk, so a start copies them as they come.

_HEAD = struct.Struct("<QQQqqB")
"""``st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns``, flags (1: the file holds a key)."""
_STAT = struct.Struct("<QQQqq")
"""The stat identity: the head's first 40 bytes."""
_CERT = struct.Struct("<I32s")
"""A certificate: its position in the file, its SHA-256."""
_HAS_KEYS = 1
_ROOT_BOUND = 2
"""The file's error is one of :data:`agent.index.ROOT_BOUND_ERRORS`: read again at each scan."""


def _pack(key: StatKey, result: FileResult) -> bytes | None:
    """The packed summary of ``result`` read at ``key``; ``None`` when it does not pack (a
    value out of range, a SHA-256 that is not 64 lowercase hex digits): such a file is kept in
    full and read again after a restart."""
    try:
        parts = [_HEAD.pack(*key, (_HAS_KEYS if result.keys else 0)
                            | (_ROOT_BOUND if is_root_bound(result) else 0))]
        for record in result.certificates:
            digest = bytes.fromhex(record.facts.sha256)
            if len(digest) != 32 or digest.hex() != record.facts.sha256:
                return None
            parts.append(_CERT.pack(record.index, digest))
    except (struct.error, ValueError, TypeError):
        return None
    return b"".join(parts)


def _certificates_of(entry: bytes) -> Iterator[tuple[int, str]]:
    """``(position, sha256 hex)`` of each certificate a packed entry lists."""
    for index, digest in _CERT.iter_unpack(memoryview(entry)[_HEAD.size:]):
        yield index, digest.hex()


class Stored:
    """What :meth:`PersistentIndex.summary` tells of a file without reading its result back:
    the certificates it holds (position -> SHA-256, what reconciling with the ledger compares)
    and whether it holds a key."""

    __slots__ = ("certificates", "has_keys")

    def __init__(self, certificates: tuple[tuple[int, str], ...], has_keys: bool) -> None:
        self.certificates = certificates
        self.has_keys = has_keys

    @classmethod
    def of(cls, result: FileResult) -> Stored:
        return cls(tuple((c.index, c.facts.sha256) for c in result.certificates),
                   bool(result.keys))

    @classmethod
    def unpack(cls, entry: bytes) -> Stored:
        return cls(tuple(_certificates_of(entry)), bool(entry[_HEAD.size - 1] & _HAS_KEYS))


# ---------------------------------------------------------------- the file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    entry BLOB NOT NULL,
    target BLOB NOT NULL,
    result_sha256 BLOB NOT NULL,
    digest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS results (path BLOB PRIMARY KEY, result BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS problems (path BLOB PRIMARY KEY, said BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS kinds (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    code TEXT NOT NULL,
    clause TEXT NOT NULL,
    UNIQUE (event, code, clause)
);
"""
# ``files`` is what a start reads, ~150 bytes a row; the results (~1.5 KB each) are apart in
# ``results``, read one at a time when asked for. ``target`` is empty when the path is not a
# link (the file is its own target). ``problems``: a row per file that said something when it
# was read (most say nothing), its warnings packed (:data:`_SAID`), their kinds numbered in
# ``kinds``. One row a file, not one a warning: a first start of 100,000 files with four
# warnings each writes 100,000 rows, not 400,000 (2.0 -> 0.7 s here), and a restart decodes
# them in ~0.35 s where SQL took 1.7 s to count the 400,000.

@functools.cache
def _tables_as_stored() -> dict[str, str]:
    """Each table of :data:`_SCHEMA` as SQLite keeps its ``CREATE`` statement (what a start
    compares: a table of another shape is a foreign index); made once, when first asked."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(_SCHEMA)
        return dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))



def _said_text(value: object) -> str:
    """A meta value for a message: short digits only (the file is not trusted)."""
    return value if isinstance(value, str) and value.isdigit() and len(value) < 6 else "?"


_KIND_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
"""A finding's code or an action's name as the product writes them: kebab-case."""
_KIND_CLAUSE = re.compile(r"[A-Za-z0-9 .()/,§-]{0,64}")
"""The characters of every clause the product cites ("Art.6(3) proviso", "Art.10, Appx1.3",
"BR §6.3.2"), and no others: a clause of other characters was not written by a daemon. Without
the ``§`` every restart discarded what the files said when one certificate exceeded the BR
maximum. tests/agent/test_readindex_kinds.py walks every clause and code the source can write
and checks that these accept them: a clause with a new character fails there, not in the field."""
_SAID_ROW_MAX = 1 << 20
"""A file's row of what it said, at most (a bundle of 1,000 certificates with 8 warnings each
is 112 KB): a larger one was not written by a daemon."""


class _UntrustedSaidError(Exception):
    """The ``kinds`` or ``problems`` tables hold what no daemon writes."""


_SAID = struct.Struct("<iQH")
"""A warning of a file: the certificate's position in it (-1: the file's own finding), the first
64 bits of its SHA-256 (what :class:`agent.findinglog.FindingLog` counts certificates by), and
the kind's number in ``kinds``, with :data:`_CRITICAL` set when it was critical."""
_CRITICAL = 0x8000
_EVENTS = frozenset({"finding", "action"})


def _certificate_number(sha256: str) -> int:
    """The first 64 bits of a SHA-256 in hex (of its own SHA-256 for text that is not hex:
    facts made by hand still count as one certificate each)."""
    try:
        return int(sha256[:16], 16)
    except ValueError:
        return int.from_bytes(hashlib.sha256(sha256.encode("utf-8", "surrogateescape"))
                              .digest()[:8], "big")


class ReadIndexFile:
    """The index file: load it once at start, then write what changed, a transaction a batch.

    Any failure to read it is an :class:`UntrustedIndexError` from :meth:`load`, which the caller
    turns into one log line and a fresh file; a failure to write it is logged and leaves the
    daemon running without persistence until the next flush succeeds.
    """

    def __init__(self, path: Path, *, host: str, log: EventLog) -> None:
        self.path = path
        self.host = host
        self.log = log
        self._db: sqlite3.Connection | None = None
        self._decode = _decoder(FileResult, {})
        self._fingerprint = schema_fingerprint()
        self._kind_numbers: dict[tuple[str, str, str], int] | None = None
        self.bindings: dict[str, str] = {}
        """Store root -> :func:`binding_fingerprint` of its binding when its certificates
        last reached the ledger (a binding changed while the daemon was stopped must be
        re-checked by the ledger; an unchanged one need not)."""
        self.former_host: str | None = None
        """The host a read index found by :meth:`load` was written for, when it was another
        (``[agent] host`` changed while the daemon was stopped): the sightings this state
        directory's daemon reported were recorded under that name (docs/daemon.md)."""

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error):
            db.close()
            raise
        return db

    def _expected_meta(self) -> dict[str, str]:
        return {"format": FORMAT, "version": str(VERSION), "host": self.host,
                "schema": self._fingerprint}

    def load(self) -> tuple[list[str], list[bytes], dict[str, str]]:
        """Every row, checked (its digest, the entry's shape), as three collections: the paths,
        their packed entries (in the same order) and path -> target for the links; the results
        are not read (:meth:`fetch` reads one when asked for). Raises
        :class:`UntrustedIndexError` at the first doubt."""
        paths: list[str] = []
        entries: list[bytes] = []
        links: dict[str, str] = {}
        if not self.path.exists():
            return paths, entries, links
        try:
            db = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise UntrustedIndexError(f"cannot open it ({type(exc).__name__})") from None
        self._db = db
        try:
            tables = dict(db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
            if "meta" not in tables:
                raise UntrustedIndexError("not a certescrow read index (tables missing)")
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
            written_for = meta.get("host")
            if (meta.get("format") == FORMAT and isinstance(written_for, str)
                    and written_for != self.host and 0 < len(written_for) <= MAX_HOST_NAME):
                self.former_host = written_for  # (the index is discarded below all the same)
            if meta.get("format") == FORMAT and meta.get("version") != str(VERSION):
                # an earlier (or later) release's index: said as what it is, an upgrade
                raise UntrustedIndexError(
                    f"written by another release (index version {_said_text(meta.get('version'))}"
                    f", this one reads {VERSION}): every file is read again once")
            if any(tables.get(name) != sql for name, sql in _tables_as_stored().items()):
                raise UntrustedIndexError("not a certescrow read index (tables missing or of "
                                          "another shape)")
            for name, want in self._expected_meta().items():
                if meta.get(name) != want:
                    raise UntrustedIndexError(f"not this daemon's index ({name} differs)")
            self.bindings = {_unhex_path(name[len(_BINDING):]): value
                             for name, value in meta.items()
                             if isinstance(name, str) and name.startswith(_BINDING)
                             and isinstance(value, str)}
            # The loop a start spends per file (100,000 times): one digest in C, the entry's
            # shape by its length, the path decoded; nothing else.
            digest_of = _ROW_HASH
            encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
            head, cert, flag = _HEAD.size, _CERT.size, _HEAD.size - 1
            add_path, add_entry = paths.append, entries.append
            rows = db.execute("SELECT path, entry, target, result_sha256, digest FROM files")
            try:
                for raw_path, entry, raw_target, result_sha256, digest in rows:
                    # (%b refuses anything but bytes: a TEXT or a number is a TypeError)
                    if digest_of(b"%b\0%b\0%b%b" % (raw_path, raw_target, entry,
                                                      result_sha256)).digest() != digest:
                        raise UntrustedIndexError("a row whose digest does not match")
                    size = len(entry)
                    if size < head or (size - head) % cert or entry[flag] > _HAS_KEYS | _ROOT_BOUND:
                        raise UntrustedIndexError("an entry of the wrong shape")
                    path = raw_path.decode(encoding, errors)
                    add_path(path)
                    add_entry(entry)
                    if raw_target:
                        links[path] = raw_target.decode(encoding, errors)
            except TypeError:
                raise UntrustedIndexError("a row of the wrong shape") from None
            except UnicodeDecodeError:
                raise UntrustedIndexError("a path that does not decode") from None
            return paths, entries, links
        except sqlite3.Error as exc:
            raise UntrustedIndexError(f"unreadable ({type(exc).__name__})") from None

    def fetch(self, path: str, entry: bytes, target: str) -> FileResult:
        """The result stored for ``path``, checked against the row the start loaded (``entry``
        and ``target``: a row replaced since is refused) and its own digest, decoded and
        type-checked."""
        if self._db is None:
            raise UntrustedIndexError("the index is not open")
        raw_path = os.fsencode(path)
        try:
            row = self._db.execute(
                "SELECT f.entry, f.target, f.result_sha256, f.digest, r.result FROM files f "
                "JOIN results r ON r.path = f.path WHERE f.path = ?", (raw_path,)).fetchone()
        except sqlite3.Error as exc:
            raise UntrustedIndexError(f"unreadable ({type(exc).__name__})") from None
        if row is None:
            raise UntrustedIndexError("a row went missing")
        stored_entry, raw_target, result_sha256, digest, blob = row
        want_target = b"" if target == path else os.fsencode(target)
        if stored_entry != entry or raw_target != want_target:
            raise UntrustedIndexError("a row that changed since the start")
        try:
            ok = (_ROW_HASH(_digest_input(raw_path, raw_target, entry,
                                               result_sha256)).digest() == digest
                  and hashlib.sha256(blob).digest() == result_sha256)
        except TypeError:
            ok = False
        if not ok:
            raise UntrustedIndexError("a result whose digest does not match")
        try:
            result = self._decode(_loads(blob))
        except UntrustedIndexError:
            raise
        except (ValueError, TypeError) as exc:
            raise UntrustedIndexError(
                f"a row that does not decode ({type(exc).__name__})") from None
        if not isinstance(result, FileResult) or result.path != path:
            raise UntrustedIndexError("a row about another path")
        if _pack(cast(StatKey, _STAT.unpack_from(entry)), result) != entry:
            raise UntrustedIndexError("a result that does not match its summary")
        return result

    def reset(self) -> None:
        """Start a new, empty index (the old file, if any, is removed)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        db = self._connect()
        db.executescript(_SCHEMA)
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                           self._expected_meta().items())
        self._db = db

    def write(self, puts: Iterable[tuple[str, bytes, str, FileResult]],
              removes: Iterable[str], bindings: dict[str, str] | None = None,
              problems: Mapping[str, tuple[Problem, ...]] | None = None) -> None:
        """Apply changes in one transaction: ``puts`` as ``(path, packed entry, target,
        result)``; ``bindings``: replace the stores' bindings; ``problems``: replace what these
        paths said (``()``: nothing, as for a path removed)."""
        if self._db is None:
            self.reset()
        db = self._db
        assert db is not None  # noqa: S101 - reset() opened it
        files = []
        results = []
        for path, entry, target, result in puts:
            raw_path = os.fsencode(path)
            raw_target = b"" if target == path else os.fsencode(target)
            blob = _dump_result(result)
            result_sha256 = hashlib.sha256(blob).digest()
            digest = _ROW_HASH(_digest_input(raw_path, raw_target, entry,
                                                  result_sha256)).digest()
            files.append((raw_path, entry, raw_target, result_sha256, digest))
            results.append((raw_path, blob))
        gone = [(os.fsencode(p),) for p in removes]
        kinds = dict(self._kinds())
        new_kinds: list[tuple[int, str, str, str]] = []
        unsaid: list[tuple[bytes]] = []
        told: list[tuple[bytes, bytes]] = []
        for path, rows in (problems or {}).items():
            raw_path = os.fsencode(path)
            if not rows:
                unsaid.append((raw_path,))
                continue
            packed = []
            for position, sha256, event, code, clause, severity in rows:
                number = kinds.get((event, code, clause))
                if number is None:
                    number = kinds[(event, code, clause)] = max(kinds.values(), default=0) + 1
                    new_kinds.append((number, event, code, clause))
                try:  # (32,767 kinds: more than there are; a position past 2**31: none)
                    if number < _CRITICAL:
                        packed.append(_SAID.pack(
                            position, _certificate_number(sha256) if position >= 0 else 0,
                            number | (_CRITICAL if severity == "critical" else 0)))
                except struct.error:
                    continue  # left out of what the restart says, never a failed write
            told.append((raw_path, b"".join(packed)))
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM files WHERE path = ?", gone)
            db.executemany("DELETE FROM results WHERE path = ?", gone)
            db.executemany("INSERT INTO kinds (id, event, code, clause) VALUES (?, ?, ?, ?)",
                           new_kinds)
            db.executemany("DELETE FROM problems WHERE path = ?", unsaid)
            db.executemany("INSERT OR REPLACE INTO problems (path, said) VALUES (?, ?)", told)
            db.executemany("INSERT OR REPLACE INTO files (path, entry, target, result_sha256, "
                           "digest) VALUES (?, ?, ?, ?, ?)", files)
            db.executemany("INSERT OR REPLACE INTO results (path, result) VALUES (?, ?)",
                           results)
            if bindings is not None:
                db.execute("DELETE FROM meta WHERE name LIKE ? ESCAPE '\\'",
                           (_BINDING.replace("_", "\\_") + "%",))
                db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)",
                               ((_BINDING + os.fsencode(root).hex(), value)
                                for root, value in bindings.items()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._kind_numbers = kinds  # (only once they are on disk)
        if bindings is not None:
            self.bindings = dict(bindings)

    def _kinds(self) -> dict[tuple[str, str, str], int]:
        """``(event, code, clause)`` -> its number in ``kinds`` (read once per file). A row no
        daemon writes (a number out of range, a code or clause of other characters or length)
        discards what the files said, with one line: they only feed the restart's summary."""
        if self._kind_numbers is None:
            numbers: dict[tuple[str, str, str], int] = {}
            if self._db is not None:
                try:
                    numbers = self._checked_kinds(self._db)
                except (sqlite3.Error, _UntrustedSaidError):
                    self._forget_said("its kinds of findings are not what a daemon writes")
                    numbers = {}
            self._kind_numbers = numbers
        return self._kind_numbers

    @staticmethod
    def _checked_kinds(db: sqlite3.Connection) -> dict[tuple[str, str, str], int]:
        numbers: dict[tuple[str, str, str], int] = {}
        for number, event, code, clause in db.execute(
                "SELECT id, event, code, clause FROM kinds"):
            if (type(number) is not int or not 0 < number < _CRITICAL
                    or event not in _EVENTS or type(code) is not str
                    or type(clause) is not str or not _KIND_CODE.fullmatch(code)
                    or not _KIND_CLAUSE.fullmatch(clause)):
                raise _UntrustedSaidError
            numbers[(event, code, clause)] = number
        return numbers

    def _forget_said(self, why: str) -> None:
        """Drop what the files said (``problems`` and ``kinds``), said once: the next reads
        write it again."""
        self.log.warning("read-index-said-discarded", f"{self.path}: what the files said when "
                         f"last read is discarded ({why}); the restart summary leaves it out",
                         path=str(self.path))
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("DELETE FROM problems")
                self._db.execute("DELETE FROM kinds")

    def said(self, indexed: Callable[[str], bool] = lambda path: True,
             ) -> tuple[list[KindCount], list[str]]:
        """What the indexed files said when read: their certificates' warnings counted by
        kind (distinct certificates, those it was critical for, files, and an example: a
        critical one's file if any), and the files that had a warning or critical finding of
        their own (a private key others can read), in path order. One pass over one row per
        file that said something (~0.35 s for 100,000 files with four warnings each); a row or a
        warning of another shape is left out. (Only files written have rows: :meth:`write`
        removes a file's with the file, in the same transaction.)"""
        if self._db is None:
            return [], []
        names = {number: kind for kind, number in self._kinds().items()
                 if kind[0] in _EVENTS and number < _CRITICAL}
        tally: dict[int, tuple[set[int], set[int], set[bytes], list[bytes]]] = {}
        own: list[bytes] = []
        size = _SAID.size
        try:
            for raw_path, blob in self._db.execute("SELECT path, said FROM problems"):
                if type(raw_path) is not bytes or type(blob) is not bytes or len(blob) % size:
                    continue
                if len(blob) > _SAID_ROW_MAX:
                    raise _UntrustedSaidError
                if not indexed(os.fsdecode(raw_path)):
                    continue  # a row of a file the index does not hold: nobody's
                for position, certificate, number in _SAID.iter_unpack(blob):
                    kind = number & ~_CRITICAL
                    if kind not in names:
                        continue
                    if position < 0:
                        if not own or own[-1] != raw_path:
                            own.append(raw_path)
                        continue
                    entry = tally.get(kind)
                    if entry is None:
                        entry = tally[kind] = (set(), set(), set(), [raw_path, b""])
                    entry[0].add(certificate)
                    entry[2].add(raw_path)
                    if number & _CRITICAL:
                        entry[1].add(certificate)
                        if not entry[3][1]:
                            entry[3][1] = raw_path
        except sqlite3.Error:
            return [], []
        except _UntrustedSaidError:
            self._forget_said("a row larger than any daemon writes")
            return [], []
        kinds: list[KindCount] = []
        for number, (certificates, critical, places, examples) in tally.items():
            event, code, clause = names[number]
            kinds.append((event, code, clause, len(certificates), len(critical), len(places),
                          os.fsdecode(examples[1] or examples[0])))
        kinds.sort()
        return kinds, sorted({os.fsdecode(raw) for raw in own})

    def worst_said(self, admits: Callable[[str, str], bool]) -> dict[str, dict[int, str]]:
        """:meth:`agent.index.FileIndex.worst_said` of what is on file: one pass over the
        rows of the files that said something, each kind asked of ``admits`` once, only the
        admitted kept (the heartbeat's inventory, every minute: a few files' worth, not what
        every file said). What it cannot trust is left out, as :meth:`said` leaves it."""
        if self._db is None:
            return {}
        admitted = {number for (event, code, _), number in self._kinds().items()
                    if number < _CRITICAL and admits(event, code)}
        out: dict[str, dict[int, str]] = {}
        if not admitted:
            return out
        size = _SAID.size
        try:
            for raw_path, blob in self._db.execute("SELECT path, said FROM problems"):
                if (type(raw_path) is not bytes or type(blob) is not bytes or len(blob) % size
                        or len(blob) > _SAID_ROW_MAX):
                    continue
                said = [(position, "", "", "critical" if number & _CRITICAL else "warning")
                        for position, _, number in _SAID.iter_unpack(blob)
                        if number & ~_CRITICAL in admitted]
                if said:
                    worst_said_into(out, os.fsdecode(raw_path), said)  # admitted above
        except sqlite3.Error:
            return {}
        return out

    def close(self) -> None:
        self._kind_numbers = None
        if self._db is not None:
            self._db.close()
            self._db = None


_BINDING = "binding:"


def _unhex_path(text: str) -> str:
    try:
        return os.fsdecode(bytes.fromhex(text))
    except ValueError:
        raise UntrustedIndexError("a binding of the wrong shape") from None


def binding_fingerprint(binding: object) -> str:
    """A store's binding as the index remembers it (its frozen dataclass ``repr``)."""
    return hashlib.sha256(repr(binding).encode()).hexdigest()


_ROW_HASH = hashlib.blake2s
"""A row's digest: BLAKE2s, half the cost of SHA-256 on a ~200-byte row (OpenSSL's setup per
call dominates there), and a start checks one per file."""


def _digest_input(raw_path: bytes, raw_target: bytes, entry: bytes,
                  result_sha256: bytes) -> bytes:
    """What a row's digest covers. It catches a torn or edited row (not an attacker who can
    write the state directory: they can write the ledger too). Paths cannot hold NUL, and the
    result's SHA-256 is the last 32 bytes, so the fields cannot run together; the result is
    covered through its SHA-256, so a start checks rows without reading results. (``%b``
    refuses anything but bytes: a value of another type is a row of the wrong shape.)"""
    return b"%b\0%b\0%b%b" % (raw_path, raw_target, entry, result_sha256)


def row_digest(path: str, entry: bytes, target: str, result_sha256: bytes) -> bytes:
    """The digest of a row (for tests that forge one)."""
    raw_path = os.fsencode(path)
    raw_target = b"" if target == path else os.fsencode(target)
    return _ROW_HASH(_digest_input(raw_path, raw_target, entry, result_sha256)).digest()


# ---------------------------------------------------------------- the index that remembers

class PersistentIndex(FileIndex[FileResult]):
    """A :class:`~agent.index.FileIndex` of file results that writes what changed to its
    :class:`ReadIndexFile` (at :meth:`flush`, and every :data:`FLUSH_EVERY` changes) and then
    keeps in memory only its packed summary; :meth:`get` reads a result back.

    A path is in one of two maps: ``_entries`` (the base class's: held in full, not yet written
    or not packable) or ``_packed`` (written: path -> packed entry; its link target, when it is
    a link, in ``_links``)."""

    def __init__(self, store: ReadIndexFile) -> None:
        super().__init__()
        self.file = store
        self._packed: dict[str, bytes] = {}
        self._links: dict[str, str] = {}
        self._keyed: set[str] = set()
        """Paths whose file holds a private key (to restore which leaves paired with a key,
        and to answer :meth:`has_keys` without reading a result back)."""
        self._dirty: dict[str, bool] = {}
        """Path -> True (written) or False (removed) since the last flush."""
        self._recent: OrderedDict[str, FileResult] = OrderedDict()
        """Results read back lately: the same object while a unit (a certbot set) is handled."""
        self.on_discard: Callable[[str], None] | None = None
        """Told the path whose stored result was discarded when read back (the daemon queues
        it, to read the file again)."""
        self.loaded = -1
        """Files restored by :meth:`load`; -1 until it ran."""
        self._problems: dict[str, tuple[Problem, ...]] = {}
        """Path -> what it said (:meth:`set_problems`), to be written at the next flush."""
        self.gated = False
        """Write a change only once the ledger (or the fleet outbox) holds what was reported
        of it (:meth:`seal`, :meth:`written_through`). An index written ahead of its
        observations lost them for good to a crash in between: the restart read nothing
        again, and the fleet outbox, unlike the ledger, has no sightings to reconcile with."""
        self._generation = 0
        """The stamp of changes made since the last :meth:`seal`."""
        self._changed_in: dict[str, int] = {}
        """Path -> the generation of its latest change not yet written."""
        self._written_through = -1
        """The newest sealed generation whose reports the ledger holds (set by the ledger's
        writer thread: an int, replaced whole)."""
        self._flushed_through = -1
        """:attr:`_written_through` at the last flush (a full index does not flush again
        before more is written through)."""

    def seal(self) -> int:
        """End the current generation of changes; its number. The caller seals once what
        it reported of every change so far is submitted to the ledger, and calls
        :meth:`written_through` with the number once the ledger has written it."""
        sealed = self._generation
        self._generation += 1
        return sealed

    def written_through(self, generation: int) -> None:
        """The ledger holds what was reported of every change up to ``generation`` (may be
        called from another thread)."""
        if generation > self._written_through:
            self._written_through = generation

    def _changed(self, name: str) -> None:
        self._changed_in[name] = self._generation

    def load(self) -> int:
        """Fill the index from the file; an index that cannot be trusted is discarded whole,
        with one log line. Returns how many files were restored."""
        if self._entries or self._packed:
            raise RuntimeError("the read index is loaded into an empty index only")
        try:
            paths, entries, links = self.file.load()
        except UntrustedIndexError as exc:
            self._discarded(str(exc))
            try:
                self.file.reset()
            except (OSError, sqlite3.Error) as err:
                self._write_failed(err)
            self.loaded = 0
            return 0
        # The maps built in bulk: rows come a directory after another, so the parents are
        # worked out once per run of paths that share one.
        self._packed = dict(zip(paths, entries, strict=True))
        flag = _HEAD.size - 1
        self._keyed = {path for path, entry in zip(paths, entries, strict=True)
                       if entry[flag] & _HAS_KEYS}
        by_dir = self._by_dir
        for parent, names in itertools.groupby(paths, parent_of):
            siblings = by_dir.get(parent)
            if siblings is None:
                by_dir[parent] = set(names)
            else:
                siblings.update(names)
        self._links = links
        for path, target in links.items():
            self._by_target.setdefault(target, set()).add(path)
        self.loaded = len(self._packed)
        return self.loaded

    def _discarded(self, why: str) -> None:
        self.file.log.warning("read-index-discarded",
                              f"{self.file.path}: read index discarded: {why}; every file "
                              "is read again", path=str(self.file.path))

    # -- what FileIndex answers, from both maps

    def __len__(self) -> int:
        return len(self._packed) + len(self._entries)

    def __contains__(self, path: object) -> bool:
        name = str(path)
        return name in self._packed or name in self._entries

    def unchanged(self, path: Path | str, key: StatKey | None) -> bool:
        name = str(path)
        entry = self._packed.get(name)
        if entry is None:
            return FileIndex.unchanged(self, name, key)
        if key is None:
            return False
        try:
            return entry.startswith(_STAT.pack(*key))
        except struct.error:
            return False

    def unchanged_now(self, path: str) -> bool:
        entry = self._packed.get(path)
        if entry is None:
            return FileIndex.unchanged_now(self, path)
        try:
            st = os.stat(path)
            return entry.startswith(_STAT.pack(st.st_dev, st.st_ino, st.st_size,
                                               st.st_mtime_ns, st.st_ctime_ns))
        except (OSError, struct.error):
            return False

    def changed_among(self, paths: Iterable[str]) -> list[str]:
        # (:meth:`unchanged_now` inlined: a restart asks it of every file)
        packed, fresh, stat, pack = self._packed.get, self._entries, os.stat, _STAT.pack
        changed = []
        for path in paths:
            entry = packed(path)
            if entry is None:
                if path not in fresh or not FileIndex.unchanged_now(self, path):
                    changed.append(path)
                continue
            try:
                st = stat(path)
                if entry.startswith(pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                         st.st_ctime_ns)):
                    continue
            except (OSError, struct.error):
                pass
            changed.append(path)
        return changed

    def key_of(self, path: Path | str) -> StatKey | None:
        name = str(path)
        entry = self._packed.get(name)
        if entry is None:
            return FileIndex.key_of(self, name)
        return cast(StatKey, _STAT.unpack_from(entry))

    def has_keys(self, path: str) -> bool:
        """Whether the file indexed at ``path`` holds a private key (no result read back)."""
        return path in self._keyed

    def paths(self) -> Iterator[str]:
        return iter([*self._packed, *self._entries])

    def root_bound(self) -> list[str]:
        """The paths whose indexed error depends on where their store's root resolves
        (:data:`~agent.index.ROOT_BOUND_ERRORS`), from the packed flag: no result read back."""
        flag = _HEAD.size - 1
        return [*(path for path, entry in self._packed.items() if entry[flag] & _ROOT_BOUND),
                *FileIndex.root_bound(self)]

    def get(self, path: Path | str) -> FileResult | None:
        name = str(path)
        entry = self._packed.get(name)
        if entry is None:
            return FileIndex.get(self, name)
        recent = self._recent.get(name)
        if recent is not None:
            self._recent.move_to_end(name)
            return recent
        try:
            result = self.file.fetch(name, entry, self._links.get(name, name))
        except UntrustedIndexError as exc:
            # Forget it: the next scan reads the file again.
            self.file.log.warning("read-index-row-discarded",
                                  f"{self.file.path}: entry discarded ({exc}); the file is "
                                  "read again", path=name)
            self._forget(name)
            self._dirty[name] = False
            self._problems[name] = ()  # what it said goes with it, until it is read again
            self._changed(name)
            if self.on_discard is not None:
                self.on_discard(name)
            return None
        self._recent[name] = result
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return result

    def put(self, path: Path | str, key: StatKey | None, result: FileResult,
            target: Path | str | None = None) -> None:
        name = str(path)
        self._recent.pop(name, None)
        if name in self._packed or name in self._problems:
            # what it said before is not what it says now (a file never written has no rows:
            # a first start deletes none)
            self._problems[name] = ()
        self._forget(name)
        FileIndex.put(self, name, key, result, target)
        if result.keys:
            self._keyed.add(name)
        self._dirty[name] = key is not None
        self._changed(name)
        if len(self._dirty) >= FLUSH_EVERY and (not self.gated
                                                or self._written_through > self._flushed_through):
            self.flush()

    def set_problems(self, path: str, problems: tuple[Problem, ...]) -> None:
        self._problems[path] = problems
        self._changed(path)

    def worst_said(self, admits: Callable[[str, str], bool]) -> dict[str, dict[int, str]]:
        """What the file holds, with what changed since its last flush over it."""
        out = self.file.worst_said(admits)
        for path, problems in self._problems.items():
            out.pop(path, None)
            worst_said_into(out, path, ((position, event, code, severity) for
                                        position, _, event, code, _, severity in problems),
                            admits)
        return out

    def remove(self, path: Path | str) -> FileResult | None:
        name = str(path)
        if name not in self:
            return None
        result = self.get(name)  # what was there (the caller reports it gone)
        self._recent.pop(name, None)
        if name in self._packed or name in self._problems:
            self._problems[name] = ()
        self._forget(name)
        self._dirty[name] = False
        self._changed(name)
        return result

    def _forget(self, name: str) -> None:
        """Drop ``name`` from whichever map holds it."""
        entry = self._packed.pop(name, None)
        if entry is not None:
            self._unplace(name, self._links.pop(name, name))
        else:
            FileIndex.remove(self, name)
        self._keyed.discard(name)

    # -- what the daemon asks of the whole index

    def summary(self, path: str) -> Stored | None:
        """The certificates and whether a key is held at ``path``, without reading back."""
        entry = self._packed.get(path)
        if entry is not None:
            return Stored.unpack(entry)
        result = FileIndex.get(self, path)
        return None if result is None else Stored.of(result)

    def certificate_ids(self) -> Mapping[str, Mapping[int, str]]:
        """Path -> certificate position -> SHA-256, for every indexed file, without reading
        any result back: a view, so that 100,000 files are not copied to be compared."""
        return _CertificateIds(self)

    def certificate_rows(self) -> Iterator[tuple[str, int, str]]:
        """``(path, position, sha256)`` of every certificate indexed, as the ledger lists its
        sightings (what reconciling compares, row against row)."""
        cert = _CERT
        head = _HEAD.size
        one = head + cert.size
        for path, entry in self._packed.items():
            if len(entry) == one:  # the usual file: one certificate
                index, digest = cert.unpack_from(entry, head)
                yield path, index, digest.hex()
            elif len(entry) > head:
                for index, sha in _certificates_of(entry):
                    yield path, index, sha
        for path, held in list(self._entries.items()):
            for record in held.result.certificates:
                yield path, record.index, record.facts.sha256

    def units_with_keys(self) -> Iterator[list[FileResult]]:
        """The results of each directory that holds a private key (to restore which leaves
        paired with a key, :mod:`agent.certset`)."""
        for parent in sorted({parent_of(name) for name in self._keyed}):
            unit = [self.get(name) for name in sorted(self._by_dir.get(parent, ()))]
            yield [result for result in unit if result is not None]

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def flush(self, bindings: dict[str, str] | None = None) -> None:
        """Write what changed since the last flush (one transaction), and ``bindings`` when
        they differ from those on file; then keep only the packed summaries of what was
        written. Gated (:attr:`gated`), only the changes the ledger has written through:
        the others wait for a later flush."""
        if bindings == self.file.bindings:
            bindings = None
        if not self._dirty and bindings is None and not self._problems:
            return
        dirty, self._dirty = self._dirty, {}
        problems, self._problems = self._problems, {}
        changed_in = self._changed_in
        if self.gated:
            through = self._flushed_through = self._written_through
            for held_back in [path for path in dirty.keys() | problems.keys()
                              if changed_in.get(path, -1) > through]:
                if held_back in dirty:
                    self._dirty[held_back] = dirty.pop(held_back)
                if held_back in problems:
                    self._problems[held_back] = problems.pop(held_back)
            if not dirty and bindings is None and not problems:
                return
        puts: list[tuple[str, bytes, str, FileResult]] = []
        removes = []
        for path, present in dirty.items():
            held = self._entries.get(path)
            if present and held is not None and held.key is not None:
                entry = _pack(held.key, held.result)
                if entry is not None:
                    puts.append((path, entry, held.target, held.result))
                    continue
            if path not in self._packed:
                removes.append(path)  # gone, or kept in full in memory only
        # (what a file not written says is not written either: a restart reads it again; and
        # what a removed file said goes with it)
        removed = set(removes)
        written = {path: () if path in removed else rows for path, rows in problems.items()}
        try:
            self.file.write(puts, removes, bindings, written)
        except (OSError, sqlite3.Error, TypeError, ValueError) as exc:
            self._dirty = {**dirty, **self._dirty}  # try again at the next flush
            self._problems = {**problems, **self._problems}
            self._write_failed(exc)
            return
        for path, entry, target, _ in puts:
            del self._entries[path]
            self._packed[path] = entry
            if target != path:
                self._links[path] = target
        for path in dirty.keys() | problems.keys():  # (written: what was held back is not here)
            changed_in.pop(path, None)

    def _write_failed(self, exc: BaseException) -> None:
        self.file.log.error("read-index-write-failed",
                            f"{self.file.path}: cannot write the read index "
                            f"({type(exc).__name__}); a restart will read every file again",
                            path=str(self.file.path))


class _CertificateIds(Mapping[str, Mapping[int, str]]):
    def __init__(self, index: PersistentIndex) -> None:
        self._index = index

    def __getitem__(self, name: str) -> Mapping[int, str]:
        stored = self._index.summary(name)
        if stored is None:
            raise KeyError(name)
        return dict(stored.certificates)

    def __iter__(self) -> Iterator[str]:
        return self._index.paths()

    def __len__(self) -> int:
        return len(self._index)


def certificate_ids(index: FileIndex[FileResult]) -> Mapping[str, Mapping[int, str]]:
    """Path -> certificate position -> SHA-256 of every file ``index`` holds (what the daemon
    compares with the ledger's sightings); a :class:`PersistentIndex` answers from memory."""
    if isinstance(index, PersistentIndex):
        return index.certificate_ids()
    out: dict[str, dict[int, str]] = {}
    for name in index.paths():
        result = index.get(name)
        if result is not None:
            out[name] = {c.index: c.facts.sha256 for c in result.certificates}
    return out


def certificate_rows(index: FileIndex[FileResult]) -> Iterator[tuple[str, int, str]]:
    """``(path, position, sha256)`` of every certificate ``index`` holds."""
    if isinstance(index, PersistentIndex):
        yield from index.certificate_rows()
        return
    for name in index.paths():
        result = index.get(name)
        if result is not None:
            for record in result.certificates:
                yield name, record.index, record.facts.sha256
