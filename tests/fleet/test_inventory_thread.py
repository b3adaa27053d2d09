"""The heartbeat's inventory is built in the thread that owns the read index, never in the
fleet sender thread (agent/inventory.py).

Regression: the sender thread used to walk the :class:`agent.readindex.PersistentIndex`
itself while the daemon's main thread mutated it; ``get`` read ``_recent`` then moved the
entry to the end, and an eviction by the main thread in between raised ``KeyError`` in the
sender (and both threads shared the index's SQLite connection)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import agent.readindex as readindex
from agent.fleet_client import FleetClient, OutboxIntake, SendResult, inventory_of
from agent.index import StatKey
from agent.inventory import InventorySlot
from agent.logs import EventLog
from agent.monitoring import ExpiryWindows
from agent.outbox import Outbox
from agent.reader import read_file
from agent.readindex import PersistentIndex, ReadIndexFile
from agent.records import FileResult, ReadLimits
from tests.certfactory import make_cert

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
WINDOWS = ExpiryWindows(warning_days=28, critical_days=14)


class _RecordingClient(FleetClient):
    """Answers 200 to everything and keeps the heartbeat bodies."""

    def __init__(self) -> None:
        super().__init__("https://127.0.0.1:9", ssl.create_default_context(), timeout_s=1)
        self.beats: list[Mapping[str, Any]] = []

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None
                ) -> SendResult:
        if path == "/v1/heartbeat" and body is not None:
            self.beats.append(body)
        return SendResult(status=200, body={})


class _OwnedIndex(PersistentIndex):
    """A read index that notes every thread that reads it."""

    def __init__(self, store: ReadIndexFile) -> None:
        super().__init__(store)
        self.readers: set[int] = set()

    def get(self, path: Path | str) -> FileResult | None:
        self.readers.add(threading.get_ident())
        return super().get(path)


def _results(tmp_path: Path, count: int = 3) -> list[FileResult]:
    """``count`` files, one certificate each: ok, warning, critical, ok, ... at NOW."""
    pems = [make_cert(not_before=NOW - timedelta(days=30),
                      not_after=NOW + timedelta(days=left)).pem for left in (200, 20, 10)]
    results = []
    for n in range(count):
        path = tmp_path / f"{n}.pem"
        path.write_bytes(pems[n % 3])
        results.append(read_file(path, limits=ReadLimits()))
    return results


def test_the_sender_never_reads_the_index_while_the_main_thread_mutates_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readindex, "RECENT", 4)  # evictions all the time
    index = _OwnedIndex(ReadIndexFile(tmp_path / "ri.sqlite3", host="h", log=EventLog()))
    index.load()
    results = _results(tmp_path, 60)
    key: StatKey = (1, 2, 3, 4, 5)
    for result in results:
        index.put(result.path, key, result)
    index.flush()  # from now on get() reads results back and evicts

    slot = InventorySlot(lambda: inventory_of(index, at=NOW, windows=WINDOWS))
    client = _RecordingClient()
    outbox = Outbox.open(tmp_path / "o.sqlite3")
    intake = OutboxIntake(outbox=outbox, client=client, host="h1", clock=lambda: NOW,
                          inventory=slot)
    failures: list[BaseException] = []

    def beat(times: int) -> None:
        try:
            for _ in range(times):
                assert intake.heartbeat()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    sender = threading.Thread(target=beat, args=(30,))
    sender.start()
    n = 0
    while sender.is_alive():  # the daemon's main loop: mutate, and serve the snapshot
        result = results[n % 60]
        index.remove(result.path)
        index.put(result.path, key, result)
        index.get(results[(n * 7) % 60].path)
        if n % 10 == 0:
            index.flush()
        slot.serve()
        n += 1
    sender.join()
    outbox.close()

    assert failures == []
    assert index.readers == {threading.get_ident()}  # the main thread only
    assert len(client.beats) == 30
    for body in client.beats:  # every snapshot is whole: 60 files, one certificate each
        inventory = body["inventory"]
        assert inventory["files"] == inventory["certificates"] == 60
        assert inventory["by_severity"] == {"ok": 20, "warning": 20, "critical": 20}


def test_the_heartbeat_sends_what_the_main_thread_built(tmp_path: Path) -> None:
    index = PersistentIndex(ReadIndexFile(tmp_path / "ri.sqlite3", host="h", log=EventLog()))
    index.load()
    for n, result in enumerate(_results(tmp_path)):
        index.put(result.path, (1, n, 3, 4, 5), result)
    slot = InventorySlot(lambda: inventory_of(index, at=NOW, windows=WINDOWS))
    client = _RecordingClient()
    outbox = Outbox.open(tmp_path / "o.sqlite3")
    intake = OutboxIntake(outbox=outbox, client=client, host="h1", clock=lambda: NOW,
                          inventory=slot)
    sender = threading.Thread(target=intake.heartbeat)
    sender.start()
    while sender.is_alive():
        slot.serve()
        sender.join(0.001)
    outbox.close()
    assert client.beats[0]["inventory"] == {
        "files": 3, "certificates": 3, "errors": 0, "outbox_pending": 0,
        "by_severity": {"ok": 1, "warning": 1, "critical": 1}}


def test_a_busy_main_thread_does_not_hold_up_the_heartbeat() -> None:
    built: list[int] = []

    def build() -> dict[str, Any]:
        built.append(threading.get_ident())
        return {"certificates": len(built), "by_severity": {"ok": len(built)}}

    slot = InventorySlot(build)
    assert slot.request(wait_s=0.01) is None  # nobody served yet: sent without counts
    assert built == []  # the asking thread never builds
    assert slot.serve()
    assert not slot.serve()  # built only when asked for
    first = slot.request(wait_s=0.01)  # not served again: the last snapshot
    assert first is not None
    assert first["certificates"] == 1
    with pytest.raises(TypeError):
        first["by_severity"]["ok"] = 5  # type: ignore[index]
    slot.publish()
    assert slot.latest() == {"certificates": 2, "by_severity": {"ok": 2}}
