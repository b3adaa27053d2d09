"""A live server's whole presented chain, from a real TLS server on 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.livechain import LiveChainError, fetch_chain, parse_target, verify_chain
from agent.main import certescrow
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


def _verdict(server: TlsServer, *, name: str = "www.example.jp", at: datetime = AT,
             ca_file: Path | None = None) -> tuple[str, str]:
    chain = fetch_chain("127.0.0.1", server.port, servername="www.example.jp", timeout=5)
    verdict = verify_chain(chain.certificates, server=name, at=at,
                           ca_file=ca_file if ca_file is not None else server.root_pem)
    assert verdict is not None
    # words an operator acts on, never the verifier's own text (OIDs, "candidates exhausted")
    assert "2.5.29" not in verdict.message
    assert "exhausted" not in verdict.message.lower()
    return verdict.problem, verdict.message


def test_presented_chain_does_not_verify_for_another_name(tls_server: TlsServer) -> None:
    problem, message = _verdict(tls_server, name="other.example")
    assert problem == "name-mismatch"
    assert message.startswith("the certificate does not name other.example (it names "
                              "www.example.jp)")


def test_presented_chain_does_not_verify_after_it_expired(tls_server: TlsServer) -> None:
    problem, message = _verdict(tls_server, at=datetime(2026, 7, 1, tzinfo=UTC))
    assert problem == "expired"
    assert message == ("the server's certificate expired on 2026-06-30 (Asia/Tokyo): deploy "
                       "the renewed certificate")


def test_presented_chain_does_not_verify_before_it_is_valid(tls_server: TlsServer) -> None:
    problem, message = _verdict(tls_server, at=datetime(2025, 12, 1, tzinfo=UTC))
    assert problem == "not-yet-valid"
    assert "is not valid before 2026-01-01" in message


def test_a_server_that_sends_only_its_leaf_is_missing_the_intermediate(tmp_path: Path) -> None:
    from tests.agent.scan_fixtures import webpki_chain

    root, _mid, leaf, key = webpki_chain()
    with serve_tls(tmp_path, chain=((leaf,), key, root)) as server:
        problem, message = _verdict(server)
    assert problem == "missing-intermediate"
    assert "configure the full chain" in message
    assert "Live Issuing CA" in message


def test_a_chain_to_a_root_not_trusted_here_is_an_unknown_root(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.agent.scan_fixtures import webpki_chain

    other_root = webpki_chain()[0]
    anchors = tmp_path / "other-root.pem"
    anchors.write_bytes(other_root.public_bytes(Encoding.PEM))
    with serve_tls(tmp_path) as server:
        problem, message = _verdict(server, ca_file=anchors)
    assert problem == "unknown-root"
    assert "not a trusted root here" in message


def test_presented_chain_does_not_verify_against_the_system_store(tls_server: TlsServer) -> None:
    chain = fetch_chain("127.0.0.1", tls_server.port, servername="www.example.jp", timeout=5)
    verdict = verify_chain(chain.certificates, server="www.example.jp", at=AT)
    assert verdict is not None
    assert verdict.problem in ("unknown-root", "no-trust-anchors")


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
     ("host:x443", None), ("host:４４３", None), ("2001:db8::1", None)],
)
def test_parse_target(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["host:0", "host:70000", "localhost:99999", "[::1]:65536"])
def test_a_port_out_of_range_is_said_so_not_taken_for_a_missing_file(text: str) -> None:
    """``inspect localhost:99999`` said "not-found: no such file" (review 12)."""
    with pytest.raises(ValueError, match="out of range"):
        parse_target(text)
    result = CliRunner().invoke(certescrow, ["inspect", text])
    assert result.exit_code == 2
    assert "out of range (1-65535)" in result.output
    assert "no such file" not in result.output


def _demands_a_client_certificate(context: ssl.SSLContext) -> None:
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # (TLS 1.3 refuses after the handshake)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=_a_root_pem())


def _a_root_pem() -> str:
    from cryptography.hazmat.primitives import serialization

    from tests.agent.scan_fixtures import webpki_chain

    return webpki_chain()[0].public_bytes(serialization.Encoding.PEM).decode()


def test_a_handshake_the_server_refuses_says_so_in_openssls_reason(tmp_path: Path) -> None:
    with serve_tls(tmp_path, configure=_demands_a_client_certificate) as server:
        with pytest.raises(LiveChainError) as caught:
            fetch_chain("127.0.0.1", server.port, timeout=5)
    message = str(caught.value)
    assert message.startswith(f"127.0.0.1:{server.port}: TLS handshake failed (")
    assert "alert" in message


class _FailingHandshake:
    """What pyOpenSSL raises from ``do_handshake`` in cases a test cannot provoke on demand
    (a system call failing with another errno; a reason carrying terminal controls)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def do_handshake(self) -> None:
        raise self.error


def test_a_failed_system_call_is_named_by_its_errno_not_the_librarys_text() -> None:
    from OpenSSL import SSL

    from agent.livechain import _handshake

    with socket.socket() as sock, pytest.raises(LiveChainError) as caught:
        _handshake(_FailingHandshake(SSL.SysCallError(errno.EHOSTUNREACH, "No route to "
                                                      "host \x1b[31m")),  # type: ignore[arg-type]
                   sock, deadline=0, where="h:443", timeout=1)
    assert str(caught.value) == "h:443: TLS handshake failed: system call failed (EHOSTUNREACH)"


def test_openssls_reason_text_is_checked_before_it_is_shown() -> None:
    from OpenSSL import SSL

    from agent.livechain import _handshake

    hostile = SSL.Error([("SSL routines", "", "handshake failure \x1b]0;owned\x07")])
    with socket.socket() as sock, pytest.raises(LiveChainError) as caught:
        _handshake(_FailingHandshake(hostile), sock,  # type: ignore[arg-type]
                   deadline=0, where="h:443", timeout=1)
    assert str(caught.value) == "h:443: TLS handshake failed (no detail)"
