"""Ledger faults under a running daemon (issue 9): each is one JSON log line at error level
naming the fault, the observations are kept and retried (never dropped), and the systemd
watchdog keeps being pinged while the daemon merely waits. The real ``Daemon.run`` loop with
real inotify observers, the real SQLite ledger, a real unix datagram socket as
``$NOTIFY_SOCKET``, and another process holding the ledger's write lock."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Daemon
from agent.logs import EventLog, _Formatter
from agent.sdnotify import Notifier
from policy.ledger import Ledger
from tests.agent.daemon_helpers import store_config
from tests.agent.polling import wait_until
from tests.certfactory import make_cert

AT = datetime(2026, 2, 1, 3, tzinfo=UTC)


class JsonLines(logging.Handler):
    """The daemon's JSON log lines, as it would print them with ``--log-format json``."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(_Formatter("json", journal=False))
        self.lines: list[dict[str, Any]] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        assert "\n" not in line
        with self._lock2:
            self.lines.append(json.loads(line))

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._lock2:
            return [line for line in self.lines if line["event"] == event]


class FakeSystemd:
    """``$NOTIFY_SOCKET``: a real unix datagram socket; records when each message arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self) -> list[float]:
        return [t for t, m in list(self.messages) if "WATCHDOG=1" in m]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()




@dataclass
class Running:
    daemon: Daemon
    log: JsonLines
    ledger_path: Path
    store: Path
    systemd: FakeSystemd | None
    thread: threading.Thread
    certs: dict[str, str] = field(default_factory=dict)

    def add(self, name: str) -> str:
        issued = make_cert(sans=(f"{name}.example.jp",))
        (self.store / f"{name}.pem").write_bytes(issued.pem)
        self.certs[str(self.store / f"{name}.pem")] = issued.sha256
        return issued.sha256

    def on_disk(self) -> set[tuple[str, int, str]]:
        return {(path, 0, sha) for path, sha in self.certs.items()}

    def in_ledger(self) -> set[tuple[str, int, str]]:
        with Ledger.open(self.ledger_path, create=False) as ledger:
            return set(ledger.open_sightings("web1"))


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Running]]:
    runs: list[Running] = []

    def run(*, watchdog_usec: int | None = None) -> Running:
        store = tmp_path / "certs"
        store.mkdir()
        ledger_path = tmp_path / "state" / "ledger.sqlite3"
        logger = logging.getLogger(f"certescrow.agent.faults{len(runs)}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        handler = JsonLines()
        logger.addHandler(handler)
        systemd = None
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        if watchdog_usec is not None:
            systemd = FakeSystemd(tmp_path / "notify.sock")
            monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
        else:
            monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        config = store_config([{"path": str(store)}], quiet_period_ms=100, observer="inotify")
        daemon = Daemon(config, intake=Ledger.open(ledger_path), clock=lambda: AT,
                        notifier=Notifier(str(systemd.path) if systemd else ""),
                        log=EventLog(logger), ledger_path=ledger_path,
                        reopen_intake=lambda: Ledger.open(ledger_path))
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        running = Running(daemon=daemon, log=handler, ledger_path=ledger_path, store=store,
                          systemd=systemd, thread=thread)
        running.add("first")
        thread.start()
        assert wait_until(lambda: bool(handler.events("ready")), 20)
        runs.append(running)
        return running

    yield run
    for running in runs:
        running.daemon.request_stop()
        running.thread.join(15)
        assert not running.thread.is_alive()
        if running.systemd is not None:
            running.systemd.close()


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@pytest.mark.slow
def test_a_lock_held_by_another_process_does_not_starve_the_watchdog(
        start: Callable[..., Running]) -> None:
    # WATCHDOG_USEC=2 s: systemd would kill a daemon silent for 2 s; it pings every second.
    running = start(watchdog_usec=2_000_000)
    assert running.systemd is not None
    assert wait_until(lambda: len(running.systemd.pings()) >= 2, 5)  # type: ignore[union-attr]
    with subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(running.ledger_path), "5"],
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            locked_at = time.monotonic()
            running.add("during-lock")
            assert holder.wait(20) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
    released_at = time.monotonic()
    assert released_at - locked_at >= 4.5
    # Pinged throughout: no gap reached WatchdogSec (2 s) while the lock was held.
    pings = [t for t in running.systemd.pings() if locked_at - 1 <= t <= released_at + 1]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 4
    assert max(gaps) < 2.0, gaps
    # Said once, at error level, naming the fault; the observation was kept and written.
    locked = running.log.events("ledger-locked")
    assert len(locked) == 1
    assert locked[0]["level"] == "error"
    assert locked[0]["fault"] == "ledger-locked"
    assert locked[0]["path"] == str(running.ledger_path)
    assert wait_until(lambda: running.in_ledger() == running.on_disk(), 10)
    assert wait_until(lambda: bool(running.log.events("ledger-recovered")), 5)


def _on_connection(daemon: Daemon, sql: str) -> None:
    """Fault injection on the daemon's own connection (what a full disk or a read-only
    medium look like to SQLite)."""
    ledger = daemon.writer.intake
    assert isinstance(ledger, Ledger)
    with ledger._lock:
        ledger._conn.execute(sql)


@pytest.mark.parametrize(("fault", "inject", "repair"), [
    ("ledger-disk-full", "PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1000000"),
    ("ledger-read-only", "PRAGMA query_only = ON", "PRAGMA query_only = OFF"),
])
def test_disk_full_and_read_only_keep_the_observations_and_retry(
        start: Callable[..., Running], fault: str, inject: str, repair: str) -> None:
    running = start()
    ledger = running.daemon.writer.intake
    assert isinstance(ledger, Ledger)
    with ledger._lock:
        pages = ledger._conn.execute("PRAGMA page_count").fetchone()[0]
    _on_connection(running.daemon, inject.format(pages=pages))
    for n in range(12):  # more than the free room left in the ledger's pages
        running.add(f"while-{n}")
    assert wait_until(lambda: bool(running.log.events(fault)), 10)
    said = running.log.events(fault)
    assert len(said) == 1
    assert said[0]["level"] == "error"
    assert said[0]["fault"] == fault
    assert running.in_ledger() != running.on_disk()  # not written yet ...
    _on_connection(running.daemon, repair)
    # ... and not dropped: written once the ledger takes writes again.
    assert wait_until(lambda: running.in_ledger() == running.on_disk(), 15)
    # (said by the writer thread after its commit, which this thread may see first)
    assert wait_until(lambda: bool(running.log.events("ledger-recovered")), 5)


def test_a_ledger_deleted_under_the_daemon_is_created_again_with_what_is_seen(
        start: Callable[..., Running]) -> None:
    running = start()
    assert wait_until(lambda: running.in_ledger() == running.on_disk(), 10)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{running.ledger_path}{suffix}").unlink(missing_ok=True)
    running.add("after-delete")
    assert wait_until(lambda: bool(running.log.events("ledger-deleted")), 10)
    deleted = running.log.events("ledger-deleted")
    assert deleted[0]["level"] == "error"
    assert deleted[0]["path"] == str(running.ledger_path)
    # The new file holds everything currently seen, not only what changed after.
    assert wait_until(lambda: running.ledger_path.exists()
                 and running.in_ledger() == running.on_disk(), 15)


def test_a_ledger_replaced_under_the_daemon_is_refused_until_a_ledger_is_back(
        start: Callable[..., Running], tmp_path: Path) -> None:
    running = start()
    assert wait_until(lambda: running.in_ledger() == running.on_disk(), 10)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a ledger at all\n" * 100)
    os.replace(garbage, running.ledger_path)
    running.add("after-replace")
    assert wait_until(lambda: bool(running.log.events("ledger-unusable")), 10)
    assert running.ledger_path.read_bytes() == b"not a ledger at all\n" * 100  # untouched
    assert running.log.events("ledger-replaced")[0]["level"] == "error"
    # An operator puts a (new, empty) ledger back: the daemon fills it.
    fresh = tmp_path / "fresh.sqlite3"
    Ledger.open(fresh).close()
    os.replace(fresh, running.ledger_path)
    assert wait_until(lambda: running.in_ledger() == running.on_disk(), 20)


@pytest.mark.slow
def test_a_vault_locked_by_another_process_does_not_starve_the_watchdog(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Escrow writes to the vault from the watch loop: while a put waits for another
    process's lock, the watchdog is pinged from the side (waiting is not being stuck)."""
    from vault import KeyFileSource, open_vault

    store = tmp_path / "certs"
    store.mkdir()
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    vault_path = tmp_path / "vault" / "vault.sqlite3"
    open_vault(vault_path, KeyFileSource(key_file), create=True).close()
    systemd = FakeSystemd(tmp_path / "notify.sock")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    logger = logging.getLogger("certescrow.agent.faults-vault")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = JsonLines()
    logger.addHandler(handler)
    config = store_config([{"path": str(store), "escrow": True}], quiet_period_ms=100,
                          observer="inotify")
    daemon = Daemon(config, intake=Ledger.open(tmp_path / "state" / "ledger.sqlite3"),
                    clock=lambda: AT, notifier=Notifier(str(systemd.path)),
                    log=EventLog(logger),
                    vault_factory=lambda: open_vault(vault_path, KeyFileSource(key_file)))
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        assert wait_until(lambda: bool(handler.events("ready")), 20)
        assert wait_until(lambda: len(systemd.pings()) >= 2, 5)
        with subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(vault_path), "5"],
                              stdout=subprocess.PIPE, text=True) as holder:
            try:
                assert holder.stdout is not None
                assert holder.stdout.readline().strip() == "locked"
                locked_at = time.monotonic()
                issued = make_cert(sans=("escrowed.example.jp",))
                (store / "site.pem").write_bytes(issued.pem + issued.key_pem())
                assert holder.wait(20) == 0
            finally:
                if holder.poll() is None:
                    holder.kill()
        released_at = time.monotonic()
        assert wait_until(lambda: bool(handler.events("escrowed")), 20)
        pings = [t for t in systemd.pings() if locked_at - 1 <= t <= released_at + 1]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert len(pings) >= 4
        assert max(gaps) < 2.0, gaps
    finally:
        daemon.request_stop()
        thread.join(15)
        systemd.close()
    assert not thread.is_alive()
