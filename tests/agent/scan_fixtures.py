"""Odd but real certificates for the reader's tests, built with ``cryptography`` at test time."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.certfactory import make_ca, make_cert, shared_key

__all__ = [
    "TlsServer",
    "malformed_san_der",
    "nonpositive_serial_der",
    "serve_tls",
    "webpki_chain",
    "write",
]


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def malformed_san_der() -> bytes:
    """A certificate that loads, but whose subjectAltName is an INTEGER where a SEQUENCE of
    GeneralName belongs: ``cryptography`` raises only when the extensions are read."""
    ca = make_ca()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad.example")]))
        .issuer_name(ca.name)
        .public_key(shared_key().public_key())
        .serial_number(0x5A5A)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2026, 3, 1, tzinfo=UTC))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                       b"\x30\x03\x02\x01\x00"),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def nonpositive_serial_der(value: int = -1) -> bytes:
    """A certificate whose serial number is ``value`` (0 or -1): RFC 5280 forbids it, and
    cryptography parses it with a deprecation warning. Built by re-encoding the one-byte serial
    of an ordinary certificate (its signature no longer verifies, which parsing ignores)."""
    der = make_cert(serial=1, sans=("negative.example",)).der
    marker = bytes.fromhex("a003020102020101")  # [0] version v3, INTEGER serial = 1
    at = der.index(marker)
    replacement = value.to_bytes(1, "big", signed=True)
    return der[: at + len(marker) - 1] + replacement + der[at + len(marker):]


def webpki_chain(host: str = "www.example.jp") -> tuple[x509.Certificate, x509.Certificate,
                                                         x509.Certificate, object]:
    """(root, intermediate, leaf, leaf key) with the extensions a WebPKI verifier demands
    (key identifiers, key usage, serverAuth), so a presented chain can verify for real."""
    from cryptography.hazmat.primitives.asymmetric import ec

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Live Test"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())

    def ca_usage() -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=True, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=True, crl_sign=True,
                             encipher_only=False, decipher_only=False)

    root = (x509.CertificateBuilder().subject_name(name("Live Root")).issuer_name(name("Live Root"))
            .public_key(root_key.public_key()).serial_number(1001)
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    mid = (x509.CertificateBuilder().subject_name(name("Live Issuing CA"))
           .issuer_name(root.subject).public_key(mid_key.public_key()).serial_number(1002)
           .not_valid_before(start).not_valid_after(end)
           .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
           .add_extension(ca_usage(), critical=True)
           .add_extension(x509.SubjectKeyIdentifier.from_public_key(mid_key.public_key()),
                          critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
               root_key.public_key()), critical=False)
           .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([
                x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(mid.subject).public_key(leaf_key.public_key()).serial_number(1003)
            .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2026, 6, 30, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                mid_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                           critical=False)
            .sign(mid_key, hashes.SHA256()))
    return root, mid, leaf, leaf_key


@dataclass
class TlsServer:
    port: int
    root_pem: Path
    chain_der: tuple[bytes, ...]
    sni_seen: list[str | None]


def _pem_of(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _serve(listener: socket.socket, context: ssl.SSLContext, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        conn.settimeout(5)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


@contextmanager
def serve_tls(
    directory: Path,
    chain: tuple[tuple[x509.Certificate, ...], object, x509.Certificate] | None = None,
    configure: Callable[[ssl.SSLContext], None] | None = None,
) -> Iterator[TlsServer]:
    """A real TLS server (the ``ssl`` module) on 127.0.0.1 presenting ``chain`` = (certificates
    in the order sent, leaf key, trust anchor); by default leaf + intermediate of
    :func:`webpki_chain`, whose ``root_pem`` makes it verify. ``configure`` changes the
    server's context before it listens (a server that demands a client certificate)."""
    if chain is None:
        root, mid, leaf, leaf_key = webpki_chain()
        presented: tuple[x509.Certificate, ...] = (leaf, mid)
    else:
        presented, leaf_key, root = chain
    chain_file = directory / "server-fullchain.pem"
    chain_file.write_bytes(_pem_of(*presented))
    key_file = directory / "server-privkey.pem"
    key_file.write_bytes(leaf_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_file.chmod(0o600)
    root_file = directory / "server-root.pem"
    root_file.write_bytes(_pem_of(root))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    sni_seen: list[str | None] = []

    def remember_sni(_sock: object, name: str | None, _ctx: object) -> None:
        sni_seen.append(name)

    context.sni_callback = remember_sni  # type: ignore[assignment]
    if configure is not None:
        configure(context)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, context, stop), daemon=True)
    thread.start()
    ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in presented)
    try:
        yield TlsServer(port=listener.getsockname()[1], root_pem=root_file, chain_der=ders,
                        sni_seen=sni_seen)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
