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


def _post_headers(port: int, body: object, headers: list[tuple[str, str]]
                  ) -> tuple[int, dict[str, object]]:
    """A POST carrying ``headers`` as given, repeated names included."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode()
    try:
        conn.putrequest("POST", "/v1/report")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(data)))
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(data)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_a_client_certificate_header_given_twice_is_refused(proxied: Fleet) -> None:
    # A proxy that adds its header to the client's instead of replacing it: the client puts
    # another host's certificate (public) before the one the proxy verified, or after it.
    victim = proxied.client("victim")
    attacker = proxied.client("attacker")
    body = report("victim", 1, [observation("/a.pem", "a" * 64)])
    victims, attackers = (urllib.parse.quote(c.cert_pem.decode()) for c in (victim, attacker))
    for headers in ([("X-Client-Cert", victims), ("X-Client-Cert", attackers)],
                    [("X-Client-Cert", attackers), ("X-Client-Cert", victims)],
                    [("X-Client-Cert", victims), ("x-client-cert", victims)]):
        status, answer = _post_headers(proxied.port, body, headers)
        assert status == 400, answer
        assert "more than once" in str(answer["error"])
    assert proxied.journal_count() == 0
    # one header, as nginx's proxy_set_header sends it: taken
    assert _post_headers(proxied.port, body, [("X-Client-Cert", victims)])[0] == 200
    proxied.stop()
    log = "".join(proxied.stderr)
    assert log.count("request-refused: refused a request from 127.0.0.1: it carries the "
                     "X-Client-Cert header more than once") == 3, log


def test_copies_merged_into_one_header_value_are_refused(proxied: Fleet) -> None:
    """Copies of a field may be merged into one comma-separated line (RFC 9110), and a
    certificate reader takes the first block it finds: ``victim's, attacker's`` was taken as
    the victim (the re-review of session 14). A value that is not exactly one certificate is
    refused."""
    victim = proxied.client("victim")
    attacker = proxied.client("attacker")
    body = report("victim", 1, [observation("/a.pem", "a" * 64)])
    victims, attackers = (urllib.parse.quote(c.cert_pem.decode()) for c in (victim, attacker))
    both_blocks = urllib.parse.quote((victim.cert_pem + attacker.cert_pem).decode())
    for value in (f"{victims}, {attackers}", f"{victims},{attackers}", both_blocks,
                  victims + urllib.parse.quote("trailing")):
        status, answer = _post_headers(proxied.port, body, [("X-Client-Cert", value)])
        assert status == 400, answer
        assert "exactly one certificate" in str(answer["error"])
    assert proxied.journal_count() == 0
    assert _post_headers(proxied.port, body, [("X-Client-Cert", victims)])[0] == 200
