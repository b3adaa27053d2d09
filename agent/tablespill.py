"""The human table's records, spilled to a private temporary SQLite database: what ``scan``
(no ``--json``/``--csv``) holds until it sorts, so that its memory stays flat in the store's
size (the issue: 64 MiB at 20,000 certificates, 153 MiB at 100,000, with a list of every
:class:`TableEntry` in memory).

The workers hand over a batch's records; :meth:`TableSpill.add_entries` writes them with one
``executemany`` and keeps none. :meth:`TableSpill.rows` then lets SQLite filter, group and
order them and streams the table's rows out, one certificate (all its places) at a time. The
page cache is capped (:data:`CACHE_KIB`), and SQLite's sorter spills to temporary files past
it, so the process holds a bounded amount whatever the number of certificates.

The database is ``sqlite3.connect("")``: an empty file name is "a private, temporary on-disk
database" that SQLite deletes itself when the connection closes
(https://www.sqlite.org/inmemorydb.html, "Temporary Databases"; it is created lazily, in
``SQLITE_TMPDIR``/``TMPDIR``/``/var/tmp``/``/tmp``, only once the cache spills). On Unix SQLite
opens such a file with ``SQLITE_OPEN_DELETEONCLOSE``, which ``os_unix.c`` implements by
unlinking the file right after opening it, so nothing is left behind even when the process is
killed with SIGKILL (``tests/agent/test_tablespill.py`` checks that the open file is already
unlinked). Nobody else can open it by name.

The merge and order semantics live here and only here; ``scan`` and ``TableReport.of``
(``inspect``, ``agent run``) both go through them:

- a chain certificate (intermediate, root) below warning is not a row of its own
  (:func:`is_hidden`; it is counted);
- *merge order*: the order rows are merged in -- by urgency (worst severity, fewest days left,
  path, position; ties in arrival order, as Python's stable sort left them) for ``scan``, as
  given for ``TableReport.of`` (a report's rows are already sorted);
- one table row per certificate (SHA-256) and role, listing its places in merge order, shown
  with the worst place's fields (:func:`merge_places`);
- table rows sorted by (worst severity, certificate before key file, days, first place), ties
  in merge order of the group's first place, key files in arrival order.

Strings are sorted as Python compares them, by code point. SQLite compares BLOBs with
``memcmp``; a string's UTF-8 encoding with ``surrogatepass`` (each code point encoded on its own,
a lone surrogate too, as a file name that is not UTF-8 carries after :func:`os.fsdecode`) is
ordered as its code points are, a shorter prefix first, so sort keys are stored that way
(:func:`sort_key`).
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, NamedTuple, TypeVar

from policy.decisions import Severity

from .records import FileError, FileSkip
from .rows import Role

__all__ = [
    "CACHE_KIB",
    "TableEntry",
    "TableFile",
    "TableRow",
    "TableSpill",
    "file_row",
    "is_hidden",
    "merge_places",
    "sort_key",
]

CACHE_KIB = 2048
"""SQLite's page cache (and so its sorter's memory before it spills to temporary files)."""


class TableEntry(NamedTuple):
    """What the human table keeps of one certificate row: its sort key and the few short
    fields and codes it prints, not the row (the reading, the classification and its
    explanations in two languages: ~5 KB a certificate). A named tuple of plain ``str`` and
    ``int`` because the scan's workers send it to the parent (cheapest to pickle)."""

    severity: int
    days: int
    path: str
    position: int
    """The certificate's index in its file."""
    sha256: bytes
    role: str
    name: str
    not_after: int
    """The Asia/Tokyo day it ends on, as :meth:`datetime.date.toordinal`."""
    tier: str
    category: str
    item: str
    findings: tuple[tuple[str, int], ...]
    """(code, severity) of every finding, in the row's order."""
    actions: tuple[tuple[str, int | None, int], ...]
    """(action, due day as an ordinal or ``None``, severity) of every action."""

    @property
    def location(self) -> str:
        return f"{self.path}#{self.position}"


class TableFile(NamedTuple):
    """What the human table keeps of a key file's row (:func:`agent.render.table_file`)."""

    path: str
    severity: int
    keys: int
    findings: tuple[tuple[str, int], ...]


class TableRow(NamedTuple):
    """One line of the table: a certificate (all its places) or a key file."""

    severity: int
    days: int | None
    first: str
    """The first place (the last sort key)."""
    shown: TableEntry | TableFile
    """The place whose fields are shown: the worst (a key file: itself)."""
    findings: tuple[tuple[str, int], ...]
    places: tuple[TableEntry, ...] | None
    """Every place of a certificate, ``None`` for a key file."""


