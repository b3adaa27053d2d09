"""A live server's whole presented chain, from a real TLS server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.livechain import LiveChainError, fetch_chain, parse_target, verify_chain
from tests.agent.scan_fixtures import TlsServer, serve_tls

AT = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    with serve_tls(tmp_path) as server:
        yield server


def test_fetches_the_whole_presented_chain_in_order_with_sni(tls_server: TlsServer) -> None:
    chain = fetch_chain("127.0.0.1", tls_server.port, servername="www.example.jp", timeout=5)
    assert chain.certificates == tls_server.chain_der
    assert chain.location == f"127.0.0.1:{tls_server.port}"
    assert chain.protocol.startswith("TLS")
    assert tls_server.sni_seen == ["www.example.jp"]
    assert [hashlib.sha256(d).hexdigest() for d in chain.certificates] == [
        hashlib.sha256(d).hexdigest() for d in tls_server.chain_der]


def test_presented_chain_verifies_against_its_root(tls_server: TlsServer) -> None:
    chain = fetch_chain("127.0.0.1", tls_server.port, servername="www.example.jp", timeout=5)
    assert verify_chain(chain.certificates, server="www.example.jp", at=AT,
                        ca_file=tls_server.root_pem) is None


def test_presented_chain_does_not_verify_for_another_name(tls_server: TlsServer) -> None:
    chain = fetch_chain("127.0.0.1", tls_server.port, servername="www.example.jp", timeout=5)
    reason = verify_chain(chain.certificates, server="other.example", at=AT,
                          ca_file=tls_server.root_pem)
    assert reason is not None


def test_presented_chain_does_not_verify_after_it_expired(tls_server: TlsServer) -> None:
    chain = fetch_chain("127.0.0.1", tls_server.port, servername="www.example.jp", timeout=5)
    reason = verify_chain(chain.certificates, server="www.example.jp",
                          at=datetime(2026, 7, 1, tzinfo=UTC), ca_file=tls_server.root_pem)
    assert reason is not None


def test_presented_chain_does_not_verify_against_the_system_store(tls_server: TlsServer) -> None:
    chain = fetch_chain("127.0.0.1", tls_server.port, servername="www.example.jp", timeout=5)
    assert verify_chain(chain.certificates, server="www.example.jp", at=AT) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_a_clear_error() -> None:
    port = _free_port()
    with pytest.raises(LiveChainError, match="connection refused"):
        fetch_chain("127.0.0.1", port, timeout=2)


def test_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes TCP; nobody ever speaks TLS
        with pytest.raises(LiveChainError, match="timeout"):
            fetch_chain("127.0.0.1", listener.getsockname()[1], timeout=0.5)


def test_plain_http_server_is_not_tls() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        with pytest.raises(LiveChainError, match=r"not (a )?TLS"):
            fetch_chain("127.0.0.1", listener.getsockname()[1], timeout=5)
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("example.jp:443", ("example.jp", 443)), ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
     ("127.0.0.1:1", ("127.0.0.1", 1)), ("cert.pem", None), ("dir/x:443", None),
     ("host:0", None), ("host:70000", None), ("2001:db8::1", None)],
)
def test_parse_target(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_target(text) == expected
