"""Issue 9, "state that stays true": what the daemon tells the ledger and the log stays true
across restarts, attribute changes and faults. Real observers, real ledger, real processes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Daemon
from policy.ledger import Ledger
from tests.agent.daemon_helpers import RecordingIntake, SteppingClock, make_daemon, store_config
from tests.agent.polling import logged_events, wait_until
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def _wait_fast(predicate: Callable[[], bool], timeout: float) -> bool:
    return wait_until(predicate, timeout, interval=0.02)


QUIET_MS = 200






@pytest.fixture
def running(tmp_path: Path, caplog: pytest.LogCaptureFixture
            ) -> Iterator[Callable[[Path], Daemon]]:
    """Start a real Daemon.run() (inotify observers) in a thread over a store; stop it after."""
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(store: Path) -> Daemon:
        config = store_config([{"path": str(store)}], quiet_period_ms=QUIET_MS,
                              observer="inotify")
        intake = RecordingIntake(Ledger.open(tmp_path / "state" / "ledger.sqlite3"))
        daemon = Daemon(config, intake=intake,
                        clock=lambda: datetime(2026, 2, 1, 3, tzinfo=UTC))
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        started.append((daemon, thread))
        with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
            thread.start()
            assert _wait_fast(lambda: bool(logged_events(caplog, "ready")), 20)
        return daemon

    caplog.set_level(logging.DEBUG, logger="certescrow.agent")
    try:
        yield start
    finally:
        for daemon, thread in started:
            daemon.request_stop()
            thread.join(10)


def test_a_watched_key_turned_world_readable_is_a_critical_finding_within_the_quiet_period(
        tmp_path: Path, running: Callable[[Path], Daemon],
        caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    issued = make_cert(sans=("www.example.jp",))
    (store / "site.pem").write_bytes(issued.pem)
    key = store / "site.key"
    key.write_bytes(issued.key_pem())
    key.chmod(0o600)
    running(store)
    assert not [r for r in logged_events(caplog, "finding")
                if r.fields.get("code") == "private-key-world-readable"]  # type: ignore[attr-defined]

    changed = time.monotonic()
    key.chmod(0o644)  # an attribute event only: no write, no close
    assert _wait_fast(lambda: any(r.fields.get("code") == "private-key-world-readable"  # type: ignore[attr-defined]
                             for r in logged_events(caplog, "finding")), QUIET_MS / 1000 + 2.0)
    latency = time.monotonic() - changed
    assert latency < QUIET_MS / 1000 + 2.0
    record = next(r for r in logged_events(caplog, "finding")
                  if r.fields.get("code") == "private-key-world-readable")  # type: ignore[attr-defined]
    assert record.fields["path"] == str(key)  # type: ignore[attr-defined]


def _open(ledger: Ledger, host: str = "web1") -> set[tuple[str, int, str]]:
    return set(ledger.open_sightings(host))


def test_a_restart_reports_what_went_while_the_daemon_was_down(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    other = tmp_path / "other"  # a store no longer configured after the restart
    other.mkdir()
    a, b1, b2, c, o = (make_cert(sans=(f"{n}.example.jp",)) for n in "abcdo")
    (store / "a.pem").write_bytes(a.pem)
    (store / "bundle.pem").write_bytes(b1.pem + b2.pem)
    (store / "c.pem").write_bytes(c.pem)
    (store / "kept.pem").write_bytes(o.pem)
    (other / "o.pem").write_bytes(o.pem)
    first, intake = make_daemon(store_config([{"path": str(store)}, {"path": str(other)}]),
                                tmp_path)
    first.full_scan()
    first.shutdown()

    # While nobody watches: deleted, shrunk, turned to garbage.
    (store / "a.pem").unlink()
    (store / "bundle.pem").write_bytes(b1.pem)
    (store / "c.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")

    second, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    second.full_scan()
    ledger = intake.ledger
    assert _open(ledger) == {
        (str(store / "bundle.pem"), 0, b1.sha256),
        (str(store / "kept.pem"), 0, o.sha256),
        (str(other / "o.pem"), 0, o.sha256),  # not this daemon's store any more: left alone
    }
    assert sorted(intake.gone) == sorted([str(store / "a.pem"), str(store / "bundle.pem"),
                                          str(store / "c.pem")])
    second.shutdown()


def test_a_ledger_replaced_under_the_daemon_is_filled_again_at_the_next_resync(
        tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    issued = make_cert(sans=("www.example.jp",))
    (store / "site.pem").write_bytes(issued.pem)
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    daemon.full_scan()
    fresh = Ledger.open(tmp_path / "replacement.sqlite3")
    intake.ledger.close()
    intake.ledger = fresh  # what the daemon writes to now knows nothing
    daemon.full_scan()  # the periodic resync: nothing changed on disk, nothing read
    assert _open(fresh) == {(str(store / "site.pem"), 0, issued.sha256)}
    daemon.shutdown()


def test_a_set_directory_removed_between_seen_and_listed_is_reported_gone_not_a_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from tests.agent.daemon_helpers import Certbot, SteppingClock

    certbot = Certbot(tmp_path / "le")
    certbot.install()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]),
                                 tmp_path, clock=clock)
    daemon.full_scan()
    real_listdir = os.listdir
    calls = {"n": 0}

    def listdir_after_a_removal(path: Any = ".") -> list[Any]:
        # `certbot delete` at exactly the wrong moment: after the set was recognised (one
        # listing), before it is read (the next one).
        if str(path) == str(certbot.live):
            calls["n"] += 1
            if calls["n"] == 2 and os.path.isdir(path):
                shutil.rmtree(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir_after_a_removal)
    daemon.enqueue(str(certbot.live / "cert.pem"))
    clock.advance(1)
    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        daemon.process_due()
    monkeypatch.undo()
    assert calls["n"] >= 2
    assert not logged_events(caplog, "process-failed")
    assert sorted(intake.gone) == sorted(str(certbot.live / f"{k}.pem")
                                         for k in ("cert", "fullchain", "chain"))
    assert intake.ledger.open_sightings("web1") == []
    daemon.shutdown()


def _contract_sightings(ledger: Ledger, contract: str) -> list[tuple[str, str | None]]:
    """(location, binding tier) of each observation recorded for ``contract``."""
    from policy.events import CertificateObserved

    return [(e.event.location, e.event.binding_tier and e.event.binding_tier.value)
            for e in ledger.journal(contract) if isinstance(e.event, CertificateObserved)]


def test_a_binding_changed_by_reload_applies_to_certificates_already_seen(
        tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    (store / "c.pem").write_bytes(make_cert(sans=("www.example.jp",)).pem)
    bound = store_config([{"path": str(store), "contract": "C-1", "tier": "1y"}])
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                                 config_loader=lambda path: bound)
    daemon.full_scan()
    assert _contract_sightings(intake.ledger, "C-1") == []
    assert daemon.reload() is True  # SIGHUP; the file itself did not change
    assert _contract_sightings(intake.ledger, "C-1") == [(str(store / "c.pem"), "1y")]
    daemon.shutdown()


def test_a_binding_changed_while_stopped_applies_at_the_restart(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    (store / "c.pem").write_bytes(make_cert(sans=("www.example.jp",)).pem)
    index = tmp_path / "state" / "read-index.sqlite3"
    first, intake = make_daemon(store_config([{"path": str(store), "contract": "C-1"}]),
                                tmp_path, read_index_path=index)
    first.full_scan()
    first.shutdown()
    second, intake = make_daemon(
        store_config([{"path": str(store), "contract": "C-2", "tier": "2y"}]), tmp_path,
        read_index_path=index)
    second.full_scan()  # nothing changed on disk: the persisted index reads nothing again
    assert _contract_sightings(intake.ledger, "C-2") == [(str(store / "c.pem"), "2y")]
    # The old contract no longer shows it as deployed there.
    assert [s for s in intake.ledger.open_sightings("web1")] == [
        (str(store / "c.pem"), 0, make_sha(store / "c.pem"))]
    second.shutdown()


def make_sha(path: Path) -> str:
    from agent.reader import read_file
    from agent.records import ReadLimits

    (cert,) = read_file(path, limits=ReadLimits(root=path.parent)).certificates
    return cert.facts.sha256


def test_a_library_error_from_the_vault_never_reaches_the_log_or_the_findings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9: library error text may quote what it was handed; only its type is said."""
    store = tmp_path / "certs"
    store.mkdir()
    issued = make_cert(sans=("www.example.jp",))
    (store / "site.pem").write_bytes(issued.pem + issued.key_pem())

    class Broken:
        def put(self, *args: Any, **kwargs: Any) -> Any:
            raise ValueError("could not load MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg")

        def get(self, entry_id: str) -> bytes:
            raise KeyError(entry_id)

        def close(self) -> None:
            pass

    daemon, _ = make_daemon(store_config([{"path": str(store), "escrow": True}]), tmp_path,
                            vault_factory=Broken)
    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        summary = daemon.full_scan(collect=True)
    failed = logged_events(caplog, "escrow-failed")
    assert failed
    assert "ValueError" in failed[0].getMessage()
    assert "MIGHAgEA" not in caplog.text
    assert "MIGHAgEA" not in str([row.to_json() for row in summary.certificates])
    daemon.shutdown()


