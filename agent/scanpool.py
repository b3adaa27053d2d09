"""The one-shot ``scan --json/--csv``: read, classify and render in batches, on several cores,
and write each batch as soon as it and every batch before it are done.

Memory stays flat in the store's size: the walk is lazy, a bounded window of batches is in
flight, and a rendered batch is written and dropped. The output is in walk order (directories
depth first, names sorted), which is the same whatever the number of workers; the human table,
which sorts by urgency, is built elsewhere (:func:`agent.report.build_report`).

Workers are forked (they inherit the catalogue, binding and read limits, none of which needs to
pickle), receive a batch of paths and hand back one ``bytes`` object: the batch's rendered
lines, already joined. Handing back objects does not pay: pickling a ``FileResult`` costs about
as much as producing it. A process that already runs threads is never forked (a lock held by
another thread at the fork would be held forever in the child): it scans in-process instead,
through the same batches, so the bytes are the same.

A row depends on the rest of its directory (key pairing, a leaf's chain, a CA certificate's
role). A directory larger than a batch is split (:func:`agent.scan.directory_batches`); its
parts are held until the last one is back, and when one part holds something another part's
rows depend on (keys; leaves and CA certificates in different parts) the directory is rendered
again as one piece. A flat store of leaves, or of CA certificates only (``/etc/ssl/certs``),
never needs it.

A worker ends with the scan, however the scan ends (:mod:`agent.workerlife`: a killed scan
left its workers running with parent 1, waiting on pipes nobody would use again).

A worker that dies (killed, out of memory) breaks the pool. The batches that were in flight
are then run again one at a time in a new pool; a batch that kills its worker on its own is
reported as one ``worker-died`` error per file, so every file is still accounted for.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, NamedTuple, Protocol

from policy.catalogue import Catalogue
from policy.decisions import Severity
from policy.intake import Binding
from policy.settings import PolicySettings

from .monitoring import ExitMode, ExpiryWindows, MonitorTally, exit_status
from .records import FileError, FileSkip, ReadLimits
from .render import TableEntry, TableFile, TableReport, table_entry, table_file
from .report import ReportItem, csv_header, iter_report, render_line, tally_item
from .rows import CertificateRow, FileRow
from .scan import Batch, ProgressCallback, directory_batches, iter_targets, read_target
from .tablespill import TableSpill
from .workerlife import ParentLink, Tether, follow_parent
from .x509facts import recording_warnings

__all__ = [
    "BATCH_FILES",
    "MIN_FILES_PER_JOB",
    "ScanOutcome",
    "default_jobs",
    "stream_scan",
]

MIN_FILES_PER_JOB = 500
"""Below this many files per worker the fork costs more than it saves."""
BATCH_FILES = 250
"""Files per batch: small enough that a flat directory of 20,000 files is shared by every
worker and that the batches in flight weigh a few MiB, large enough that sending a batch costs
little against scanning it (~25 ms)."""
WINDOW_PER_WORKER = 3
"""Batches in flight per worker: enough that no worker waits for the parent to write."""
WORKER_DIED = "worker-died"


@dataclass(frozen=True, slots=True)
class _Job:
    limits: ReadLimits
    passwords: tuple[bytes, ...]
    catalogue: Catalogue
    binding: Binding
    at: datetime
    settings: PolicySettings
    windows: ExpiryWindows | None
    fmt: str


_JOB: _Job | None = None  # set in the parent just before the workers are forked


class _TablePart(NamedTuple):
    """One batch for the human table: only what it prints (:class:`agent.render.TableEntry`),
    never the rows."""

    entries: list[TableEntry]
    files: list[TableFile]
    """Key files at warning or worse."""
    quiet_files: int
    errors: list[FileError]
    skipped: list[FileSkip]


class _Rendered(NamedTuple):
    """One batch, rendered: the lines joined by the format's separator, and what they count.
    A named tuple because it crosses from a worker to the parent (cheapest to pickle)."""

    text: bytes
    lines: int
    tally: MonitorTally
    context: int
    """What of the batch a row elsewhere in its directory depends on (:data:`_KEYS`,
    :data:`_LEAVES`, :data:`_CAS`), or :data:`_DIED`."""
    files: int
    table: _TablePart | None = None
    """``fmt == "table"``: the table's records instead of text."""


