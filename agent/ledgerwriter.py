"""The daemon's writes to the ledger: in order, never dropped on a fault, never blocking the loop.

A ledger can be locked by another process (a CLI holding a write transaction, a backup), full,
read-only, deleted or replaced under a running daemon. Before this module each of those either
stopped the watch loop inside SQLite's busy wait — no systemd watchdog ping for 75 s under
``WatchdogSec=60``, so systemd killed a daemon that was merely waiting — or raised out of it and
lost the observations in hand. Now:

* every write (a batch of observations, a ``report_gone``) is an operation on one FIFO, applied
  by one writer thread in order; the watch loop only enqueues, so it keeps processing events
  and pinging the watchdog whatever the ledger does;
* an operation that fails with a ledger fault is kept at the head of the queue and retried with
  a growing pause; the fault is logged once, at error level, with an event naming it
  (``ledger-disk-full``, ``ledger-read-only``, ``ledger-locked``, ``ledger-unusable``,
  ``ledger-failed``) and ``ledger-recovered`` when writes go through again;
* an operation in flight for longer than ``stalled_after_s`` (the watchdog timeout) is logged as
  ``ledger-locked``: SQLite is waiting for another process's lock;
* before each operation the file at the ledger's path is compared with the one opened: a ledger
  deleted (``ledger-deleted``) or replaced (``ledger-replaced``) is closed and the path opened
  again (a deleted one is created afresh), and the daemon reconciles, so the new file learns
  everything currently seen;
* an operation the ledger refuses for its content (not a fault: retrying cannot help) is logged
  (``ledger-refused``) and dropped, so one bad observation cannot block all the others;
* the thread's death is a stuck daemon: :meth:`LedgerWriter.alive` is false and the watchdog
  ping is withheld;
* the queue is bounded while the ledger is healthy (:data:`MAX_QUEUED_OBSERVATIONS`): a scan
  that produces faster than the ledger writes waits for it instead of holding every
  observation in memory; a faulted or stalled ledger is never waited for.

Without :meth:`LedgerWriter.start` (``agent run --once``, most tests) every operation runs at
once in the caller's thread and a failure raises, as a one-shot command should.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from policy.errors import LedgerContentError, LedgerError
from policy.intake import Intake

from .bugreport import bug_fields
from .logs import EventLog

__all__ = ["LedgerOp", "LedgerWriter", "fault_of"]

T = TypeVar("T")

FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 5.0
"""Retrying a failing write this often costs nothing and brings a repaired ledger back soon."""
MAX_QUEUED_OBSERVATIONS = 6000
"""Back-pressure: while this many observations wait for a healthy ledger, a caller submitting
more waits (the first scan of 100,000 certificates reads faster than the ledger writes, and
every waiting observation holds its certificate's facts: ~2 KB each). Never while the ledger
is faulted or stalled: then the queue grows, as watching must go on (see :meth:`submit`)."""
WAIT_SLICE_S = 0.25
"""While a caller waits for room, ``on_wait`` (the watchdog ping) runs this often."""

_FAULT_MESSAGES = {
    "ledger-disk-full": "the disk holding the ledger is full",
    "ledger-read-only": "the ledger is read-only (file mode, read-only mount or medium)",
    "ledger-locked": "the ledger is locked by another process",
    "ledger-unusable": "the file at the ledger's path is not a usable certescrow ledger",
    "ledger-failed": "writing to the ledger failed",
}


def fault_of(exc: BaseException, *, path: Path | None = None) -> str | None:
    """The fault an exception from the ledger stands for, ``None`` when it is not a fault of
    the ledger's storage (a refusal of the content, or a bug: retrying cannot help).

    SQLite's own result code decides when there is one (the ledger raises its
    :class:`LedgerError` from SQLite's exception, which stays as the context); otherwise the
    message, without the ledger's path (a path may contain any word)."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "ledger-disk-full"
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "ledger-read-only"
        return "ledger-failed"
    if not isinstance(exc, (LedgerError, sqlite3.Error)) or isinstance(exc, LedgerContentError):
        return None
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__context__
    name = getattr(cause, "sqlite_errorname", None) if isinstance(cause, sqlite3.Error) else None
    if isinstance(name, str):
        for prefix, fault in _SQLITE_FAULTS:
            if name.startswith(prefix):
                return fault
    text = str(exc)
    if path is not None:
        text = text.replace(str(path), "")
    text = text.lower()
    if "full" in text:
        return "ledger-disk-full"
    if "readonly" in text or "read-only" in text or "permission denied" in text:
        return "ledger-read-only"
    if "locked" in text or "busy" in text:
        return "ledger-locked"
    if ("not a database" in text or "not a certescrow ledger" in text or "malformed" in text
            or "newer certescrow" in text or "no ledger here" in text):
        return "ledger-unusable"
    return "ledger-failed"


_SQLITE_FAULTS = (
    ("SQLITE_FULL", "ledger-disk-full"),
    ("SQLITE_READONLY", "ledger-read-only"),
    ("SQLITE_PERM", "ledger-read-only"),
    ("SQLITE_AUTH", "ledger-read-only"),
    ("SQLITE_BUSY", "ledger-locked"),
    ("SQLITE_LOCKED", "ledger-locked"),
    ("SQLITE_NOTADB", "ledger-unusable"),
    ("SQLITE_CORRUPT", "ledger-unusable"),
)


def _nothing(intake: Intake) -> None:
    """An operation that writes nothing: its ``on_done`` runs once those before it are
    written."""
    del intake


def _identity(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@dataclass(slots=True)
class LedgerOp:
    """One queued operation (a write, or a read :meth:`LedgerWriter.request` asked for)."""

    run: Callable[[Intake], Any]
    observations: int
    on_done: Callable[[Any], None] | None = None
    number: int = 0
    """Its place in the order of submission."""
    result: list[Any] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    split: Callable[[], list[Part]] | None = None
    """The same write as one part per observation: applied instead when the ledger refuses
    this one for its content, so what is dropped is the observation refused, not its batch."""
    label: str = ""
    """What the write is about (a location), for the log line of a refusal."""


Part = tuple[Callable[[Intake], Any], str, Callable[[Any], None] | None]
"""One observation's share of a split write: what to run, its location, what to call after."""


class LedgerWriter:
    """One FIFO of ledger operations and the thread that applies them (see the module)."""

    def __init__(self, intake: Intake, *, log: EventLog, path: Path | None = None,
                 reopen: Callable[[], Intake] | None = None,
                 stalled_after_s: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 max_queued_observations: int = MAX_QUEUED_OBSERVATIONS) -> None:
        self.intake = intake
        self.max_queued_observations = max_queued_observations
        self.on_wait: Callable[[], None] = lambda: None
        """Called between slices of a wait for room in the queue (the daemon pings the
        systemd watchdog there)."""
        self._queued_observations = 0
        self.waited_s = 0.0
        """Time callers spent waiting for room (back-pressure), in total."""
        self.log = log
        self.path = path
        self._reopen = reopen
        self._identity = _identity(path)
        self.stalled_after_s = stalled_after_s
        self._monotonic = monotonic
        self._queue: deque[LedgerOp] = deque()
        self._submitted = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._busy_since: float | None = None
        self._fault: str | None = None
        self._stall_logged = False
        self._reopened = False
        self.busy_at_stop = False
        """:meth:`stop` left the thread inside a ledger call: do not close the ledger."""
        self._must_reopen = False
        """The file was deleted or replaced and no reopen has succeeded yet (the old inode's
        number may be reused by the next file at the path: identity alone cannot say)."""

    # ------------------------------------------------------------------ the caller's side

    @property
    def threaded(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Apply operations in a thread of their own from now on."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="ledger-writer",
                                            daemon=True)
            self._thread.start()

    def submit(self, run: Callable[[Intake], T], *, observations: int = 0,
               on_done: Callable[[T], None] | None = None,
               split: Callable[[], list[Part]] | None = None, label: str = "") -> None:
        """Apply ``run(intake)`` after everything submitted before it. Unthreaded: now, and a
        fault raises (a write refused for its content is logged and dropped, as the thread
        does). ``split``, ``label``: see :class:`LedgerOp`."""
        if self._thread is None:
            try:
                result = run(self.intake)
            except Exception as exc:
                if observations == 0 or fault_of(exc, path=self.path):
                    raise
                if split is not None and observations > 1:
                    self._apply_parts_now(split())
                else:
                    self._log_refused(exc, observations=observations, label=label)
                return
            if on_done is not None:
                on_done(result)
            return
        with self._cond:
            if observations and self._thread is not threading.current_thread():
                self._wait_for_room()
            self._submitted += 1
            self._queued_observations += observations
            self._queue.append(LedgerOp(run=run, observations=observations, on_done=on_done,
                                        number=self._submitted, split=split, label=label))
            self._cond.notify_all()

    def _apply_parts_now(self, parts: list[Part]) -> None:
        """Unthreaded (``agent run --once``): a write refused for its content, again an
        observation at a time, as the writer thread does (a part refused is logged)."""
        for run, label, on_done in parts:
            try:
                result = run(self.intake)
            except Exception as exc:
                if fault_of(exc, path=self.path):
                    raise
                self._log_refused(exc, observations=1, label=label)
                continue
            if on_done is not None:
                on_done(result)

    def _wait_for_room(self) -> None:
        """(Holding the lock.) Wait while the queue is full and the ledger healthy: it is
        writing, so room comes; a faulted or stalled ledger, or a stopping writer, is not
        waited for."""
        started: float | None = None
        while (self._queued_observations >= self.max_queued_observations
               and self._healthy()):
            if started is None:
                started = time.monotonic()
            self._cond.wait(WAIT_SLICE_S)
            self._cond.release()
            try:
                self.on_wait()
            finally:
                self._cond.acquire()
        if started is not None:
            self.waited_s += time.monotonic() - started

    def _healthy(self) -> bool:
        """(Holding the lock.) Writing, and not for longer than ``stalled_after_s`` on one
        operation (SQLite waiting for another process's lock)."""
        thread, since = self._thread, self._busy_since
        return (self._fault is None and not self._stall_logged and not self._stop
                and thread is not None and thread.is_alive()
                and (since is None or self._monotonic() - since < self.stalled_after_s))

    def request(self, run: Callable[[Intake], Any]) -> LedgerOp:
        """Queue a read of the ledger after everything before it; :meth:`answer` collects it.
        Unthreaded: answered at once."""
        with self._cond:
            self._submitted += 1
            op = LedgerOp(run=run, observations=0, number=self._submitted)
            if self._thread is not None:
                self._queue.append(op)
                self._cond.notify_all()
                return op
        op.result.append(run(self.intake))
        op.done.set()
        return op

    def when_written(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once every operation submitted before it has been applied:
        at once when nothing is pending (unthreaded, or idle), else in the writer thread
        after them. Never when a stopped writer left operations unwritten (the ledger was
        faulted or locked at the stop): those writes did not happen."""
        with self._cond:
            now = not self._queue
            if not now and self._thread is not None:
                self._submitted += 1
                self._queue.append(LedgerOp(run=_nothing, observations=0,
                                            on_done=lambda _: callback(),
                                            number=self._submitted))
                self._cond.notify_all()
        if now:
            callback()

    def answer(self, op: LedgerOp, *, timeout: float) -> tuple[bool, Any]:
        """``(True, result)`` once ``op`` ran, waiting up to ``timeout``; else ``(False, None)``."""
        if op.done.wait(timeout):
            return True, op.result[0] if op.result else None
        return False, None

    def submitted_after(self, op: LedgerOp) -> bool:
        """Whether anything was queued after ``op`` (its answer may then be out of date)."""
        with self._cond:
            return self._submitted > op.number

    def pending(self) -> int:
        """Operations not yet written."""
        with self._cond:
            return len(self._queue)

    def pending_observations(self) -> int:
        with self._cond:
            return self._queued_observations

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` (real seconds: this is a real wait, whatever clock the
        daemon was given) for every submitted operation to be written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def alive(self) -> bool:
        """False only when the writer thread was started and has died (a stuck daemon)."""
        return self._thread is None or self._thread.is_alive()

    def take_reopened(self) -> bool:
        """Whether the ledger was opened again (deleted or replaced) since the last call: the
        daemon then reconciles, so the new file learns what is currently seen."""
        with self._cond:
            reopened, self._reopened = self._reopened, False
            return reopened

    def check(self) -> None:
        """From the watch loop: say so once when an operation has been waiting longer than
        ``stalled_after_s`` (SQLite waits for another process's write lock)."""
        with self._cond:
            since, logged = self._busy_since, self._stall_logged
            if since is None or logged:
                return
            waited = self._monotonic() - since
            if waited < self.stalled_after_s:
                return
            self._stall_logged = True
            self._fault = "ledger-locked"  # one episode: said once, recovered once
            kept = sum(op.observations for op in self._queue)
        self.log.error("ledger-locked",
                       f"{self.path or 'ledger'}: a write has waited {waited:.0f} s for the "
                       f"ledger (locked by another process?); {kept} observation(s) kept and "
                       "written when it is free; watching goes on",
                       path=str(self.path or ""), waited_s=round(waited, 1),
                       pending=kept, fault="ledger-locked")

    def stop(self, *, drain_s: float) -> int:
        """Write what is pending for up to ``drain_s``, stop the thread; returns how many
        observations could not be written (the next start's reconciliation catches up)."""
        if self._thread is None:
            return 0
        self.wait_idle(drain_s)
        with self._cond:
            self._stop = True
            lost = sum(op.observations for op in self._queue)
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        # Still inside SQLite (waiting for another process's lock): the connection is in use,
        # so the caller must not close it; the process is exiting anyway.
        self.busy_at_stop = self._thread.is_alive()
        self._thread = None
        if lost:
            self.log.error("ledger-pending-lost",
                           f"stopping with {lost} observation(s) not yet in the ledger; the "
                           "next start reconciles the ledger with the stores",
                           pending=lost, fault=self._fault or "ledger-locked")
        return lost

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        pause = FIRST_PAUSE_S
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait(1.0)
                if self._stop:
                    return
                op = self._queue[0]
                self._busy_since = self._monotonic()
            try:
                self._check_file()
                result = op.run(self.intake)
            except Exception as exc:  # classified below; the thread must not die of it
                fault = fault_of(exc, path=self.path)
                with self._cond:
                    self._busy_since = None
                    self._stall_logged = False
                if fault is None:
                    if op.split is not None and op.observations > 1:
                        self._split(op)
                    else:
                        self._drop(op, exc)
                    continue
                self._faulted(fault, exc)
                if self._sleep(pause):
                    return
                pause = min(pause * 2, MAX_PAUSE_S)
                continue
            pause = FIRST_PAUSE_S
            with self._cond:
                self._busy_since = None
                self._stall_logged = False
                self._queue.popleft()
                self._queued_observations -= op.observations
                op.result.append(result)
                self._cond.notify_all()
            op.done.set()
            if self._fault is not None:
                self.log.info("ledger-recovered", f"{self.path or 'ledger'}: writing again "
                              f"(after {self._fault})", path=str(self.path or ""),
                              fault=self._fault)
                self._fault = None
            if op.on_done is not None:
                try:
                    op.on_done(result)
                except Exception as exc:
                    self.log.error("process-failed", "after a ledger write: unexpected error",
                                   **bug_fields(exc))

    def _sleep(self, seconds: float) -> bool:
        """Pause between retries; True when asked to stop meanwhile."""
        with self._cond:
            if not self._stop:
                self._cond.wait(seconds)
            return self._stop

    def _split(self, op: LedgerOp) -> None:
        """Replace the refused ``op`` at the head of the queue by its parts, in order."""
        parts = [LedgerOp(run=run, observations=1, on_done=on_done, number=op.number,
                          label=label) for run, label, on_done in op.split()] if op.split else []
        with self._cond:
            self._queue.popleft()
            self._queued_observations += len(parts) - op.observations
            self._queue.extendleft(reversed(parts))
            self._cond.notify_all()
        op.done.set()

    def _drop(self, op: LedgerOp, exc: Exception) -> None:
        with self._cond:
            self._queue.popleft()
            self._queued_observations -= op.observations
            self._cond.notify_all()
        op.done.set()
        self._log_refused(exc, observations=op.observations, label=op.label)

    def _log_refused(self, exc: Exception, *, observations: int, label: str) -> None:
        where: dict[str, Any] = {"location": label} if label else {}
        # the database's refusal in our words (policy.storage_pg: never the driver's text)
        why = str(exc) if isinstance(exc, LedgerContentError) else type(exc).__name__
        self.log.error("ledger-refused",
                       f"{self.path or 'ledger'}: the ledger refused a write "
                       f"({why}); {observations} observation(s) not recorded",
                       path=str(self.path or ""), **where, **bug_fields(exc))

    def _faulted(self, fault: str, exc: Exception) -> None:
        if fault == self._fault:
            return  # said once per episode
        self._fault = fault
        kept = self.pending_observations()
        self.log.error(fault, f"{self.path or 'ledger'}: {_FAULT_MESSAGES[fault]}; "
                       f"{kept} observation(s) kept and retried; watching goes on",
                       path=str(self.path or ""), fault=fault, pending=kept,
                       error=type(exc).__name__)

    def _check_file(self) -> None:
        """A ledger deleted or replaced under the daemon: close it and open the path again."""
        if self.path is None or self._reopen is None:
            return
        now = _identity(self.path)
        if now is not None and now == self._identity and not self._must_reopen:
            return
        self._must_reopen = True
        fault = "ledger-deleted" if now is None else "ledger-replaced"
        if fault != self._fault:
            self._fault = fault
            self.log.error(fault, f"{self.path}: the ledger was "
                           f"{'deleted' if now is None else 'replaced by another file'} under "
                           "the running daemon; opening the path again"
                           + (" (a new ledger)" if now is None else "")
                           + " and reporting everything currently seen",
                           path=str(self.path), fault=fault)
        # Ledger.release empties the WAL into the old file first: a -wal left at the path
        # would otherwise be read as part of the file now there (SQLite keeps it, seeing the
        # database renamed while open).
        close = getattr(self.intake, "release", None) or getattr(self.intake, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # the old file is gone either way
                close()
        self.intake = self._reopen()  # a LedgerError here is a fault: retried
        self._identity = _identity(self.path)
        self._must_reopen = False
        with self._cond:
            self._reopened = True
