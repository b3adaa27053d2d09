"""The first scan's one-line-per-kind count is logged, and its tally let go, before the start's
reconciliation with the ledger (issue 12: at 100,000 certificates the tally is ~19 MiB and the
ledger's open sightings ~44 MiB while it builds them; both at once were the first start's
peak)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from agent.logs import EventLog, configure_logging
from agent.readindex import READ_INDEX_NAME
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def test_the_count_is_logged_before_what_reconciliation_finds(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    for i in range(4):
        write(store / f"site{i}.pem", make_cert(sans=(f"s{i}.example.jp",)).pem)
    index = tmp_path / "state" / READ_INDEX_NAME
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock(), read_index_path=index)
    daemon.full_scan()
    daemon.shutdown()
    # Stopped; meanwhile a file goes and the read index is lost: the next start is a first
    # scan, and only the ledger still knows the file.
    (store / "site3.pem").unlink()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    stream = io.StringIO()
    log = EventLog(configure_logging("text", stream=stream))
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock(), read_index_path=index, log=log)
    daemon.full_scan()
    daemon.shutdown()
    lines = stream.getvalue().splitlines()
    counted = [n for n, line in enumerate(lines) if "initial scan:" in line]
    gone = [n for n, line in enumerate(lines) if "found at reconciliation" in line]
    assert counted, stream.getvalue()
    assert gone, stream.getvalue()
    assert max(counted) < min(gone)


def test_workers_send_only_kinds_when_the_count_is_all_that_is_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not logging at debug level, the first scan only counts the warnings by kind: the read-ahead
    workers send back their kinds only, and the lines are those one process logs."""
    from agent import readpool
    from agent.storesync import MAX_PLACEMENT_SIBLINGS, StoreSync

    store = tmp_path / "certs"
    per_dir = MAX_PLACEMENT_SIBLINGS + 36  # placed alone: classified by the workers
    pems = [make_cert(sans=(f"k{k}.example.jp",), serial=700 + k).pem for k in range(3)]
    for i in range(per_dir * 6):
        write(store / f"d{i // per_dir}" / f"c{i:04}.pem", pems[i % 3])
    jobs: list[readpool.RowJob | None] = []
    original = readpool.ReadAhead.__init__

    def noting(self: readpool.ReadAhead, *args: Any, **kwargs: Any) -> None:
        jobs.append(kwargs.get("job"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(readpool.ReadAhead, "__init__", noting)
    rows = 0
    row = StoreSync._row

    def counting(self: StoreSync, *args: Any, **kwargs: Any) -> Any:
        nonlocal rows
        rows += 1
        return row(self, *args, **kwargs)

    monkeypatch.setattr(StoreSync, "_row", counting)
    said = {}
    for workers in (0, 1):
        stream = io.StringIO()
        log = EventLog(configure_logging("text", stream=stream))  # info: no debug lines
        daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path / str(workers),
                                clock=SteppingClock(), log=log)
        daemon.sync.read_ahead_workers = workers
        daemon.full_scan()
        daemon.shutdown()
        said[workers] = [line.split(" ", 2)[2] for line in stream.getvalue().splitlines()
                         if "initial scan:" in line]
    assert rows == per_dir * 6  # all by this process without workers, none with them
    assert len(jobs) == 1
    assert jobs[0] is not None
    assert jobs[0].kinds_only
    assert said[0]
    assert said[1] == said[0]
