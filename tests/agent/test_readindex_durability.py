"""The read index is never written ahead of what the daemon reported (a review's finding): a
file the index holds is not read again after a restart, so an index that says "read" for a
file whose observation the ledger (or the fleet outbox) never took loses that observation for
good to a crash in between. The fleet outbox has no sightings to reconcile with; nothing
brought it back. Here the ledger is held locked (a slow disk, a backup) while a real daemon
reads new files, and the daemon is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from agent.readindex import READ_INDEX_NAME
from policy.ledger import Ledger
from tests.agent.daemon_helpers import AT, SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.agent.test_daemon_process import (
    CERTESCROW,
    REPO,
    Manager,
    config_text,
    eventually,
    manager,
)
from tests.certfactory import make_cert

__all__ = ["manager"]  # the fixture: systemd's notification socket

COUNT = 120


def _indexed(state: Path) -> set[str]:
    path = state / READ_INDEX_NAME
    if not path.exists():
        return set()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {os.fsdecode(raw) for (raw,) in db.execute("SELECT path FROM files")}


def _in_ledger(ledger: Path) -> set[str]:
    with Ledger.open(ledger, create=False) as opened:
        return {location for location, _, _ in opened.open_sightings("web1")}


@contextlib.contextmanager
def _locked(ledger: Path) -> Iterator[None]:
    """Another process's write transaction on the ledger (as `sqlite3 ledger BEGIN EXCLUSIVE`
    would hold it)."""
    db = sqlite3.connect(ledger, isolation_level=None, timeout=30)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        db.close()


def test_a_daemon_killed_while_its_ledger_is_locked_loses_no_observation(
        tmp_path: Path, manager: Manager) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, store))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "WATCHDOG_", "CERTESCROW_"))}
    env.update(NOTIFY_SOCKET=str(manager.path), PYTHONPATH=str(REPO),
               CERTESCROW_TESTONLY_NOW="2026-02-01T12:00:00+09:00")
    log = tmp_path / "daemon.log"
    with log.open("ab") as stderr:
        proc = subprocess.Popen([str(CERTESCROW), "agent", "run", "--config", str(config)],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        manager.wait_for("READY=1")
        # expired certificates: each is logged (`expired`) as the daemon reads it, in the
        # thread that then writes the read index
        expired = make_cert(not_before=AT - timedelta(days=200), sans=("old.example.jp",))
        with _locked(ledger):
            for i in range(COUNT):
                write(store / f"d{i % 4}" / f"c{i:03}.pem", expired.pem)
            eventually(lambda: log.read_text().count("expired") >= COUNT, timeout=60)
            time.sleep(1.0)  # the event's flush of the read index, right after it
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=20)
        reported = _in_ledger(ledger)
        ahead = _indexed(ledger.parent) - reported
        assert not ahead, f"{len(ahead)} file(s) indexed, never reported"
        # and the next run reports every one of them
        done = subprocess.run([str(CERTESCROW), "agent", "run", "--once", "--config",
                               str(config)], env=env, capture_output=True, check=False,
                              timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert len(_in_ledger(ledger)) == COUNT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class _GatedIntake:
    """An intake that, like the fleet outbox, cannot list what it holds, and takes a report
    only when the test lets it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.locations: list[str] = []

    def report(self, observations: list[object], *, at: object) -> object:
        self.open.wait(30)
        self.locations.extend(o.location for o in observations)  # type: ignore[attr-defined]
        from policy.intake import IntakeReceipt

        return IntakeReceipt(recorded=len(observations), unchanged=0, contracts=())

    def report_gone(self, *args: object, **kwargs: object) -> int:
        self.open.wait(30)
        return 0


def test_an_index_waits_for_an_intake_that_cannot_be_reconciled_with(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    for i in range(30):
        write(store / f"c{i:02}.pem", make_cert(sans=(f"s{i}.example.jp",)).pem)
    index = tmp_path / "state" / READ_INDEX_NAME
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock(), read_index_path=index)
    intake = _GatedIntake()
    daemon.writer.intake = intake  # type: ignore[assignment]
    daemon.writer.start()
    try:
        daemon.full_scan()
        assert _indexed(index.parent) == set()  # nothing reported yet: nothing indexed
        intake.open.set()
        assert daemon.writer.wait_idle(10)
        daemon.process_due()  # the loop's next flush
        assert _indexed(index.parent) == {str(store / f"c{i:02}.pem") for i in range(30)}
        assert sorted(intake.locations) == sorted(_indexed(index.parent))
    finally:
        intake.open.set()
        daemon.shutdown()
