"""Keep the ledger's picture of the certificate stores in step with the files.

The worker half of the daemon: given paths (from events, once quiet) or whole stores (a full
scan), it reads what changed (:mod:`agent.reader`), turns it into facts, asks the policy core
what each certificate means, reports observations to the intake, marks what is no longer there
as gone, and hands keys to :mod:`agent.escrow`. Directories holding a key beside certificates
go through :mod:`agent.certset` first (the certbot trap). The watch loop around it — observers,
signals, reloads, the systemd watchdog — is :mod:`agent.daemon`.

Everything is injected (reader, lister, intake, clocks, escrow), so tests drive
:meth:`StoreSync.process_due` and :meth:`StoreSync.full_scan` with no observer.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

from policy.decisions import SEVERITY_TEXT, Finding, Severity
from policy.facts import CertificateFacts
from policy.intake import Intake, IntakeReceipt, Observation

from .bugreport import bug_fields
from .certset import MAX_SET_ATTEMPTS, SetState, key_lookup
from .config import Config, StoreConfig, within_store
from .errors import AgentError
from .escrow import Escrow
from .findinglog import FindingLog, LoggedWarning, level_of, warnings_of
from .index import FileIndex, Problem, StatKey, parent_of, stat_key
from .inventory import InventorySlot
from .ledgerwriter import LedgerOp, LedgerWriter, Part
from .logs import EventLog
from .readindex import PersistentIndex, certificate_ids, certificate_rows
from .readpool import MIN_FILES as READ_AHEAD_MIN_FILES
from .readpool import ReadAhead, RowJob, read_ahead_workers, start_fork_server
from .reconcile import Reconciliation, SightingSource, plan_reconciliation
from .records import CertificateRecord, FileError, FileResult, ReadLimits
from .rows import CertificateRow, Role, certificate_row, pair_key, place_certificates
from .safeio import forget_resolved_roots, within_roots
from .scan import LinkedPath, refused_directory_link
from .summary import ScanSummary
from .watch import DirectoryLinks, PathQueue

__all__ = ["REPORT_BATCH", "Lister", "Reader", "StoreSync"]

REPORT_BATCH = 2000
"""Observations per intake transaction during full scans."""
FOUND_AT_RECONCILIATION = " (found at reconciliation)"
"""What a ``gone`` line adds when the place went while the daemon was not watching (stopped,
killed, the host down): found by the start's walk or by the ledger's reconciliation."""
_TRANSIENT = frozenset({"vanished", "not-found"})
_UNFOLLOWED = frozenset({"link-outside-root", "symlink-loop"})
"""A walk's errors for a link it did not follow: nothing below it is in the store (any more)."""

Reader = Callable[..., FileResult]
Lister = Callable[..., Iterator[Path | str | FileError]]


MAX_PLACEMENT_SIBLINGS = 64
"""How many entries a changed file's directory may hold for its logged row to be placed among
them (a certbot ``live/NAME`` holds five)."""


def _predecessor(previous: FileResult | None, record: CertificateRecord) -> CertificateFacts | None:
    """The certificate that was at ``record``'s place before it, if it was a different one."""
    if previous is None:
        return None
    for old in previous.certificates:
        if old.index == record.index and old.facts.sha256 != record.facts.sha256:
            return old.facts
    return None


def _file_problems(result: FileResult) -> list[Problem]:
    """The warning and critical findings of the file itself (a private key others can read),
    as the read index keeps them (:class:`~agent.index.Problem`)."""
    return [(-1, "", "finding", f.code, f.clause, SEVERITY_TEXT[f.severity])
            for f in result.findings if f.severity >= Severity.WARNING]


def _without_material(result: FileResult) -> FileResult:
    """``result`` without private key PEM or certificate DER (kept only for escrow)."""
    if not any(k.pem for k in result.keys) and not any(c.der for c in result.certificates):
        return result
    return replace(result,
                   keys=tuple(replace(k, pem=None) for k in result.keys),
                   certificates=tuple(replace(c, der=None) for c in result.certificates))


def _below_any(path: str, directories: set[str]) -> bool:
    """Whether ``path`` lies strictly below one of ``directories``."""
    if not directories:
        return False
    head = path
    while True:
        head, _, _ = head.rpartition("/")
        if not head:
            return False
        if head in directories:
            return True


def _gone_op(intake: Intake, *, host: str, location: str, at: datetime) -> int:
    return intake.report_gone(host, location, at=at)


def _report_op(intake: Intake, *, observations: list[Observation],
               at: datetime) -> IntakeReceipt:
    return intake.report(observations, at=at)


