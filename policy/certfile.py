"""Reading certificate files for ``certescrow policy classify``: the policy CLI's own adapter.

This is the one module of ``policy/`` allowed to import ``cryptography``: it turns X.509
certificates into :class:`~policy.facts.CertificateFacts` so that the rules never see a crypto
object. It reads PEM (any number of certificates, PKCS#7 blocks too), DER, DER PKCS#7 and
unencrypted PKCS#12; everything else is a :class:`CertificateFileError` with a stable code (the
codes the agent uses), never a traceback. Library warnings about odd-but-parseable certificates
become findings.
"""

from __future__ import annotations

import hashlib
import re
import stat
import warnings
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from policy.decisions import Finding, Severity
from policy.errors import PolicyError
from policy.facts import CertificateFacts

__all__ = [
    "MAX_FILE_SIZE",
    "CertificateEntry",
    "CertificateFileError",
    "facts_from_certificate",
    "read_certificate_file",
]

MAX_FILE_SIZE = 10 * 1024 * 1024
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)-----END \1-----", re.DOTALL)
_JKS_MAGIC = b"\xfe\xed\xfe\xed"


class CertificateFileError(PolicyError):
    """A certificate file that cannot be read; ``code`` is one of the stable kebab-case codes
    (``not-found``, ``permission-denied``, ``not-regular-file``, ``too-large``, ``empty``,
    ``truncated``, ``garbage``, ``unsupported-format``, ``pkcs12-password``,
    ``malformed-certificate``, ``io-error``)."""

    exit_code = 17

    def __init__(self, path: Path | str, code: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEntry:
    """One certificate of a file, with what reading it revealed."""

    index: int
    facts: CertificateFacts
    findings: tuple[Finding, ...] = ()


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _key(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        return "unknown", None
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec-{key.curve.name}", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return type(key).__name__.lower(), None


def facts_from_certificate(cert: x509.Certificate) -> CertificateEntry:
    """The facts of one parsed certificate (index 0; the reader sets the real index)."""
    findings: list[Finding] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        der = cert.public_bytes(serialization.Encoding.DER)
        sans: tuple[str, ...] = ()
        policies: tuple[str, ...] = ()
        is_ca = False
        try:
            extensions = cert.extensions
        except ValueError as exc:
            findings.append(Finding(code="malformed-extension", clause="",
                                    severity=Severity.WARNING,
                                    message=f"an extension cannot be parsed: {exc}"))
            extensions = x509.Extensions([])
        for ext in extensions:
            value = ext.value
            if isinstance(value, x509.SubjectAlternativeName):
                sans = tuple(value.get_values_for_type(x509.DNSName)) + tuple(
                    str(ip) for ip in value.get_values_for_type(x509.IPAddress))
            elif isinstance(value, x509.CertificatePolicies):
                policies = tuple(p.policy_identifier.dotted_string for p in value)
            elif isinstance(value, x509.BasicConstraints):
                is_ca = value.ca
        key_type, key_size = _key(cert)
        serial = format(cert.serial_number, "x") if cert.serial_number >= 0 else \
            "-" + format(-cert.serial_number, "x")
        try:
            signature = cert.signature_algorithm_oid._name
        except AttributeError:  # pragma: no cover - very old cryptography
            signature = cert.signature_algorithm_oid.dotted_string
        facts = CertificateFacts(
            sha256=hashlib.sha256(der).hexdigest(),
            not_before_utc=cert.not_valid_before_utc.astimezone(UTC),
            not_after_utc=cert.not_valid_after_utc.astimezone(UTC),
            subject=cert.subject.rfc4514_string(),
            subject_cn=_attr(cert.subject, NameOID.COMMON_NAME),
            issuer=cert.issuer.rfc4514_string(),
            issuer_org=_attr(cert.issuer, NameOID.ORGANIZATION_NAME),
            issuer_cn=_attr(cert.issuer, NameOID.COMMON_NAME),
            serial=serial,
            sans=sans,
            policy_oids=policies,
            is_ca=is_ca,
            self_signed=cert.issuer == cert.subject,
            key_type=key_type,
            key_size=key_size,
            signature_algorithm=str(signature),
        )
    for warning in caught:
        findings.append(Finding(code="odd-certificate", clause="", severity=Severity.WARNING,
                                message=str(warning.message)))
    return CertificateEntry(index=0, facts=facts, findings=tuple(findings))


def _reason(error: Exception | str) -> str:
    """The parser's complaint without the Rust debug dump (``ParseError { kind: … }``)."""
    text = str(error)
    if "ParseError" not in text:
        return text
    kind = re.search(r"kind: (\w+)", text)
    location = re.search(r'location: \["?([^"\]]+)', text)
    where = f" in {location.group(1)}" if location else ""
    return f"ASN.1 parse error ({kind.group(1) if kind else 'invalid encoding'}{where})"


def _load_bytes(path: Path, max_size: int) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CertificateFileError(path, "not-found", "no such file") from None
    except PermissionError:
        raise CertificateFileError(path, "permission-denied", "permission denied") from None
    except OSError as exc:
        raise CertificateFileError(path, "io-error", f"cannot read: {exc.strerror}") from None
    if stat.S_ISFIFO(info.st_mode):
        raise CertificateFileError(path, "fifo", "is a FIFO, not a certificate file")
    if not stat.S_ISREG(info.st_mode):
        raise CertificateFileError(path, "not-regular-file",
                                   "not a regular file (a directory or device)")
    if info.st_size > max_size:
        raise CertificateFileError(path, "too-large",
                                   f"{info.st_size} bytes, more than the {max_size}-byte limit")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_size + 1)
    except FileNotFoundError:
        raise CertificateFileError(path, "vanished", "disappeared while being read") from None
    except PermissionError:
        raise CertificateFileError(path, "permission-denied", "permission denied") from None
    except OSError as exc:
        raise CertificateFileError(path, "io-error", f"cannot read: {exc.strerror}") from None
    if len(data) > max_size:
        raise CertificateFileError(path, "too-large", f"more than the {max_size}-byte limit")
    return data


def _from_pem(path: Path, data: bytes) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks:
        raise CertificateFileError(path, "truncated",
                                   "PEM data without a complete BEGIN/END block")
    kinds = []
    for number, block in enumerate(blocks, start=1):
        kind = block.group(1).decode("ascii")
        kinds.append(kind)
        text = block.group(0)
        try:
            if kind in ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"):
                if kind == "TRUSTED CERTIFICATE":
                    raise CertificateFileError(path, "unsupported-format",
                                               "OpenSSL TRUSTED CERTIFICATE blocks are not "
                                               "supported; export a plain CERTIFICATE")
                certs.append(x509.load_pem_x509_certificate(
                    text.replace(b"X509 CERTIFICATE", b"CERTIFICATE")))
            elif kind == "PKCS7":
                certs.extend(pkcs7.load_pem_pkcs7_certificates(text))
        except ValueError as exc:
            raise CertificateFileError(
                path, "malformed-certificate",
                f"PEM block {number} ({kind}) is not a valid certificate: {_reason(exc)}",
            ) from None
    if not certs:
        raise CertificateFileError(
            path, "unsupported-format",
            f"no certificate in this PEM file (it holds {', '.join(sorted(set(kinds)))})")
    if data.count(b"-----BEGIN") > len(blocks):
        raise CertificateFileError(path, "truncated",
                                   "a PEM block has no END line (truncated file?)")
    return certs


def _from_der(path: Path, data: bytes) -> list[x509.Certificate]:
    if data.startswith(_JKS_MAGIC):
        raise CertificateFileError(path, "unsupported-format",
                                   "a Java KeyStore (JKS): export the certificate as PEM "
                                   "(keytool -exportcert -rfc)")
    if data[:1] != b"\x30":
        raise CertificateFileError(path, "garbage",
                                   "neither PEM nor DER: not a certificate file")
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as der_error:
        reason = str(der_error)
    try:
        return list(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError:
        pass
    try:
        loaded = pkcs12.load_pkcs12(data, None)
    except ValueError as exc:
        if "password" in str(exc).lower() or "mac" in str(exc).lower():
            raise CertificateFileError(path, "pkcs12-password",
                                       "a password-protected PKCS#12 file; "
                                       "export its certificate as PEM") from None
    else:
        found = ([loaded.cert.certificate] if loaded.cert else []) + [
            c.certificate for c in loaded.additional_certs]
        if found:
            return found
    declared = _der_length(data)
    if declared is not None and declared > len(data):
        raise CertificateFileError(path, "truncated",
                                   f"DER data ends after {len(data)} of its {declared} bytes "
                                   "(truncated file?)")
    raise CertificateFileError(path, "malformed-certificate",
                               f"DER data that is not a valid certificate: {_reason(reason)}")


def _der_length(data: bytes) -> int | None:
    """Total length the outer DER SEQUENCE header declares (``None`` if unreadable)."""
    if len(data) < 2:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2:2 + count], "big")


def read_certificate_file(path: Path, *,
                          max_size: int = MAX_FILE_SIZE) -> list[CertificateEntry]:
    """Every certificate in the file at ``path``, in file order.

    Raises :class:`CertificateFileError` (with its code) for a file that holds no readable
    certificate; a file is read whole or not at all.
    """
    path = Path(path)
    data = _load_bytes(path, max_size)
    if not data.strip():
        raise CertificateFileError(path, "empty", "empty file")
    certs = _from_pem(path, data) if b"-----BEGIN" in data else _from_der(path, data)
    entries = []
    for index, cert in enumerate(certs):
        entry = facts_from_certificate(cert)
        entries.append(CertificateEntry(index=index, facts=entry.facts,
                                        findings=entry.findings))
    return entries
