"""A first scan's read-ahead workers classify the files placed alone (a directory too large to
place a file among) and the daemon logs what they found (issue 12): the lines are those one
process logs, word for word, and the daemon's own process classifies none of them."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from agent import readpool
from agent.logs import EventLog, configure_logging
from agent.storesync import MAX_PLACEMENT_SIBLINGS, StoreSync
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def _first_scan(tmp_path: Path, store: Path, workers: int,
                monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], int]:
    rows = 0
    original = StoreSync._row

    def counting(self: StoreSync, *args: object, **kwargs: object) -> object:
        nonlocal rows
        rows += 1
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(StoreSync, "_row", counting)
    stream = io.StringIO()
    log = EventLog(configure_logging("text", stream=stream, level=10))  # debug: every line
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path / str(workers),
                            clock=SteppingClock(), log=log)
    daemon.sync.read_ahead_workers = workers
    daemon.full_scan()
    daemon.shutdown()
    assert daemon.sync.files_read_ahead == (daemon.sync.files_read if workers else 0)
    lines = [re.sub(r"^\S+ \S+ ", "", line)  # the time stamp
             for line in stream.getvalue().splitlines()
             if "finding" in line or "action" in line or "initial scan" in line]
    return lines, rows


def test_what_workers_classify_is_logged_as_one_process_logs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "certs"
    per_dir = MAX_PLACEMENT_SIBLINGS + 36  # placed alone: a trust store's directory
    count = per_dir * 6
    assert count >= readpool.MIN_FILES
    # a few distinct certificates, in many files
    pems = [make_cert(sans=(f"s{k}.example.jp",), serial=1000 + k).pem for k in range(7)]
    for i in range(count):
        write(store / f"d{i // per_dir}" / f"c{i:04}.pem", pems[i % 7])
    alone, in_process = _first_scan(tmp_path, store, 0, monkeypatch)
    ahead, by_workers = _first_scan(tmp_path, store, 1, monkeypatch)
    assert any("initial scan" in line for line in alone)  # there is something to compare
    assert len(alone) > count  # a debug line per certificate and kind
    assert ahead == alone  # the same lines, in the same order
    assert in_process == count
    assert by_workers == 0
