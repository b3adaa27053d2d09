"""The daemon: the watch loop that keeps the ledger's picture of every certificate store current.

Shape (STYLE.md, "the agent as an adapter"), one module per part:

* :mod:`agent.watch` — watchdog observers whose handlers only enqueue paths;
* :mod:`agent.storesync` — the worker: read -> facts -> policy classification -> report to the
  intake, the index of what was read, full scans, gone files;
* :mod:`agent.certset` — certbot-set consistency (a key and its certificates change one file
  at a time: a set is reported only once it agrees);
* :mod:`agent.escrow` — Art.4(7) escrow into the vault;
* :mod:`agent.findinglog` — per-certificate warnings and the first scan's one line per kind;
* this module — the loop around them: observers started and supervised, events processed once
  quiet, periodic and overflow resyncs, SIGHUP reloads, SIGTERM, and the systemd
  notifications (READY, STATUS, WATCHDOG).

The reader, the intake, the vault, both clocks and the notifier are injected, so most tests
drive :meth:`Daemon.process_due` and :meth:`Daemon.full_scan` with no observer.
"""

from __future__ import annotations

import gc
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import cast

from policy.intake import Intake

from .certset import MAX_SET_ATTEMPTS, key_lookup
from .config import Config, StoreConfig, load_config, within_store
from .errors import AgentError, ConfigError
from .escrow import Escrow, EscrowRecord, VaultLike
from .index import FileIndex, parent_of
from .ledgerwriter import LedgerWriter
from .logs import EventLog, configure_logging
from .readindex import PersistentIndex, ReadIndexFile, binding_fingerprint
from .readpool import fork_server
from .reconcile import SightingSource
from .records import FileResult
from .sdnotify import Notifier, watchdog_interval_s
from .storesync import Lister, Reader, StoreSync
from .summary import ScanSummary
from .watch import PathQueue, StoreWatcher

__all__ = [
    "MAX_SET_ATTEMPTS",
    "Daemon",
    "EscrowRecord",
    "ScanSummary",
    "VaultLike",
]

SUPERVISE_EVERY_S = 30.0
"""How often a dead or unstartable observer is restarted."""
MAX_WAIT_S = 600.0
"""How long a call that waits for another process's lock (the vault's) may keep the watchdog
pinged from the side; past this the daemon counts as stuck and systemd may restart it."""
LEDGER_DRAIN_S = 10.0
"""At a stop, how long pending ledger writes may take (inside the unit's TimeoutStopSec=30s);
what is left is caught up by the next start's reconciliation."""


PROGRESS_EVERY_S = 5.0
"""How often a full scan says how far it got."""
_ESCROW_AGAIN = "\0escrow-again"
"""The read index's record of :meth:`Escrow.to_read_again` (JSON), kept with the bindings."""
_VAULT = "\0vault"
"""The read index's record of the vault escrowed into, kept with the stores' bindings (a key no
store path can be: it holds a NUL)."""


def _former_sightings_op(intake: Intake, *, host: str, roots: tuple[str, ...], close: bool,
                         at: datetime) -> int:
    """How many sightings ``host`` has open under ``roots``; with ``close``, each of their
    places is reported gone (one ``certificate-gone`` a place, as a file removed is)."""
    held = [location for location, _, _ in cast(SightingSource, intake).open_sightings(host)
            if any(within_store(root, location) for root in roots)]
    if close:
        for location in sorted(set(held)):
            intake.report_gone(host, location, at=at)
    return len(held)


