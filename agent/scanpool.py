"""The one-shot scan on several cores: each worker reads, classifies and renders whole
directories and hands back only rendered lines.

Handing back objects does not pay: pickling a ``FileResult`` to the parent costs about as much
as producing it, and the policy's classification objects do not pickle at all. A rendered line
is a ``bytes`` object and a small sort key, which cost next to nothing to send. Directories stay
whole inside one batch because keys are paired with the certificates of their directory.

Workers are forked (they inherit the catalogue, binding and read limits, none of which needs to
pickle). A process that already runs threads is never forked (a lock held by another thread at
the fork would be held forever in the child): it scans serially instead.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from policy.catalogue import Catalogue
from policy.intake import Binding
from policy.settings import PolicySettings

from .errors import AgentError
from .records import FileError, FileResult, ReadLimits
from .report import RenderedLine, RenderedReport, assemble, iter_report, render_items
from .scan import ProgressCallback, collect_targets, directory_batches, read_target

__all__ = ["MIN_FILES_PER_JOB", "default_jobs", "render_parallel"]

MIN_FILES_PER_JOB = 500
"""Below this many files per worker the fork costs more than it saves."""


@dataclass(frozen=True, slots=True)
class _Job:
    batches: list[list[str | FileError]]
    limits: ReadLimits
    passwords: tuple[bytes, ...]
    catalogue: Catalogue
    binding: Binding
    at: datetime
    settings: PolicySettings
    fmt: str


_JOB: _Job | None = None  # set in the parent just before the workers are forked


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _results(job: _Job, batch: list[str | FileError]) -> list[FileResult]:
    return [read_target(t, limits=job.limits, passwords=job.passwords) for t in batch]


def _run_batch(index: int) -> list[RenderedLine]:
    job = _JOB
    if job is None:  # pragma: no cover - only reachable if forked without a job
        raise RuntimeError("scan worker started without a job")
    items = iter_report(_results(job, job.batches[index]), job.catalogue,
                        binding=job.binding, at=job.at, settings=job.settings)
    return render_items(items, job.fmt, seq_base=(index,))


def render_parallel(
    paths: Sequence[Path],
    catalogue: Catalogue,
    *,
    binding: Binding,
    at: datetime,
    settings: PolicySettings,
    limits: ReadLimits,
    fmt: str,
    jobs: int,
    passwords: Sequence[bytes] = (),
    progress: ProgressCallback | None = None,
) -> RenderedReport:
    """Scan ``paths`` with up to ``jobs`` worker processes and render as ``fmt``. Falls back
    to one process when there is too little to share, or when threads are running."""
    global _JOB
    targets = collect_targets(paths, limits=limits)
    batches = directory_batches(targets)
    total = len(targets)
    workers = min(jobs, len(batches), max(1, total // MIN_FILES_PER_JOB))
    job = _Job(batches=batches, limits=limits, passwords=tuple(passwords),
               catalogue=catalogue, binding=binding, at=at, settings=settings, fmt=fmt)
    lines: list[RenderedLine] = []
    done = 0
    if workers <= 1 or threading.active_count() > 1:
        _JOB = job
        try:
            for index, batch in enumerate(batches):
                lines.extend(_run_batch(index))
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        finally:
            _JOB = None
        return assemble(lines, fmt)
    _JOB = job
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for index, batch_lines in enumerate(pool.map(_run_batch, range(len(batches)))):
                lines.extend(batch_lines)
                done += len(batches[index])
                if progress is not None:
                    progress(done, total)
    except BrokenProcessPool:
        raise AgentError("a scan worker process died (killed, or out of memory); run again "
                         "with --jobs 1 to scan in one process") from None
    finally:
        _JOB = None
    return assemble(lines, fmt)
