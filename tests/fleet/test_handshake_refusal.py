"""A client certificate the service refuses in the TLS handshake is ``report-refused``
(critical), never ``report-unreachable``; a connection merely closed is unreachable.

Under TLS 1.3 the agent's side of the handshake is over before the service checks its
certificate, so the refusal can only be the fatal alert the service sends (asyncio dropped it:
policy/tlsalert.py), read on the first read, or after the first write failed. Real parts: a
real ``policy serve`` on 127.0.0.1, real certificates, and for the closed connections small
real TLS servers made here with the ``ssl`` module."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.fleet_ca import issue_ca, issue_client_certificate, make_agent_csr
from agent.fleet_client import SendResult
from tests.fleet.fleetkit import NOW, Client, Fleet, observation, report, running_fleet
from tests.fleet.test_agent_process import Agent
from tests.fleet.test_outbox_exit_status import _run_once
from vault import KeyFileSource, open_vault

ATTEMPTS = 12
"""Each refusal is tried this often: whether the agent's request is written before or after
the service's alert arrived is a race, and both orders must say the same."""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("refusal") / "desk") as made:
        yield made


def _foreign(host: str) -> Client:
    other_key, other_cert = issue_ca(name="another CA", at=NOW - timedelta(days=1))
    key_pem, csr_pem = make_agent_csr(host=host)
    issued = issue_client_certificate(ca_key_pem=other_key, ca_cert_pem=other_cert,
                                      csr_pem=csr_pem, host=host,
                                      at=NOW - timedelta(minutes=1))
    return Client(host=host, key_pem=key_pem, cert_pem=issued.pem, serial=issued.serial)


def _attempts(fleet: Fleet, client: Client) -> list[SendResult]:
    results = []
    for i in range(ATTEMPTS):
        connection = fleet.connect(client)
        if i % 2:
            results.append(connection.request("POST", "/v1/report", report(
                client.host, 1, [observation("/a", "a" * 64)] * 20)))
        else:
            results.append(connection.request("GET", "/v1/bindings"))
        connection.close()
    return results


def test_another_cas_certificate_is_refused_not_unreachable(fleet: Fleet) -> None:
    results = _attempts(fleet, _foreign("intruder"))
    assert all(r.status == 0 and r.client_refused and r.refused and not r.transient
               for r in results), [r.message for r in results]
    assert all("not issued by the fleet CA" in r.message for r in results)
    assert not any("ALERT" in r.message for r in results)  # our words, not OpenSSL's


def test_an_expired_certificate_is_refused_not_unreachable(fleet: Fleet) -> None:
    expired = fleet.client("expired-host", at=NOW - timedelta(days=40),
                           lifetime=timedelta(days=30))
    results = _attempts(fleet, expired)
    assert all(r.client_refused for r in results), [r.message for r in results]
    assert all("it has expired" in r.message for r in results)


def test_agent_run_once_with_an_expired_certificate_is_critical(tmp_path: Path,
                                                               fleet: Fleet) -> None:
    agent = Agent(tmp_path / "web9", fleet, "web9", port=fleet.port)
    expired = fleet.client("web9", at=NOW - timedelta(days=40), lifetime=timedelta(days=30))
    (agent.root / "client.pem").write_bytes(expired.cert_pem)
    with open_vault(agent.root / "vault.sqlite3", KeyFileSource(agent.root / "vault.key")) \
            as vault:
        vault.put("private-key", expired.key_pem, label="certescrow fleet client")
    done = _run_once(agent, "--exit-status")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "critical: report-refused:" in done.stdout, done.stdout
    assert "it has expired" in done.stdout
    assert "report-unreachable" not in done.stdout + done.stderr


# ---------------------------------------------------------------------- closed, not refused
@contextlib.contextmanager
def _tls_server(fleet: Fleet, serve: Callable[[socket.socket, ssl.SSLContext], None]
                ) -> Iterator[int]:
    """A TLS server with the service's certificate on 127.0.0.1, one connection at a time
    handed to ``serve``; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    from agent.fleet_ca import issue_server_certificate

    key_pem, issued = issue_server_certificate(ca_key_pem=fleet.ca_key,
                                               ca_cert_pem=fleet.ca_cert,
                                               names=["127.0.0.1"], at=NOW - timedelta(days=1))
    pem = fleet.root / "closing.pem"
    pem.write_bytes(issued.pem + key_pem)
    context.load_cert_chain(pem)
    context.load_verify_locations(cadata=fleet.ca_cert.decode())
    context.verify_mode = ssl.CERT_OPTIONAL
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # closing a socket does not wake an accept() waiting on it
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            with contextlib.suppress(OSError), raw:
                serve(raw, context)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        # a thread left behind makes vault/bounded.py take its fork server for every later
        # test in this process (lambdas then cannot be sent to the child)
        assert not thread.is_alive()


def _request(fleet: Fleet, port: int) -> SendResult:
    """A request to ``port`` instead of the module's service (``fleet.port`` is
    ``fleet.connect``'s address: set for this request only)."""
    service = fleet.port
    fleet.port = port
    try:
        return fleet.connect(fleet.client("web1")).request("GET", "/v1/bindings")
    finally:
        fleet.port = service


def test_a_connection_closed_after_the_handshake_without_an_alert_is_unreachable(
        fleet: Fleet) -> None:
    def close_after_handshake(raw: socket.socket, context: ssl.SSLContext) -> None:
        with context.wrap_socket(raw, server_side=True) as tls:
            tls.recv(1)  # the request's first byte; then closed as a stopping service does

    with _tls_server(fleet, close_after_handshake) as closing:
        result = _request(fleet, closing)
    assert result.status == 0
    assert result.transient
    assert not result.client_refused
    assert "closed by the other side before an answer" in result.message
    assert "is it policy serve" not in result.message


def test_a_connection_closed_during_the_handshake_is_unreachable(fleet: Fleet) -> None:
    def close_at_once(raw: socket.socket, context: ssl.SSLContext) -> None:
        raw.recv(65536)  # the ClientHello (one segment on loopback); closed, no TLS

    with _tls_server(fleet, close_at_once) as closing:
        result = _request(fleet, closing)
    assert result.status == 0
    assert result.transient
    assert not result.client_refused
    assert "closed the connection during the TLS handshake" in result.message
    assert "is it policy serve" not in result.message


def test_a_plain_http_port_is_said_to_be_not_tls(fleet: Fleet) -> None:
    def plain_http(raw: socket.socket, context: ssl.SSLContext) -> None:
        raw.recv(4096)
        raw.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with _tls_server(fleet, plain_http) as plain:
        result = _request(fleet, plain)
    assert result.status == 0
    assert not result.client_refused
    assert "does not answer in TLS" in result.message
