"""File watching: watchdog observers that only put paths on a queue.

Two traps shape this module. An exception raised inside a watchdog handler kills the
observer's thread while the process lives on, watching nothing: so the handler does nothing but
enqueue (and swallows even its own failures), all reading happens in the daemon's worker, and
:meth:`StoreWatcher.dead_threads` lets the daemon withhold the systemd watchdog ping when any
observer thread has died. And inotify watches are a per-user kernel budget
(``/proc/sys/fs/inotify/max_user_watches``): when they run out (``ENOSPC``) or inotify instances
do (``EMFILE``), the watcher falls back to polling and says so in the log.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .logs import EventLog

__all__ = [
    "DirectoryLinks",
    "EnqueueHandler",
    "OverflowHook",
    "PathQueue",
    "StoreWatcher",
    "inotify_limits",
]

_WATCH_EXHAUSTED = (errno.ENOSPC, errno.EMFILE)

EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    FileAttribEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]
"""The events that can change what a store holds or says. ``FileAttribEvent`` is how watchdog 7
delivers ``chmod``, ``chown`` and ``touch``: a private key turned world-readable is a critical
finding, so it must not wait for the next resync. Asking the kernel for these only (no
IN_OPEN / IN_CLOSE_NOWRITE) matters: the daemon's own reads would otherwise wake the observer
thread twice per file, and a full scan of 100,000 files took 80 % longer for it."""


class PathQueue:
    """Paths with pending events, coalesced: a path is due once no event has touched it for
    ``quiet_s`` seconds (certbot's unlink + symlink of four files is one batch, not eight).

    Thread-safe; the clock is injected so tests can step it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, float] = {}
        self._cond = threading.Condition()

    def put(self, path: str) -> None:
        with self._cond:
            self._pending[path] = self._clock()
            self._cond.notify_all()

    def put_many(self, paths: Iterable[str]) -> None:
        with self._cond:
            now = self._clock()
            for path in paths:
                self._pending[path] = now
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def __contains__(self, path: object) -> bool:
        with self._cond:
            return path in self._pending

    def take_due(self, quiet_s: float) -> list[str]:
        """Remove and return the paths that have been quiet for ``quiet_s``, oldest first."""
        with self._cond:
            now = self._clock()
            due = sorted((t, p) for p, t in self._pending.items() if now - t >= quiet_s)
            for _, path in due:
                del self._pending[path]
            return [p for _, p in due]

    def next_due_in(self, quiet_s: float) -> float | None:
        """Seconds until the next path becomes due (0 if one is due now), ``None`` if none."""
        with self._cond:
            if not self._pending:
                return None
            oldest = min(self._pending.values())
            return max(0.0, oldest + quiet_s - self._clock())

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when a path is enqueued."""
        with self._cond:
            self._cond.wait(timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def _prefixes(path: str) -> Iterator[tuple[str, str]]:
    """``(prefix, rest)`` for ``path`` itself (rest ``""``) and each directory above it, the
    nearest first: ``/a/b`` gives ``("/a/b", "")``, ``("/a", "/b")``."""
    head = path.rstrip("/") or "/"
    cut = len(head)
    while True:
        yield head[:cut], head[cut:]
        cut = head.rfind("/", 0, cut)
        if cut <= 0:
            return


class DirectoryLinks:
    """The directory links a store's walk followed: link path -> resolved target, and back.

    inotify never follows a link: a certificate copied into ``archive/ex/`` raises its event
    there, not under ``live/linked/arch/`` (a link to ``../../archive/ex``) where the store
    shows it. Every directory a link may lead to is watched already (a link is followed only
    into the store root or a ``follow_links_into`` root, and the watcher watches all of them,
    recursively), so no watch is added for a link: an event's path is mapped back to the
    paths the store shows it under (:meth:`aliases`). Several links may reach one target,
    and a target may hold links of its own (the walk names those below the first link, so
    one step of mapping reaches them). Nothing here touches the file system except
    :meth:`aliases` (one ``realpath`` of the event's directory, only while links are known).
    """

    def __init__(self) -> None:
        self._targets: dict[str, str] = {}
        """link path -> resolved target directory."""
        self._links: dict[str, set[str]] = {}
        """resolved target directory -> the link paths that reach it."""

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, link: object) -> bool:
        return link in self._targets

    def target_of(self, link: str) -> str | None:
        return self._targets.get(link)

    def add(self, link: str, target: str) -> None:
        """``link`` (a path as the store shows it) leads to the directory ``target``."""
        self.forget(link, below=False)
        self._targets[link] = target
        self._links.setdefault(target, set()).add(link)

    def forget(self, path: str, *, below: bool = True) -> list[str]:
        """Forget the link at ``path`` and (``below``) every link under it; returns them."""
        top = path.rstrip("/") or "/"
        prefix = top if top == "/" else top + "/"
        gone = [link for link in self._targets
                if link == top or (below and link.startswith(prefix))]
        for link in gone:
            target = self._targets.pop(link)
            links = self._links.get(target)
            if links is not None:
                links.discard(link)
                if not links:
                    del self._links[target]
        return gone

    def under(self, path: str) -> dict[str, str]:
        """The links strictly below ``path``, with their targets."""
        top = path.rstrip("/") or "/"
        prefix = top if top == "/" else top + "/"
        return {link: target for link, target in self._targets.items()
                if link.startswith(prefix)}

    def link_above(self, path: str) -> str | None:
        """The nearest known link that ``path`` lies beneath (not ``path`` itself)."""
        if not self._targets:
            return None
        for prefix, rest in _prefixes(path):
            if rest and prefix in self._targets:
                return prefix
        return None

    def aliases(self, path: str) -> list[str]:
        """The paths the stores show ``path`` under through the known links (``path`` itself
        excluded), sorted. ``path`` is taken as given and with its directory resolved (a root
        watched through a link of its own names events by the unresolved path)."""
        if not self._links:
            return []
        candidates = {path}
        parent, name = os.path.split(path)
        if parent:
            candidates.add(os.path.join(os.path.realpath(parent), name))
        found: set[str] = set()
        for candidate in candidates:
            for prefix, rest in _prefixes(candidate):
                for link in self._links.get(prefix, ()):
                    found.add(link + rest)
        found.discard(path)
        return sorted(found)


class OverflowHook(logging.Handler):
    """watchdog reports a kernel inotify queue overflow (events lost) only as a log warning;
    this turns that warning into a callback so the daemon can rescan at once instead of
    waiting for the periodic resync."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "overflow" in record.getMessage().lower():
                self._callback()
        except Exception:  # a logging handler must never raise into watchdog's thread
            self.handleError(record)


class EnqueueHandler(FileSystemEventHandler):
    """The only thing watchdog calls: it enqueues the paths an event names and never raises."""

    def __init__(self, enqueue: Callable[[str], None]) -> None:
        super().__init__()
        self._enqueue = enqueue
        self.failures = 0

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type in ("opened", "closed_no_write"):
                return  # reading a file changes nothing (and our own reads cause these)
            if event.is_directory and event.event_type == "modified":
                # A directory's "modified" is the echo of a file event in it, which arrives
                # on its own; acting on it would rescan the whole directory for every file.
                return
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                if raw:
                    self._enqueue(raw if isinstance(raw, str) else raw.decode("utf-8",
                                                                               "surrogateescape"))
        except Exception:  # a raising handler kills the observer thread
            self.failures += 1


def _inotify_observer() -> BaseObserver:
    from watchdog.observers.inotify import InotifyObserver

    return InotifyObserver()


def inotify_limits() -> dict[str, int | None]:
    """The kernel's inotify budgets (``None`` when not readable, e.g. not Linux)."""
    limits: dict[str, int | None] = {}
    for name in ("max_user_watches", "max_user_instances", "max_queued_events"):
        try:
            limits[name] = int(Path(f"/proc/sys/fs/inotify/{name}").read_text().strip())
        except (OSError, ValueError):
            limits[name] = None
    return limits


# Filesystems on which inotify sees only the changes made by this host (or none at all): a
# certificate renewed on another NFS client, or behind a FUSE daemon, raises no event here.
POLLED_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "lustre",
    "gpfs", "gfs2", "ocfs2", "davfs", "virtiofs",
})