_KEYS, _LEAVES, _CAS, _DIED = 1, 2, 4, 8
"""A row depends on the rest of its directory through its keys (pairing) and its certificates
(a leaf's chain, a CA certificate's role: chain, lone CA or trust anchor) -- see
:func:`agent.rows.place_certificates` and :func:`agent.rows.pair_key`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanOutcome:
    """What a streamed scan wrote: enough for the exit status."""

    tally: MonitorTally
    table: TableReport | None = None
    """``fmt == "table"``: what the human table prints, spilled to disk (close it)."""

    @property
    def has_errors(self) -> bool:
        return self.tally.errors > 0

    @property
    def certificates(self) -> int:
        return self.tally.certificates

    def exit_status(self, mode: ExitMode = ExitMode.HOST) -> int:
        return exit_status(self.tally, mode)


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _separator(fmt: str) -> bytes:
    return b",\n" if fmt == "json" else b""


def _render(job: _Job, targets: Sequence[str | FileError]) -> _Rendered:
    with recording_warnings():
        results = [read_target(t, limits=job.limits, passwords=job.passwords) for t in targets]
    context = 0
    for result in results:
        if result.keys:
            context |= _KEYS
        for record in result.certificates:
            context |= _CAS if record.facts.is_ca else _LEAVES
    items = iter_report(results, job.catalogue, binding=job.binding, at=job.at,
                        settings=job.settings, windows=job.windows)
    tally = MonitorTally()
    if job.fmt == "table":
        table = _table_part(items, tally)
        return _Rendered(text=b"", lines=0, tally=tally, context=context, files=len(targets),
                         table=table)
    lines: list[bytes] = []
    fmt = job.fmt
    for item in items:
        lines.append(render_line(item, fmt))
        tally_item(tally, item)
    return _Rendered(text=_separator(job.fmt).join(lines), lines=len(lines), tally=tally,
                     context=context, files=len(targets))


def _table_part(items: Iterator[ReportItem], tally: MonitorTally) -> _TablePart:
    """What the human table keeps of a batch's items; each row is dropped once recorded."""
    part = _TablePart(entries=[], files=[], quiet_files=0, errors=[], skipped=[])
    quiet = 0
    for item in items:
        tally_item(tally, item)
        if isinstance(item, CertificateRow):
            part.entries.append(table_entry(item))
        elif isinstance(item, FileRow):
            if item.severity >= Severity.WARNING:
                part.files.append(table_file(item))
            else:
                quiet += 1
        elif isinstance(item, FileSkip):
            part.skipped.append(item)
        else:
            part.errors.append(item)
    return part._replace(quiet_files=quiet)


def _start_worker(link: ParentLink) -> None:
    """In each worker, once: end it when the scan ends."""
    follow_parent(link)


def _run_batch(targets: list[str | FileError]) -> _Rendered:
    job = _JOB
    if job is None:  # pragma: no cover - only reachable if forked without a job
        raise RuntimeError("scan worker started without a job")
    return _render(job, targets)


def _died(job: _Job, targets: Sequence[str | FileError]) -> _Rendered:
    """Every file of a batch whose worker died on it, accounted for as an error."""
    errors = [FileError(path=t.path if isinstance(t, FileError) else t, code=WORKER_DIED,
                        message="the scan worker process died while reading this file's batch "
                        "(killed, or out of memory); not read") for t in targets]
    tally = MonitorTally()
    for error in errors:
        tally_item(tally, error)
    if job.fmt == "table":
        return _Rendered(text=b"", lines=0, tally=tally, context=_DIED, files=len(targets),
                         table=_TablePart(entries=[], files=[], quiet_files=0, errors=errors,
                                          skipped=[]))
    return _Rendered(text=_separator(job.fmt).join(render_line(e, job.fmt) for e in errors),
                     lines=len(errors), tally=tally, context=_DIED, files=len(targets))


