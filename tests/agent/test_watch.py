"""The real watchdog observer on a temporary store: what reaches the queue, and what never
kills the observer."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.observers.api import BaseObserver

from agent.logs import EventLog
from agent.watch import (
    PathQueue,
    StoreWatcher,
    filesystem_type,
    inotify_limits,
    needs_polling,
)
from tests.certfactory import make_cert


class Collected:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, path: str) -> None:
        with self.lock:
            self.paths.append(path)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.paths)):
                    return True
            time.sleep(0.02)
        return False

    def clear(self) -> None:
        with self.lock:
            self.paths.clear()


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, Collected, StoreWatcher]]:
    store = tmp_path / "store"
    store.mkdir()
    collected = Collected()
    watcher = StoreWatcher(collected, mode="inotify")
    assert watcher.start([store]) == "inotify"
    try:
        yield store, collected, watcher
    finally:
        watcher.stop()


def test_create_modify_and_delete_reach_the_queue(
        watched: tuple[Path, Collected, StoreWatcher]) -> None:
    store, collected, _ = watched
    target = store / "a.pem"
    target.write_bytes(make_cert().pem)
    assert collected.wait_for(lambda p: str(target) in p)
    collected.clear()
    with target.open("ab") as fh:
        fh.write(b"\n")
    assert collected.wait_for(lambda p: str(target) in p)
    collected.clear()
    target.unlink()
    assert collected.wait_for(lambda p: str(target) in p)


def test_rename_replace_reports_the_destination(
        watched: tuple[Path, Collected, StoreWatcher]) -> None:
    store, collected, _ = watched
    (store / "site.pem").write_bytes(make_cert().pem)
    assert collected.wait_for(lambda p: str(store / "site.pem") in p)
    collected.clear()
    tmp = store / ".site.pem.tmp"
    tmp.write_bytes(make_cert(sans=("new.example.jp",)).pem)
    os.replace(tmp, store / "site.pem")  # what certbot and most deploy tools do
    assert collected.wait_for(lambda p: str(store / "site.pem") in p)


def test_new_subdirectory_is_followed(watched: tuple[Path, Collected, StoreWatcher]) -> None:
    store, collected, _ = watched
    sub = store / "new"
    sub.mkdir()
    assert collected.wait_for(lambda p: str(sub) in p)
    time.sleep(0.1)  # watchdog adds the watch on the new directory
    (sub / "c.pem").write_bytes(make_cert().pem)
    assert collected.wait_for(lambda p: str(sub / "c.pem") in p)


def test_handler_exception_never_kills_the_observer(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    calls: list[str] = []

    def explode(path: str) -> None:
        calls.append(path)
        raise RuntimeError("a bug in the enqueue callback")

    watcher = StoreWatcher(explode, mode="inotify")
    watcher.start([store])
    try:
        (store / "a.pem").write_bytes(b"x")
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        (store / "b.pem").write_bytes(b"y")
        while not any(p.endswith("b.pem") for p in calls) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(p.endswith("b.pem") for p in calls)  # still dispatching after a failure
        assert watcher.handler.failures >= 2
        assert watcher.alive()
        assert watcher.dead_threads() == []
    finally:
        watcher.stop()


def test_a_stopped_emitter_is_reported_dead(
        watched: tuple[Path, Collected, StoreWatcher]) -> None:
    _, _, watcher = watched
    assert watcher.alive()
    observer = watcher.observer
    assert observer is not None
    (emitter,) = list(observer.emitters)
    emitter.stop()
    emitter.join(timeout=5)
    assert not watcher.alive()
    assert any(name.startswith("emitter ") for name in watcher.dead_threads())


class _ExhaustedObserver(BaseObserver):
    """An inotify observer whose kernel budget is used up (what ENOSPC looks like)."""

    def __init__(self) -> None:
        from watchdog.observers.inotify import InotifyEmitter

        super().__init__(InotifyEmitter)

    def schedule(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise OSError(errno.ENOSPC, "inotify watch limit reached")


def test_inotify_watch_exhaustion_falls_back_to_polling_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    store.mkdir()
    collected = Collected()
    logger = logging.getLogger("test.watch")
    watcher = StoreWatcher(collected, mode="auto", log=EventLog(logger),
                           polling_interval_s=0.1, inotify_factory=_ExhaustedObserver)
    with caplog.at_level(logging.WARNING, logger="test.watch"):
        assert watcher.start([store]) == "polling"
    try:
        assert any("inotify watches ran out" in r.getMessage() for r in caplog.records)
        (store / "a.pem").write_bytes(make_cert().pem)
        assert collected.wait_for(lambda p: str(store / "a.pem") in p)
        assert watcher.alive()
    finally:
        watcher.stop()


def test_inotify_mode_has_no_fallback(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    watcher = StoreWatcher(lambda p: None, mode="inotify", inotify_factory=_ExhaustedObserver)
    with pytest.raises(OSError, match="limit"):
        watcher.start([store])
    watcher.stop()


def test_configured_polling_is_used_and_logged(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    store.mkdir()
    logger = logging.getLogger("test.watch.polling")
    watcher = StoreWatcher(lambda p: None, mode="polling", log=EventLog(logger),
                           polling_interval_s=0.1)
    with caplog.at_level(logging.WARNING, logger="test.watch.polling"):
        assert watcher.start([store]) == "polling"
    watcher.stop()
    assert any('configured (observer = "polling")' in r.getMessage() for r in caplog.records)


def test_missing_root_is_not_watched_until_it_appears(tmp_path: Path) -> None:
    collected = Collected()
    watcher = StoreWatcher(collected, mode="inotify")
    watcher.start([tmp_path / "later"])
    try:
        assert watcher.missing == [tmp_path / "later"]
        assert watcher.alive()
        (tmp_path / "later").mkdir()
        assert watcher.retry_missing() == [tmp_path / "later"]
        (tmp_path / "later" / "c.pem").write_bytes(b"x")
        assert collected.wait_for(lambda p: str(tmp_path / "later" / "c.pem") in p)
    finally:
        watcher.stop()


def test_queue_coalesces_events_until_quiet() -> None:
    now = [0.0]
    queue = PathQueue(clock=lambda: now[0])
    queue.put("/s/cert.pem")
    now[0] = 0.2
    queue.put("/s/cert.pem")  # a second event restarts the quiet period
    queue.put("/s/privkey.pem")
    now[0] = 0.45
    assert queue.take_due(0.3) == []
    assert queue.next_due_in(0.3) == pytest.approx(0.05)
    now[0] = 0.5
    assert sorted(queue.take_due(0.3)) == ["/s/cert.pem", "/s/privkey.pem"]
    assert len(queue) == 0
    assert queue.next_due_in(0.3) is None


def test_inotify_limits_are_read_from_proc() -> None:
    limits = inotify_limits()
    assert set(limits) == {"max_user_watches", "max_user_instances", "max_queued_events"}
    if Path("/proc/sys/fs/inotify/max_user_watches").exists():
        assert isinstance(limits["max_user_watches"], int)


def test_inotify_queue_overflow_warning_triggers_the_callback(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    overflows: list[bool] = []
    watcher = StoreWatcher(lambda p: None, mode="inotify",
                           on_overflow=lambda: overflows.append(True))
    watcher.start([store])
    library = logging.getLogger("watchdog.observers.inotify_c")
    try:
        library.warning("Inotify queue overflowed; filesystem events were lost")
        library.warning("something else")
        assert overflows == [True]
    finally:
        watcher.stop()
    library.warning("Inotify queue overflowed; filesystem events were lost")
    assert overflows == [True]  # the hook goes with the watcher


def test_reading_a_file_raises_no_event(watched: tuple[Path, Collected, StoreWatcher]) -> None:
    """The daemon's own reads must not wake the observer (IN_OPEN/IN_CLOSE_NOWRITE are not
    asked for), or every scan would feed itself events."""
    store, collected, _ = watched
    target = store / "a.pem"
    target.write_bytes(make_cert().pem)
    assert collected.wait_for(lambda p: str(target) in p)
    time.sleep(0.2)
    collected.clear()
    target.read_bytes()
    assert not collected.wait_for(lambda p: bool(p), timeout=0.3)


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 22 0:30 / /srv rw,relatime shared:2 - xfs /dev/sdb1 rw
41 35 0:45 / /srv/certs rw,relatime shared:3 - nfs4 fs1:/export/certs rw,vers=4.2
47 22 0:50 / /mnt/my\\040certs rw,relatime shared:4 - fuse.sshfs user@host:/certs rw
"""


