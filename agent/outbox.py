"""The agent's outbox: reports wait here, on disk, until the policy service acknowledges them.

Why it exists: an agent reporting to a remote service must not lose a report because the
service is down, restarting, or unreachable for a day. Every report is first committed to a
small SQLite file in the agent's state directory (one row = one batch, with the next sequence
number), and a row is deleted only when the service acknowledged that batch. The service
records ``(host, outbox, sequence)`` with the batch, so a batch sent twice (the agent crashed
after sending, or the acknowledgement was lost) is recorded once.

Bounded: the outbox holds at most ``capacity`` observations. Past ``warning_ratio`` of it a
warning is logged and :meth:`Outbox.finding` returns a finding the daemon exports; when full,
new batches are refused (:class:`OutboxFullError`) rather than growing the disk without limit.
Nothing is lost for good then: the daemon's next full resync reports what is current again,
and the ledger's intake is idempotent.

A batch the service refuses as too large (413) is split in place (:meth:`Outbox.split`): its
halves take new sequence numbers (never sent before, so the service cannot mistake them for a
replay, nor record the original under them) but keep its place in the queue (``position``), so
what was seen after it is still sent after it.

``outbox`` (the id sent with every batch) is random and made with the file: an agent whose
outbox was deleted starts again at sequence 1 under a new id, and is not mistaken for a replay.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from policy.decisions import Finding, Severity
from policy.sqlitetext import sqlite_reason

from .errors import AgentError

__all__ = ["Outbox", "OutboxBatch", "OutboxError", "OutboxFullError", "OutboxStatus"]

DEFAULT_CAPACITY = 200_000
"""Observations the outbox holds at most (a few hundred MB at worst)."""
DEFAULT_WARNING_RATIO = 0.8


class OutboxError(AgentError):
    exit_code = 42


class OutboxFullError(OutboxError):
    """The outbox is at capacity: the service has not acknowledged anything for too long."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxBatch:
    """One stored batch: its sequence number and body (without host and outbox id)."""

    sequence: int
    size: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStatus:
    pending_batches: int
    pending_observations: int
    capacity: int
    warning_level: int

    @property
    def level(self) -> str:
        if self.pending_observations >= self.capacity:
            return "full"
        if self.pending_observations >= self.warning_level:
            return "warning"
        return "ok"

    def to_json(self) -> dict[str, Any]:
        return {"pending_batches": self.pending_batches,
                "pending_observations": self.pending_observations,
                "capacity": self.capacity, "level": self.level}


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "size INTEGER NOT NULL, body TEXT NOT NULL)",
)



def _gone_only(body: Mapping[str, Any]) -> bool:
    """Whether a batch's body holds places found empty and no observation."""
    return not body.get("observations") and isinstance(body.get("gone"), list) \
        and bool(body["gone"])


