"""Behind a TLS-terminating proxy: the forwarded client certificate is believed only from a
configured proxy address, and checked again (fleet CA, validity, registry)."""

from __future__ import annotations

import http.client
import json
import signal
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.fleet_ca import issue_ca, issue_client_certificate, make_agent_csr
from tests.fleet.fleetkit import NOW, Fleet, make_fleet, observation, report


def _post(port: int, body: object, cert_pem: bytes | None) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if cert_pem is not None:
        # nginx's $ssl_client_escaped_cert: the PEM, URL-encoded.
        headers["X-Client-Cert"] = urllib.parse.quote(cert_pem.decode())
    try:
        conn.request("POST", "/v1/report", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path / "desk")
    made.start(extra='tls = false\ntrusted_proxies = ["127.0.0.1"]')
    try:
        yield made
    finally:
        made.stop(signal.SIGTERM)


def test_a_trusted_proxys_forwarded_certificate_identifies_the_host(proxied: Fleet) -> None:
    client = proxied.client("proxied-host")
    status, body = _post(proxied.port, report("proxied-host", 1, [
        observation("/a.pem", "a" * 64)]), client.cert_pem)
    assert status == 200, body
    assert [o.host for o in proxied.observations()] == ["proxied-host"]


def test_proxy_mode_refuses_what_tls_would(proxied: Fleet) -> None:
    before = proxied.journal_count()
    body = report("p", 1, [observation("/a.pem", "a" * 64)])
    assert _post(proxied.port, body, None)[0] == 401  # no certificate forwarded
    other_key, other_cert = issue_ca(name="other", at=NOW - timedelta(days=1))
    _, csr = make_agent_csr(host="p")
    foreign = issue_client_certificate(ca_key_pem=other_key, ca_cert_pem=other_cert,
                                       csr_pem=csr, host="p", at=NOW - timedelta(minutes=1))
    assert _post(proxied.port, body, foreign.pem)[0] == 403
    expired = proxied.client("p", at=NOW - timedelta(days=40), lifetime=timedelta(days=30))
    assert _post(proxied.port, body, expired.cert_pem)[0] == 403
    assert _post(proxied.port, body, b"not a certificate")[0] == 403
    impostor = proxied.client("impostor")
    assert _post(proxied.port, body, impostor.cert_pem)[0] == 403  # body names "p"
    assert proxied.journal_count() == before


def test_the_header_from_an_untrusted_address_is_ignored(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "desk")
    fleet.start(extra='tls = false\ntrusted_proxies = ["10.9.9.9"]')
    try:
        client = fleet.client("h")
        status, _ = _post(fleet.port, report("h", 1, [observation("/a", "a" * 64)]),
                          client.cert_pem)
        assert status == 401
        assert fleet.journal_count() == 0
    finally:
        fleet.stop()