def test_filesystem_type_is_the_longest_mount_containing_the_path(tmp_path: Path) -> None:
    assert filesystem_type(Path("/srv/certs/live/a.pem"), mountinfo=MOUNTINFO) == "nfs4"
    assert filesystem_type(Path("/srv/certs"), mountinfo=MOUNTINFO) == "nfs4"
    assert filesystem_type(Path("/srv/certsX"), mountinfo=MOUNTINFO) == "xfs"  # not a prefix
    assert filesystem_type(Path("/etc/ssl"), mountinfo=MOUNTINFO) == "ext4"
    assert filesystem_type(Path("/mnt/my certs/x.pem"), mountinfo=MOUNTINFO) == "fuse.sshfs"
    assert filesystem_type(tmp_path) is not None  # this machine's own mountinfo is read


@pytest.mark.parametrize(("fstype", "polled"), [
    ("nfs", True), ("nfs4", True), ("cifs", True), ("fuse.sshfs", True), ("fuse", True),
    ("ceph", True), ("ext4", False), ("xfs", False), ("tmpfs", False), ("overlay", False),
    (None, False),
])
def test_network_cluster_and_fuse_filesystems_need_polling(fstype: str | None,
                                                           polled: bool) -> None:
    assert needs_polling(fstype) is polled


