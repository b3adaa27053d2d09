"""A real ``certescrow agent run`` process: real inotify, real signals, a NOTIFY_SOCKET bound
here to read what it tells systemd, and the real ledger file it writes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from policy.ledger import Ledger
from tests.agent.daemon_helpers import Certbot
from tests.certfactory import make_cert
from tests.clockhook import without_clock_warning

REPO = Path(__file__).resolve().parents[2]
CERTESCROW = Path(sys.executable).parent / "certescrow"


class Manager:
    """Plays systemd's part: the notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, text: str, timeout: float = 20.0, *, after: int = 0) -> int:
        """Index of the first message (from ``after``) containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.messages[after:], start=after):
                if text in message:
                    return i
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {text!r} from the daemon; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


def observations(ledger: Path) -> list[tuple[str, str, bool | None]]:
    with Ledger.open(ledger) as opened:
        return [(e.event.location, e.event.facts.sha256, e.event.key_matches)  # type: ignore[attr-defined]
                for e in opened.unbound_observations()]


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    m = Manager(tmp_path / "notify.sock")
    yield m
    m.close()


def config_text(ledger: Path, *stores: Path) -> str:
    body = (f'[policy]\nledger = "{ledger}"\n[agent]\nhost = "web1"\nquiet_period_ms = 100\n'
            "resync_interval_s = 3600\n")
    for store in stores:
        body += f'[[agent.stores]]\npath = "{store}"\n'
    return body


@pytest.mark.slow
def test_real_daemon_process_signals_and_reports(tmp_path: Path, manager: Manager) -> None:
    certbot = Certbot(tmp_path / "le")
    first = certbot.install()
    plain = tmp_path / "plain"
    plain.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.pem").write_bytes(make_cert(sans=("other.example.jp",)).pem)
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, certbot.root / "live", plain))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=str(manager.path), WATCHDOG_USEC="1000000",
               CERTESCROW_TESTONLY_NOW="2026-02-01T12:00:00+09:00", PYTHONPATH=str(REPO))
    stderr = (tmp_path / "daemon.log").open("w+")
    proc = subprocess.Popen([str(CERTESCROW), "agent", "run", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        ready = manager.wait_for("READY=1")
        assert "STATUS=watching 2 store(s) with inotify" in manager.messages[ready]
        assert (str(certbot.live / "cert.pem"), first.sha256, True) in observations(ledger)
        manager.wait_for("WATCHDOG=1")  # every observer thread alive: pings flow

        # A new file in a watched store is reported.
        new = make_cert(sans=("new.example.jp",))
        (plain / "new.pem").write_bytes(new.pem)
        eventually(lambda: (str(plain / "new.pem"), new.sha256, None) in observations(ledger))

        # certbot renews: archive first, then the live links one at a time.
        renewed = certbot.write_generation()
        for kind in ("cert", "chain", "fullchain", "privkey"):
            certbot.link(kind)
            time.sleep(0.03)
        eventually(lambda: (str(certbot.live / "cert.pem"), renewed.sha256, True)
                   in observations(ledger))
        assert not any(sha == renewed.sha256 and matches is False
                       for _, sha, matches in observations(ledger))

        # A file removed is reported gone.
        (plain / "new.pem").unlink()
        eventually(lambda: f"gone: {plain / 'new.pem'}: no longer there"
                   in (tmp_path / "daemon.log").read_text())

        # SIGHUP with a bad configuration: refused, the old one keeps running.
        config.write_text("[agent]\nobserver = \"telepathy\"\n")
        proc.send_signal(signal.SIGHUP)
        eventually(lambda: "reload-refused" in (tmp_path / "daemon.log").read_text())
        assert proc.poll() is None
        later = make_cert(sans=("later.example.jp",))
        (plain / "later.pem").write_bytes(later.pem)
        eventually(lambda: (str(plain / "later.pem"), later.sha256, None)
                   in observations(ledger))

        # SIGHUP with a good configuration that adds a store: reloaded and scanned.
        config.write_text(config_text(ledger, certbot.root / "live", plain, other))
        count = len(manager.messages)
        proc.send_signal(signal.SIGHUP)
        manager.wait_for("RELOADING=1", after=count)
        manager.wait_for("READY=1", after=count)
        eventually(lambda: any(loc == str(other / "o.pem")
                               for loc, _, _ in observations(ledger)))

        # SIGTERM: a clean stop.
        count = len(manager.messages)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        manager.wait_for("STOPPING=1", after=count, timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    log = (tmp_path / "daemon.log").read_text()
    assert "observers stopped; ledger and vault closed" in log
    assert "Traceback" not in log
    assert "PRIVATE KEY" not in log


@pytest.mark.slow
def test_a_second_agent_on_the_same_state_directory_is_refused_until_the_first_is_gone(
        tmp_path: Path, manager: Manager) -> None:
    """An operator trying ``agent run`` in the foreground while the unit runs: it started
    without a word and both rewrote one read index (the review of session 13). The first
    holds the state directory; killed, it holds nothing (no stale lock)."""
    store = tmp_path / "plain"
    store.mkdir()
    (store / "a.pem").write_bytes(make_cert(sans=("a.example.jp",)).pem)
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, store))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(CERTESCROW_TESTONLY_NOW="2026-02-01T12:00:00+09:00", PYTHONPATH=str(REPO))
    first = subprocess.Popen([str(CERTESCROW), "agent", "run", "--config", str(config)],
                             env={**env, "NOTIFY_SOCKET": str(manager.path)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        manager.wait_for("READY=1")
        second = subprocess.run([str(CERTESCROW), "agent", "run", "--once", "--config",
                                 str(config)], env=env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert second.returncode == 32, second.stderr
        assert without_clock_warning(second.stderr).startswith("Error: ")
        assert f"(pid {first.pid})" in second.stderr
        assert "another certescrow agent" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
    third = subprocess.run([str(CERTESCROW), "agent", "run", "--once", "--config", str(config)],
                           env=env, capture_output=True, text=True, timeout=60, check=False)
    assert third.returncode == 0, third.stderr


def test_a_lock_file_that_is_a_link_or_a_directory_is_an_error_line_not_a_traceback(
        tmp_path: Path) -> None:
    """``agent.lock`` made a symbolic link (to a file the attacker wants written) or a
    directory: O_NOFOLLOW left the target alone, but the agent died with a traceback (the
    re-review of session 13)."""
    store = tmp_path / "plain"
    store.mkdir()
    ledger = tmp_path / "state" / "ledger.sqlite3"
    ledger.parent.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, store))
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(CERTESCROW_TESTONLY_NOW="2026-02-01T12:00:00+09:00", PYTHONPATH=str(REPO))
    lock = ledger.parent / "agent.lock"
    for make, why in ((lambda: lock.symlink_to(victim), "is a symbolic link"),
                      (lambda: lock.mkdir(), "is a directory")):
        make()
        done = subprocess.run([str(CERTESCROW), "agent", "run", "--once", "--config",
                               str(config)], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 30, done.stderr
        assert "Traceback" not in done.stderr
        assert why in done.stderr
        assert victim.read_text() == "untouched"
        if lock.is_symlink():
            lock.unlink()
        else:
            lock.rmdir()
