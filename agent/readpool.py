"""Read ahead of the daemon's full scan in worker processes (issue 12).

The daemon's first scan of a large store used one core: reading and parsing is half of it. The
scan knows, before it starts, which files it will read and in which order (those whose stat
identity is not in the index, directory by directory), so worker processes read them ahead,
a bounded window of batches at a time, and the scan takes each result when it reaches the file.
Classification, the ledger and the index stay in the daemon's process, in the order they were.

The daemon already runs threads (observers, the ledger writer) when it scans, so its workers
are not forked from it: they come from a fork server (a fresh interpreter that imported the
reader once), which is safe whatever the daemon's threads hold. Results come back pickled
(``FileResult`` is plain frozen data; pickling between our own processes trusts nothing from
outside). The workers end with the daemon, however it ends: they are the fork server's
children, so each follows the daemon through a pipe of its own (:mod:`agent.workerlife`). A
file that changes after it was read ahead is read again by the next event, as with
any read; a worker that dies makes the scan read the rest of the plan itself.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import operator
import os
import types
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.context import BaseContext
from multiprocessing.reduction import ForkingPickler
from typing import Any

from policy.decisions import Finding
from policy.facts import CertificateFacts

from .findinglog import LoggedWarning, warnings_of
from .records import CertificateRecord, FileError, FileResult, FileSkip, KeyRecord, ReadLimits
from .workerlife import ParentLink, Tether, follow_parent

__all__ = ["FORK_SERVER_PRELOAD", "MIN_FILES", "ReadAhead", "RowJob", "Warnings", "fork_server",
           "read_ahead_workers", "start_fork_server"]

MIN_FILES = 500
"""Below this many files to read, starting workers costs more than it saves."""
BATCH = 250
"""Files a worker reads per request: ~25 ms of its work. With 50 (5 ms, the interpreter's
switch interval) the workers idled: the pool's result thread, which hands them work and takes
their results, shares the daemon's interpreter lock with the scan and the ledger writer, and
waited for it longer than a batch took (a first start of 20,000 files: 2.14-2.24 -> 1.95-2.04
s to READY, bench/bench_daemon.py)."""
WINDOW = 3
"""Batches read ahead of the scan beyond the one it waits for: ~1,000 results in memory at
most (~3 MB)."""


def read_ahead_workers() -> int:
    """Workers beside the daemon's own process: as many as the CPUs it may use (none on one
    CPU, where they could only add the cost of sending results). The workers read and
    classify, about two thirds of a first scan's work; the daemon's process indexes and
    writes the ledger, the rest: one worker per CPU keeps both CPUs of a two-CPU host busy
    (with one fewer, the lone worker was the bottleneck and a CPU idled a third of the time)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return cpus if cpus >= 2 else 0


@dataclass(frozen=True, slots=True)
class RowJob:
    """What a worker needs to classify what it read as the daemon would, for a file alone
    in its unit (a directory too large to place a file among: a trust store), read for the
    first time (no predecessor), outside an escrow store (no escrow findings)."""

    catalogue: tuple[str, str] | None
    """The catalogue's TOML text and source, exactly as the daemon parsed it; ``None``: the
    embedded one."""
    binding: Any
    settings: Any
    windows: Any
    at: datetime
    store: str
    kinds_only: bool = False
    """Send back only each warning's kind (its message and fields left out, ``""`` and ``{}``):
    what the first scan's tally counts when the daemon does not log at debug level
    (:meth:`agent.findinglog.FindingLog.counts_kinds_only`). Half the bytes a result crosses
    with, in a scan whose every certificate has two warnings."""


Warnings = tuple[tuple[LoggedWarning, ...], ...]
"""Per certificate of a file, what :func:`agent.findinglog.warnings_of` found."""

_NO_FIELDS: dict[str, str] = {}
"""The fields of a warning sent back as its kind only (one object: pickled once a batch; the
daemon's process never writes to it)."""

_job: RowJob | None = None
_catalogue: Any = None