def _paths_of(text: str | None) -> list[str]:
    """The paths a read index kept under :data:`_ESCROW_AGAIN` (only strings are taken: the
    index is the daemon's own, but its content is checked all the same)."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class Daemon:
    """The watch loop and its parts. Not thread-safe except :meth:`enqueue` (watchdog
    threads) and the ``request_*`` methods (signal handlers)."""

    def __init__(
        self,
        config: Config,
        *,
        intake: Intake,
        clock: Callable[[], datetime],
        config_path: Path | None = None,
        reader: Reader | None = None,
        lister: Lister | None = None,
        vault_factory: Callable[[], VaultLike] | None = None,
        notifier: Notifier | None = None,
        log: EventLog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        classify: bool = True,
        config_loader: Callable[[Path | None], Config] = load_config,
        ledger_path: Path | None = None,
        reopen_intake: Callable[[], Intake] | None = None,
        ledger_stalled_after_s: float | None = None,
        read_index_path: Path | None = None,
        former_host: str | None = None,
        reload_intake: Callable[[Config], None] | None = None,
    ) -> None:
        fork_server()  # before any thread or child can start it (agent.readpool)
        self.config_path = config_path
        self.reload_intake = reload_intake
        """The intake's part of a reload, given the configuration being loaded (a fleet
        client reads its certificate, key and CA again): it raises, having changed nothing,
        for what it cannot use, and the reload is refused."""
        self._own_ledger = ledger_path is not None
        """The ledger is this machine's SQLite file (not a PostgreSQL one other machines may
        write too): what its sightings say of this daemon's former host name is this
        daemon's to close (:meth:`_former_host`)."""
        self._close_former = former_host
        """``agent run --former-host``: that host's open sightings under the stores are closed
        at the first full scan, whatever the ledger."""
        self.notifier = notifier if notifier is not None else Notifier("")
        self.log = log if log is not None else EventLog()
        self.monotonic = monotonic
        self.config_loader = config_loader
        self.queue = PathQueue(clock=monotonic)
        self.watcher: StoreWatcher | None = None
        self.escrow = Escrow(vault_factory=vault_factory, log=self.log)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._resync = threading.Event()
        self._ping_every = watchdog_interval_s()
        if ledger_stalled_after_s is None:
            # "Locked for longer than the watchdog interval" is the fault worth an error line.
            ledger_stalled_after_s = (2 * self._ping_every if self._ping_every is not None
                                      else 60.0)
        self.writer = LedgerWriter(intake, log=self.log, path=ledger_path, reopen=reopen_intake,
                                   stalled_after_s=ledger_stalled_after_s, monotonic=monotonic)
        self.writer.on_wait = self.tick  # a scan waiting for the ledger is not stuck
        self.sync = StoreSync(config, intake=self.writer, clock=clock, escrow=self.escrow,
                              log=self.log, queue=self.queue, reader=reader, lister=lister,
                              sleep=sleep, classify=classify, tick=self.tick,
                              stopping=self._stop.is_set)
        if self._ping_every is not None:
            # A ledger read may hold up the loop this long: well inside one ping interval.
            self.sync.ledger_patience_s = min(1.0, self._ping_every / 4)
        self._next_ping = monotonic()
        self._next_progress: float | None = None
        """While a full scan runs: when to say next how far it got (:meth:`_progress`)."""
        self._ping_lock = threading.Lock()
        self._waiting_since: float | None = None
        self._pinger: threading.Thread | None = None
        self.escrow.waiting = self.waiting
        self._next_supervise = monotonic()
        self.log_format_override: str | None = None
        self.last_resync = monotonic()
        # What was read, kept across restarts (agent/readindex.py): unchanged files are not
        # read again after a restart.
        self.read_index: PersistentIndex | None = None
        if read_index_path is not None:
            self.read_index = PersistentIndex(ReadIndexFile(
                read_index_path, host=config.agent.host, log=self.log))
            self.sync.index = self.read_index
            self.read_index.on_discard = self.sync.queue.put
            # written only once the ledger (or the fleet outbox) holds what was reported
            self.read_index.gated = True

    # ------------------------------------------------------------------ the parts

    @property
    def config(self) -> Config:
        return self.sync.config

    @property
    def intake(self) -> Intake:
        return self.writer.intake

    @property
    def index(self) -> FileIndex[FileResult]:
        return self.sync.index

    @property
    def reader(self) -> Reader:
        return self.sync.reader

    @property
    def reports(self) -> int:
        return self.sync.reports

    @property
    def escrow_log(self) -> list[EscrowRecord]:
        return self.escrow.records

    def store_for(self, path: str) -> StoreConfig | None:
        return self.sync.store_for(path)

    @property
    def quiet_s(self) -> float:
        return self.sync.quiet_s

    def watch_roots(self) -> list[Path]:
        roots: list[Path] = []
        for store in self.config.agent.stores:
            roots.append(store.path)
            roots.extend(store.follow_links_into)
        return list(dict.fromkeys(roots))

    # ------------------------------------------------------------------ work

    def enqueue(self, path: str) -> None:
        """Called from watchdog threads: record the path, nothing else."""
        self.queue.put(path)

    def process_due(self) -> int:
        """Process every path whose quiet period has elapsed; returns how many."""
        done = self.sync.process_due()
        self._flush_read_index()
        return done

    def _flush_read_index(self) -> None:
        """Write what was read; the stores' bindings only once the ledger has every write
        before them (else a restart re-checks them: agent/readindex.py)."""
        if self.read_index is not None:
            bindings = ({str(s.path): binding_fingerprint(s.binding)
                         for s in self.config.agent.stores}
                        if self.writer.pending() == 0 else None)
            if bindings is not None:
                # Beside the stores' bindings, what the index was written against: the vault
                # escrowed into (the one of the last run that opened it, else the one known).
                mark = self.escrow.vault_mark() or self.read_index.file.bindings.get(_VAULT)
                if mark is not None:
                    bindings[_VAULT] = mark
                again = self.escrow.to_read_again()
                if again:
                    bindings[_ESCROW_AGAIN] = json.dumps(again)
            self.sync.seal_index()
            self.read_index.flush(bindings)

    def _vault_changed(self) -> bool:
        """Whether the vault holds other content than when the read index was last written
        (:meth:`Escrow.vault_mark`); ``False`` when that is not known (no mark yet, or the
        vault cannot be opened: its escrow failures are logged when they happen)."""
        assert self.read_index is not None  # noqa: S101 - the caller checked
        known = self.read_index.file.bindings.get(_VAULT)
        if known is None:
            return False
        try:
            self.escrow.handle()
        except Exception:  # escrow reports the vault's failure itself
            return False
        now = self.escrow.vault_mark()
        return now is not None and now != known

    def full_scan(self, *, collect: bool = False) -> ScanSummary:
        """Walk every store; read only what changed; report; mark what is gone."""
        asked, self._close_former = self._close_former, None
        if asked is not None:
            self._former_host(asked, close=True, why="as --former-host asked", named=True)
        if self.read_index is not None and self.read_index.loaded < 0:
            self.read_index.load()
            former = self.read_index.file.former_host
            if former is not None and former != asked:
                self._former_host(former, close=self._own_ledger,
                                  why=f"the state in {self.read_index.file.path.parent} was "
                                  f"written for {former}")
            if any(store.escrow for store in self.config.agent.stores):
                # The directories of an escrow store that hold a key are read again (a key and
                # the certificates it pairs with share one; an escrow that failed last time is
                # tried again): escrow is idempotent. Nothing else is, unless the vault holds
                # other content than when the index was written (replaced, re-created or
                # restored while the daemon was down: :meth:`_vault_changed`): then every
                # escrow store is, so that a certificate paired with a key elsewhere goes back
                # into it too. A store of 100,000 certificates and one key is not re-read for
                # that key.
                everything = self._vault_changed()
                keyed = {parent_of(name) for name in self.read_index.paths()
                         if self.read_index.has_keys(name)}
                for name in _paths_of(self.read_index.file.bindings.get(_ESCROW_AGAIN)):
                    # escrow failed there, or a certificate waited for a key elsewhere
                    self.read_index.remove(name)
                for name in self.read_index.paths():
                    store = self.sync.store_for(name)
                    if store is None or not store.escrow or not (
                            everything or parent_of(name) in keyed):
                        continue
                    held = self.read_index.summary(name)
                    if held is not None and (held.certificates or held.has_keys):
                        # (a file with neither escrows nothing: an error such as a PKCS#12
                        # too costly to open is not paid for again at every start)
                        self.read_index.remove(name)
            for unit in self.read_index.units_with_keys():
                keys = key_lookup(unit)
                for result in unit:
                    self.sync.sets.accepted(result, keys)
            if self.read_index.loaded > 0:
                # The ledger re-checks only the stores whose binding changed while stopped.
                known = self.read_index.file.bindings
                self.sync.rebind = {s.path for s in self.config.agent.stores
                                    if known.get(str(s.path)) != binding_fingerprint(s.binding)}
                roots = [root for root in known if "\0" not in root]
                if roots:  # (none known: nothing to tell a moved file by)
                    self.sync.restored(roots)
        for name in sorted(self.escrow.failed):
            # an escrow that failed is tried again at every full scan (a reload after `vault
            # init`, the resync): its file is read again
            self.sync.index.remove(name)
        self.escrow.failed.clear()
        self._next_progress = self.monotonic() + PROGRESS_EVERY_S
        try:
            summary = self.sync.full_scan(collect=collect)
        finally:
            self._next_progress = None
        self._flush_read_index()
        self.last_resync = self.monotonic()
        return summary

    def _former_host(self, former: str, *, close: bool, why: str, named: bool = False) -> None:
        """This daemon reported as ``former`` before (``[agent] host`` changed while it was
        stopped): the ledger's open sightings of ``former`` under the configured stores say
        that certificates are on a host nothing reports for any more, and no reconciliation
        asks about them (it asks for this host's). One warning says so; they are closed as
        gone when ``close`` (the daemon owns those places: what is there now is reported under
        the new name by this scan), else left for the operator, who knows whether another
        machine of that name writes the same ledger. ``named``: ``former`` is the operator's
        ``--former-host``, which may be a typo: none of its sightings open is said as such, not
        as "ran as host nosuch … its 0 open sighting(s) … were closed", which read as done."""
        if getattr(self.writer.intake, "open_sightings", None) is None:
            return  # a fleet's service keeps the ledger, and knows a host by its certificate
        host = self.config.agent.host
        roots = tuple(str(store.path) for store in self.config.agent.stores)

        def said(count: int) -> None:
            if named and not count:
                # (the exit status stays 0, as for a store that does not exist: the scan was
                # done, and a second run after a first that closed them finds none either)
                self.log.warning("host-changed", f"--former-host: no open sighting recorded "
                                 f"under host '{former}' under the configured stores: nothing "
                                 "closed; check the name (`certescrow contract unbound` lists "
                                 "hosts)", former_host=former, host=host, sightings=0, closed=0)
                return
            if close:
                outcome = (f"its {count} open sighting(s) under the configured stores were "
                           f"closed as gone; what is there is reported as seen on {host}")
            else:
                outcome = (f"its {count} open sighting(s) under the configured stores are left "
                           f"open, since this ledger may be shared with another machine named "
                           f"{former}; if none is, close them with `certescrow agent run "
                           f"--once --former-host {former}`")
            self.log.warning("host-changed", f"this daemon ran as host {former} and now runs "
                             f"as {host} ({why}): {outcome}", former_host=former, host=host,
                             sightings=count, closed=count if close else 0)

        self.writer.submit(partial(_former_sightings_op, host=former, roots=roots, close=close,
                                   at=self.sync.clock()), on_done=said)

    # ------------------------------------------------------------------ supervision

    def status_line(self) -> str:
        kind = self.watcher.kind if self.watcher is not None else "none"
        return (f"watching {len(self.config.agent.stores)} store(s) with {kind}; "
                f"{len(self.index)} file(s) indexed; {self.reports} observation(s) reported")

    def heartbeat(self) -> bool:
        """Send WATCHDOG=1 only while every observer thread and the ledger writer are alive: a
        dead observer means changes are silently missed, a dead writer that nothing reaches
        the ledger, which is exactly what the systemd watchdog is for. A writer merely waiting
        for the ledger's lock is alive: the loop that pings never waits for the ledger."""
        if not self.writer.alive():
            self.log.error("ledger-writer-dead", "the ledger writer thread died; watchdog ping "
                           "withheld", fault="ledger-writer-dead")
            return False
        if self.watcher is not None:
            dead = self.watcher.dead_threads()
            if dead:
                self.log.error("observer-dead", "observer thread(s) died: " + ", ".join(dead)
                               + "; watchdog ping withheld", threads=",".join(dead))
                return False
        return self.notifier.watchdog()

    def tick(self) -> None:
        """Send the watchdog ping when it is due (also from inside long scans: the initial
        scan of a large store can outlast ``WatchdogSec=``), and say how far a scan got."""
        if self._next_progress is None and self._ping_every is None:
            return  # (called for every file of a scan: nothing to do costs no clock read)
        now = self.monotonic()
        self._progress(now)
        if self._ping_every is None:
            return
        with self._ping_lock:
            if now < self._next_ping:
                return
            self._next_ping = now + self._ping_every
        self.heartbeat()

    def _progress(self, now: float) -> None:
        """Every :data:`PROGRESS_EVERY_S` of a full scan, one ``scan-progress`` line and the
        unit's STATUS (`systemctl status`): a first scan of 100,000 files takes a while, and
        an operator (or ``agent run --once`` on a terminal) should see it moving."""
        due = self._next_progress
        if due is None or now < due:
            return
        self._next_progress = now + PROGRESS_EVERY_S
        read = self.sync.files_read
        self.log.info("scan-progress", f"scanning: {read} file(s) read so far", read=read)
        self.notifier.status(f"scanning: {read} file(s) read")

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a call that may wait for another process's lock (a vault put): meanwhile the
        watchdog keeps being pinged from another thread, for up to :data:`MAX_WAIT_S`, since
        a daemon waiting for a lock is not stuck."""
        self._waiting_since = self.monotonic()
        try:
            yield
        finally:
            self._waiting_since = None

    def _ping_while_waiting(self) -> None:
        """The side thread of :meth:`waiting`: pings only while the loop waits in such a call
        (and every observer thread lives); otherwise the loop pings itself."""
        step = min(1.0, (self._ping_every or 4.0) / 4)
        while not self._stop.wait(step):
            since = self._waiting_since
            if since is not None and self.monotonic() - since < MAX_WAIT_S:
                self.tick()

    def supervise(self) -> None:
        """Restart a watcher whose threads died (at most every ``SUPERVISE_EVERY_S``), then
        rescan to catch what it missed."""
        if self.watcher is None or self.watcher.alive():
            return  # not watching by design (--once), or all is well
        now = self.monotonic()
        if now < self._next_supervise:
            return
        self._next_supervise = now + SUPERVISE_EVERY_S
        self.log.warning("observer-restart", "restarting the file observers")
        self.stop_watching()
        if self.start_watching():
            self.full_scan()

    def start_watching(self) -> bool:
        """Start the observers; a failure (``observer = "inotify"`` out of watches) is logged
        and leaves the daemon resyncing periodically with its watchdog ping withheld."""
        self.watcher = StoreWatcher(self.enqueue, mode=self.config.agent.observer, log=self.log,
                                    on_overflow=self.request_resync)
        try:
            self.watcher.start(self.watch_roots())
        except OSError as exc:
            self.log.error("watch-failed", f"cannot watch the stores: {exc.strerror or exc}; "
                           "watchdog ping withheld", observer=self.config.agent.observer)
            self.watcher.stop()
            return False
        return True

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def request_stop(self) -> None:
        self._stop.set()
        self.queue.wake()

    def request_resync(self) -> None:
        """Events were lost (inotify queue overflow): rescan everything soon."""
        self._resync.set()
        self.queue.wake()

    def request_reload(self) -> None:
        self._reload.set()
        self.queue.wake()

    def reload(self) -> bool:
        """SIGHUP: read the configuration again, and the intake's own files (a fleet client's
        certificate, key and CA: :attr:`reload_intake`); a bad one is refused and the old one
        kept, whole."""
        self.notifier.reloading()
        try:
            new = self.config_loader(self.config_path)
            if new.agent.host != self.config.agent.host:
                # Every sighting is recorded under the host that reported it: renamed here,
                # the old name's would stay open for good (no reconciliation asks for them).
                # A restart closes them (:meth:`_former_host`).
                raise ConfigError(
                    f"[agent] host changed from {self.config.agent.host} to {new.agent.host}: "
                    "a running daemon keeps its host name; restart it to change it "
                    "(`systemctl restart certescrow-agent`)")
            if (new.policy.catalogue != self.config.policy.catalogue
                    and self.sync.classify_enabled):
                from policy.catalogue import load_catalogue

                load_catalogue(new.policy.catalogue)  # refuse a broken catalogue too
            if self.reload_intake is not None:
                # Last: it applies what it read as it returns, when nothing can refuse the
                # reload any more. A host re-signed after a revocation is let back in here.
                self.reload_intake(new)
        except (AgentError, ConfigError, Exception) as exc:
            self.log.error("reload-refused", f"new configuration refused, still running the "
                           f"old one: {exc}")
            self.notifier.ready(self.status_line())
            return False
        old = self.config
        before = {store.path: store.binding for store in old.agent.stores}
        self.sync.rebind = {store.path for store in new.agent.stores
                            if store.path in before and before[store.path] != store.binding}
        self.sync.added_stores = {store.path for store in new.agent.stores
                                  if store.path not in before}
        self.sync.reconfigure(new)  # files another store owns now are read again by its scan
        self.escrow.forget_passwords()
        # a certificate waits for its key only in a store that still escrows
        self.escrow.keep_waiting({store.path for store in new.agent.stores if store.escrow})
        self.sync.configure_policy()
        fmt = self.log_format_override or new.agent.log_format
        if fmt != (self.log_format_override or old.agent.log_format):
            configure_logging(fmt)
        if (new.agent.stores != old.agent.stores or new.agent.observer != old.agent.observer
                or self.watcher is None):
            self.stop_watching()
            self.start_watching()
        self.full_scan()
        self.log.info("reloaded", "configuration reloaded",
                      source=str(new.source) if new.source else "<defaults>")
        self.notifier.ready(self.status_line())
        return True

    # ------------------------------------------------------------------ main loop

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    def run(self) -> int:
        """Watch until SIGTERM/SIGINT: initial scan, observers, events, resyncs, pings."""
        status_every = 30.0
        next_status = self.monotonic() + status_every
        try:
            self.writer.start()  # from now on the ledger never holds up this loop
            if self._ping_every is not None:
                self._pinger = threading.Thread(target=self._ping_while_waiting,
                                                name="watchdog-while-waiting", daemon=True)
                self._pinger.start()
            self.notifier.status("initial scan")
            self.start_watching()  # before the scan, so nothing changed during it is lost
            # What the start built (modules, the catalogue, observers) lives as long as the
            # daemon: out of the collector's sight for good. And no cyclic collection during
            # the first scan: it makes no cyclic garbage (the collector freed 0 objects in a
            # first start of 20,000 files) but walked what the scan keeps alive (results until
            # the read index takes them, observations until the ledger does), again and again:
            # 1.8-2.7 s of a first start of 100,000 files. Whatever it left is collected by
            # the collections after it.
            gc.freeze()
            gc.disable()
            try:
                self.full_scan()
            finally:
                gc.enable()
            self.notifier.ready(self.status_line())
            self.log.info("ready", self.status_line())
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self.process_due()
                now = self.monotonic()
                self.tick()
                self.supervise()
                self.writer.check()
                if self.writer.take_reopened():
                    self.sync.reconcile_due = True  # the new file learns what is seen now
                if self.sync.reconcile_due and (self.writer.pending() == 0
                                                or self.sync.awaiting_ledger):
                    self.sync.reconcile(at=self.sync.clock())
                interval = self.config.agent.resync_interval_s
                if self._resync.is_set():
                    self._resync.clear()
                    self.log.warning("resync", "inotify queue overflowed: events were lost; "
                                     "rescanning every store")
                    self.full_scan()
                elif interval and now - self.last_resync >= interval:
                    if self.watcher is not None:
                        self.watcher.retry_missing()
                    self.full_scan()
                if now >= next_status:
                    self.notifier.status(self.status_line())
                    next_status = now + status_every
                waits = [1.0]
                due_in = self.queue.next_due_in(self.quiet_s)
                if due_in is not None:
                    waits.append(due_in)
                if self._ping_every is not None:
                    waits.append(max(0.0, self._next_ping - self.monotonic()))
                if not (self._stop.is_set() or self._reload.is_set()
                        or self._resync.is_set()):
                    self.queue.wait(max(0.005, min(waits)))
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.stop_watching()
        self.writer.stop(drain_s=LEDGER_DRAIN_S)
        if self._pinger is not None:
            self._stop.set()
            self._pinger.join(timeout=2.0)
            self._pinger = None
        if self.read_index is not None:
            self._flush_read_index()
            self.read_index.file.close()
        close = getattr(self.intake, "close", None)
        if callable(close) and not self.writer.busy_at_stop:  # never under the writer's feet
            close()  # a fleet outbox's last delivery attempt logs first: said before this
        self.escrow.close()
        self.log.info("stopping", "observers stopped; ledger and vault closed")
        self.notifier.close()