def test_a_directory_removed_while_the_scan_walks_to_it_is_gone_not_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    store = tmp_path / "certs"
    (store / "sub").mkdir(parents=True)
    (store / "sub" / "a.pem").write_bytes(make_cert(sans=("a.example.jp",)).pem)
    (store / "b.pem").write_bytes(make_cert(sans=("b.example.jp",)).pem)
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    daemon.full_scan()
    real_scandir = os.scandir

    def scandir_after_a_removal(path: Any = ".") -> Any:
        if str(path) == str(store / "sub") and os.path.isdir(path):
            shutil.rmtree(path)  # removed after its parent listed it, before it is listed
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir_after_a_removal)
    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        summary = daemon.full_scan(collect=True)
    monkeypatch.undo()
    assert not logged_events(caplog, "file-error")
    assert summary.errors == []
    assert intake.gone == [str(store / "sub" / "a.pem")]
    assert {loc for loc, _, _ in intake.ledger.open_sightings("web1")} == {str(store / "b.pem")}
    daemon.shutdown()


def test_a_bug_is_logged_with_where_it_happened_never_with_its_text(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9: a library's exception text may quote key bytes; the log names the exception's
    type and its frames only."""
    from tests.agent.daemon_helpers import SteppingClock

    store = tmp_path / "certs"
    store.mkdir()
    clock = SteppingClock()

    def exploding_reader(path: Path, **kwargs: Any) -> Any:
        raise ValueError("bad key MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg")

    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock,
                            reader=exploding_reader)
    daemon.full_scan()
    (store / "k.pem").write_bytes(b"anything")
    daemon.enqueue(str(store / "k.pem"))
    clock.advance(1)
    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        daemon.process_due()
    (failed,) = logged_events(caplog, "process-failed")
    assert failed.fields["error"] == "ValueError"  # type: ignore[attr-defined]
    assert "exploding_reader" in failed.fields["where"]  # type: ignore[attr-defined]
    assert not failed.exc_info
    assert "MIGHAgEA" not in caplog.text
    daemon.shutdown()


def test_a_ledger_slower_to_answer_than_the_loop_waits_is_still_reconciled(
        tmp_path: Path) -> None:
    """The watch loop waits at most a moment for the ledger (the watchdog ping); a store whose
    open sightings take longer to read is reconciled all the same, from the later answer."""
    store = tmp_path / "certs"
    store.mkdir()
    for name in ("kept", "deleted"):
        (store / f"{name}.pem").write_bytes(make_cert(sans=(f"{name}.example.jp",)).pem)
    first, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    first.full_scan()
    first.shutdown()
    (store / "deleted.pem").unlink()  # while nothing watches

    class SlowToAnswer(RecordingIntake):
        def open_sightings(self, host: str) -> list[tuple[str, int, str]]:
            time.sleep(0.4)
            return super().open_sightings(host)

    ledger_path = tmp_path / "state" / "ledger.sqlite3"
    slow = SlowToAnswer(Ledger.open(ledger_path))
    daemon = Daemon(store_config([{"path": str(store)}], observer="polling"), intake=slow,
                    clock=lambda: datetime(2026, 2, 1, 3, tzinfo=UTC))
    daemon.sync.ledger_patience_s = 0.05
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        with Ledger.open(ledger_path) as reader:
            assert _wait_fast(lambda: {loc for loc, _, _ in reader.open_sightings("web1")}
                         == {str(store / "kept.pem")}, 10)
    finally:
        daemon.request_stop()
        thread.join(15)
    assert slow.gone == [str(store / "deleted.pem")]


def test_a_symlink_loop_is_logged_once_not_at_every_event_beside_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each event in a directory holding a link loop logged the loop again (two lines per
    `touch`), and the first scan logged it twice: anyone who can make links in a store could
    multiply the log for every honest change (review 12). Logged once, and again once the
    loop is made anew after it was fixed."""
    store = tmp_path / "store"
    store.mkdir()
    write(store / "site.pem", make_cert(sans=("site.example.jp",)).pem)
    write(store / "key.pem", make_cert(sans=("k.example.jp",)).key_pem())  # the unit is read
    (store / "loop1").symlink_to("loop2")
    (store / "loop2").symlink_to("loop1")
    clock = SteppingClock()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)

    def loop_lines() -> list[str]:
        return sorted(r.getMessage().split(":")[0] for r in logged_events(caplog, "file-error")
                      if "loop" in r.getMessage())

    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        daemon.full_scan()
        assert loop_lines() == [str(store / "loop1"), str(store / "loop2")]
        for serial in (2, 3, 4):
            write(store / "site.pem", make_cert(sans=("site.example.jp",), serial=serial).pem)
            daemon.enqueue(str(store / "site.pem"))
            daemon.enqueue(str(store))
            os.utime(store / "key.pem")  # the re-review's `touch key.pem`
            daemon.enqueue(str(store / "key.pem"))
            clock.advance(0.31)
            daemon.process_due()
        daemon.full_scan()  # the periodic resync
        assert loop_lines() == [str(store / "loop1"), str(store / "loop2")]

        caplog.clear()
        (store / "loop1").unlink()  # fixed ...
        write(store / "loop1", make_cert(sans=("l.example.jp",)).pem)
        daemon.full_scan()
        (store / "loop1").unlink()  # ... and made again
        (store / "loop1").symlink_to("loop2")
        daemon.full_scan()  # loop2 led to a file meanwhile: a loop again, both said again
        assert loop_lines() == [str(store / "loop1"), str(store / "loop2")]
    daemon.shutdown()