def _unknown_contracts_op(intake: Intake, *, named: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``named`` a ledger of this host does not hold (a fleet's intake is not asked:
    its service checks the desk's assignments itself, ``report-unassigned``)."""
    held = getattr(intake, "contract_ids", None)
    if held is None:
        return ()
    known = set(held())
    return tuple(n for n in named if n not in known)


@dataclass(slots=True)
class _ScanReports:
    """What one full scan reported, batch by batch (added up in the ledger writer's thread,
    read there too: the line is logged by a write queued after the scan's last)."""

    batches: int = 0
    observations: int = 0
    recorded: int = 0
    refused: int = 0
    queued: bool = False
    """Only queued in a fleet agent's outbox: the policy service has not taken them yet."""


def _log_reported(log: EventLog, observations: int, *, recorded: int, refused: int,
                  queued: bool, level: int = logging.INFO) -> None:
    """The ``reported`` line: what the ledger took, or, reporting to a fleet's service, what
    was queued in the outbox (its delivery is the fleet client's ``delivered`` line, its
    failure ``report-unreachable``): a line saying "reported" for a service that was down
    told the operator the desk had what it did not."""
    if queued:
        log.log(level, "reported", f"{observations} observation(s) queued in the outbox for "
                "the policy service", observations=observations, queued=observations)
        return
    log.log(level, "reported", f"{observations} observation(s) reported",
            observations=observations, recorded=recorded, refused=refused)


def _default_reader() -> Reader:
    from .reader import read_file

    return read_file


def _default_lister() -> Lister:
    from .scan import iter_store_paths

    return iter_store_paths


class StoreSync:
    """The index of what was read, and the steps that keep the ledger true to the stores.

    Not thread-safe except :meth:`enqueue` (watchdog threads). ``tick`` is called between
    files of long scans (the systemd watchdog ping) and ``stopping`` is asked there too
    (SIGTERM during a long scan ends it at once).
    """

    def __init__(
        self,
        config: Config,
        *,
        intake: Intake | LedgerWriter,
        clock: Callable[[], datetime],
        escrow: Escrow,
        log: EventLog,
        queue: PathQueue,
        reader: Reader | None = None,
        lister: Lister | None = None,
        sleep: Callable[[float], None],
        classify: bool = True,
        tick: Callable[[], None] = lambda: None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.writer = (intake if isinstance(intake, LedgerWriter)
                       else LedgerWriter(intake, log=log))
        """Every ledger write goes through it, in order (:mod:`agent.ledgerwriter`)."""
        self.reconcile_due = False
        """A reconciliation could not run (the ledger was busy): the watch loop retries it."""
        self._sightings: LedgerOp | None = None
        """The question to the ledger a reconciliation is waiting for (its open sightings)."""
        self.ledger_patience_s = 1.0
        """How long a read of the ledger may hold up the caller (the watch loop pings the
        systemd watchdog between two)."""
        self.rebind: bool | set[Path] = True
        """Store roots whose certificates the next reconciliation reports again, for the ledger
        to compare their binding: after a start, every certificate not read (and so reported)
        since (a persisted read index skips unchanged files, and the binding may have changed
        while the daemon was stopped); after a reload, those of the rebound stores; then none."""
        self._reported_since_start: set[str] | None = set()
        """Paths reported since the start or a reload, until the next reconciliation: reported
        with their store's binding as it is now, so not re-checked for it."""
        self.added_stores: set[Path] = set()
        """Store roots a reload added (or added back): the next full scan is their first, and
        counts their findings as the first scan after a start counts everyone's (one line per
        kind, not one per certificate: 1,200 expired certificates were 1,200 error lines)."""
        self.rehomed_stores: set[Path] = set()
        """Store roots given files another store had read, by a reload or while stopped
        (:meth:`_read_moved_again`): the next full scan reads those again, and after a reload
        counts that store's findings per kind."""
        self.clock = clock
        self.escrow = escrow
        self.log = log
        self.queue = queue
        self.reader = reader if reader is not None else _default_reader()
        self.lister = lister if lister is not None else _default_lister()
        self.sleep = sleep
        self.tick = tick
        self.stopping = stopping
        self.index: FileIndex[FileResult] = FileIndex()
        self.links = DirectoryLinks()
        """The directory links the walks followed, so that an event in a link's target (in
        ``archive/``) reaches the path the store shows it under (:meth:`process_due`)."""
        self.sets = SetState()
        self.findings = FindingLog(log)
        self.reports = 0
        self.inventory_slot: InventorySlot | None = None
        """The fleet heartbeat's inventory: built here, in the thread that owns the index,
        when the sender asked for one (agent/inventory.py)."""
        self.files_read = 0
        """Files read (parsed) since start, by this process or read ahead by workers."""
        self._scan_reports: _ScanReports | None = None
        """While a full scan runs: its reports, logged as one line at its end."""
        self._unknown_contracts: tuple[str, ...] = ()
        """The contracts last said to be missing from the ledger (:meth:`_check_contracts`)."""
        self.files_read_ahead = 0
        """Of which read by the workers of :mod:`agent.readpool`."""
        self.read_ahead_workers: int | None = None
        """Workers that read ahead of a full scan (:mod:`agent.readpool`); ``None``: as
        many as :func:`~agent.readpool.read_ahead_workers` says, 0: none."""
        self.start_fork_server: Callable[[], None] = start_fork_server
        """Called once, during a first walk that has met enough files to read ahead."""
        self._fork_server_started = False
        self._read_ahead: ReadAhead | None = None
        self._listed: dict[str, int] = {}
        """While a full scan walks a store: directory -> how many files it listed there."""
        self._walked_links: set[str] | None = None
        """During a full scan, the paths its walk found to be links (``None``: ask)."""
        self._walk_errors: dict[str, tuple[str, StatKey | None]] = {}
        """Paths a walk could not take (a link it does not follow: a loop, out of the roots),
        by the error's code and the path's identity when it was logged: logged again only when
        either changes, as an unchanged unreadable file is (review 12: every event in a
        directory re-logged its loops)."""
        self._catalogue: Any = None
        self._catalogue_source: tuple[str, str] | bool | None = False
        """The catalogue read-ahead workers classify with: its text and source, ``None`` for
        the embedded one, ``False``: none (they only read)."""
        self._classify_enabled = classify
        # The first scan after start reads every certificate again (the index lives in
        # memory): its findings are counted and logged as one line per kind, not one line per
        # certificate, so a restart does not flood the journal with what it already said.
        self._scanned_once = False
        self._gone_why = ""
        """What a ``gone`` line adds: :data:`FOUND_AT_RECONCILIATION` during the first scan,
        whose walk compares the stores with the read index of the last run."""
        self._read_at_restart: set[str] | None = None
        """During the first scan after a restart (a read index restored): the files it read
        again. What the others said when last read comes from the read index instead."""
        self._shadows: dict[Path, tuple[str, ...]] = {}
        """By store root: :meth:`shadowed` (resolved once, at the first question)."""
        self.configure_policy()

    # ------------------------------------------------------------------ configuration

    def configure_policy(self) -> None:
        if not self._classify_enabled:
            self._catalogue = None
            self._catalogue_source = False
            return
        from policy.catalogue import load_catalogue, parse_catalogue

        path = self.config.policy.catalogue
        self._catalogue = load_catalogue(path)
        # What read-ahead workers parse to classify as this process does: the embedded
        # catalogue, or the file's text if it still parses to what was just loaded (else,
        # edited meanwhile, this process classifies alone until the next reload).
        self._catalogue_source = None
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
                same = parse_catalogue(text, source=str(path)) == self._catalogue
            except Exception:  # (any doubt: no sharing)
                same = False
            self._catalogue_source = (text, str(path)) if same else False

    @property
    def classify_enabled(self) -> bool:
        return self._classify_enabled

    def limits_for(self, store: StoreConfig) -> ReadLimits:
        return ReadLimits(max_size=self.config.agent.max_file_size, root=store.path,
                          allowed_roots=store.follow_links_into)

    @property
    def quiet_s(self) -> float:
        return self.config.agent.quiet_period_ms / 1000

    def _now_within_its_store(self, path: str) -> bool:
        """Whether ``path``, indexed as a link resolving outside its store's allowed roots,
        resolves inside them now (its store's root retargeted, ``follow_links_into`` widened):
        then it is read again. One that still resolves outside (``/etc/ssl/certs`` links into
        ``/usr/share/ca-certificates``) keeps its error and is neither read nor logged again at
        every resync (the re-review of session 15: 1,000 such links, 1,000 warnings a resync)."""
        store = self.store_for(path)
        if store is None:
            return True
        try:
            real = os.path.realpath(path, strict=True)
        except OSError:
            return True  # gone or a loop now: read it and say so
        return within_roots(real, self.limits_for(store))

    def store_for(self, path: str) -> StoreConfig | None:
        """The store a path belongs to: the deepest store root containing it, whatever the
        order of the stores (:func:`agent.config.nested_stores`); ``None`` outside every store,
        and under a path :meth:`shadowed` gives another store."""
        best: StoreConfig | None = None
        for store in self.config.agent.stores:
            root = str(store.path).rstrip("/")
            if (path == root or path.startswith(root + "/")) and (
                    best is None or len(root) > len(str(best.path))):
                best = store
        if best is not None and any(within_store(shadow, path)
                                    for shadow in self.shadowed(best)):
            return None  # another store's, under that store's own path
        return best

    def shadowed(self, store: StoreConfig) -> tuple[str, ...]:
        """Where, in ``store``'s own paths, the root of another store lies that is reached by a
        link from outside it (a store ``/srv/shop`` that is a link to ``/srv/certs/shop``, in
        a store ``/srv/certs``): those files are the other store's, observed under its path,
        and ``store`` leaves them to it (review 11: they were observed twice, once unbound).
        Resolved once; a store root relinked while the daemon runs is seen at its restart."""
        known = self._shadows.get(store.path)
        if known is not None:
            return known
        real = os.path.realpath(store.path)
        found = []
        for other in self.config.agent.stores:
            if other is store or within_store(store.path, str(other.path)):
                continue
            other_real = os.path.realpath(other.path)
            if other_real != real and within_store(real, other_real):
                found.append(str(store.path).rstrip("/") + other_real[len(real.rstrip("/")):])
        self._shadows[store.path] = shadows = tuple(found)
        return shadows

    def stores_inside(self, store: StoreConfig, directory: Path | str) -> list[StoreConfig]:
        """The other stores whose roots lie in ``directory`` (of ``store``): their files are
        theirs, not ``store``'s, so a walk of ``directory`` leaves them out."""
        return [other for other in self.config.agent.stores
                if other is not store and within_store(directory, str(other.path))]

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded configuration. A file whose store is another one now (a store added
        inside the one that read it, or one removed from around it) was read with the old
        store's settings and reported with its binding: it is read again by the next full scan
        (:meth:`_read_moved_again`). A file whose store stays is left to :attr:`rebind`."""
        directories = self.index.directories()
        before = [None if (was := self.store_for(parent)) is None else was.path
                  for parent in directories]
        self.config = config
        self._shadows = {}  # a store added or removed may lie under another's links
        self._reported_since_start = set()
        self._read_moved_again(directories, before)

    def restored(self, former_roots: Collection[str]) -> None:
        """A start with a read index of the last run, whose stores had ``former_roots``: a
        file whose innermost store is another one now (a store added or removed inside
        another while the daemon was stopped) is read again, as after a reload."""
        directories = self.index.directories()
        before = [max((Path(root) for root in former_roots if within_store(root, parent)),
                      key=lambda root: len(str(root)), default=None)
                  for parent in directories]
        self._read_moved_again(directories, before)

    def _read_moved_again(self, directories: Sequence[str],
                          before: Sequence[Path | None]) -> None:
        """Take out of the index the files of ``directories`` whose store's root is no longer
        the one in ``before``: the next full scan reads them with their new store's settings
        (binding, escrow, passwords, followed links) and reports each once; the stores that
        gain them are counted at that scan (:attr:`rehomed_stores`). Asked per directory (a
        file is in a store when its directory is)."""
        for parent, was in zip(directories, before, strict=True):
            now = self.store_for(parent)
            if now is None and was is not None and any(
                    within_store(store.path, parent) for store in self.config.agent.stores):
                # in a store, but another's under its own path now (a store added that links
                # here): observed there, so no longer here
                self._forget(sorted(self.index.names_in(parent)), at=self.clock(),
                             summary=None)
                continue
            if now is None or now.path == was:
                continue  # (out of every store now: forgotten by the next full scan)
            for name in sorted(self.index.names_in(parent)):
                self.sets.forget(name)
                self.escrow.forget(name)
                self.index.remove(name)
            self.rehomed_stores.add(now.path)

    # ------------------------------------------------------------------ events

    def enqueue(self, path: str) -> None:
        """Called from watchdog threads: record the path, nothing else."""
        self.queue.put(path)

    def process_due(self) -> int:
        """Process every path whose quiet period has elapsed; returns how many."""
        if self.inventory_slot is not None:
            self.inventory_slot.serve()
        due = self.queue.take_due(self.quiet_s)
        if not due:
            return 0
        at = self.clock()
        observations: list[Observation] = []
        handled_sets: set[str] = set()
        handled: set[str] = set()
        for position, event in enumerate(due):
            # Between two paths: the watchdog pinged and SIGTERM heard, however long each took
            # (a PKCS#12 may take seconds: vault/bounded.py); what is left is put back, and a
            # restart's scan reads it anyway (the second re-review).
            self.tick()
            if self.stopping():
                for left in due[position:]:
                    self.queue.put(left)
                break
            # The event's path, and the paths the stores show it under through directory links
            # (inotify names a file copied into archive/ex/ by that path, never by the link's).
            for path in (event, *self.links.aliases(event)):
                if path in handled:
                    continue
                handled.add(path)
                try:
                    observations.extend(self._handle_path(path, at=at,
                                                          handled_sets=handled_sets,
                                                          summary=None))
                except AgentError as exc:
                    self.log.error("process-failed", f"{path}: {exc}", path=path)
                except Exception as exc:
                    # A bug in one path must not stop the daemon; it is logged with where it
                    # happened (never the exception's text: agent/bugreport.py).
                    self.log.error("process-failed", f"{path}: unexpected error", path=path,
                                   **bug_fields(exc))
        self.report(observations, at=at)
        return len(due)

    def _handle_path(self, path: str, *, at: datetime, handled_sets: set[str],
                     summary: ScanSummary | None) -> list[Observation]:
        store = self.store_for(path)
        if store is None:
            # An event in an allowed root (certbot's archive/): re-read the store paths that
            # showed that file.
            linked = self.index.linked_from(os.path.realpath(path)) + self.index.linked_from(path)
            for name in linked:
                self.queue.put(name)
            return []
        if not os.path.lexists(path):
            return self.gone(path, at=at, summary=summary)
        directory = os.path.dirname(path)
        root = str(store.path).rstrip("/")
        if path != root and not within_roots(os.path.realpath(directory),
                                             self.limits_for(store)):
            # Below a directory link that now leads out of the allowed roots (an event that
            # was waiting when the link changed): not in the store any more. The link's own
            # event says so, once.
            return self.gone(path, at=at, summary=summary)
        if os.path.isdir(path):
            found = self._directory_changed(store, path, at=at, summary=summary,
                                            handled_sets=handled_sets)
            for inner in self.stores_inside(store, path):
                # moved in with a store inside it: the walk above left that store's files to it
                if inner.path.is_dir():
                    found += self._scan_directory(inner, inner.path, at=at, summary=summary,
                                                  handled_sets=handled_sets)
            return found
        observations: list[Observation] = []
        if path in self.links:
            # A directory link turned into a file, a link to one, or a dangling link: what was
            # seen through it is gone; the path itself is read as a file.
            observations = self._gone_below(path, at=at, summary=summary)
        if self._is_set(directory):
            if directory in handled_sets:
                return observations
            handled_sets.add(directory)
            return observations + self._process_set(store, directory, at=at, summary=summary)
        return observations + self._process_file(store, path, at=at, summary=summary)

    def _directory_changed(self, store: StoreConfig, path: str, *, at: datetime,
                           summary: ScanSummary | None,
                           handled_sets: set[str]) -> list[Observation]:
        """``path`` is a directory now: a real one (created, moved here) or a link to one
        (created, retargeted). It is walked as the walk of the whole store would walk it: a link
        that walk would not follow (out of the allowed roots, a loop) is a per-file error, and
        what was seen below it is gone; otherwise what the walk no longer finds is gone."""
        observations: list[Observation] = []
        if path in self.index:  # a file before: it is a directory now
            observations.extend(self.gone(path, at=at, summary=summary))
        if os.path.islink(path) and path != str(store.path).rstrip("/"):
            refused = self._refused_link(store, path)
            if refused is not None:
                self._walk_error(path, refused.code, refused.message)
                return observations + self._gone_below(path, at=at, summary=summary)
            self.links.add(path, os.path.realpath(path))
        else:
            self.links.forget(path, below=False)  # a link before, perhaps: a directory now
        return observations + self._scan_directory(store, Path(path), at=at, summary=summary,
                                                   handled_sets=handled_sets)

    def _above(self, store: StoreConfig, path: str) -> frozenset[tuple[int, int]]:
        """``(st_dev, st_ino)`` of the directories from the store root down to ``path``'s
        parent: the ancestors the walk of the whole store has when it meets ``path``."""
        root = str(store.path).rstrip("/")
        found: set[tuple[int, int]] = set()
        parent = os.path.dirname(path)
        while len(parent) >= len(root):
            try:
                st = os.stat(parent)
            except OSError:
                break
            found.add((st.st_dev, st.st_ino))
            if parent == root:
                break
            parent = os.path.dirname(parent)
        return frozenset(found)

    def _refused_link(self, store: StoreConfig, path: str) -> FileError | None:
        """Why the walk of the whole store would not follow the directory link ``path``."""
        try:
            st = os.stat(path)
        except OSError:
            return None  # gone meanwhile: the walk of it finds nothing
        return refused_directory_link(path, key=(st.st_dev, st.st_ino),
                                      ancestors=self._above(store, path),
                                      real=os.path.realpath(path),
                                      limits=self.limits_for(store))

    def _gone_below(self, path: str, *, at: datetime,
                    summary: ScanSummary | None) -> list[Observation]:
        """Everything indexed below ``path`` (a directory link that no longer leads there) is
        gone; ``path`` itself is left to its own reading."""
        self.links.forget(path)
        self._forget(self.index.paths_under(path), at=at, summary=summary)
        return []

    def gone(self, path: str, *, at: datetime, summary: ScanSummary | None) -> list[Observation]:
        """``path`` (and everything indexed under it) is no longer there: report it gone."""
        if self.links:
            self.links.forget(path)
        self._forget((path, *self.index.paths_under(path)), at=at, summary=summary)
        directory = os.path.dirname(path)
        if self._is_set(directory):
            # certbot unlinks before it re-links: re-check the rest of the set later.
            for sibling in self.index.paths_under(directory):
                self.queue.put(sibling)
        return []

    def _pending_event(self, path: str, summary: ScanSummary | None) -> bool:
        """Whether ``path``, not there now, has an event waiting for its quiet period: its own
        reading says whether it is gone. certbot replaces a link by ``rm`` then ``ln -s``, one
        file of the set after another: ``fullchain.pem`` is missing for a moment while the set
        is read for ``cert.pem``'s event, and is back before its own event is due (it was
        reported gone, then reported again, at each renewal). A one-shot scan (``summary``)
        has no events to wait for."""
        return summary is None and path in self.queue

    def _forget(self, names: Sequence[str], *, at: datetime, summary: ScanSummary | None) -> None:
        """Take ``names`` out of the index; report gone those that held certificates."""
        for name in names:
            if name not in self.index:
                continue
            self.sets.paired.discard(name)
            self.escrow.forget(name)
            previous = self.index.remove(name)
            if previous is not None and previous.certificates:
                self._report_gone(name, at=at, why=self._gone_why,
                                  certificates=len(previous.certificates))
                if summary is not None:
                    summary.gone += 1

    # ------------------------------------------------------------------ reading

    def _read(self, store: StoreConfig, path: str) -> FileResult:
        self.files_read += 1
        if self._read_ahead is not None:
            ahead = self._read_ahead.take(path)
            if ahead is not None:
                return ahead
        return self.reader(Path(path), limits=self.limits_for(store),
                           passwords=self.escrow.passwords(store),
                           keep_key_pem=store.escrow, keep_der=store.escrow)

    def _is_set(self, directory: str) -> bool:
        if self.store_for(directory) is None:
            return False

        known = getattr(self.index, "has_keys", None)  # the read index knows, from memory
        if callable(known):
            return self.sets.is_set(directory, has_keys=known)

        def has_keys(path: str) -> bool:
            cached = self.index.get(path)
            return cached is not None and bool(cached.keys)

        return self.sets.is_set(directory, has_keys=has_keys)

    def _process_file(self, store: StoreConfig, path: str, *, at: datetime,
                      summary: ScanSummary | None) -> list[Observation]:
        # (a file not in the index is read whatever its identity: the reader stats it)
        key = stat_key(path) if path in self.index else None
        if self.index.unchanged(path, key):
            # (the result is read back from the read index only when a summary needs it)
            if summary is None:
                return []
            cached = self.index.get(path)
            if cached is not None:
                self._summarise(store, cached, key_lookup([cached]), summary)
                return []
            # its stored result did not check out and was discarded: read the file now, or
            # the reconciliation after this scan takes it for gone
        result = self._read(store, path)
        attempts_by_path = self.sets.attempts
        if result.error is not None and result.error.code in _TRANSIENT:
            if not os.path.lexists(path):
                attempts_by_path.pop(path, None)
                return self.gone(path, at=at, summary=summary)
            attempts = attempts_by_path.get(path, 0) + 1
            if attempts < MAX_SET_ATTEMPTS and summary is None:
                # Replaced while we read it: read the new one after the quiet period.
                attempts_by_path[path] = attempts
                self.queue.put(path)
                return []
            # Still there and still unreadable (a dangling link): a per-file error.
        attempts_by_path.pop(path, None)
        return self._accept(store, [result], at=at, summary=summary)

    def _process_set(self, store: StoreConfig, directory: str, *, at: datetime,
                     summary: ScanSummary | None) -> list[Observation]:
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            # Removed (or replaced by a file) since it was seen: what was indexed there is
            # gone. Every later step tolerates its entry vanishing the same way.
            names = []
        except OSError as exc:  # unreadable now: say so, keep what is known
            self.log.warning("file-error", f"{directory}: cannot list the directory: "
                             f"{exc.strerror or type(exc).__name__}", path=directory,
                             code="unreadable")
            return []
        paths = [os.path.join(directory, n) for n in names
                 if not os.path.isdir(os.path.join(directory, n))]
        results: list[FileResult] = []
        changed = False
        attempts_by_dir = self.sets.attempts
        for path in paths:
            key = stat_key(path)
            cached = self.index.get(path)
            if cached is not None and self.index.unchanged(path, key):
                results.append(cached)
                continue
            changed = True
            self.tick()  # a set's files may each take seconds (a PKCS#12: vault/bounded.py)
            result = self._read(store, path)
            if (result.error is not None and result.error.code in _TRANSIENT
                    and not (result.error.code == "not-found" and os.path.islink(path))
                    and attempts_by_dir.get(directory, 0) < MAX_SET_ATTEMPTS):
                # (a dangling link is there, and stays: not a file that vanished mid-read)
                return self._retry_set(store, directory,
                                       f"{os.path.basename(path)} vanished while the set was "
                                       "read", at=at, summary=summary)
            results.append(result)
        for gone in set(self.index.paths_under(directory)) - set(paths):
            if os.path.dirname(gone) == directory and not self._pending_event(gone, summary):
                self.gone(gone, at=at, summary=summary)
        if not changed:
            if summary is not None:
                for result in results:
                    self._summarise(store, result, key_lookup(results), summary)
            return []
        mismatched = self.sets.mismatched_leaves(results)
        attempts = attempts_by_dir.get(directory, 0)
        if mismatched and attempts < MAX_SET_ATTEMPTS:
            return self._retry_set(store, directory,
                                   f"key and certificate disagree ({', '.join(mismatched)})",
                                   at=at, summary=summary)
        if mismatched:
            # critical, as the rows' key-mismatch finding (agent/rows.py): the server would
            # present a certificate its key cannot serve
            self.log.error("key-mismatch",
                           f"{directory}: private key and certificate still disagree after "
                           f"{attempts} quiet periods; reporting as mismatched",
                           path=directory, files=",".join(mismatched), severity="critical")
        attempts_by_dir.pop(directory, None)
        return self._accept(store, results, at=at, summary=summary)

    def _retry_set(self, store: StoreConfig, directory: str, reason: str, *, at: datetime,
                   summary: ScanSummary | None) -> list[Observation]:
        attempts = self.sets.attempts.get(directory, 0) + 1
        self.sets.attempts[directory] = attempts
        self.log.info("set-unsettled", f"{directory}: {reason}; re-reading after the quiet "
                      f"period (attempt {attempts})", path=directory, attempt=attempts)
        if summary is not None:
            # A one-shot scan (--once) has no event loop to come back to: wait here.
            self.sleep(self.quiet_s)
            return self._process_set(store, directory, at=at, summary=summary)
        self.queue.put(directory)
        return []

    def _accept(self, store: StoreConfig, results: Sequence[FileResult], *, at: datetime,
                summary: ScanSummary | None) -> list[Observation]:
        """Index, classify, escrow and turn into observations the results of one unit."""
        keys = key_lookup(results)
        observations: list[Observation] = []
        host = self.config.agent.host
        binding = store.binding  # (made once a unit, not once a certificate)
        for result in results:
            path = result.path
            previous = self.index.get(path)
            key = result.stat if result.stat is not None else stat_key(path)
            if self.index.unchanged(path, key) and previous is result:
                if summary is not None:
                    self._summarise(store, result, keys, summary)
                continue
            # Only a link needs tracing back from its target (certbot live/ -> archive/). A
            # full scan's walk said which paths are links; a single change asks.
            walked = self._walked_links
            linked = os.path.islink(path) if walked is None else path in walked
            target = os.path.realpath(path) if linked else path
            escrow_findings = (self.escrow.escrow(store, result, results, host=host)
                               if store.escrow else {})
            # Key material is not kept past its escrow: the index holds no private keys.
            self.index.put(path, key, _without_material(result) if store.escrow else result,
                           target=target)
            self.sets.accepted(result, keys)
            if result.error is not None and result.error.code in _UNFOLLOWED:
                # a link that cannot be stat'd is read again with its unit at every event:
                # said once, as when the walk meets it (the re-review)
                self._walk_error(path, result.error.code, result.error.message)
            elif result.error is not None:
                self.log.warning("file-error", f"{path}: {result.error.message}",
                                 path=path, code=result.error.code)
            for error in result.cert_errors:
                self.log.warning("certificate-error", f"{path}: {error.message}", path=path,
                                 code=error.code, index=error.index)
            if summary is not None:
                # the rows are made after the scan, a directory at a time (as scan makes them)
                summary.collect(store, _without_material(result), extra=escrow_findings,
                                previous={r.index: old for r in result.certificates
                                          if (old := _predecessor(previous, r)) is not None})
            if previous is not None and len(previous.certificates) > len(result.certificates):
                # Fewer certificates than before (or none: the file turned to garbage): the
                # ledger forgets the place, and what is still there is reported afresh below.
                self.writer.submit(partial(_gone_op, host=host, location=path, at=at))
            if self._reported_since_start is not None:
                self._reported_since_start.add(path)
            placed_among = self._directory_unit(result, results)
            # Classified by the worker that read it ahead, as _row would here: alone in its
            # unit, no predecessor, no escrow findings, at the same instant.
            ahead = self._read_ahead
            # (kinds only: usable while the finding log only counts, as it did at the start)
            warned = (ahead.warnings(result) if ahead is not None and ahead.job is not None
                      and ahead.job.at == at and previous is None and not escrow_findings
                      and len(placed_among) == 1
                      and (not ahead.job.kinds_only or self.findings.counts_kinds_only)
                      else None)
            problems: list[Problem] = []
            for n, record in enumerate(result.certificates):
                # no key in the file nor in its unit: nothing to pair with (pair_key's answer)
                matches = (None if not result.keys and not keys
                           else self._matches(record, result, keys))
                observations.append(Observation(
                    facts=record.facts, host=host, location=path,
                    index=record.index, observed_at_utc=at, binding=binding,
                    key_matches=matches))
                if warned is not None:
                    found = warned[n]
                else:
                    seen = self._row(store, record, result, placed_among, at=at,
                                     previous=_predecessor(previous, record),
                                     extra=tuple(escrow_findings.get(record.index, ())))
                    if seen is None:
                        continue
                    found = warnings_of(seen)
                self._count_warnings(record, found, problems)
            problems.extend(self._log_file_findings(path, result))
            if problems:
                # kept by the read index, so that a restart that reads nothing again can say
                # what is still wrong (agent/readindex.py)
                self.index.set_problems(path, tuple(problems))
            if self._read_at_restart is not None:
                self._read_at_restart.add(path)
        return observations

    def _count_warnings(self, record: CertificateRecord, found: Sequence[LoggedWarning],
                        problems: list[Problem]) -> None:
        """A certificate's warnings, counted by the finding log and kept, as
        :class:`~agent.index.Problem` rows, for the read index."""
        self.findings.warnings(record.path, record.facts.sha256, found)
        problems.extend((record.index, record.facts.sha256, *kind) for kind, _, _ in found)

    def _log_file_findings(self, path: str, result: FileResult) -> list[Problem]:
        """Log the warning and critical findings of the file itself (a private key others
        can read); what was logged, as :class:`~agent.index.Problem` rows."""
        for finding in result.findings:
            if finding.severity >= Severity.WARNING:
                # (a 0644 private key is critical: an error, journalctl -p err shows it)
                self.log.log(level_of(finding.severity), "finding",
                             f"{path}: {finding.message}", path=path, code=finding.code,
                             clause=finding.clause, severity=SEVERITY_TEXT[finding.severity])
        return _file_problems(result)

    def _summarise(self, store: StoreConfig, result: FileResult, keys: set[str],
                   summary: ScanSummary) -> None:
        """An unchanged file, for the summary: its rows are made with the others'
        (:meth:`_summary_rows`)."""
        del keys  # paired among the whole directory there
        summary.collect(store, result)

    def _summary_rows(self, summary: ScanSummary, *, at: datetime) -> None:
        """The summary's rows, made as ``certescrow scan`` makes them (one row model, issue
        11): every file the scan accounted for, a directory at a time, through
        :func:`agent.report.classify_directory` (placement among the directory, key pairing
        with its keys, key file rows, errors, skipped files)."""
        from .report import CertificateRow as Row
        from .report import FileRow, classify_directory, group_by_directory, urgency_key

        by_path = summary.read
        results = group_by_directory(result for _, result in by_path.values())
        batches: list[list[FileResult]] = []
        for result in results:
            if batches and (os.path.dirname(batches[-1][0].path) == os.path.dirname(result.path)
                            and by_path[batches[-1][0].path][0] is by_path[result.path][0]):
                batches[-1].append(result)
            else:
                batches.append([result])
        items: list[Any] = []
        for batch in batches:
            store = by_path[batch[0].path][0]

            def classify(record: CertificateRecord, store: StoreConfig = store) -> Any:
                return self._classify(store, record, at=at,
                                      previous=summary.previous.get((record.path, record.index)))

            items.extend(classify_directory(
                batch, classify=classify, at=at, windows=self.config.agent.windows,
                extra=lambda r: summary.extra.get((r.path, r.index), ()),
                store=str(store.path)))
        for _, item in sorted(enumerate(items), key=lambda x: urgency_key(x[1], x[0])):
            if isinstance(item, Row):
                summary.certificates.append(item)
            elif isinstance(item, FileRow):
                summary.key_files.append(item)
            elif isinstance(item, FileError):
                summary.errors.append(item)
            else:
                summary.skipped.append(item)

    def _directory_unit(self, result: FileResult,
                        unit: Sequence[FileResult]) -> Sequence[FileResult]:
        """``unit`` and, when it is one changed file, the other files of its directory that the
        index holds: a row logged for ``cert.pem`` alone is placed as ``scan`` places it, with
        ``chain.pem`` and the key beside it (issue 11: an expired intermediate is a finding on
        the leaf's row). A directory of more than :data:`MAX_PLACEMENT_SIBLINGS` entries (a
        trust store) places the file alone rather than reading the index back per change."""
        if len(unit) != 1:
            return unit
        directory = parent_of(result.path)
        if self._listed.get(directory, 0) > MAX_PLACEMENT_SIBLINGS:
            # A full scan listed it: a trust store, placed alone without listing it again
            # for each of its files.
            return unit
        try:
            with os.scandir(directory) as entries:
                names = [entry.name for entry in
                         itertools.islice(entries, MAX_PLACEMENT_SIBLINGS + 1)]
        except OSError:  # the directory went away meanwhile: the file stands alone
            return unit
        if len(names) > MAX_PLACEMENT_SIBLINGS:
            return unit
        siblings = [sibling for name in sorted(names)
                    if (path := os.path.join(directory, name)) != result.path
                    and (sibling := self.index.get(path)) is not None]
        return (result, *siblings)

    @staticmethod
    def _matches(record: CertificateRecord, result: FileResult, keys: set[str]) -> bool | None:
        """Whether a private key beside the certificate matches it (the one rule,
        :func:`agent.rows.pair_key`); ``None`` when no key is there or it is not expected to."""
        role = Role.INTERMEDIATE if record.facts.is_ca else Role.LEAF
        return pair_key(record, role=role, file_keys=result.keys, dir_keys=(),
                        elsewhere=frozenset(keys)).matches

    def _row(self, store: StoreConfig, record: CertificateRecord, result: FileResult,
             unit: Sequence[FileResult], *, at: datetime,
             previous: CertificateFacts | None = None, extra: tuple[Finding, ...] = (),
             elsewhere: set[str] | None = None) -> CertificateRow | None:
        """The certificate as the one row model (agent/rows.py) sees it among ``unit`` (its
        set, or its file): role, key pairing, host findings. ``None`` when it cannot be
        classified (logged)."""
        classification = self._classify(store, record, at=at, previous=previous)
        if classification is None:
            return None
        placement = place_certificates(unit).get((record.path, record.index))
        if placement is None:  # pragma: no cover - the record is one of the unit's
            placement = place_certificates((result,))[(record.path, record.index)]
        pairing = pair_key(record, role=placement.role, file_keys=result.keys,
                           dir_keys=[k for r in unit for k in r.keys],
                           elsewhere=frozenset(elsewhere or ()))
        return certificate_row(record, classification, placement=placement, pairing=pairing,
                               at=at, windows=self.config.agent.windows, extra_findings=extra,
                               store=str(store.path))

    def _classify(self, store: StoreConfig, record: CertificateRecord, *, at: datetime,
                  previous: CertificateFacts | None = None) -> Any:
        """The policy core's classification; ``previous`` is the certificate this one replaced
        at the same place (a renewal: the Art.3 proviso's CA transition allowance needs it)."""
        if self._catalogue is None:
            return None
        from policy.classification import classify_certificate

        try:
            return classify_certificate(record.facts, self._catalogue, binding=store.binding,
                                        at=at, previous=previous,
                                        settings=self.config.policy.settings)
        except Exception as exc:
            self.log.error("classify-failed", f"{record.path}#{record.index}: cannot classify",
                           path=record.path, **bug_fields(exc))
            return None

    # ------------------------------------------------------------------ scans

    def _walk_error(self, path: str, code: str, message: str) -> None:
        """Log a path the walk could not take, unless it was logged as it is (see
        :attr:`_walk_errors`)."""
        identity = stat_key(path, follow=False)
        if self._walk_errors.get(path) == (code, identity) and identity is not None:
            return
        self._walk_errors[path] = (code, identity)
        self.log.warning("file-error", f"{path}: {message}", path=path, code=code)

    def _scan_directory(self, store: StoreConfig, directory: Path, *, at: datetime,
                        summary: ScanSummary | None,
                        handled_sets: set[str]) -> list[Observation]:
        try:
            return self._scan_directory_once(store, directory, at=at, summary=summary,
                                             handled_sets=handled_sets)
        finally:
            self._listed = {}
            self._walked_links = None
            if self._read_ahead is not None:
                self._read_ahead.close()
                self.files_read_ahead += self._read_ahead.read
                self._read_ahead = None

    def _read_ahead_workers(self, store: StoreConfig) -> int:
        """How many workers read ahead in ``store`` (0: none; never in an escrow store, whose
        key material stays in this process, nor with a reader of the caller's own)."""
        from .reader import read_file

        if store.escrow or self.reader is not read_file:
            return 0
        return (read_ahead_workers() if self.read_ahead_workers is None
                else self.read_ahead_workers)

    def _start_read_ahead(self, store: StoreConfig, by_dir: dict[str, list[str]],
                          sets: set[str], *, at: datetime) -> None:
        """Have worker processes read, ahead of this scan, the files it will read (not for
        escrow stores, whose key material stays in this process), and classify those that
        are placed alone (in a directory too large to place a file among): the warnings the
        first scan counts come back with them (:class:`~agent.readpool.RowJob`)."""
        workers = self._read_ahead_workers(store)
        if workers < 1:
            return
        # Files not in the index (a file that changed is read here when the scan meets it).
        index = self.index
        paths = [name for parent, names in by_dir.items() if parent not in sets
                 for name in names if name not in index]
        if len(paths) >= READ_AHEAD_MIN_FILES:
            job = None
            source = self._catalogue_source
            if self._catalogue is not None and source is not False:
                job = RowJob(catalogue=source if isinstance(source, tuple) else None,
                             binding=store.binding, settings=self.config.policy.settings,
                             windows=self.config.agent.windows, at=at, store=str(store.path),
                             kinds_only=self.findings.counts_kinds_only)
            alone = {parent for parent, names in by_dir.items()
                     if len(names) > MAX_PLACEMENT_SIBLINGS}
            self._read_ahead = ReadAhead(paths, limits=self.limits_for(store),
                                         passwords=self.escrow.passwords(store),
                                         workers=workers, job=job,
                                         classify=lambda path: parent_of(path) in alone)

    def _scan_directory_once(self, store: StoreConfig, directory: Path, *, at: datetime,
                             summary: ScanSummary | None,
                             handled_sets: set[str]) -> list[Observation]:
        observations: list[Observation] = []
        erred: set[str] = set()
        """Paths the walk could not take (a per-file error): there, so not gone."""
        unfollowed: set[str] = set()
        """Of which links it did not follow: whatever was seen below one is gone."""
        by_dir: dict[str, list[str]] = {}
        links: set[str] = set()
        # The directory links below ``directory`` are learnt again from this walk.
        known_links = self.links.under(str(directory))
        followed: set[str] = set()

        def on_directory_link(link: str, target: str) -> None:
            followed.add(link)
            self.links.add(link, target)

        # The walk yields a directory's files one after another: the parent is worked out
        # once per directory (``cut``: where the last "/" of its paths is; -2: none).
        names: list[str] = []
        parent, cut = "", -2
        # A first start (nothing indexed) starts the workers' fork server once the walk has
        # met enough files to read ahead: its preload (a fresh interpreter importing the
        # reader, ~0.4 s) then runs beside the rest of the walk instead of in front of the
        # first batch (agent/readpool.py).
        met, warm_at = 0, (READ_AHEAD_MIN_FILES
                           if not (self._fork_server_started or len(self.index))
                           and self._read_ahead_workers(store) > 0 else -1)
        walk = self.lister(directory, limits=self.limits_for(store),
                           on_directory_link=on_directory_link,
                           above=self._above(store, str(directory))
                           if str(directory).rstrip("/") != str(store.path).rstrip("/")
                           else frozenset())
        # Stores nested in this one are walked as themselves (their binding): each file is
        # observed once, under its innermost store, whatever the order of the stores.
        inner = (*(str(s.path) for s in self.stores_inside(store, directory)),
                 *self.shadowed(store))

        def elsewhere(path: str) -> bool:
            return any(within_store(root, path) for root in inner)

        for item in walk:
            if type(item) is not str:
                if isinstance(item, FileError):
                    if inner and elsewhere(item.path):
                        continue
                    if item.code in _TRANSIENT and not os.path.lexists(item.path):
                        continue  # vanished while the walk reached it: gone, below
                    erred.add(item.path)
                    if item.code in _UNFOLLOWED:
                        unfollowed.add(item.path)
                    if summary is not None:
                        summary.errors.append(item)
                    self._walk_error(item.path, item.code, item.message)
                    continue
                if type(item) is LinkedPath:
                    links.add(str(item))
                item = str(item)
            if inner and elsewhere(item):
                continue
            met += 1
            if met == warm_at:
                self._fork_server_started = True
                self.start_fork_server()
            if item.rfind("/") != cut or not item.startswith(parent):
                parent = parent_of(item)
                names = by_dir.setdefault(parent, [])
                cut = len(parent) if parent and not parent.endswith("/") else -2
            names.append(item)
        del names
        root = str(directory).rstrip("/") + "/"
        for path in [p for p in self._walk_errors if p.startswith(root) and p not in erred]:
            del self._walk_errors[path]  # taken by this walk: logged again if it errs again
        kept = erred - unfollowed  # (a directory that could not be listed keeps what it had)
        for link in known_links:
            if link not in followed and not _below_any(link, kept):
                self.links.forget(link, below=False)
        self._listed = {parent: len(names) for parent, names in by_dir.items()}
        self._walked_links = links
        sets = {parent for parent in by_dir if self._is_set(parent)}
        self._start_read_ahead(store, by_dir, sets, at=at)
        index = self.index
        unseen: list[str] = []
        """Indexed paths the walk did not find (gone, unless they are there after all)."""
        for parent in list(by_dir):
            # Each directory's list is let go once done: the walk's 100,000 path strings are
            # not all held to the end of a first scan beside the index's own.
            listed = by_dir.pop(parent)
            self.tick()
            if self.stopping():
                # SIGTERM during a long scan: stop now; nothing unseen is taken for gone.
                return observations
            if parent in sets:
                if parent not in handled_sets:
                    handled_sets.add(parent)
                    observations.extend(self._process_set(store, parent, at=at,
                                                          summary=summary))
            else:
                # A restart's usual file: one stat, compared with the index, nothing else
                # (with a summary to fill, --once, every file goes through _process_file).
                for name in index.changed_among(listed) if summary is None else listed:
                    self.tick()
                    if self.stopping():
                        return observations
                    observations.extend(self._process_file(store, name, at=at,
                                                           summary=summary))
            unseen.extend(index.names_in(parent).difference(listed, erred))
            if len(observations) >= REPORT_BATCH:
                self.report(observations, at=at)
                observations = []
        top = str(directory).rstrip("/")
        prefix = top + "/"
        walked = self._listed
        for parent in index.directories():
            if parent not in walked and (parent == top or parent.startswith(prefix)) \
                    and not (inner and elsewhere(parent)):
                unseen.extend(index.names_in(parent).difference(erred))
        for name in sorted(unseen):
            # (below a link the walk no longer follows, a name may well exist: in the place
            # the link leads to now, which is not the store's)
            if name in index and (not os.path.lexists(name) or _below_any(name, unfollowed)) \
                    and not self._pending_event(name, summary):
                observations.extend(self.gone(name, at=at, summary=summary))
        return observations

    def full_scan(self, *, collect: bool = False) -> ScanSummary:
        """Walk every store; read only what changed since the last read; report; mark what is
        no longer there as gone. ``collect`` fills the summary with every certificate."""
        self._scan_reports = _ScanReports()
        if not self._scanned_once:
            # What the first walk finds gone went while the daemon was not watching.
            self._gone_why = FOUND_AT_RECONCILIATION
        try:
            return self._full_scan(collect=collect)
        finally:
            self._gone_why = ""
            self._scan_reports = None  # (an exception: later reports are logged one by one)
            if self.inventory_slot is not None:
                self.inventory_slot.serve()  # a heartbeat that asked during the scan

    def _check_contracts(self) -> None:
        """A store bound to a contract the ledger does not hold (``contract = "C-1O01"``) puts
        its certificates in no contract listing: said once, at the first full scan and again
        when the answer changes, not every resync."""
        named = tuple(sorted({s.contract for s in self.config.agent.stores
                              if s.contract is not None}))
        if not named:
            self._unknown_contracts = ()
            return

        def said(unknown: tuple[str, ...]) -> None:
            if unknown == self._unknown_contracts:
                return
            self._unknown_contracts = unknown
            for contract in unknown:
                stores = ", ".join(str(s.path) for s in self.config.agent.stores
                                   if s.contract == contract)
                self.log.warning(
                    "contract-unknown",
                    f"{stores}: bound to contract {contract}, which the ledger does not hold: "
                    "its certificates are in no contract listing (`certescrow contract "
                    f"unbound` lists them) until the contract is added (`certescrow contract "
                    f"add {contract} ...`) or the store's `contract` corrected",
                    contract=contract, stores=stores)

        self.writer.submit(partial(_unknown_contracts_op, named=named), on_done=said)

    def _full_scan(self, *, collect: bool) -> ScanSummary:
        at = self.clock()
        summary = ScanSummary()
        # A store root that is a link may point elsewhere since the last scan (`ln -sfn`, while
        # running or stopped): its resolution is taken afresh here, once per scan, not per
        # file; and an error that answered for the old target is not kept for the new one.
        forget_resolved_roots()
        for name in self.index.root_bound():
            if self._now_within_its_store(name):
                self.index.remove(name)
        self._check_contracts()
        handled: set[str] = set()
        read_before = self.files_read
        if not self._scanned_once:
            restored = isinstance(self.index, PersistentIndex) and self.index.loaded > 0
            self.findings.start_counting("restart" if restored else "initial")
            self._read_at_restart = set() if restored else None
        escrowed_before = len(self.escrow.records)
        added, self.added_stores = self.added_stores, set()
        rehomed, self.rehomed_stores = self.rehomed_stores, set()
        for store in self.config.agent.stores:
            if self.stopping():
                break
            # (at the first scan every store is counted already, together)
            first_of_store = self._scanned_once and store.path in added
            counted = self._scanned_once and store.path in rehomed and not first_of_store
            if not store.path.is_dir():
                summary.missing_stores.append(str(store.path))
                self.log.warning("store-missing", f"{store.path}: store root does not exist "
                                 "(or is not a directory); nothing to scan there",
                                 path=str(store.path))
                for name in self.index.paths_under(store.path):
                    self.gone(name, at=at, summary=summary)
                self.links.forget(str(store.path))
                continue
            if first_of_store or counted:
                # (a store that takes over files another store read: what they say under its
                # settings is news, said as a first scan says it, for that store)
                self.findings.start_counting("initial" if first_of_store else "reload",
                                             store=str(store.path))
            try:
                observations = self._scan_directory(store, store.path, at=at,
                                                    summary=summary if collect else None,
                                                    handled_sets=handled)
            finally:
                if first_of_store or counted:
                    self.findings.flush()  # its lines now, as a start says them after its scan
            self.report(observations, at=at)
        # Forget stores that are no longer configured (after a reload): asked per directory
        # (a file is in a store when its directory is), then per file where it is not.
        for parent in self.index.directories():
            if self.store_for(parent) is None:
                for name in sorted(self.index.names_in(parent)):
                    if self.store_for(name) is None:
                        self.index.remove(name)
        for link in self.links.under("/"):
            if self.store_for(link) is None:
                self.links.forget(link)
        if not self.stopping():
            if not (isinstance(self.rebind, set) and self.rebind):
                # No rebound certificate can join the first scan's count: its lines are
                # logged now, and its tally (~19 MiB at 100,000 certificates) is gone before
                # the ledger's open sightings come in (~44 MiB while it builds them).
                self._flush_findings()
            self.reconcile(at=at, summary=summary)
        if collect:
            self._summary_rows(summary, at=at)
            # each file once, however often it was met (a set re-read while it settled)
            summary.files = len(summary.read)
        self._flush_findings()
        self._scanned_once = True
        summary.escrowed = self.escrow.records[escrowed_before:]
        summary.files_read = self.files_read - read_before
        count = len(self.index)
        self.log.info("scanned", f"full scan done: {count} file(s) indexed, "
                      f"{summary.files_read} read", files=count, read=summary.files_read)
        self._log_scan_reports()
        return summary

    def _flush_findings(self) -> None:
        """The first scan's lines per kind. After a restart, whose unchanged files were not
        read again (so said nothing), they are counted from what every indexed file said when
        it was last read, kept by the read index (the files read again included: written
        first), and each file's own findings (a 0644 key) not said by this scan are said
        again, as the first scan says them: what is still wrong is in the journal after every
        start, at the cost of one pass over one row per file that said something, not of
        reading every file."""
        read_again, self._read_at_restart = self._read_at_restart, None
        if read_again is None or not self.findings.counting:
            self.findings.flush()
            return
        self.findings.stop_counting()
        index = cast(PersistentIndex, self.index)
        # What the files read again said is counted from the file too: written once the
        # ledger has their reports (a ledger slower than its patience leaves them to be
        # counted as they were last written, if at all).
        self.seal_index()
        self.writer.wait_idle(self.ledger_patience_s)
        index.flush()
        kinds, own = index.file.said(indexed=index.__contains__)
        self.findings.log_kinds("restart", kinds)
        for path in own:
            if path in read_again:
                continue
            result = index.get(path)
            if result is not None:
                self._log_file_findings(path, result)

    def _log_scan_reports(self) -> None:
        """One line for what the scan reported, once the ledger took it all (its writes are
        applied in order, so after the scan's last): a scan reports per store and per
        :data:`REPORT_BATCH`, and one line per batch read as several reports."""
        tally, self._scan_reports = self._scan_reports, None
        if tally is None or tally.batches == 0:
            return

        def said() -> None:
            _log_reported(self.log, tally.observations, recorded=tally.recorded,
                          refused=tally.refused, queued=tally.queued)

        self.writer.when_written(said)

    def reconcile(self, *, at: datetime, summary: ScanSummary | None = None) -> Reconciliation:
        """Make the ledger's open sightings for this host and these stores say what the index
        says is there now (:mod:`agent.reconcile`): what went while the daemon was not
        watching is reported gone, a shrunk file is reported afresh, and certificates the
        ledger does not show (a ledger replaced under the daemon) are reported again."""
        nothing = Reconciliation(gone=(), refresh=(), report=())
        if getattr(self.writer.intake, "open_sightings", None) is None:
            # An intake that cannot list what it holds (the fleet outbox): nothing to compare,
            # but a store whose binding changed (a reload, the desk's assignment) is reported
            # again under the new one, which the ledger records as news.
            roots, self.rebind = self.rebind, False
            fresh, self._reported_since_start = self._reported_since_start, None
            if isinstance(roots, set) and roots:
                rebound = [name for root in sorted(roots) for name in self.index.paths_under(root)
                           if fresh is None or name not in fresh]
                self.report([o for name in rebound for o in self._observations_of(name, at=at)],
                            at=at)
                self._log_rebound(rebound, at=at)
            return nothing
        host = self.config.agent.host
        # The ledger's answer is used only if nothing was queued after the question (else it
        # could miss what was queued since); a slow answer is collected by a later call, so a
        # store large enough to need longer than the patience is still reconciled.
        op = self._sightings
        if op is None or self.writer.submitted_after(op):
            op = self._sightings = self.writer.request(
                lambda intake: list(cast(SightingSource, intake).open_sightings(host)))
        answered, rows = self.writer.answer(op, timeout=self.ledger_patience_s)
        if not answered or rows is None:
            self.reconcile_due = True  # the ledger is busy or faulty: the loop tries again
            return nothing
        self._sightings = None
        self.reconcile_due = False
        current = certificate_ids(self.index)  # from memory: no result is read back
        attempts = self.sets.attempts

        def pending(location: str) -> bool:
            return (location in self.queue or location in attempts
                    or os.path.dirname(location) in attempts)

        rebind_roots, fresh = self.rebind, self._reported_since_start

        def rebind(location: str) -> bool:
            if fresh is not None and location in fresh:
                return False  # reported since with the binding it has now
            if rebind_roots is True:
                return True
            store = self.store_for(location)
            return store is not None and rebind_roots is not False and store.path in rebind_roots

        may_rebind = rebind_roots is True or (isinstance(rebind_roots, set) and bool(rebind_roots))
        plan = plan_reconciliation(rows, current=current,
                                   current_rows=certificate_rows(self.index),
                                   in_scope=lambda loc: self.store_for(loc) is not None,
                                   pending=pending, rebind=rebind if may_rebind else None)
        del rows
        op.result.clear()  # the ledger's 100,000 rows: freed now, not at the next question
        relog = isinstance(rebind_roots, set) and bool(plan.rebind)
        self.rebind = False
        self._reported_since_start = None
        if plan:
            observations: list[Observation] = []
            for location in plan.gone:
                self._report_gone(location, at=at, why=FOUND_AT_RECONCILIATION)
                if summary is not None:
                    summary.gone += 1
            for location in plan.refresh:
                self.writer.submit(partial(_gone_op, host=host, location=location, at=at))
            for location in (*plan.refresh, *plan.report, *plan.rebind):
                observations.extend(self._observations_of(location, at=at))
            self.report(observations, at=at)
            if relog:
                self._log_rebound(plan.rebind, at=at)
        # Said after every reconciliation, nothing to do included: an operator reads that the
        # ledger and the stores agree, rather than guess from a missing line whether the
        # comparison ran (it waits for a busy ledger: reconcile_due).
        self.log.info("reconciled", f"ledger reconciled with the stores: {len(plan.gone)} "
                      f"gone, {len(plan.refresh)} shrunk, {len(plan.report)} re-reported, "
                      f"{len(plan.rebind)} re-checked for their binding",
                      gone=len(plan.gone), shrunk=len(plan.refresh), reported=len(plan.report),
                      rebind=len(plan.rebind))
        return plan

    def _log_rebound(self, locations: Sequence[str], *, at: datetime) -> None:
        """A reload changed these certificates' binding: what the contract now says of them is
        news (one line per kind, as after a start)."""
        counting = self.findings.counting
        if not counting:  # (at a start, they join the first scan's count)
            self.findings.start_counting("reload")
        for location in locations:
            result = self.index.get(location)
            store = self.store_for(location)
            if result is None or store is None:
                continue
            unit = self._directory_unit(result, (result,))
            problems = _file_problems(result)
            for record in result.certificates:
                row = self._row(store, record, result, unit, at=at)
                if row is not None:
                    self._count_warnings(record, warnings_of(row), problems)
            self.index.set_problems(location, tuple(problems))  # what it says now
        if not counting:
            self.findings.flush()

    @property
    def awaiting_ledger(self) -> bool:
        """A reconciliation asked the ledger and waits for the answer."""
        return self._sightings is not None

    def _observations_of(self, path: str, *, at: datetime) -> list[Observation]:
        """Observations of what the index holds for ``path`` (as :meth:`_accept` made them)."""
        result = self.index.get(path)
        store = self.store_for(path)
        if result is None or store is None:
            return []
        directory = os.path.dirname(path)
        if self._is_set(directory):
            unit = [r for r in (self.index.get(p) for p in self.index.paths_under(directory)
                                if os.path.dirname(p) == directory) if r is not None]
        else:
            unit = [result]
        keys = key_lookup(unit)
        return [Observation(facts=record.facts, host=self.config.agent.host, location=path,
                            index=record.index, observed_at_utc=at, binding=store.binding,
                            key_matches=self._matches(record, result, keys))
                for record in result.certificates]

    def _report_gone(self, location: str, *, at: datetime, why: str,
                     certificates: int = 0) -> None:
        """Report ``location`` gone, in order with every other write, and log its ``gone``
        line with how many certificates were there: the ledger's answer, or what the read
        index held there (``certificates``) when the intake cannot know yet (a fleet agent's
        outbox, whose service records the place later; it answers 0)."""
        host = self.config.agent.host

        def said(count: int) -> None:
            self.log.info("gone", f"{location}: no longer there{why}", path=location,
                          certificates=count or certificates)

        self.writer.submit(partial(_gone_op, host=host, location=location, at=at),
                           on_done=said)

    def report(self, observations: Sequence[Observation], *, at: datetime) -> None:
        """Report in batches of :data:`REPORT_BATCH`, one transaction each, in order with
        every other write (the writer keeps them through ledger faults)."""
        for start in range(0, len(observations), REPORT_BATCH):
            batch = list(observations[start:start + REPORT_BATCH])

            def said(receipt: IntakeReceipt, size: int = len(batch),
                     tally: _ScanReports | None = self._scan_reports) -> None:
                self.reports += size
                # refused: what the ledger cannot evaluate or store (the agent's own finding
                # says why), counted so that a line never says reported for it unseen
                if tally is None:
                    _log_reported(self.log, size, recorded=receipt.recorded,
                                  refused=receipt.refused, queued=receipt.queued)
                    return
                # a full scan's batch: counted into the scan's one line (_log_scan_reports)
                tally.observations += size
                tally.recorded += receipt.recorded
                tally.refused += receipt.refused
                tally.queued = tally.queued or receipt.queued
                _log_reported(self.log, size, recorded=receipt.recorded,
                              refused=receipt.refused, queued=receipt.queued,
                              level=logging.DEBUG)

            if self._scan_reports is not None:
                self._scan_reports.batches += 1

            def parts(batch: list[Observation] = batch,
                      said: Callable[..., None] = said) -> list[Part]:
                # a batch the ledger refused for its content, again an observation at a time
                return [(partial(_report_op, observations=[one], at=at), one.location,
                         partial(said, size=1)) for one in batch]

            self.writer.submit(partial(_report_op, observations=batch, at=at),
                               observations=len(batch), on_done=said, split=parts,
                               label=batch[0].location if len(batch) == 1 else "")
        self.seal_index()

    def seal_index(self) -> None:
        """What the read index holds so far may be written once the ledger has what was
        submitted to it so far (:attr:`agent.readindex.PersistentIndex.gated`). Called where
        every change to the index has its reports submitted: after each report, and before
        the daemon flushes the index."""
        index = self.index
        if isinstance(index, PersistentIndex) and index.gated:
            self.writer.when_written(partial(index.written_through, index.seal()))
