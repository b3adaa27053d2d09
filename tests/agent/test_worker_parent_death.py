"""Worker processes end with the process that started them, however it ends.

A scan killed while its workers read (``kill -9``, ``kill -TERM``) left them running with
parent 1, one blocked writing its result to a pipe nobody reads, the other waiting for a batch
that never comes. The same for the daemon's read-ahead workers, which come from a fork server.
These tests run real processes, kill the parent, and watch ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert
from tests.clirun import clean_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the parent-death signal and /proc are Linux's")

ROOT = Path(__file__).resolve().parents[2]
STORE_FILES = 6000
"""Enough that two workers are still reading when the scan is killed (~1 s of work)."""


def _store(root: Path, files: int) -> Path:
    pems = [make_cert(lifetime=timedelta(days=d), sans=(f"d{d}.example",)).pem
            for d in (90, 199, 365)]
    for i in range(files):
        write(root / f"d{i // 500:02}" / f"{i:05}.pem", pems[i % 3])
    return root


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            found.update(int(n) for n in (task / "children").read_text().split())
        except FileNotFoundError:
            pass
    return found


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie its new parent has yet to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _survivors(pids: set[int], timeout: float = 5.0) -> set[int]:
    _wait_for(lambda: not any(_alive(p) for p in pids), timeout)
    return {p for p in pids if _alive(p)}


def _reap(pids: set[int]) -> None:
    """Leave nothing behind when the test fails."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _store(tmp_path_factory.mktemp("store"), STORE_FILES)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_scan_workers_exit_when_the_scan_is_killed(
        store: Path, tmp_path: Path, signum: signal.Signals) -> None:
    scan = subprocess.Popen(
        [sys.executable, "-m", "agent.main", "scan", "--jobs", "2", "--json", str(store)],
        cwd=ROOT, env=clean_env(tmp_path), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        assert _wait_for(lambda: len(_children(scan.pid)) >= 2, 30), "no workers started"
        workers = _children(scan.pid)
        time.sleep(0.2)  # reading
        assert scan.poll() is None, "the scan ended before it could be killed: a larger store"
        os.kill(scan.pid, signum)
        scan.wait(10)
        assert _survivors(workers) == set()
    finally:
        scan.kill()
        scan.wait()
        _reap(workers)


_READ_AHEAD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from agent.readpool import ReadAhead
    from agent.records import ReadLimits

    paths = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.pem"))
    ahead = ReadAhead(paths, limits=ReadLimits(), passwords=(), workers=2)
    assert ahead.take(paths[0]) is not None
    print("reading", flush=True)
    time.sleep(60)
""")


def test_read_ahead_workers_exit_when_the_daemon_is_killed(
        store: Path, tmp_path: Path) -> None:
    """The daemon's read-ahead workers are children of a fork server, not of the daemon."""
    daemon = subprocess.Popen([sys.executable, "-c", _READ_AHEAD, str(store)], cwd=ROOT,
                              env=clean_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    spawned: set[int] = set()
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline() == "reading\n"
        # the fork server and its two workers
        assert _wait_for(lambda: len(_descendants(daemon.pid)) >= 3, 10)
        spawned = _descendants(daemon.pid)
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
        assert _survivors(spawned) == set()
    finally:
        daemon.kill()
        daemon.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()
        _reap(spawned)