def test_a_root_on_a_network_filesystem_is_polled_the_others_use_inotify(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    collected = Collected()
    logger = logging.getLogger("test.watch")
    watcher = StoreWatcher(collected, mode="auto", log=EventLog(logger), polling_interval_s=0.1,
                           fstype=lambda p: "nfs4" if p == remote else "ext4")
    with caplog.at_level(logging.WARNING, logger="test.watch"):
        assert watcher.start([local, remote]) == "inotify+polling"
    try:
        assert watcher.polled == [remote]
        assert watcher.watched == [local]
        (warning,) = [r for r in caplog.records if r.getMessage().startswith(f"{remote}:")]
        assert "nfs4" in warning.getMessage()
        assert "polling" in warning.getMessage()
        (remote / "a.pem").write_bytes(make_cert().pem)
        (local / "b.pem").write_bytes(make_cert().pem)
        assert collected.wait_for(lambda p: str(remote / "a.pem") in p)
        assert collected.wait_for(lambda p: str(local / "b.pem") in p)
        assert any(name == "poller" for name, _ in watcher.threads())
        assert watcher.alive()
    finally:
        watcher.stop()
    assert watcher.poller is None


def test_exhaustion_after_a_network_root_polls_every_root(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    collected = Collected()
    watcher = StoreWatcher(collected, mode="auto", polling_interval_s=0.1,
                           inotify_factory=_ExhaustedObserver,
                           fstype=lambda p: "nfs4" if p == remote else "ext4")
    assert watcher.start([local, remote]) == "polling"
    try:
        assert sorted(watcher.watched) == sorted([local, remote])  # the network root kept
        (remote / "a.pem").write_bytes(make_cert().pem)
        assert collected.wait_for(lambda p: str(remote / "a.pem") in p)
    finally:
        watcher.stop()
