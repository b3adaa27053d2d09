"""A first start's read-ahead workers come from a fork server that needs ~0.4 s to import the
reader; the daemon starts it while its walk goes on, once it has met enough files to read
ahead (issue 12: that wait stood in front of the first batch, 0.43 s of a 2.5 s first start of
20,000 files). Never on a restart, nor for a store too small or not read ahead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent import readpool
from agent.daemon import Daemon
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def _store(root: Path, count: int) -> Path:
    pem = make_cert(sans=("warm.example.jp",)).pem
    for i in range(count):
        write(root / f"d{i // 50}" / f"c{i:04}.pem", pem)
    return root


def _watched(daemon: Daemon, *, workers: int) -> list[int]:
    """How many paths the walk had yielded each time the fork server was started."""
    walked = 0
    starts: list[int] = []
    lister = daemon.sync.lister

    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        nonlocal walked
        for item in lister(*args, **kwargs):
            walked += 1
            yield item

    daemon.sync.lister = counting
    daemon.sync.start_fork_server = lambda: starts.append(walked)
    daemon.sync.read_ahead_workers = workers
    return starts


def test_a_first_start_starts_the_fork_server_during_its_walk(tmp_path: Path) -> None:
    count = readpool.MIN_FILES + 150
    store = _store(tmp_path / "certs", count)
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock())
    starts = _watched(daemon, workers=1)
    daemon.full_scan()
    # once, as the walk met the file that made the store worth reading ahead, not after it
    assert starts == [readpool.MIN_FILES]
    assert daemon.sync.files_read_ahead == count  # and the workers did read it
    daemon.full_scan()  # a resync: started already
    assert starts == [readpool.MIN_FILES]
    daemon.shutdown()


def test_nothing_is_started_early_for_a_small_store_or_without_workers(tmp_path: Path) -> None:
    small = _store(tmp_path / "small", readpool.MIN_FILES - 1)
    daemon, _ = make_daemon(store_config([{"path": str(small)}]), tmp_path / "a",
                            clock=SteppingClock())
    starts = _watched(daemon, workers=1)
    daemon.full_scan()
    daemon.shutdown()
    assert starts == []
    big = _store(tmp_path / "big", readpool.MIN_FILES)
    daemon, _ = make_daemon(store_config([{"path": str(big)}]), tmp_path / "b",
                            clock=SteppingClock())
    starts = _watched(daemon, workers=0)
    daemon.full_scan()
    daemon.shutdown()
    assert starts == []


def test_a_restart_on_its_read_index_starts_nothing_early(tmp_path: Path) -> None:
    store = _store(tmp_path / "certs", readpool.MIN_FILES + 10)
    config = store_config([{"path": str(store)}])
    index = tmp_path / "state" / "read-index.sqlite3"
    first, _ = make_daemon(config, tmp_path, clock=SteppingClock(), read_index_path=index)
    first.sync.read_ahead_workers = 0  # (read in this process: the restart is what counts)
    first.full_scan()
    first.shutdown()
    again, _ = make_daemon(config, tmp_path, clock=SteppingClock(), read_index_path=index)
    starts = _watched(again, workers=1)
    again.full_scan()
    again.shutdown()
    assert starts == []
    assert again.sync.files_read == 0  # (a restart indeed: nothing read again)