class _Pool(Protocol):
    def submit(self, targets: list[str | FileError]) -> Future[_Rendered]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class _InProcess:
    """The batches run here, one by one, as they are asked for."""

    def __init__(self, job: _Job) -> None:
        self.job = job

    def submit(self, targets: list[str | FileError]) -> Future[_Rendered]:
        future: Future[_Rendered] = Future()
        future.set_result(_render(self.job, targets))
        return future

    def restart(self) -> None:  # pragma: no cover - nothing here can break
        pass

    def close(self) -> None:
        pass


class _Forked:
    """A pool of forked workers, restarted when one dies."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.context = multiprocessing.get_context("fork")
        self.tether = Tether(self.context)
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self.context,
                                   initializer=_start_worker, initargs=(self.tether.link,))

    def submit(self, targets: list[str | FileError]) -> Future[_Rendered]:
        return self.pool.submit(_run_batch, targets)

    def restart(self) -> None:
        # The broken pool's manager thread must be gone before the next fork.
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._start()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.tether.close()


@dataclass(slots=True)
class _Writer:
    """Frames the document and counts what it wrote; for the human table, spills the records
    batch by batch (:mod:`agent.tablespill`: none is kept here)."""

    out: IO[bytes]
    fmt: str
    at: datetime
    wrote_lines: bool = False
    tally: MonitorTally = field(default_factory=MonitorTally)
    spill: TableSpill | None = None
    """Opened at the first batch for the table (after the workers are forked)."""
    quiet_files: int = 0

    def start(self) -> None:
        if self.fmt == "csv":
            self.out.write(csv_header())

    def write(self, rendered: _Rendered) -> None:
        self.tally.merge(rendered.tally)
        if rendered.table is not None:
            spill = self._spill()
            spill.add_entries(rendered.table.entries)
            spill.add_files(rendered.table.files)
            spill.add_problems(rendered.table.errors, rendered.table.skipped)
            self.quiet_files += rendered.table.quiet_files
        if not rendered.lines:
            return
        if self.fmt == "json":
            self.out.write(b",\n" if self.wrote_lines else b"[\n")
        self.wrote_lines = True
        self.out.write(rendered.text)

    def _spill(self) -> TableSpill:
        if self.spill is None:
            # scan merges places by urgency: the workers send them in walk order
            self.spill = TableSpill(by_urgency=True)
        return self.spill

    def close(self) -> None:
        """Drop the spilled records of a scan that did not finish."""
        if self.spill is not None:
            self.spill.close()

    def finish(self) -> ScanOutcome:
        if self.fmt == "json":
            self.out.write(b"\n]\n" if self.wrote_lines else b"[]\n")
        if not self.tally.certificates and not self.tally.errors:
            self.tally.unknown("no certificate was read: nothing is monitored")
        if self.fmt != "table":
            return ScanOutcome(tally=self.tally)
        return ScanOutcome(tally=self.tally, table=TableReport(
            records=self._spill(), quiet_files=self.quiet_files, at=self.at,
            tally=self.tally))


@dataclass(slots=True)
class _Task:
    batch: Batch
    future: Future[_Rendered] | None = None
    suspect: bool = False
    """In flight when a worker died: runs again, alone."""


def _submit(queue: deque[_Task], pool: _Pool) -> None:
    """Submit what may run: everything, or while suspects remain, one batch at a time (a
    suspect that breaks the pool while it runs alone is the one that kills its worker). A
    pool that broke meanwhile (a worker killed from outside, even an idle one) refuses: what
    it did not take stays unsubmitted, and :func:`_drive` starts a new pool."""
    try:
        _submit_to(queue, pool)
    except BrokenProcessPool:
        return


def _submit_to(queue: deque[_Task], pool: _Pool) -> None:
    if any(task.suspect for task in queue):
        if any(task.future is not None and not task.future.done() for task in queue):
            return
        for task in queue:
            if task.future is None:
                task.future = pool.submit(task.batch.targets)
                return
        return
    for task in queue:
        if task.future is None:
            task.future = pool.submit(task.batch.targets)


def _failed(future: Future[_Rendered]) -> bool:
    return future.done() and future.exception() is not None


def _drive(batches: Iterator[Batch], pool: _Pool, job: _Job, writer: _Writer, window: int,
           progress: ProgressCallback | None, total: int) -> None:
    """Keep ``window`` batches in flight and write them back in order."""
    queue: deque[_Task] = deque()
    held: list[tuple[Batch, _Rendered]] = []  # the parts of one split directory so far
    done = 0
    exhausted = False

    def flush_split() -> None:
        """Write a split directory's parts, or, when a row of one part depends on another
        part, the directory rendered again as one piece (rare: more than BATCH_FILES files
        with keys, or with leaves and CA certificates in different parts)."""
        contexts = [rendered.context for _, rendered in held]
        involved = sum(1 for c in contexts if c & (_LEAVES | _CAS))
        either = 0
        for c in contexts:
            either |= c
        whole = not either & _DIED and (
            bool(either & _KEYS)
            or (either & _LEAVES and either & _CAS and involved > 1))
        if whole:
            writer.write(_render(job, [t for batch, _ in held for t in batch.targets]))
        else:
            for _, rendered in held:
                writer.write(rendered)
        held.clear()

    while True:
        while not exhausted and len(queue) < window:
            batch = next(batches, None)
            if batch is None:
                exhausted = True
            else:
                queue.append(_Task(batch))
        if not queue:
            break
        _submit(queue, pool)
        head = queue[0]
        if head.future is None:
            # the pool broke with none of these batches on it (an idle worker killed)
            pool.restart()
            continue
        try:
            rendered = head.future.result()
        except BrokenProcessPool:
            pool.restart()
            if not head.suspect:
                for task in queue:
                    if task.future is not None and _failed(task.future):
                        task.future, task.suspect = None, True
                continue
            print(f"certescrow: a scan worker died on a batch of {len(head.batch.targets)} "
                  f"file(s); they are reported as {WORKER_DIED} errors", file=sys.stderr)
            rendered = _died(job, head.batch.targets)
        queue.popleft()
        if held and head.batch.split != held[0][0].split:
            flush_split()
        if head.batch.split is not None:
            held.append((head.batch, rendered))
        else:
            writer.write(rendered)
        done += rendered.files
        if progress is not None:
            progress(done, max(done, total))
    if held:
        flush_split()


def stream_scan(
    paths: Sequence[Path],
    catalogue: Catalogue,
    *,
    binding: Binding,
    at: datetime,
    settings: PolicySettings,
    limits: ReadLimits,
    fmt: str,
    jobs: int,
    out: IO[bytes],
    passwords: Sequence[bytes] = (),
    progress: ProgressCallback | None = None,
    windows: ExpiryWindows | None = None,
) -> ScanOutcome:
    """Scan ``paths`` with up to ``jobs`` worker processes and write the report as ``fmt``
    (``json`` or ``csv``) to ``out`` as it is produced; ``table``: write nothing, and return
    what the human table prints (:attr:`ScanOutcome.table`). One process when there is too
    little to share, or when threads are running.

    With ``progress``, the store is walked once more first, only to count its files (~1 s for
    a million), so that the total is known."""
    global _JOB
    total = sum(1 for _ in iter_targets(paths, limits=limits)) if progress is not None else 0
    job = _Job(limits=limits, passwords=tuple(passwords), catalogue=catalogue, binding=binding,
               at=at, settings=settings, windows=windows, fmt=fmt)
    batches = directory_batches(paths, limits=limits, max_files=BATCH_FILES)
    # Enough batches to know whether workers pay (the walk is lazy: the total is not known).
    ahead: list[Batch] = []
    seen = 0
    while seen < jobs * MIN_FILES_PER_JOB:
        batch = next(batches, None)
        if batch is None:
            break
        ahead.append(batch)
        seen += len(batch.targets)
    workers = min(jobs, max(1, seen // MIN_FILES_PER_JOB))
    everything = _chain(ahead, batches)
    writer = _Writer(out, fmt, at=at)
    writer.start()
    pool: _Pool
    if workers <= 1 or threading.active_count() > 1:
        pool, window = _InProcess(job), 1
    else:
        _JOB = job
        pool, window = _Forked(workers), workers * WINDOW_PER_WORKER
    try:
        _drive(everything, pool, job, writer, window, progress, total)
    except BaseException:
        writer.close()
        raise
    finally:
        pool.close()
        _JOB = None
    return writer.finish()


def _chain(first: list[Batch], rest: Iterator[Batch]) -> Iterator[Batch]:
    yield from first
    yield from rest
