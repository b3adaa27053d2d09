"""A real ``policy serve`` against clients that hold connections open: a host that sends a
report's headers and then trickles (or nothing) cannot hold the service's places past
``body_timeout_ms``, cannot hold more than one place at all, and a client that drops the
connection mid-body is one log line, not a traceback (issue 13's bad input, found by a
reviewer: four such connections from one enrolled host stopped every other host's reports)."""

from __future__ import annotations

import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.fleet_ca import client_ssl_context
from tests.fleet.fleetkit import Client, Fleet, observation, report, served_fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with served_fleet(tmp_path / "desk", backend="sqlite",
                      extra=lambda _: "max_pending_batches = 1\nbody_timeout_ms = 2000") as made:
        yield made


def _hold(fleet: Fleet, client: Client, *, send: bytes = b"{") -> ssl.SSLSocket:
    """A report's headers announcing 100,000 bytes, then ``send`` and nothing more."""
    context = client_ssl_context(cert_pem=client.cert_pem, key_pem=client.key_pem,
                                 ca_cert_pem=fleet.ca_cert)
    raw = socket.create_connection(("127.0.0.1", fleet.port), timeout=30)
    tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(b"POST /v1/report HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + send)
    return tls


def _status(tls: ssl.SSLSocket) -> int:
    head = tls.recv(4096).split(b"\r\n", 1)[0]
    return int(head.split()[1])


def test_hosts_trickling_bodies_hold_no_place_and_one_connection_each(fleet: Fleet) -> None:
    attackers = [fleet.client(f"slow-host-{n}") for n in range(3)]
    honest = fleet.client("honest-host")
    held = [_hold(fleet, attacker) for attacker in attackers]
    extra = [_hold(fleet, attackers[0]) for _ in range(3)]
    time.sleep(0.5)
    # The same host's other connections are refused at once: one batch at a time a host.
    assert [_status(tls) for tls in extra] == [429, 429, 429]
    # Three hosts trickling bodies hold no place (the service's only one, here): a body is
    # read before a place is taken.
    began = time.monotonic()
    answer = fleet.connect(honest, timeout_s=30).request(
        "POST", "/v1/report", report("honest-host", 1, [observation("/etc/ssl/a.pem", "a" * 64)],
                                     outbox="o"))
    assert answer.status == 200, answer
    assert answer.body["recorded"] == 1
    assert time.monotonic() - began < 1.5  # not behind the trickling bodies' 2 s deadline
    assert [_status(tls) for tls in held] == [408, 408, 408]  # given up on
    for tls in held + extra:
        tls.close()


def test_a_client_gone_mid_body_is_one_line_and_no_traceback(fleet: Fleet) -> None:
    client = fleet.client("gone-host")
    for _ in range(3):
        _hold(fleet, client, send=b'{"host": "gone-host", ').close()
        time.sleep(0.3)
    # The service still answers, then stops; its log says what happened in one line each.
    answer = fleet.connect(client).request("POST", "/v1/report", report(
        "gone-host", 1, [observation("/etc/ssl/b.pem", "b" * 64)], outbox="o"))
    assert answer.status == 200, answer
    process = fleet.process
    assert process is not None
    assert process.stderr is not None
    fleet.process = None
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    text = err.decode(errors="replace")
    assert "Traceback" not in text
    assert "internal error" not in text
    assert text.count("the client went away during /v1/report") >= 1
