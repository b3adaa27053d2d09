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
outside). A file that changes after it was read ahead is read again by the next event, as with
any read; a worker that dies makes the scan read the rest of the plan itself.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .records import FileResult, ReadLimits

__all__ = ["MIN_FILES", "ReadAhead", "read_ahead_workers"]

MIN_FILES = 500
"""Below this many files to read, starting workers costs more than it saves."""
BATCH = 50
WINDOW = 8
"""Batches read ahead of the scan: ~400 results in memory at most."""


def read_ahead_workers() -> int:
    """Workers beside the daemon's own process, which classifies and writes the ledger: one
    fewer than the CPUs it may use (none on one CPU)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(0, cpus - 1)


def _read_batch(paths: list[str], limits: ReadLimits,
                passwords: tuple[bytes, ...]) -> list[FileResult]:
    from .reader import read_file

    return [read_file(path, limits=limits, passwords=passwords) for path in paths]


class ReadAhead:
    """The results of reading ``paths`` (in this order), taken one by one with :meth:`take`."""

    def __init__(self, paths: Sequence[str], *, limits: ReadLimits,
                 passwords: tuple[bytes, ...], workers: int) -> None:
        self._batches = [list(paths[i:i + BATCH]) for i in range(0, len(paths), BATCH)]
        self._where = {path: n for n, batch in enumerate(self._batches) for path in batch}
        self._limits = limits
        self._passwords = passwords
        self._futures: dict[int, Future[list[FileResult]]] = {}
        self._ready: dict[str, FileResult] = {}
        self._next = 0
        self.read = 0
        """Files read by the workers."""
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["agent.reader"])
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=workers, mp_context=context)
        self._fill(0)

    def _fill(self, current: int) -> None:
        if self._pool is None:
            return
        while self._next < len(self._batches) and self._next <= current + WINDOW:
            self._futures[self._next] = self._pool.submit(
                _read_batch, self._batches[self._next], self._limits, self._passwords)
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
            results = future.result()
        except BrokenProcessPool:
            self.close()
            return None
        self.read += len(results)
        for result in results:
            if result.path != path and result.path in self._where:
                self._where.pop(result.path, None)
                self._ready[result.path] = result
        return next((r for r in results if r.path == path), None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()
        self._ready.clear()
        self._where.clear()
