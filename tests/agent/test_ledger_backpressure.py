"""The ledger writer's queue is bounded while the ledger is healthy (issue 12): a scan that
produces faster than the ledger writes waits for it (and keeps the watchdog pinged meanwhile)
instead of holding every observation in memory; no observation is lost, the order is kept,
and a faulted ledger is never waited for (watching must go on)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from agent.ledgerwriter import LedgerWriter
from agent.logs import EventLog
from policy.intake import IntakeReceipt, Observation
from policy.ledger import Ledger
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


class _GatedLedger:
    """A ledger that writes only while its gate is open (a slow disk, a busy ledger)."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.gate = threading.Event()
        self.written: list[int] = []
        self.fail_first = fail_first

    def batch(self, numbers: list[int]) -> None:
        if self.fail_first:
            self.fail_first = False
            raise sqlite3.OperationalError("disk I/O error")  # a fault: kept and retried
        self.gate.wait(30)
        self.written.extend(numbers)


def _writer(ledger: _GatedLedger, bound: int) -> tuple[LedgerWriter, list[int]]:
    writer = LedgerWriter(ledger, log=EventLog(),  # type: ignore[arg-type]
                          max_queued_observations=bound)
    pings: list[int] = []
    writer.on_wait = lambda: pings.append(1)
    writer.start()
    return writer, pings


def _submit(writer: LedgerWriter, numbers: list[int]) -> None:
    writer.submit(lambda ledger: ledger.batch(numbers), observations=len(numbers))


def test_a_slow_ledger_makes_the_producer_wait_and_nothing_is_lost() -> None:
    ledger = _GatedLedger()
    writer, pings = _writer(ledger, bound=10)
    _submit(writer, list(range(0, 5)))  # taken by the writer, which waits at the gate
    _submit(writer, list(range(5, 10)))  # the queue is full now: 10 observations
    producer = threading.Thread(target=_submit, args=(writer, list(range(10, 15))))
    producer.start()
    producer.join(1.0)
    assert producer.is_alive()  # waits for room instead of queueing a third batch
    assert writer.pending_observations() == 10
    assert pings  # the watchdog is pinged while it waits
    ledger.gate.set()
    producer.join(10)
    assert not producer.is_alive()
    assert writer.wait_idle(10)
    assert ledger.written == list(range(15))  # every observation, in order
    assert writer.waited_s > 0
    writer.stop(drain_s=1)


def test_a_faulted_ledger_is_never_waited_for() -> None:
    ledger = _GatedLedger(fail_first=True)
    writer, _ = _writer(ledger, bound=10)
    _submit(writer, list(range(0, 10)))
    while writer._fault is None:  # the first write failed: kept, retried after a pause
        threading.Event().wait(0.01)
    producer = threading.Thread(target=_submit, args=(writer, list(range(10, 15))))
    producer.start()
    producer.join(10)
    assert not producer.is_alive()  # queued beyond the bound: the loop must go on
    assert writer.pending_observations() == 15
    ledger.gate.set()
    assert writer.wait_idle(10)
    assert ledger.written == list(range(15))
    writer.stop(drain_s=1)


class _SlowRecordingLedger:
    """The real ledger, slowed down, noting how many observations ever waited."""

    def __init__(self, ledger: Ledger, writer: list[LedgerWriter]) -> None:
        self.ledger = ledger
        self.writer = writer
        self.most_waiting = 0
        self.reported = 0

    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        self.most_waiting = max(self.most_waiting, self.writer[0].pending_observations())
        threading.Event().wait(0.05)
        self.reported += len(observations)
        return self.ledger.report(observations, at=at)

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        return self.ledger.report_gone(host, location, at=at)

    def open_sightings(self, host: str) -> list[tuple[str, int, str]]:
        return self.ledger.open_sightings(host)

    def close(self) -> None:
        self.ledger.close()


def test_a_first_scan_waits_for_a_slow_ledger_and_the_ledger_gets_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.storesync as storesync

    store = tmp_path / "certs"
    pem = make_cert(sans=("bulk.example.jp",)).pem
    for i in range(60):
        write(store / f"d{i // 20}" / f"c{i:03}.pem", pem)
    monkeypatch.setattr(storesync, "REPORT_BATCH", 5)
    holder: list[LedgerWriter] = []
    slow = _SlowRecordingLedger(Ledger.open(tmp_path / "ledger.sqlite3"), holder)
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock())
    daemon.writer.intake = slow  # type: ignore[assignment]
    daemon.writer.max_queued_observations = 10
    holder.append(daemon.writer)
    daemon.sync.read_ahead_workers = 0
    daemon.writer.start()
    daemon.full_scan()
    assert daemon.writer.waited_s > 0  # the scan waited for the ledger
    assert daemon.writer.wait_idle(30)
    assert slow.most_waiting <= 10 + 5  # the bound (and the batch in hand)
    assert slow.reported == 60
    sightings = slow.ledger.open_sightings("web1")
    assert sorted(location for location, _, _ in sightings) == sorted(
        str(p) for p in store.rglob("*.pem"))
    daemon.shutdown()
