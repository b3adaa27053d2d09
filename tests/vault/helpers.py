"""Real objects for vault tests, made with cryptography (nothing committed)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from tests.certfactory import Issued, fresh_key, make_cert

PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
       + bytes(range(256)))


def issued(cn: str = "www.example.jp", kind: str = "ec") -> Issued:
    return make_cert(sans=(cn,), cn=cn, key=fresh_key(kind))


def key_pem(item: Issued, password: bytes | None = None) -> bytes:
    return item.key_pem(password)


def csr_pem(item: Issued) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(item.cert.subject)
           .sign(item.key, None if isinstance(item.key, ed25519.Ed25519PrivateKey)
                 else hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def p12(item: Issued, password: bytes | None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(b"test", item.key, item.cert,  # type: ignore[arg-type]
                                                 None, enc)


def p7(*items: Issued) -> bytes:
    return pkcs7.serialize_certificates([i.cert for i in items], serialization.Encoding.DER)


def sql(path: Path, statement: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Tamper with the vault file directly, as an attacker with file access would."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(statement, args).fetchall()
        conn.commit()
    return rows