_CHAIN_ROLES = frozenset({Role.INTERMEDIATE.value, Role.ROOT.value})


def is_hidden(entry: TableEntry) -> bool:
    """A chain certificate below warning is shown with its leaves, not as a row."""
    return entry.role in _CHAIN_ROLES and entry.severity < Severity.WARNING


def merge_places(group: list[TableEntry]) -> TableRow:
    """The table row of one certificate (SHA-256) and role from its places in merge order:
    ``cert.pem`` and ``fullchain.pem#0`` are one row listing both places, shown with the worst
    of their findings."""
    if len(group) == 1:
        (one,) = group
        return TableRow(one.severity, one.days, one.location, one, one.findings, (one,))
    # max() keeps the first of equals: the worst place earliest in merge order
    worst = max(group, key=lambda r: (r.severity, -r.days))
    # One finding per code: the places' messages differ only by the place named
    # (fullchain.pem#1, cert.pem), and the row lists codes ("chain-expired" once).
    findings: dict[str, int] = {}
    for row in group:
        for code, severity in row.findings:
            kept = findings.get(code)
            if kept is None or severity > kept:
                findings[code] = severity
    return TableRow(worst.severity, worst.days, group[0].location, worst,
                    tuple(findings.items()), tuple(group))


def file_row(table_file: TableFile) -> TableRow:
    return TableRow(table_file.severity, None, table_file.path, table_file,
                    table_file.findings, None)


def sort_key(text: str) -> bytes:
    """``text`` as bytes whose ``memcmp`` order (SQLite's BLOB order) is Python's ``str``
    order: UTF-8 keeps code point order, and ``surrogatepass`` encodes a lone surrogate on its
    own (as a three-byte sequence, between U+D7FF and U+E000) and decodes it back."""
    return text.encode("utf-8", "surrogatepass")


def _text(blob: bytes) -> str:
    return blob.decode("utf-8", "surrogatepass")


_Findings = tuple[tuple[str, int], ...]
_Actions = tuple[tuple[str, int | None, int], ...]