def needs_polling(fstype: str | None) -> bool:
    """Whether a store on ``fstype`` must be polled (network, cluster and FUSE filesystems)."""
    if not fstype:
        return False
    return fstype in POLLED_FILESYSTEMS or fstype == "fuse" or fstype.startswith("fuse.")


def _unescape_mount(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(path: Path, *, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem ``path`` lives on, from ``/proc/self/mountinfo`` (the mount
    with the longest mount point containing the resolved path); ``None`` when unknown."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8",
                                                              errors="replace")
        except OSError:
            return None
    try:
        target = str(path.resolve())
    except OSError:
        target = str(path)
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount = _unescape_mount(fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) >= best[0]):
            best = (len(mount), tail[0])
    return best[1] if best is not None else None


class StoreWatcher:
    """One observer over every watched root (recursive), inotify or polling.

    ``mode`` is ``auto`` (inotify, polling when watches run out; roots on a network, cluster
    or FUSE filesystem are polled by a second observer from the start, since inotify would not
    see changes made elsewhere), ``inotify`` (no fallback: a failure to watch is logged and the
    roots are left to the periodic resync) or ``polling``.
    """

    def __init__(self, enqueue: Callable[[str], None], *, mode: str = "auto",
                 log: EventLog | None = None, polling_interval_s: float = 1.0,
                 inotify_factory: Callable[[], BaseObserver] | None = None,
                 on_overflow: Callable[[], None] | None = None,
                 fstype: Callable[[Path], str | None] = filesystem_type) -> None:
        if mode not in ("auto", "inotify", "polling"):
            raise ValueError(f"unknown observer mode {mode!r}")
        self.mode = mode
        self.handler = EnqueueHandler(enqueue)
        self.log = log if log is not None else EventLog()
        self.kind = ""
        self.observer: BaseObserver | None = None
        self.watched: list[Path] = []
        self.missing: list[Path] = []
        self._polling_interval_s = polling_interval_s
        self._inotify_factory = inotify_factory
        self._overflow_hook = OverflowHook(on_overflow) if on_overflow is not None else None
        self._fstype = fstype
        self.poller: BaseObserver | None = None
        """The second observer, polling the roots whose filesystem inotify cannot watch."""
        self.polled: list[Path] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self, roots: Iterable[Path]) -> str:
        """Watch ``roots``; returns the observer kind in use (``inotify`` or ``polling``)."""
        wanted = everything = list(dict.fromkeys(roots))
        if self._overflow_hook is not None:
            logging.getLogger("watchdog").addHandler(self._overflow_hook)
        if self.mode == "polling":
            self._start_polling(wanted, reason="configured (observer = \"polling\")")
            return self.kind
        if self.mode == "auto":
            wanted = self._poll_remote(wanted)
            if not wanted:
                self.kind = "polling"
                return self.kind
        try:
            factory = self._inotify_factory or _inotify_observer
            observer = factory()
            observer.start()
        except OSError as exc:
            if exc.errno in _WATCH_EXHAUSTED and self.mode == "auto":
                self._start_polling(wanted, reason=f"inotify unavailable: {exc.strerror}")
                return self.kind
            raise
        self.observer, self.kind = observer, "inotify"
        self.watched, self.missing = [], []
        for root in wanted:
            try:
                self._schedule(root)
            except OSError as exc:
                if exc.errno in _WATCH_EXHAUSTED and self.mode == "auto":
                    self.stop()  # the poller too: one polling observer takes every root
                    limits = inotify_limits()
                    self._start_polling(
                        everything,
                        reason=f"inotify watches ran out ({exc.strerror}; "
                        f"fs.inotify.max_user_watches={limits['max_user_watches']})")
                    return self.kind
                raise
        if self.polled:
            self.kind = "inotify+polling"
        self.log.info("watching", f"watching {len(self.watched)} root(s) with inotify"
                      + (f" and {len(self.polled)} with polling" if self.polled else ""),
                      observer=self.kind, roots=len(self.watched) + len(self.polled))
        return self.kind

    def _poll_remote(self, roots: list[Path]) -> list[Path]:
        """Start the second (polling) observer for the roots on filesystems inotify cannot
        watch; returns the roots left for inotify."""
        local: list[Path] = []
        for root in roots:
            fstype = self._fstype(root) if root.is_dir() else None
            if not needs_polling(fstype):
                local.append(root)
                continue
            if self.poller is None:
                self.poller = PollingObserver(timeout=self._polling_interval_s)
                self.poller.start()
            self.poller.schedule(self.handler, str(root), recursive=True, event_filter=EVENTS)
            self.polled.append(root)
            self.log.warning(
                "polling", f"{root}: on a {fstype} filesystem, which delivers no inotify events "
                "for changes made elsewhere: watching it with polling", observer="polling",
                path=str(root), fstype=fstype)
        return local

    def _start_polling(self, roots: list[Path], *, reason: str) -> None:
        self.observer = PollingObserver(timeout=self._polling_interval_s)
        self.observer.start()
        self.kind = "polling"
        self.watched, self.missing = [], []
        for root in roots:
            self._schedule(root)
        self.log.warning("polling", f"watching with polling: {reason}", observer="polling",
                         roots=len(self.watched))

    def _schedule(self, root: Path) -> None:
        if self.observer is None:
            raise RuntimeError("watcher not started")
        if not root.is_dir():
            self.missing.append(root)
            self.log.warning("store-missing",
                             f"{root}: not a directory (yet); not watched, retried at resync",
                             path=str(root))
            return
        self.observer.schedule(self.handler, str(root), recursive=True, event_filter=EVENTS)
        self.watched.append(root)

    def retry_missing(self) -> list[Path]:
        """Start watching roots that did not exist at start; returns the ones now watched."""
        if self.observer is None:
            return []
        added: list[Path] = []
        for root in list(self.missing):
            if root.is_dir():
                self.missing.remove(root)
                if self.mode == "auto" and self.kind != "polling" and not self._poll_remote([root]):
                    added.append(root)  # on a network filesystem: the poller has it now
                    continue
                try:
                    self.observer.schedule(self.handler, str(root), recursive=True,
                                           event_filter=EVENTS)
                except OSError as exc:
                    self.log.error("watch-failed", f"{root}: cannot watch: {exc.strerror}",
                                   path=str(root))
                    self.missing.append(root)
                    continue
                self.watched.append(root)
                added.append(root)
                self.log.info("store-appeared", f"{root}: now watched", path=str(root))
        return added

    def stop(self) -> None:
        if self._overflow_hook is not None:
            logging.getLogger("watchdog").removeHandler(self._overflow_hook)
        observers = (self.observer, self.poller)
        self.observer, self.poller, self.polled = None, None, []
        for observer in observers:
            if observer is None:
                continue
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=5)

    # ------------------------------------------------------------------ liveness

    def threads(self) -> list[tuple[str, Any]]:
        """Every thread that must be alive for events to arrive: the observer, one emitter per
        watched root, and inotify's reader thread."""
        found: list[tuple[str, Any]] = []
        for label, observer in (("observer", self.observer), ("poller", self.poller)):
            if observer is None:
                continue
            found.append((label, observer))
            found.extend((f"emitter {e.watch.path}", e) for e in observer.emitters)
            reader = getattr(observer, "_inotify_fd", None)
            if isinstance(reader, threading.Thread):
                found.append(("inotify reader", reader))
        return found

    def dead_threads(self) -> list[str]:
        """Names of observer threads that have died (empty when all is well)."""
        if self.observer is None and self.poller is None:
            return ["observer (not started)"]
        return [name for name, thread in self.threads() if not thread.is_alive()]

    def alive(self) -> bool:
        return not self.dead_threads()