def test_events_ping_the_watchdog_between_paths_and_stop_on_sigterm(tmp_path: Path) -> None:
    """The event path read every due file without a watchdog ping or a look at SIGTERM:
    11 hostile PKCS#12 files (3 s each) kept the daemon silent for 42 s, 19 past
    WatchdogSec=60s (the second re-review)."""
    store = tmp_path / "store"
    for i in range(3):
        write(store / f"c{i}.pem", make_cert(sans=(f"c{i}.example.jp",)).pem)
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)
    daemon.full_scan()
    ticks: list[int] = []
    daemon.sync.tick = lambda: ticks.append(1)
    for i in range(3):
        write(store / f"c{i}.pem", make_cert(sans=(f"c{i}.example.jp",), serial=50 + i).pem)
        daemon.enqueue(str(store / f"c{i}.pem"))
    clock.advance(0.31)
    daemon.sync.stopping = lambda: len(ticks) >= 2  # SIGTERM while the second is due
    intake.clear()
    daemon.process_due()
    assert len(ticks) >= 2
    assert [o.location for o in intake.reported] == [str(store / "c0.pem")]
    daemon.sync.stopping = lambda: False
    clock.advance(0.31)
    daemon.process_due()  # what was left was put back, not lost
    assert sorted(o.location for o in intake.reported) == [str(store / f"c{i}.pem")
                                                          for i in range(3)]
    daemon.shutdown()


def test_a_dangling_link_in_a_set_is_not_taken_for_a_file_that_vanished(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """It was read again ten times as "vanished while the set was read", at every event
    (the second re-review)."""
    store = tmp_path / "store"
    issued = make_cert(sans=("set.example.jp",))
    write(store / "c1.pem", issued.pem)
    write(store / "key.pem", issued.key_pem())
    (store / "d.pem").symlink_to("nowhere.pem")
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock())
    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        daemon.full_scan()
    assert logged_events(caplog, "set-unsettled") == []
    daemon.shutdown()