@functools.lru_cache(maxsize=4096)
def _codes(findings: _Findings, actions: _Actions) -> str:
    """The codes of a row as JSON. Cached: most rows carry the same few combinations, and a
    hostile store of many different ones only turns the cache over (it is bounded)."""
    # json escapes lone surrogates (ensure_ascii) and reads them back
    return json.dumps([findings, actions], separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def _parse_codes(codes: str) -> tuple[_Findings, _Actions]:
    """:func:`_codes` read back (tuples again). Cached as :func:`_codes` is."""
    findings, actions = json.loads(codes)
    return (tuple((str(code), int(severity)) for code, severity in findings),
            tuple((str(action), None if due is None else int(due), int(severity))
                  for action, due, severity in actions))


_INSERT_ENTRY = """
INSERT INTO entry (seq, hidden, severity, days, path, position, location, sha256, role, name,
                   not_after, tier, category, item, codes)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_SCHEMA = """
CREATE TABLE entry (
    seq INTEGER PRIMARY KEY,  -- arrival order
    hidden INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    days INTEGER NOT NULL,
    path BLOB NOT NULL,       -- sort_key(): BLOB order is code point order
    position INTEGER NOT NULL,
    location BLOB NOT NULL,   -- sort_key(f"{path}#{position}")
    sha256 BLOB NOT NULL,
    role BLOB NOT NULL,
    name BLOB NOT NULL,
    not_after INTEGER NOT NULL,
    tier BLOB NOT NULL,
    category BLOB NOT NULL,
    item BLOB NOT NULL,
    codes TEXT NOT NULL       -- JSON [findings, actions]
);
CREATE TABLE keyfile (
    seq INTEGER PRIMARY KEY,
    severity INTEGER NOT NULL,
    path BLOB NOT NULL,
    keys INTEGER NOT NULL,
    codes TEXT NOT NULL
);
CREATE TABLE problem (
    seq INTEGER PRIMARY KEY,
    skipped INTEGER NOT NULL,
    path BLOB NOT NULL,
    code BLOB NOT NULL,
    message BLOB NOT NULL,
    position INTEGER,
    key_position INTEGER
);
"""

_PLACE_BY_URGENCY = """
INSERT INTO placed (rn, seq, sha256, role, severity, days, location)
    SELECT row_number() OVER (ORDER BY severity DESC, days, path, position, seq),
           seq, sha256, role, severity, days, location
    FROM entry WHERE NOT hidden
"""
"""Merge order for ``scan``: :func:`agent.render.urgency`, ties in arrival order (as a stable
sort of the arrivals left them)."""
_PLACE_AS_ADDED = """
INSERT INTO placed (rn, seq, sha256, role, severity, days, location)
    SELECT row_number() OVER (ORDER BY seq), seq, sha256, role, severity, days, location
    FROM entry WHERE NOT hidden
"""

# The merge order as a rank (placed.rn), then per certificate and role its severity (the worst
# place's), days (the worst place's: fewest days among the worst severity), first place and the
# rank of that place (the tie-break: Python's dict kept groups in first-seen order).
_PLACED = """
CREATE TABLE placed (
    rn INTEGER PRIMARY KEY, seq INTEGER NOT NULL, sha256 BLOB NOT NULL, role BLOB NOT NULL,
    severity INTEGER NOT NULL, days INTEGER NOT NULL, location BLOB NOT NULL)
"""
_GROUP = """
CREATE INDEX placed_group ON placed (sha256, role, severity, days);
CREATE TABLE grouped AS
    SELECT g.sha256 AS sha256, g.role AS role, g.severity AS severity,
           (SELECT min(p.days) FROM placed AS p WHERE p.sha256 = g.sha256 AND p.role = g.role
                AND p.severity = g.severity) AS days,
           (SELECT p.location FROM placed AS p WHERE p.rn = g.first_rn) AS first,
           g.first_rn AS first_rn
    FROM (SELECT sha256, role, max(severity) AS severity, min(rn) AS first_rn
          FROM placed GROUP BY sha256, role) AS g;
"""

_ROWS = """
SELECT 0 AS keyfile, g.severity AS row_severity, g.days AS row_days, g.first AS first,
       g.first_rn AS tie, p.rn AS rn, e.seq, e.hidden, e.severity, e.days, e.path, e.position,
       e.location, e.sha256, e.role, e.name, e.not_after, e.tier, e.category, e.item, e.codes
    FROM grouped AS g JOIN placed AS p ON p.sha256 = g.sha256 AND p.role = g.role
    JOIN entry AS e ON e.seq = p.seq
UNION ALL
SELECT 1, k.severity, NULL, k.path, k.seq, 0,
       k.seq, 0, k.severity, 0, k.path, k.keys, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL,
       k.codes
    FROM keyfile AS k
ORDER BY row_severity DESC, keyfile, row_days, first, tie, rn
"""

_T = TypeVar("_T")


class Spilled(Generic[_T]):
    """A spilled list: its length, and its items read back in order."""

    def __init__(self, count: Callable[[], int], items: Callable[[], Iterator[_T]]) -> None:
        self._count = count
        self._items = items

    def __len__(self) -> int:
        return self._count()

    def __bool__(self) -> bool:
        return self._count() > 0

    def __iter__(self) -> Iterator[_T]:
        return self._items()


class TableSpill:
    """Everything the human table prints, in a private temporary SQLite database.

    ``by_urgency``: merge the certificates' places in urgency order (``scan``: they arrive
    in walk order from the workers); otherwise in the order they are added (a report's rows,
    already sorted). Add everything, then read :meth:`rows`; adding after that is an error.
    """

    def __init__(self, *, by_urgency: bool) -> None:
        self._place = _PLACE_BY_URGENCY if by_urgency else _PLACE_AS_ADDED
        self._db = sqlite3.connect("", isolation_level=None)
        # Nothing here must survive a crash: no journal, no fsync. A small cache: the sorter
        # and the tables spill to the (unlinked) file past it.
        self._db.executescript(f"""
            PRAGMA cache_size = -{CACHE_KIB};
            PRAGMA temp_store = FILE;
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            {_SCHEMA}""")
        self.entries = 0
        self.hidden = 0
        """Chain certificates shown with their leaves (:func:`is_hidden`)."""
        self.files = 0
        self.errors = 0
        self.skipped = 0
        self._grouped = False

    # ------------------------------------------------------------ writing

    def _writable(self) -> sqlite3.Connection:
        if self._grouped:
            raise RuntimeError("the table's records were already read")
        return self._db

    def add_entries(self, entries: Iterable[TableEntry]) -> None:
        """One batch of certificate records, in arrival order."""
        rows = [(self.entries + i, int(hidden), e.severity, e.days, sort_key(e.path),
                 e.position, sort_key(e.location), e.sha256, sort_key(e.role), sort_key(e.name),
                 e.not_after, sort_key(e.tier), sort_key(e.category), sort_key(e.item),
                 _codes(e.findings, e.actions))
                for i, e in enumerate(entries) for hidden in (is_hidden(e),)]
        with self._writable():
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT_ENTRY, rows)
        self.entries += len(rows)
        self.hidden += sum(row[1] for row in rows)

    def add_files(self, files: Iterable[TableFile]) -> None:
        """Key files (at warning or worse), in arrival order."""
        rows = [(self.files + i, f.severity, sort_key(f.path), f.keys, _codes(f.findings, ()))
                for i, f in enumerate(files)]
        with self._writable():
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO keyfile VALUES (?, ?, ?, ?, ?)", rows)
        self.files += len(rows)

    def add_problems(self, errors: Iterable[FileError], skipped: Iterable[FileSkip]) -> None:
        """Files that could not be read and files skipped, each in arrival order."""
        rows = [(0, sort_key(e.path), sort_key(e.code), sort_key(e.message), e.index,
                 e.key_index) for e in errors]
        errors_added = len(rows)
        rows += [(1, sort_key(s.path), sort_key(s.code), sort_key(s.message), None, None)
                 for s in skipped]
        with self._writable():
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO problem (skipped, path, code, message, position, key_position) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.errors += errors_added
        self.skipped += len(rows) - errors_added

    # ------------------------------------------------------------ reading

    def rows(self) -> Iterator[TableRow]:
        """The table's rows in table order (the module's docstring), streamed."""
        if not self._grouped:
            self._grouped = True
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute(_PLACED)
                self._db.execute(self._place)
                for statement in _GROUP.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
        cursor = self._db.execute(_ROWS)
        for (keyfile, _), records in itertools.groupby(cursor, key=lambda r: (r[0], r[4])):
            if keyfile:
                (record,) = records
                yield file_row(_table_file(record[6:]))
            else:
                yield merge_places([_table_entry(r[6:]) for r in records])

    def iter_entries(self) -> Iterator[TableEntry]:
        """Every certificate record, in arrival order."""
        for record in self._db.execute("SELECT * FROM entry ORDER BY seq"):
            yield _table_entry(record)

    def iter_files(self) -> Iterator[TableFile]:
        """Every key file record, in arrival order."""
        for _, severity, path, keys, codes in self._db.execute(
                "SELECT * FROM keyfile ORDER BY seq"):
            yield TableFile(path=_text(path), severity=severity, keys=keys,
                            findings=_parse_codes(codes)[0])

    def iter_errors(self) -> Iterator[FileError]:
        for path, code, message, position, key_position in self._db.execute(
                "SELECT path, code, message, position, key_position FROM problem "
                "WHERE NOT skipped ORDER BY seq"):
            yield FileError(path=_text(path), code=_text(code), message=_text(message),
                            index=position, key_index=key_position)

    def iter_skipped(self) -> Iterator[FileSkip]:
        for path, code, message in self._db.execute(
                "SELECT path, code, message FROM problem WHERE skipped ORDER BY seq"):
            yield FileSkip(path=_text(path), code=_text(code), message=_text(message))

    def close(self) -> None:
        """Close the database (SQLite deletes it; it was unlinked already)."""
        self._db.close()


def _table_entry(record: tuple[object, ...]) -> TableEntry:
    (_, _, severity, days, path, position, _, sha256, role, name, not_after, tier, category,
     item, codes) = record
    findings, actions = _parse_codes(str(codes))
    return TableEntry(
        severity=_int(severity), days=_int(days), path=_text(_blob(path)),
        position=_int(position), sha256=_blob(sha256), role=_text(_blob(role)),
        name=_text(_blob(name)), not_after=_int(not_after), tier=_text(_blob(tier)),
        category=_text(_blob(category)), item=_text(_blob(item)), findings=findings,
        actions=actions)


def _table_file(record: tuple[object, ...]) -> TableFile:
    """A key file from a row of :data:`_ROWS` (its columns in the entry's places)."""
    _, _, severity, _, path, keys, *_, codes = record
    return TableFile(path=_text(_blob(path)), severity=_int(severity), keys=_int(keys),
                     findings=_parse_codes(str(codes))[0])


def _int(value: object) -> int:
    if not isinstance(value, int):  # pragma: no cover - the schema's NOT NULL INTEGER
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):  # pragma: no cover - the schema's BLOB columns
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return value
