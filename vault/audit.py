"""The vault's append-only audit log: who did what, when; never a secret.

Each record carries the SHA-256 of its predecessor, so editing or deleting a record breaks the
chain. A chain alone can be truncated (drop the last records) or rebuilt end to end by someone
who edits a record and recomputes every later hash, so the chain *head* (last sequence number
and hash) is kept in the vault header with an HMAC under a subkey of the vault secret: without
the master key nobody can move the head, and ``verify`` compares the chain against it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from untrusted.text import json_storable

from .envelope import hmac_tag, integrity_error
from .errors import VaultIntegrityError
from .store import AUDIT_SHAPE, META_SHAPE, is_storable_id

__all__ = [
    "AuditHead",
    "AuditRecord",
    "append",
    "backups_under_current_key",
    "count",
    "genesis_hash",
    "head_mac",
    "last_action",
    "read_head",
    "read_records",
    "record_hash",
    "verify_chain",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    seq: int
    at: str  # ISO 8601 UTC, "Z"
    actor: str
    action: str
    entry_id: str | None
    kind: str | None
    version: int | None
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "entry_id": self.entry_id, "kind": self.kind, "version": self.version,
                "detail": dict(self.detail), "hash": self.hash}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditHead:
    seq: int
    hash: str
    mac: str


def genesis_hash(vault_id: bytes) -> str:
    return hashlib.sha256(b"certescrow-vault audit genesis\x00" + vault_id).hexdigest()


def _canonical_detail(detail: Mapping[str, Any]) -> str:
    # A label or path from a file name that is not UTF-8 holds lone surrogates: JSON escapes.
    return json_storable(json.dumps(dict(detail), sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=False))


def record_hash(*, seq: int, at: str, actor: str, action: str, entry_id: str | None,
                kind: str | None, version: int | None, detail: str, prev_hash: str) -> str:
    body = json.dumps([seq, at, actor, action, entry_id, kind, version, detail, prev_hash],
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"certescrow-vault audit v1\x00" + body.encode()).hexdigest()


def head_mac(audit_key: bytes, vault_id: bytes, seq: int, hash_: str) -> str:
    return hmac_tag(audit_key, b"audit-head", vault_id, str(seq).encode(), hash_.encode())


def read_head(conn: sqlite3.Connection) -> AuditHead | None:
    row = conn.execute("SELECT rowid, value FROM meta WHERE name = 'audit_head'").fetchone()
    if row is None:
        return None
    (value,) = META_SHAPE.checked(row, ("value",))
    try:
        data = json.loads(value)  # type: ignore[arg-type]  # str or bytes, as checked
        return AuditHead(seq=int(data["seq"]), hash=str(data["hash"]), mac=str(data["mac"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise integrity_error("audit log head") from None


def write_head(conn: sqlite3.Connection, head: AuditHead) -> None:
    value = json.dumps({"seq": head.seq, "hash": head.hash, "mac": head.mac}).encode()
    conn.execute("INSERT INTO meta(name, value) VALUES ('audit_head', ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (value,))


_LAST = ("seq", "hash")


def append(conn: sqlite3.Connection, *, audit_key: bytes, vault_id: bytes, at: datetime,
           actor: str, action: str, entry_id: str | None = None, kind: str | None = None,
           version: int | None = None, detail: Mapping[str, Any] | None = None) -> AuditRecord:
    """Append one record inside the caller's write transaction and move the MAC'd head."""
    last = conn.execute(f"SELECT {AUDIT_SHAPE.select(_LAST)} FROM audit "  # noqa: S608 - constant column list
                        "ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        seq, prev = 1, genesis_hash(vault_id)
    else:
        last_seq, last_hash = AUDIT_SHAPE.checked(last, _LAST)
        seq, prev = int(last_seq) + 1, str(last_hash)  # type: ignore[call-overload]
    at_text = at.isoformat().replace("+00:00", "Z")
    detail_text = _canonical_detail(detail or {})
    digest = record_hash(seq=seq, at=at_text, actor=actor, action=action, entry_id=entry_id,
                         kind=kind, version=version, detail=detail_text, prev_hash=prev)
    conn.execute(
        "INSERT INTO audit(seq, at, actor, action, entry_id, kind, version, detail, prev_hash, "
        "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, at_text, actor, action, entry_id, kind, version, detail_text, prev, digest),
    )
    write_head(conn, AuditHead(seq=seq, hash=digest,
                               mac=head_mac(audit_key, vault_id, seq, digest)))
    return AuditRecord(seq=seq, at=at_text, actor=actor, action=action, entry_id=entry_id,
                       kind=kind, version=version, detail=dict(detail or {}), prev_hash=prev,
                       hash=digest)


def last_action(conn: sqlite3.Connection, entry_id: str) -> tuple[str, int] | None:
    """``(action, version)`` of the last record of ``entry_id``, or None."""
    names = ("action", "version")
    row = conn.execute(f"SELECT {AUDIT_SHAPE.select(names)} FROM audit "  # noqa: S608 - constant column list
                       "WHERE entry_id = ? ORDER BY seq DESC LIMIT 1", (entry_id,)).fetchone()
    if row is None:
        return None
    action, version = AUDIT_SHAPE.checked(row, names)
    return str(action), version if isinstance(version, int) else -1


def backups_under_current_key(conn: sqlite3.Connection) -> list[AuditRecord]:
    """The ``backup`` records since the last ``rotate-key`` (oldest first): backups that open
    only with the master key the vault has now."""
    row = conn.execute("SELECT NULL, coalesce(max(seq), 0) FROM audit "
                       "WHERE action = 'rotate-key'").fetchone()
    (since,) = AUDIT_SHAPE.checked(row, ("seq",))
    return _records(conn, " WHERE action = 'backup' AND seq > ?", (since,))


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])


def read_records(conn: sqlite3.Connection, *, entry_id: str | None = None,
                 damaged: list[str] | None = None) -> list[AuditRecord]:
    """The records (of ``entry_id``), oldest first. A record with a value of the wrong type
    raises :class:`~vault.errors.VaultIntegrityError`; given a ``damaged`` list (``verify``),
    it is described there and left out."""
    if entry_id is not None:
        if not is_storable_id(entry_id):
            return []
        return _records(conn, " WHERE entry_id = ?", (entry_id,), damaged=damaged)
    return _records(conn, "", (), damaged=damaged)


_COLUMNS = ("seq", "at", "actor", "action", "entry_id", "kind", "version", "detail",
            "prev_hash", "hash")


@dataclass(frozen=True, slots=True, kw_only=True)
class _StoredRecord:
    """One audit row as stored, its types checked: what the chain's hashes are computed over
    (``detail`` as the JSON text, not parsed)."""

    seq: int
    at: str
    actor: str
    action: str
    entry_id: str | None
    kind: str | None
    version: int | None
    detail: str
    prev_hash: str
    hash: str

    def record(self) -> AuditRecord:
        try:
            detail = json.loads(self.detail)
        except ValueError:
            detail = {"unreadable": True}
        return AuditRecord(seq=self.seq, at=self.at, actor=self.actor, action=self.action,
                           entry_id=self.entry_id, kind=self.kind, version=self.version,
                           detail=detail if isinstance(detail, dict) else {"value": detail},
                           prev_hash=self.prev_hash, hash=self.hash)


def _stored(conn: sqlite3.Connection, where: str, args: tuple[Any, ...], *,
            damaged: list[str] | None = None) -> list[_StoredRecord]:
    sql = f"SELECT {AUDIT_SHAPE.select(_COLUMNS)} FROM audit" + where  # noqa: S608 - constant column list
    rows = conn.execute(sql + " ORDER BY seq", args)
    return [_StoredRecord(**values)  # type: ignore[arg-type]  # types checked
            for values in AUDIT_SHAPE.records(rows, _COLUMNS, damaged=damaged)]


def _records(conn: sqlite3.Connection, where: str, args: tuple[Any, ...], *,
             damaged: list[str] | None = None) -> list[AuditRecord]:
    return [s.record() for s in _stored(conn, where, args, damaged=damaged)]


def verify_chain(conn: sqlite3.Connection, *, audit_key: bytes, vault_id: bytes) -> list[str]:
    """Problems found in the chain (empty = whole). Names the record, never a secret."""
    problems: list[str] = []
    prev = genesis_hash(vault_id)
    expected_seq = 1
    last_seq, last_hash = 0, prev
    damaged: list[str] = []
    for row in _stored(conn, "", (), damaged=damaged):
        seq = row.seq
        if seq != expected_seq:
            problems.append(f"audit record {expected_seq}"
                            + (f"..{seq - 1}" if seq - 1 > expected_seq else "")
                            + " missing (deleted)")
        if row.prev_hash != prev:
            problems.append(f"audit record {seq}: does not follow its predecessor")
        digest = record_hash(seq=seq, at=row.at, actor=row.actor, action=row.action,
                             entry_id=row.entry_id, kind=row.kind, version=row.version,
                             detail=row.detail, prev_hash=row.prev_hash)
        if digest != row.hash:
            problems.append(f"audit record {seq}: content does not match its hash (edited)")
        prev = row.hash
        expected_seq = seq + 1
        last_seq, last_hash = seq, prev
    if damaged:
        # A record that cannot be read breaks the chain where it stood: say what it is, not
        # the "missing" and "does not follow" that follow from it.
        return [*damaged[:20], "audit log: chain not checked (damaged records)"]
    try:
        head = read_head(conn)
    except VaultIntegrityError as exc:
        return [*problems, str(exc)]
    if head is None:
        problems.append("audit log head is missing")
    elif head.mac != head_mac(audit_key, vault_id, head.seq, head.hash):
        problems.append("audit log head: authentication failed (altered)")
    elif (head.seq, head.hash) != (last_seq, last_hash):
        problems.append(f"audit log ends at record {last_seq} but its authenticated head is "
                        f"record {head.seq} (records removed or rewritten)")
    return problems