class Outbox:
    """The outbox file. Thread-safe: the daemon's worker adds, the sender thread removes."""

    def __init__(self, conn: sqlite3.Connection, path: Path, outbox_id: str, *,
                 capacity: int, warning_ratio: float) -> None:
        self._conn = conn
        self.path = path
        self.outbox_id = outbox_id
        self.capacity = capacity
        self.warning_level = max(1, int(capacity * warning_ratio))
        self._lock = threading.Lock()
        self._pending = self._count()
        head = conn.execute("SELECT seq FROM pending ORDER BY coalesce(position, seq), seq "
                            "LIMIT 1").fetchone()
        self._handed_out: set[int] = {int(head[0])} if head is not None else set()
        """Batches :meth:`oldest` gave the sender (and the head as found: a process before
        this one may have sent it): the service may hold them under their sequence number,
        so they are never merged into (only the head is ever sent)."""

    @classmethod
    def open(cls, path: Path, *, capacity: int = DEFAULT_CAPACITY,
             warning_ratio: float = DEFAULT_WARNING_RATIO) -> Outbox:
        path = Path(path)
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(pending)")}
            if "position" not in columns:  # outboxes made before batches were split
                conn.execute("ALTER TABLE pending ADD COLUMN position REAL")
            row = conn.execute("SELECT value FROM meta WHERE key = 'outbox'").fetchone()
            if row is None:
                outbox_id = secrets.token_hex(16)
                conn.execute("INSERT INTO meta VALUES ('outbox', ?)", (outbox_id,))
            else:
                outbox_id = str(row[0])
            conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise OutboxError(f"{path}: cannot open the outbox: {reason}") from None
        return cls(conn, path, outbox_id, capacity=capacity, warning_ratio=warning_ratio)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _count(self) -> int:
        row = self._conn.execute("SELECT coalesce(sum(size), 0) FROM pending").fetchone()
        return int(row[0])

    def add(self, body: Mapping[str, Any], *, size: int) -> int:
        """Commit one batch (``size`` observations/places); returns its sequence number.
        Raises :class:`OutboxFullError` when it would not fit."""
        # ASCII JSON: a file name that is not UTF-8 (a lone surrogate after os.fsdecode) is
        # kept as a \udcXX escape, which SQLite text and the HTTP body can carry.
        text = json.dumps(dict(body), ensure_ascii=True, separators=(",", ":"))
        with self._lock:
            if self._pending + size > self.capacity:
                raise OutboxFullError(
                    f"the outbox {self.path} is full ({self._pending} of {self.capacity} "
                    "observations waiting for the policy service); this batch is not kept, "
                    "the next full resync reports it again")
            try:
                cur = self._conn.execute("INSERT INTO pending (size, body) VALUES (?, ?)",
                                         (size, text))
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot write the outbox: {sqlite_reason(exc)}"
                                  ) from None
            self._pending += size
            return int(cur.lastrowid or 0)

    def oldest(self, *, gone_up_to: int = 1) -> OutboxBatch | None:
        """The batch to send next. ``gone_up_to``: a batch of places found empty only, never
        sent, takes in the places of the such batches queued right after it, up to that many
        in all (in one transaction, in queue order): each removed file is its own batch when
        reported (crash-safe at once), yet 1,200 files removed while the agent was stopped go
        as three requests, not 1,200. A batch once handed out, and the halves of a split one
        (the service refused it as too large), are never merged: what the service may have
        recorded under a sequence number is never sent again with more in it, and halves are
        not put back together to be refused again."""
        with self._lock:
            row = self._conn.execute(
                # queue order: a split batch's halves (position set) stand where it stood
                "SELECT seq, size, body, position FROM pending "
                "ORDER BY coalesce(position, seq), seq LIMIT 1").fetchone()
            if row is None:
                return None
            sequence, size, body = int(row[0]), int(row[1]), json.loads(row[2])
            if (gone_up_to > size and row[3] is None and sequence not in self._handed_out
                    and _gone_only(body)):
                size, body = self._merge_gone(sequence, size, body, gone_up_to)
            self._handed_out.add(sequence)
        return OutboxBatch(sequence=sequence, size=size, body=body)

    def _merge_gone(self, sequence: int, size: int, body: dict[str, Any],
                    limit: int) -> tuple[int, dict[str, Any]]:
        """:meth:`oldest`'s merge (under the lock): the head ``sequence`` with the places of
        the batches of places only right after it, at most ``limit`` places in all."""
        taken: list[int] = []
        gone = list(body["gone"])
        rows = self._conn.execute(
            "SELECT seq, size, body, position FROM pending WHERE coalesce(position, seq) > ? "
            "ORDER BY coalesce(position, seq), seq LIMIT ?", (sequence, limit - size)
        ).fetchall()  # (all read before the write transaction begins)
        for seq, more, text, position in rows:
            if position is not None or size + int(more) > limit:
                break
            following = json.loads(text)
            if not _gone_only(following):
                break  # an observation: what comes after it stays after it
            gone.extend(following["gone"])
            size += int(more)
            taken.append(int(seq))
        if not taken:
            return size, body
        merged = {**body, "gone": gone}
        text = json.dumps(merged, ensure_ascii=True, separators=(",", ":"))
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("UPDATE pending SET size = ?, body = ? WHERE seq = ?",
                               (size, text, sequence))
            self._conn.executemany("DELETE FROM pending WHERE seq = ?", [(t,) for t in taken])
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise OutboxError(f"{self.path}: cannot merge batch {sequence}: "
                              f"{sqlite_reason(exc)}") from None
        return size, merged

    def acknowledge(self, sequence: int) -> None:
        """The service recorded batch ``sequence``: forget it."""
        with self._lock:
            row = self._conn.execute("SELECT size FROM pending WHERE seq = ?",
                                     (sequence,)).fetchone()
            if row is None:
                return
            self._conn.execute("DELETE FROM pending WHERE seq = ?", (sequence,))
            self._pending -= int(row[0])
            self._handed_out.discard(sequence)

    def split(self, sequence: int) -> tuple[int, int] | None:
        """Replace batch ``sequence`` by two halves (its places found empty first, then its
        observations, in order), in one transaction; returns their sequence numbers, or
        ``None`` when it holds one item or is gone. The service answered 413 for it, which it
        does before writing anything: the original's sequence is never sent again."""
        with self._lock:
            row = self._conn.execute(
                "SELECT size, body, coalesce(position, seq) FROM pending WHERE seq = ?",
                (sequence,)).fetchone()
            if row is None:
                return None
            body = json.loads(row[1])
            items = [("gone", g) for g in body.get("gone", [])] + \
                [("observations", o) for o in body.get("observations", [])]
            if len(items) < 2:
                return None
            place = float(row[2])
            after = self._conn.execute(
                "SELECT min(coalesce(position, seq)) FROM pending "
                "WHERE coalesce(position, seq) > ?", (place,)).fetchone()[0]
            second_place = (place + float(after)) / 2 if after is not None else place + 0.5
            middle = len(items) // 2
            made: list[int] = []
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for part, position in ((items[:middle], place), (items[middle:], second_place)):
                    half = {"at": body.get("at"),
                            "observations": [v for k, v in part if k == "observations"],
                            "gone": [v for k, v in part if k == "gone"]}
                    text = json.dumps(half, ensure_ascii=True, separators=(",", ":"))
                    cur = self._conn.execute(
                        "INSERT INTO pending (size, body, position) VALUES (?, ?, ?)",
                        (len(part), text, position))
                    made.append(int(cur.lastrowid or 0))
                self._conn.execute("DELETE FROM pending WHERE seq = ?", (sequence,))
                self._conn.execute("COMMIT")
                self._handed_out.discard(sequence)
            except sqlite3.Error as exc:
                self._conn.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot split batch {sequence}: "
                                  f"{sqlite_reason(exc)}") from None
            self._pending += len(items) - int(row[0])
            return made[0], made[1]

    def status(self) -> OutboxStatus:
        with self._lock:
            batches = int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])
            return OutboxStatus(pending_batches=batches, pending_observations=self._pending,
                                capacity=self.capacity, warning_level=self.warning_level)

    def finding(self) -> Finding | None:
        """A finding while the outbox is past its warning level (``None`` below it)."""
        status = self.status()
        if status.level == "ok":
            return None
        return Finding(
            code="outbox-filling" if status.level == "warning" else "outbox-full",
            clause="",
            message=(f"{status.pending_observations} of {status.capacity} observations are "
                     "waiting for the policy service (it has not acknowledged reports for "
                     "a while)"),
            severity=Severity.WARNING if status.level == "warning" else Severity.CRITICAL)
