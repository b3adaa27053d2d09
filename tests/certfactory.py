"""Real certificates for tests, made with ``cryptography``; nothing weak is committed.

Keys are generated once per process and reused (EC P-256 by default) because key generation, not
signing, is what makes certificate factories slow; a test that needs a distinct key asks for one.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

__all__ = [
    "CA",
    "DV_OID",
    "EV_OID",
    "IV_OID",
    "OV_OID",
    "Issued",
    "fresh_key",
    "make_ca",
    "make_cert",
    "shared_key",
]

EV_OID = "2.23.140.1.1"
DV_OID = "2.23.140.1.2.1"
OV_OID = "2.23.140.1.2.2"
IV_OID = "2.23.140.1.2.3"

DEFAULT_NOT_BEFORE = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)


def fresh_key(kind: str = "ec") -> CertificateIssuerPrivateKeyTypes:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


@functools.cache
def shared_key(kind: str = "ec", slot: int = 0) -> CertificateIssuerPrivateKeyTypes:
    """A key reused across the test process (``slot`` gives distinct ones)."""
    return fresh_key(kind)


@dataclass(frozen=True)
class CA:
    name: x509.Name
    key: CertificateIssuerPrivateKeyTypes
    cert: x509.Certificate


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    def key_pem(self, password: bytes | None = None) -> bytes:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
        )


def _name(cn: str | None, org: str | None) -> x509.Name:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@functools.cache
def make_ca(org: str = "Test CA Org", cn: str = "Test Issuing CA", slot: int = 0) -> CA:
    """A self-signed CA (cached per name), valid 2000-2099."""
    key = shared_key("ec", 1000 + slot)
    name = _name(cn, org)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2099, 12, 31, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, _hash_for(key))
    )
    return CA(name=name, key=key, cert=cert)


def make_cert(
    *,
    not_before: datetime = DEFAULT_NOT_BEFORE,
    lifetime: timedelta | None = None,
    not_after: datetime | None = None,
    sans: tuple[str, ...] = ("www.example.jp",),
    cn: str | None = None,
    issuer: CA | None = None,
    issuer_org: str | None = None,
    issuer_cn: str | None = None,
    policy_oids: tuple[str, ...] = (),
    key: CertificateIssuerPrivateKeyTypes | None = None,
    is_ca: bool = False,
    serial: int | None = None,
) -> Issued:
    """Issue a leaf certificate.

    Give either ``lifetime`` (the validity *period*, inclusive: ``notAfter = notBefore +
    lifetime - 1 s``, the way CAs and CONTRACT.md count it) or ``not_after``; the default is a
    Let's Encrypt-shaped 90 days. ``issuer_org``/``issuer_cn`` make (and cache) a CA of that name.
    """
    if not_after is None:
        period = lifetime if lifetime is not None else timedelta(days=90)
        not_after = not_before + period - timedelta(seconds=1)
    if issuer is None:
        issuer = make_ca(issuer_org or "Test CA Org", issuer_cn or "Test Issuing CA")
    leaf_key = key if key is not None else shared_key("ec", 0)
    common_name = cn if cn is not None else (sans[0] if sans else "test.invalid")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, None))
        .issuer_name(issuer.name)
        .public_key(leaf_key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if sans:
        entries: list[x509.GeneralName] = []
        for name in sans:
            try:
                entries.append(x509.IPAddress(ip_address(name)))
            except ValueError:
                entries.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    if policy_oids:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in policy_oids]
            ),
            critical=False,
        )
    cert = builder.sign(issuer.key, _hash_for(issuer.key))
    return Issued(cert=cert, key=leaf_key)
