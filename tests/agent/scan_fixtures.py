"""Odd but real certificates for the reader's tests, built with ``cryptography`` at test time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.certfactory import make_ca, make_cert, shared_key

__all__ = ["malformed_san_der", "nonpositive_serial_der", "write"]


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
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


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
