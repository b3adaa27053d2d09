"""Real ``certescrow agent run`` processes killed and restarted (issue 9, "done means"), and file
names that are not UTF-8: the ledger's open sightings end up equal to a fresh scan of the
store, whatever moment the daemon died at, and no name crashes it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.reader import read_file
from agent.records import ReadLimits
from policy.ledger import Ledger
from tests.agent.test_daemon_process import (
    CERTESCROW,
    REPO,
    Manager,
    config_text,
    eventually,
)
from tests.certfactory import Issued, make_cert


def _env(manager: Manager | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "WATCHDOG_", "CERTESCROW_"))}
    env.update(PYTHONPATH=str(REPO))
    if manager is not None:
        env["NOTIFY_SOCKET"] = str(manager.path)
    return env


def _start(config: Path, log: Path, manager: Manager | None) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen([str(CERTESCROW), "agent", "run", "--config", str(config)],
                                env=_env(manager), stdout=subprocess.DEVNULL, stderr=stderr)


def _fresh_scan(store: Path) -> set[tuple[str, int, str]]:
    """What is on disk now, read afresh: (location, index, sha256) of every certificate."""
    found: set[tuple[str, int, str]] = set()
    limits = ReadLimits(root=store)
    for dirpath, _dirs, files in os.walk(os.fsencode(store)):
        for name in files:
            path = Path(os.fsdecode(os.path.join(dirpath, name)))
            result = read_file(path, limits=limits)
            found.update((str(path), c.index, c.facts.sha256) for c in result.certificates)
    return found


def _in_ledger(ledger: Path) -> set[tuple[str, int, str]]:
    if not ledger.exists():
        return set()
    with Ledger.open(ledger, create=False) as opened:
        return set(opened.open_sightings("web1"))


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Churn:
    """Changes a store the way a host does (new files, renewals in place, bundles that shrink,
    files turned to garbage, deletions, directories removed), from a seeded random generator."""

    NAMES = ("a.pem", "b.pem", "bundle.pem", "c.crt", "sub/d.pem", "sub/e.pem",
             os.fsdecode(b"\xff-not-utf8.pem"))

    def __init__(self, store: Path, pool: list[Issued], seed: int) -> None:
        self.store = store
        self.pool = pool
        self.random = random.Random(seed)

    def step(self) -> None:
        rnd = self.random
        path = self.store / rnd.choice(self.NAMES)
        action = rnd.random()
        if action < 0.45:
            path.parent.mkdir(exist_ok=True)
            count = rnd.choice((1, 1, 2, 3))
            path.write_bytes(b"".join(rnd.choice(self.pool).pem for _ in range(count)))
        elif action < 0.6 and path.exists():
            path.write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n")
        elif action < 0.9:
            path.unlink(missing_ok=True)
        elif (self.store / "sub").is_dir():
            for child in (self.store / "sub").iterdir():
                child.unlink()
            (self.store / "sub").rmdir()


@pytest.mark.slow
def test_kill_and_restart_loop_leaves_the_ledger_equal_to_a_fresh_scan(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, store).replace("quiet_period_ms = 100",
                                                         "quiet_period_ms = 50"))
    log = tmp_path / "daemon.log"
    pool = [make_cert(sans=(f"h{n}.example.jp",)) for n in range(5)]
    churn = Churn(store, pool, seed=9)
    for _ in range(12):
        churn.step()
    killer = random.Random(11)

    stop_churning = threading.Event()

    def churning() -> None:
        while not stop_churning.is_set():
            churn.step()
            time.sleep(churn.random.uniform(0.0, 0.08))

    thread = threading.Thread(target=churning, daemon=True)
    thread.start()
    try:
        for cycle in range(8):
            proc = _start(config, log, None)
            time.sleep(killer.uniform(0.3, 2.2))  # during start-up, the first scan, or watching
            proc.kill()
            proc.wait()
            if cycle % 2:
                # The persisted read index may be lost or discarded (corrupt, foreign): the
                # ledger must come right from what is on disk, not from that index.
                for stale in ledger.parent.glob("read-index*"):
                    stale.unlink()
    finally:
        stop_churning.set()
        thread.join(5)
    for _ in range(10):  # and more while nothing watches, the read index lost again
        churn.step()
    for stale in ledger.parent.glob("read-index*"):
        stale.unlink()

    manager = Manager(tmp_path / "notify.sock")
    try:
        proc = _start(config, log, manager)
        try:
            manager.wait_for("READY=1", timeout=30)
            expected = _fresh_scan(store)
            eventually(lambda: _in_ledger(ledger) == expected, timeout=15)
        finally:
            assert _stop(proc) == 0
    finally:
        manager.close()
    assert _in_ledger(ledger) == _fresh_scan(store)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "process-failed" not in text


@pytest.mark.slow
def test_file_names_that_are_not_utf8_neither_crash_the_daemon_nor_get_lost(
        tmp_path: Path) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    raw = os.fsencode(store)
    at_start, later = make_cert(sans=("start.example.jp",)), make_cert(sans=("later.example.jp",))
    os.mkdir(raw + b"/dir-\xfe")
    with open(raw + b"/dir-\xfe/start-\xff.pem", "wb") as f:
        f.write(at_start.pem)
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, store))
    log = tmp_path / "daemon.log"
    manager = Manager(tmp_path / "notify.sock")
    try:
        proc = _start(config, log, manager)
        try:
            manager.wait_for("READY=1", timeout=30)
            with open(raw + b"/later-\xe9\x80.pem", "wb") as f:  # appears while watched
                f.write(later.pem)
            eventually(lambda: _in_ledger(ledger) == _fresh_scan(store), timeout=15)
            os.unlink(raw + b"/dir-\xfe/start-\xff.pem")
            eventually(lambda: _in_ledger(ledger) == _fresh_scan(store), timeout=15)
            assert proc.poll() is None
        finally:
            assert _stop(proc) == 0
    finally:
        manager.close()
    assert {sha for _, _, sha in _in_ledger(ledger)} == {later.sha256}
    assert {loc for loc, _, _ in _in_ledger(ledger)} == {os.fsdecode(raw + b"/later-\xe9\x80.pem")}
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    assert "process-failed" not in text
