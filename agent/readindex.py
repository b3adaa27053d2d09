"""The daemon's read index on disk: what it read, at which stat identity, so that a restart
reads nothing that did not change (issue 12).

One SQLite file in the state directory (beside the ledger). A row per file: its path, the stat
identity it was read at (device, inode, size, mtime, ctime; :mod:`agent.index`), the file a link
resolved to, the SHA-256 of the row's content, and what reading it produced (a
:class:`~agent.records.FileResult`, without key material, as compact JSON). SQLite transactions
make every write crash-safe: a crash loses at most the last batch, whose files are read again.

The file is input like any other. A file that is not an SQLite database, another program's
database, an index of another host or of another version of the records (a schema fingerprint
of every field of every record type), a row whose digest does not match, or a value of the
wrong type is discarded whole, with one log line, and the daemon reads every file again: a
row is never half-trusted, and nothing is unpickled (the codec builds only the record types it
knows, checking each value's type).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import sqlite3
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
from policy.facts import CertificateFacts

from .index import FileIndex, StatKey, _Entry
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
    "schema_fingerprint",
]

FLUSH_EVERY = 2000
"""Changes kept in memory before they are written (the first scan of a large store)."""
RECENT = 256
"""Results read back and kept, so that one unit sees the same objects."""
READ_INDEX_NAME = "read-index.sqlite3"
"""Its name in the state directory (beside the ledger)."""
FORMAT = "certescrow-read-index"
VERSION = 2
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
            return cls(**{name: decode(value[name]) for name, decode in parts})

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

class Stored:
    """What the index keeps in memory of a result already on disk: the certificates it holds
    (position -> SHA-256, what reconciling with the ledger compares) and whether it holds a
    key. The result itself is read back from the file when asked for (~1.5 KB a file that
    100,000 files would keep in memory for nothing)."""

    __slots__ = ("certificates", "has_keys")

    def __init__(self, certificates: tuple[tuple[int, str], ...], has_keys: bool) -> None:
        self.certificates = certificates
        self.has_keys = has_keys

    @classmethod
    def of(cls, result: FileResult) -> Stored:
        return cls(tuple((c.index, c.facts.sha256) for c in result.certificates),
                   bool(result.keys))


# ---------------------------------------------------------------- the file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    target BLOB NOT NULL,
    summary TEXT NOT NULL,
    result_sha256 TEXT NOT NULL,
    digest TEXT NOT NULL,
    result BLOB NOT NULL
);
"""


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
        self.bindings: dict[str, str] = {}
        """Store root -> :func:`binding_fingerprint` of its binding when its certificates
        last reached the ledger (a binding changed while the daemon was stopped must be
        re-checked by the ledger; an unchanged one need not)."""

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

    def load(self) -> Iterator[tuple[str, StatKey, str, Stored]]:
        """Every row, checked (shape, digest, the certificates it lists), not yet decoded
        (:meth:`fetch` does, when a result is asked for). Raises :class:`UntrustedIndexError`
        at the first doubt (the caller discards everything it got so far)."""
        if not self.path.exists():
            return
        try:
            db = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise UntrustedIndexError(f"cannot open it ({type(exc).__name__})") from None
        self._db = db
        try:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "files"} <= tables:
                raise UntrustedIndexError("not a certescrow read index (tables missing)")
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
            for name, want in self._expected_meta().items():
                if meta.get(name) != want:
                    raise UntrustedIndexError(f"not this daemon's index ({name} differs)")
            self.bindings = {_unhex_path(name[len(_BINDING):]): value
                             for name, value in meta.items()
                             if isinstance(name, str) and name.startswith(_BINDING)
                             and isinstance(value, str)}
            for row in db.execute("SELECT path, dev, ino, size, mtime_ns, ctime_ns, target, "
                                  "summary, result_sha256, digest FROM files"):
                path, key, target, summary, _ = self._checked(row)
                yield path, key, target, _parse_summary(summary)
        except sqlite3.Error as exc:
            raise UntrustedIndexError(f"unreadable ({type(exc).__name__})") from None

    def _checked(self, row: tuple[Any, ...]) -> tuple[str, StatKey, str, str, str]:
        (raw_path, dev, ino, size, mtime_ns, ctime_ns, raw_target, summary, result_sha256,
         digest) = row
        if not (type(raw_path) is bytes and type(raw_target) is bytes and type(summary) is str
                and type(result_sha256) is str
                and all(type(v) is int for v in (dev, ino, size, mtime_ns, ctime_ns))):
            raise UntrustedIndexError("a row of the wrong shape")
        path, target = os.fsdecode(raw_path), os.fsdecode(raw_target)
        key: StatKey = (dev, ino, size, mtime_ns, ctime_ns)
        if digest != _digest(path, key, target, summary, result_sha256):
            raise UntrustedIndexError("a row whose digest does not match")
        return path, key, target, summary, result_sha256

    def fetch(self, path: str) -> FileResult:
        """The result stored for ``path``, decoded and type-checked."""
        if self._db is None:
            raise UntrustedIndexError("the index is not open")
        try:
            row = self._db.execute("SELECT path, dev, ino, size, mtime_ns, ctime_ns, target, "
                                   "summary, result_sha256, digest, result FROM files "
                                   "WHERE path = ?", (os.fsencode(path),)).fetchone()
        except sqlite3.Error as exc:
            raise UntrustedIndexError(f"unreadable ({type(exc).__name__})") from None
        if row is None:
            raise UntrustedIndexError("a row went missing")
        _, _, _, summary, result_sha256 = self._checked(row[:10])
        blob = row[10]
        if type(blob) is not bytes or hashlib.sha256(blob).hexdigest() != result_sha256:
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
        if _summary_text(Stored.of(result)) != summary:
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

    def write(self, puts: Iterable[tuple[str, StatKey, str, FileResult]],
              removes: Iterable[str], bindings: dict[str, str] | None = None) -> None:
        """Apply changes in one transaction (``bindings``: replace the stores' bindings)."""
        if self._db is None:
            self.reset()
        db = self._db
        assert db is not None  # noqa: S101 - reset() opened it
        rows = []
        for path, key, target, result in puts:
            blob = _dump_result(result)
            summary = _summary_text(Stored.of(result))
            result_sha256 = hashlib.sha256(blob).hexdigest()
            rows.append((os.fsencode(path), *key, os.fsencode(target), summary, result_sha256,
                         _digest(path, key, target, summary, result_sha256), blob))
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM files WHERE path = ?",
                           ((os.fsencode(p),) for p in removes))
            db.executemany("INSERT OR REPLACE INTO files (path, dev, ino, size, mtime_ns, "
                           "ctime_ns, target, summary, result_sha256, digest, result) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
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
        if bindings is not None:
            self.bindings = dict(bindings)

    def close(self) -> None:
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


def _digest(path: str, key: StatKey, target: str, summary: str, result_sha256: str) -> str:
    """Catches a torn or edited row (not an attacker who can write the state directory: they
    can write the ledger too). Paths cannot hold NUL, so the fields cannot run together. The
    result is covered through its own SHA-256, so a start checks rows without reading them."""
    text = (f"{path}\0{key[0]}\0{key[1]}\0{key[2]}\0{key[3]}\0{key[4]}\0{target}\0"
            f"{summary}\0{result_sha256}")
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _summary_text(stored: Stored) -> str:
    """``1`` or ``0`` (holds a key), then ``;position:sha256`` per certificate."""
    return ("1" if stored.has_keys else "0") + "".join(
        f";{index}:{sha256}" for index, sha256 in stored.certificates)


def _parse_summary(text: str) -> Stored:
    head, *parts = text.split(";")
    if head not in ("0", "1"):
        raise UntrustedIndexError("a summary of the wrong shape")
    certificates = []
    for part in parts:
        index, _, sha256 = part.partition(":")
        if not index.isdigit() or len(index) > 9 or len(sha256) != 64:
            raise UntrustedIndexError("a summary of the wrong shape")
        certificates.append((int(index), sha256))
    return Stored(tuple(certificates), head == "1")


# ---------------------------------------------------------------- the index that remembers

class PersistentIndex(FileIndex[FileResult]):
    """A :class:`~agent.index.FileIndex` of file results that writes what changed to its
    :class:`ReadIndexFile` (at :meth:`flush`, and every :data:`FLUSH_EVERY` changes) and then
    keeps in memory only a :class:`Stored` summary; :meth:`get` reads a result back."""

    def __init__(self, store: ReadIndexFile) -> None:
        super().__init__()
        self.file = store
        self._dirty: dict[str, bool] = {}
        """Path -> True (written) or False (removed) since the last flush."""
        self._recent: OrderedDict[str, FileResult] = OrderedDict()
        """Results read back lately: the same object while a unit (a certbot set) is handled."""
        self.loaded = -1
        """Files restored by :meth:`load`; -1 until it ran."""

    def load(self) -> int:
        """Fill the index from the file; an index that cannot be trusted is discarded whole,
        with one log line. Returns how many files were restored."""
        if self._entries:
            raise RuntimeError("the read index is loaded into an empty index only")
        # Straight into the maps as the rows come (the index is empty: nothing to replace or
        # unlink); undone whole if a row does not check out.
        entries, by_dir, by_target = self._entries, self._by_dir, self._by_target
        try:
            for path, key, target, stored in self.file.load():
                if target == path:
                    target = path  # one string, not two
                entries[path] = _Entry(key, cast(FileResult, stored), target)
                parent = os.path.dirname(path)
                siblings = by_dir.get(parent)
                if siblings is None:
                    by_dir[parent] = siblings = set()
                siblings.add(path)
                if target is not path:
                    by_target.setdefault(target, set()).add(path)
        except UntrustedIndexError as exc:
            entries.clear()
            by_dir.clear()
            by_target.clear()
            self._discarded(str(exc))
            try:
                self.file.reset()
            except (OSError, sqlite3.Error) as err:
                self._write_failed(err)
        self.loaded = len(entries)
        return self.loaded

    def _discarded(self, why: str) -> None:
        self.file.log.warning("read-index-discarded",
                              f"{self.file.path}: read index discarded: {why}; every file "
                              "is read again", path=str(self.file.path))

    def get(self, path: Path | str) -> FileResult | None:
        name = str(path)
        entry = self._entries.get(name)
        if entry is None:
            return None
        held: object = entry.result
        if not isinstance(held, Stored):
            return entry.result
        recent = self._recent.get(name)
        if recent is not None:
            self._recent.move_to_end(name)
            return recent
        try:
            result = self.file.fetch(name)
        except UntrustedIndexError as exc:
            # Forget it: the next scan reads the file again.
            self.file.log.warning("read-index-row-discarded",
                                  f"{self.file.path}: entry discarded ({exc}); the file is "
                                  "read again", path=name)
            FileIndex.remove(self, name)
            self._dirty[name] = False
            return None
        self._recent[name] = result
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return result

    def put(self, path: Path | str, key: StatKey | None, result: FileResult,
            target: Path | str | None = None) -> None:
        name = str(path)
        self._recent.pop(name, None)
        super().put(name, key, result, target)
        self._dirty[name] = key is not None
        if len(self._dirty) >= FLUSH_EVERY:
            self.flush()

    def remove(self, path: Path | str) -> FileResult | None:
        name = str(path)
        if name not in self._entries:
            return None
        result = self.get(name)  # what was there (the caller reports it gone)
        self._recent.pop(name, None)
        FileIndex.remove(self, name)
        self._dirty[name] = False
        return result

    def certificate_ids(self) -> Mapping[str, Mapping[int, str]]:
        """Path -> certificate position -> SHA-256, for every indexed file, without reading
        any result back: a view, so that 100,000 files are not copied to be compared."""
        return _CertificateIds(self._entries)

    def units_with_keys(self) -> Iterator[list[FileResult]]:
        """The results of each directory that holds a private key (to restore which leaves
        paired with a key, :mod:`agent.certset`)."""
        for names in list(self._by_dir.values()):
            if any(_has_keys(self._entries[name].result) for name in names):
                unit = [self.get(name) for name in sorted(names)]
                yield [result for result in unit if result is not None]

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def flush(self, bindings: dict[str, str] | None = None) -> None:
        """Write what changed since the last flush (one transaction), and ``bindings`` when
        they differ from those on file; then keep only summaries of what was written."""
        if bindings == self.file.bindings:
            bindings = None
        if not self._dirty and bindings is None:
            return
        dirty, self._dirty = self._dirty, {}
        puts: list[tuple[str, StatKey, str, FileResult]] = []
        removes = []
        for path, present in dirty.items():
            entry = self._entries.get(path)
            if (present and entry is not None and entry.key is not None
                    and not isinstance(cast(object, entry.result), Stored)):
                puts.append((path, entry.key, entry.target, entry.result))
            elif entry is None or entry.key is None:
                removes.append(path)
        try:
            self.file.write(puts, removes, bindings)
        except (OSError, sqlite3.Error, TypeError, ValueError) as exc:
            self._dirty = {**dirty, **self._dirty}  # try again at the next flush
            self._write_failed(exc)
            return
        for path, key, target, result in puts:
            self._entries[path] = _Entry(key, cast(FileResult, Stored.of(result)), target)

    def _write_failed(self, exc: BaseException) -> None:
        self.file.log.error("read-index-write-failed",
                            f"{self.file.path}: cannot write the read index "
                            f"({type(exc).__name__}); a restart will read every file again",
                            path=str(self.file.path))


class _CertificateIds(Mapping[str, Mapping[int, str]]):
    def __init__(self, entries: dict[str, _Entry[FileResult]]) -> None:
        self._entries = entries

    def __getitem__(self, name: str) -> Mapping[int, str]:
        held: object = self._entries[name].result
        if isinstance(held, Stored):
            return dict(held.certificates)
        return {c.index: c.facts.sha256 for c in self._entries[name].result.certificates}

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _has_keys(held: object) -> bool:
    return held.has_keys if isinstance(held, Stored) else bool(getattr(held, "keys", ()))


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
