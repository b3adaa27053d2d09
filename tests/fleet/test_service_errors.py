"""What ``policy serve`` answers is its own: a request aiohttp cannot parse gets our JSON error,
not aiohttp's text quoting the bytes sent, and no response names aiohttp's or Python's version
(``Server``). A real service, real mutual TLS, requests written byte by byte."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator

import pytest

from agent.fleet_ca import client_ssl_context
from tests.fleet.fleetkit import Fleet, running_fleet

MALFORMED = [
    b"POST /v1/report HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /v1/bindings HTTP/1.1\r\nHost: x\r\nX-Evil: a\x1b[2Jb\x01c\r\n\r\n",
    b"GET /v1/bindings HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("errors") / "desk") as made:
        yield made


def _exchange(fleet: Fleet, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    client = fleet.client("web1")
    context = client_ssl_context(cert_pem=client.cert_pem, key_pem=client.key_pem,
                                 ca_cert_pem=fleet.ca_cert)
    with socket.create_connection(("127.0.0.1", fleet.port), timeout=10) as plain, \
            context.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        tls.sendall(raw)
        received = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLEOFError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            if "content-length" in headers and len(body) >= int(headers["content-length"]):
                break
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return lines[0], headers, body


@pytest.mark.parametrize("raw", MALFORMED, ids=["negative-length", "control-bytes",
                                                "two-lengths"])
def test_a_request_aiohttp_cannot_parse_gets_our_json_error(fleet: Fleet, raw: bytes) -> None:
    status, headers, body = _exchange(fleet, raw)
    assert status.split()[1] == "400", (status, body)  # aiohttp answers these in HTTP/1.0
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": "the request is not valid HTTP"}
    assert headers["server"] == "certescrow"
    for leaked in (b"Content-Length", b"X-Evil", b"\x1b", b"^", b"Invalid"):
        assert leaked not in body


def test_no_response_names_aiohttp_or_python(fleet: Fleet) -> None:
    status, headers, body = _exchange(
        fleet, b"GET /v1/bindings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status.startswith("HTTP/1.1 200"), (status, body)
    assert headers["server"] == "certescrow"
    status, headers, _ = _exchange(
        fleet, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status.startswith("HTTP/1.1 404")
    assert headers["server"] == "certescrow"