def _mappingproxy(items: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(items)


def _reduce_mappingproxy(proxy: types.MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return _mappingproxy, (dict(proxy),)


# The policy settings a job carries hold read-only mappings (a price list): sent to our own
# workers as the dict they show (only multiprocessing's pickler is taught this).
ForkingPickler.register(types.MappingProxyType, _reduce_mappingproxy)

# What a worker sends back, field values in order rather than pickle's default for a slotted
# dataclass (a dict of field names per object, built by a Python function): about a third of
# the bytes' cost to write and half to read, in the worker and in the daemon's process, for
# the same objects. Rebuilt as the default rebuilds them (slots set, no ``__init__``); only
# between our own processes (only multiprocessing's pickler is taught this).
_RECORDS: tuple[type[Any], ...] = (FileResult, CertificateRecord, KeyRecord, FileError, FileSkip,
                                   CertificateFacts, Finding)
_SETTERS: dict[type[Any], tuple[Callable[[Any, Any], None], ...]] = {}


def _rebuild(cls: type[Any], values: tuple[Any, ...]) -> Any:
    record = object.__new__(cls)
    for put, value in zip(_SETTERS[cls], values, strict=True):
        put(record, value)
    return record


def _record_reducer(cls: type[Any]) -> Callable[[Any], tuple[Any, ...]]:
    names = [f.name for f in dataclasses.fields(cls)]
    _SETTERS[cls] = tuple(getattr(cls, name).__set__ for name in names)  # slot descriptors
    values = operator.attrgetter(*names)

    def reduce(record: Any) -> tuple[Any, ...]:
        return _rebuild, (cls, values(record))

    return reduce


for _cls in _RECORDS:
    ForkingPickler.register(_cls, _record_reducer(_cls))


def _start_worker(link: ParentLink, job: RowJob | None) -> None:
    """In each worker, once: end it when the daemon ends; the catalogue parsed from the
    daemon's own text."""
    global _job, _catalogue
    follow_parent(link)
    _job = job
    if job is not None:
        from policy.catalogue import load_catalogue, parse_catalogue

        _catalogue = (load_catalogue(None) if job.catalogue is None
                      else parse_catalogue(job.catalogue[0], source=job.catalogue[1]))
    gc.freeze()  # the modules and the catalogue, out of the collector's walks (as the daemon)


def _warnings_of(result: FileResult, job: RowJob) -> Warnings | None:
    """The rows the daemon would make of ``result``'s certificates, alone in their unit,
    reduced to their warnings (``None``: the daemon classifies it itself, and says why it
    cannot). Kept in step with :meth:`agent.storesync.StoreSync._row`."""
    from policy.classification import classify_certificate

    from .rows import certificate_row, pair_key, place_certificates

    try:
        placements = place_certificates((result,))
        found = []
        for record in result.certificates:
            classification = classify_certificate(record.facts, _catalogue,
                                                  binding=job.binding, at=job.at,
                                                  previous=None, settings=job.settings)
            placement = placements[(record.path, record.index)]
            pairing = pair_key(record, role=placement.role, file_keys=result.keys,
                               dir_keys=list(result.keys), elsewhere=frozenset())
            row = certificate_row(record, classification, placement=placement,
                                  pairing=pairing, at=job.at, windows=job.windows,
                                  extra_findings=(), store=job.store)
            warnings = warnings_of(row)
            if job.kinds_only:
                warnings = tuple((kind, "", _NO_FIELDS) for kind, _, _ in warnings)
            found.append(warnings)
    except Exception:  # the daemon's own classification logs it
        return None
    return tuple(found)


def _read_batch(paths: list[str], limits: ReadLimits, passwords: tuple[bytes, ...],
                classify: list[bool]) -> list[tuple[FileResult, Warnings | None]]:
    from .reader import read_file
    from .x509facts import recording_warnings

    job = _job
    # The parser's warnings recorded once for the batch, as the one-shot scan's workers do
    # (a worker runs one thread: agent/workerlife.py), not captured once per certificate.
    with recording_warnings():
        results = [read_file(path, limits=limits, passwords=passwords) for path in paths]
    return [(result, _warnings_of(result, job) if job is not None and wanted else None)
            for result, wanted in zip(results, classify, strict=True)]


FORK_SERVER_PRELOAD = ("agent.reader", "agent.rows", "policy.classification", "vault.formats")
"""What the fork server imports once, before it forks: the reader and the classification for
the read-ahead workers, the loaders :mod:`vault.bounded`'s password child runs (a child that
imported them itself took ~170 ms a file, against ~14)."""


def fork_server() -> BaseContext:
    """The fork server the daemon's children come from (its read-ahead workers, and the child
    :mod:`vault.bounded` tries passwords in while threads run). Its preload counts only until
    it starts, so the daemon sets it before anything can start it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(FORK_SERVER_PRELOAD))
    return context


def start_fork_server() -> None:
    """Start the fork server (:func:`fork_server`) now, without waiting for it: the first
    worker it forks waits for its preload, and a scan that knows it will want workers has
    other work to do meanwhile."""
    from multiprocessing import forkserver

    fork_server()  # (its preload set first, whoever starts it)
    forkserver.ensure_running()


class ReadAhead:
    """The results of reading ``paths`` (in this order), taken one by one with :meth:`take`."""

    def __init__(self, paths: Sequence[str], *, limits: ReadLimits,
                 passwords: tuple[bytes, ...], workers: int, job: RowJob | None = None,
                 classify: Callable[[str], bool] = lambda path: False) -> None:
        self._batches = [list(paths[i:i + BATCH]) for i in range(0, len(paths), BATCH)]
        self._where = {path: n for n, batch in enumerate(self._batches) for path in batch}
        self._limits = limits
        self._passwords = passwords
        self._futures: dict[int, Future[list[tuple[FileResult, Warnings | None]]]] = {}
        self._ready: dict[str, FileResult] = {}
        self._warned: dict[str, tuple[FileResult, Warnings]] = {}
        """Path -> the result read ahead and the warnings its worker found in it."""
        self.job = job
        self._classify = classify
        """Whether a worker classifies this file too (see :class:`RowJob`)."""
        self._next = 0
        self.read = 0
        """Files read by the workers."""
        context = fork_server()
        self._tether = Tether(context)
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker,
            initargs=(self._tether.link, job))
        self._fill(0)

    def _fill(self, current: int) -> None:
        if self._pool is None:
            return
        while self._next < len(self._batches) and self._next <= current + WINDOW:
            batch, self._batches[self._next] = self._batches[self._next], []  # (not kept)
            flags = [self.job is not None and self._classify(path) for path in batch]
            self._futures[self._next] = self._pool.submit(
                _read_batch, batch, self._limits, self._passwords, flags)
            self._next += 1

    def take(self, path: str) -> FileResult | None:
        """The result read ahead for ``path``, or ``None`` (not planned, or the workers are
        gone: the caller reads it itself)."""
        got = self._ready.pop(path, None)
        if got is not None:
            return got
        n = self._where.pop(path, None)
        if n is None or self._pool is None:
            return None
        self._fill(n)
        future = self._futures.pop(n, None)
        if future is None:
            return None
        try:
            batch = future.result()
        except BrokenProcessPool:
            self.close()
            return None
        self.read += len(batch)
        for result, warnings in batch:
            if warnings is not None:
                self._warned[result.path] = (result, warnings)
            if result.path != path and result.path in self._where:
                self._where.pop(result.path, None)
                self._ready[result.path] = result
        return next((r for r, _ in batch if r.path == path), None)

    def warnings(self, result: FileResult) -> Warnings | None:
        """The warnings the worker found in ``result`` (this very result, read ahead), once."""
        held = self._warned.pop(result.path, None)
        return held[1] if held is not None and held[0] is result else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._tether.close()
        self._futures.clear()
        self._ready.clear()
        self._where.clear()
        self._warned.clear()
