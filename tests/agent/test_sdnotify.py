"""sd_notify over a real AF_UNIX datagram socket bound by the test, and the watchdog ping
withheld while an observer thread is dead."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import Notifier, watchdog_interval_s
from tests.agent.daemon_helpers import make_daemon, store_config


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield path, sock
    finally:
        sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_watchdog_stopping(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier(path)
    assert notifier.ready("watching 1 store")
    assert receive(sock) == "READY=1\nSTATUS=watching 1 store"
    assert notifier.status("two\nlines")
    assert receive(sock) == "STATUS=two lines"
    assert notifier.watchdog()
    assert receive(sock) == "WATCHDOG=1"
    assert notifier.reloading()
    message = receive(sock)
    assert message.startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert int(message.rsplit("=", 1)[1]) > 0
    assert notifier.stopping()
    assert receive(sock) == "STOPPING=1"
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"certescrow-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    notifier = Notifier("@" + name)
    try:
        assert notifier.ready()
        assert receive(sock) == "READY=1"
    finally:
        notifier.close()
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier()  # conftest removed NOTIFY_SOCKET
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_unreachable_socket_is_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.watchdog() is False
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),  # ping at half the timeout
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_s(env) == expected


def test_watchdog_interval_for_this_process() -> None:
    env = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(env) == 1.5


def test_watchdog_ping_withheld_while_an_observer_is_dead(
        tmp_path: Path, notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    store = tmp_path / "store"
    store.mkdir()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            notifier=Notifier(path))
    daemon.start_watching()
    try:
        assert daemon.heartbeat() is True
        assert receive(sock) == "WATCHDOG=1"
        assert daemon.watcher is not None
        observer = daemon.watcher.observer
        assert observer is not None
        for emitter in list(observer.emitters):  # an observer thread dies
            emitter.stop()
            emitter.join(timeout=5)
        assert daemon.heartbeat() is False
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        daemon.supervise()  # restarts the observers ...
        assert daemon.heartbeat() is True  # ... and the pings resume
        sock.settimeout(2)
        assert receive(sock) == "WATCHDOG=1"
    finally:
        daemon.shutdown()
