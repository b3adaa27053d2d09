"""Recognise what a store file holds by its content, never by its extension.

PEM (any number of certificates, keys and PKCS#7 blocks, text around them, CRLF line ends),
DER certificates (one or several concatenated), PKCS#7 (PEM or DER), PKCS#12 (tried with no
password, the empty password, then the configured ones) and private keys. Java KeyStores are
recognised by their magic number and refused as ``unsupported-format`` rather than called
garbage. Nothing here touches the filesystem: :func:`parse_content` takes bytes.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from policy.decisions import Finding, Severity

from .records import CertificateRecord, FileError, KeyRecord
from .x509facts import (
    MalformedCertificateError,
    ParsedCertificate,
    capture_warnings,
    facts_from_certificate,
    key_description,
    parse_der_certificate,
    spki_sha256,
)

__all__ = ["Parsed", "parse_content", "sniff"]

# The body is everything up to the first complete END line, exactly as a lazy ``(.*?)`` would
# take it, written as an unrolled possessive loop: base64 has no '-', so the body is consumed in
# one run instead of trying the END pattern at every byte (4x faster on a certificate; the
# tests compare the two on fuzzed input).
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----[ \t]*\r?\n"
    rb"([^-]*+(?:-(?!----END [A-Z0-9 #]+-----)[^-]*+)*+)"
    rb"-----END ([A-Z0-9 #]+)-----"
)
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"}
_OTHER_LABELS = {
    b"CERTIFICATE REQUEST": "a certificate signing request",
    b"NEW CERTIFICATE REQUEST": "a certificate signing request",
    b"X509 CRL": "a certificate revocation list",
    b"PUBLIC KEY": "a public key",
    b"RSA PUBLIC KEY": "a public key",
    b"DH PARAMETERS": "Diffie-Hellman parameters",
    b"EC PARAMETERS": "elliptic-curve parameters",
}
_JKS_MAGIC = b"\xfe\xed\xfe\xed"
_JCEKS_MAGIC = b"\xce\xce\xce\xce"
_SIGNED_DATA_OID = bytes.fromhex("2a864886f70d010702")  # 1.2.840.113549.1.7.2
_WHITESPACE = b" \t\r\n\x00"


@dataclass(slots=True)
class Parsed:
    """What the content of one file yielded (mutable while it is being built)."""

    path: str
    certificates: list[CertificateRecord] = field(default_factory=list)
    keys: list[KeyRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    problems: list[FileError] = field(default_factory=list)
    """Failures at a position; become ``cert_errors``, or the file's error if nothing else."""
    error: FileError | None = None
    cert_positions: int = 0
    others: list[str] = field(default_factory=list)

    def fail(self, code: str, message: str) -> Parsed:
        self.error = FileError(path=self.path, code=code, message=message)
        return self


class _TruncatedError(Exception):
    pass


def _tlv(data: bytes | memoryview, pos: int) -> tuple[int, int, int | None]:
    """(tag, header length, content length or None for BER indefinite) at ``pos``."""
    if pos + 2 > len(data):
        raise _TruncatedError
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        return tag, 2, first
    if first == 0x80:
        return tag, 2, None
    count = first & 0x7F
    if count > 8:
        raise ValueError("length field too long")
    if pos + 2 + count > len(data):
        raise _TruncatedError
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return tag, 2 + count, length


def sniff(data: bytes) -> str:
    """Name the format of ``data``: ``empty``, ``pem``, ``jks``, ``jceks``, ``pkcs12``,
    ``pkcs7``, ``der-key``, ``der`` (certificate-shaped DER) or ``garbage``."""
    if not data.strip(_WHITESPACE):
        return "empty"
    if data.startswith(_JKS_MAGIC):
        return "jks"
    if data.startswith(_JCEKS_MAGIC):
        return "jceks"
    if b"-----BEGIN " in data:
        return "pem"
    if data[0] != 0x30:
        return "garbage"
    try:
        _tag, header, _length = _tlv(data, 0)
        inner_tag, inner_header, inner_length = _tlv(data, header)
    except (_TruncatedError, ValueError):
        return "der"  # let the certificate path report truncation precisely
    if inner_tag == 0x06 and inner_length is not None:
        oid = data[header + inner_header : header + inner_header + inner_length]
        return "pkcs7" if oid == _SIGNED_DATA_OID else "garbage"
    if inner_tag == 0x02 and inner_length == 1:
        version = data[header + inner_header]
        if version == 3:
            return "pkcs12"
        if version in (0, 1):
            return "der-key"
        return "garbage"
    if inner_tag == 0x02:
        return "der-key"  # RSAPrivateKey/DSA start with a bigger INTEGER only in odd encoders
    if inner_tag == 0x30:
        if inner_length is not None:
            after = header + inner_header + inner_length
            try:
                next_tag = _tlv(data, after)[0]
            except (_TruncatedError, ValueError):
                return "der"
            if next_tag == 0x04:
                return "der-key"  # EncryptedPrivateKeyInfo: SEQUENCE alg, OCTET STRING
        return "der"
    return "garbage"


def parse_content(
    data: bytes,
    *,
    path: str,
    passwords: Sequence[bytes] = (),
    keep_key_pem: bool = False,
    keep_der: bool = False,
    mode: int = 0,
    owner_uid: int = -1,
) -> Parsed:
    """Everything in ``data``. Never raises for bad content."""
    parsed = Parsed(path=path)
    kind = sniff(data)
    ctx = _Context(parsed, passwords, keep_key_pem, keep_der, mode, owner_uid)
    if kind == "empty":
        return parsed.fail("empty", "the file is empty" if not data
                           else "the file holds only whitespace")
    if kind == "jks":
        return parsed.fail("unsupported-format",
                           "Java KeyStore (JKS); convert it with `keytool -importkeystore "
                           "-deststoretype pkcs12` to let the agent read it")
    if kind == "jceks":
        return parsed.fail("unsupported-format",
                           "Java JCEKS keystore; convert it with `keytool -importkeystore "
                           "-deststoretype pkcs12` to let the agent read it")
    if kind == "pem":
        _parse_pem(data, ctx)
    elif kind == "pkcs12":
        _parse_pkcs12(data, ctx)
    elif kind == "pkcs7":
        _parse_pkcs7_der(data, ctx, fmt="pkcs7")
    elif kind == "der-key":
        _parse_key_der(data, ctx)
    elif kind == "der":
        _parse_der_sequence(data, ctx)
    else:
        return parsed.fail("garbage",
                           "not a certificate: neither PEM nor DER (PKCS#7, PKCS#12, X.509)")
    return _finish(parsed)


def _finish(parsed: Parsed) -> Parsed:
    if parsed.error is not None:
        return parsed
    if not parsed.certificates and not parsed.keys and parsed.problems:
        first = parsed.problems[0]
        message = first.message
        if len(parsed.problems) > 1:
            message += f" (and {len(parsed.problems) - 1} more problem(s))"
        parsed.problems.clear()
        return parsed.fail(first.code, message)
    for problem in parsed.problems:
        where = f"certificate #{problem.index}" if problem.index is not None else "a block"
        parsed.findings.append(Finding(
            code=problem.code, clause="", message=f"{where}: {problem.message}",
            severity=Severity.CRITICAL))
    if not parsed.certificates and not parsed.keys and parsed.others:
        parsed.findings.append(Finding(
            code="no-certificate", clause="",
            message="no certificate in the file; it holds " + ", ".join(parsed.others),
            severity=Severity.INFO))
    return parsed


@dataclass(slots=True)
class _Context:
    parsed: Parsed
    passwords: Sequence[bytes]
    keep_key_pem: bool
    keep_der: bool
    mode: int
    owner_uid: int

    def add_certificate(self, parsed_cert: ParsedCertificate, fmt: str) -> None:
        p = self.parsed
        p.certificates.append(CertificateRecord(
            path=p.path, index=p.cert_positions, fmt=fmt, facts=parsed_cert.facts,
            findings=parsed_cert.findings, spki_sha256=parsed_cert.spki_sha256,
            der=parsed_cert.der if self.keep_der else None))
        p.cert_positions += 1

    def add_problem(self, code: str, message: str, *, position: bool = True) -> None:
        p = self.parsed
        index = p.cert_positions if position else None
        p.problems.append(FileError(path=p.path, code=code, message=message, index=index))
        if position:
            p.cert_positions += 1

    def add_key(self, *, key_type: str, key_size: int | None, encrypted: bool,
                spki: str | None, pem: bytes | None) -> None:
        p = self.parsed
        index = len(p.keys)
        p.keys.append(KeyRecord(
            path=p.path, index=index, key_type=key_type, key_size=key_size,
            encrypted=encrypted, spki_sha256=spki, mode=self.mode, owner_uid=self.owner_uid,
            pem=pem if self.keep_key_pem else None))
        p.findings.extend(_key_findings(index, key_type, key_size, encrypted, self.mode))


def _key_findings(index: int, key_type: str, key_size: int | None, encrypted: bool,
                  mode: int) -> list[Finding]:
    what = f"private key #{index} ({key_type}{f' {key_size}' if key_size else ''})"
    findings: list[Finding] = []
    if not encrypted:
        findings.append(Finding(
            code="private-key-unencrypted", clause="",
            message=f"{what} is stored unencrypted on disk; only its file permissions protect it",
            severity=Severity.INFO))
    perms = f"{mode & 0o7777:04o}"
    if mode & 0o004:
        findings.append(Finding(
            code="private-key-world-readable", clause="",
            message=f"{what} is readable by every user (mode {perms}); chmod o-r",
            severity=Severity.WARNING if encrypted else Severity.CRITICAL))
    elif mode & 0o040:
        findings.append(Finding(
            code="private-key-group-readable", clause="",
            message=f"{what} is readable by the file's group (mode {perms}); chmod g-r unless "
                    "the group is meant to have it",
            severity=Severity.INFO if encrypted else Severity.WARNING))
    return findings


# ---------------------------------------------------------------- PEM

def _pem_body(body: bytes) -> tuple[bytes, bool]:
    """Base64-decode a PEM body; also says whether RFC 1421 headers mark it encrypted."""
    encrypted = False
    if b":" in body:
        lines = body.splitlines()
        kept = []
        for line in lines:
            if b":" in line:
                if line.startswith(b"Proc-Type:") and b"ENCRYPTED" in line:
                    encrypted = True
                continue
            kept.append(line)
        body = b"\n".join(kept)
    return binascii.a2b_base64(body), encrypted


def _parse_pem(data: bytes, ctx: _Context) -> None:
    blocks = _parse_pem_region(data, ctx)
    if blocks == 0 and not ctx.parsed.problems:
        ctx.parsed.fail("garbage", "text mentions a PEM header but holds no complete PEM block")


def _parse_pem_region(data: bytes, ctx: _Context) -> int:
    """Every PEM block of ``data``; returns how many were complete."""
    blocks = 0
    end = 0
    for match in _PEM_BLOCK.finditer(data):
        label, body, end_label = match.group(1), match.group(2), match.group(3)
        end = match.end()
        # a BEGIN whose END went missing swallows up to the next block's END: that block is
        # truncated, and what follows its stray BEGIN is parsed again on its own
        inner = _BEGIN.search(body)
        if inner is not None or label != end_label:
            _truncated_block(label, ctx)
            if inner is not None:
                blocks += _parse_pem_region(data[match.start(2) + inner.start() : end], ctx)
            continue
        blocks += 1
        _pem_block(label, body, match.group(0), ctx)
    tail = _BEGIN.search(data, end)
    if tail is not None:
        _truncated_block(tail.group(1), ctx)
    return blocks


def _truncated_block(label: bytes, ctx: _Context) -> None:
    name = label.decode("ascii", "replace")
    ctx.add_problem("truncated", f"PEM block '{name}' has no END line: the file is truncated",
                    position=label in _CERT_LABELS or label in _PKCS7_LABELS)


def _pem_block(label: bytes, body: bytes, whole: bytes, ctx: _Context) -> None:
    try:
        der, header_encrypted = _pem_body(body)
    except (binascii.Error, ValueError):
        code = "malformed-certificate" if label in _CERT_LABELS else "garbage"
        ctx.add_problem(code, f"PEM block '{label.decode()}' is not valid base64",
                        position=label in _CERT_LABELS)
        return
    if label in _CERT_LABELS:
        if label == b"TRUSTED CERTIFICATE":
            der = _first_element(der)
        _add_der_certificate(der, ctx, fmt="pem")
    elif label in _PKCS7_LABELS:
        _parse_pkcs7_der(der, ctx, fmt="pkcs7")
    elif label.endswith(b"PRIVATE KEY"):
        _pem_key(label, whole + b"\n", header_encrypted, ctx)
    else:
        ctx.parsed.others.append(_OTHER_LABELS.get(label, f"a '{label.decode()}' PEM block"))


def _first_element(der: bytes) -> bytes:
    try:
        _tag, header, length = _tlv(der, 0)
    except (_TruncatedError, ValueError):
        return der
    return der if length is None else der[: header + length]


def _add_der_certificate(der: bytes, ctx: _Context, *, fmt: str) -> None:
    try:
        _tag, header, length = _tlv(der, 0)
        if length is not None and header + length > len(der):
            raise _TruncatedError
    except _TruncatedError:
        ctx.add_problem("truncated",
                        f"certificate DER is {len(der)} bytes, shorter than its declared length: "
                        "the file is truncated")
        return
    except ValueError:
        pass  # let cryptography describe it
    try:
        parsed_cert = parse_der_certificate(der)
    except MalformedCertificateError as exc:
        ctx.add_problem("malformed-certificate", exc.message)
        return
    ctx.add_certificate(parsed_cert, fmt)


# ---------------------------------------------------------------- DER, PKCS#7, PKCS#12

def _parse_der_sequence(data: bytes, ctx: _Context) -> None:
    pos = 0
    size = len(data)
    while pos < size:
        try:
            _tag, header, length = _tlv(data, pos)
        except _TruncatedError:
            ctx.add_problem("truncated", "DER ends inside an element header: truncated")
            return
        except ValueError as exc:
            ctx.add_problem("garbage", f"not DER: {exc}")
            return
        if length is None or pos + header + length > size:
            if length is None:
                ctx.add_problem("garbage", "BER indefinite length where a certificate was "
                                "expected")
            else:
                ctx.add_problem("truncated",
                                f"DER declares {header + length} bytes but the file holds "
                                f"{size - pos}: truncated")
            return
        element = data[pos : pos + header + length]
        _der_element(element, ctx)
        pos += header + length
        rest = data[pos:]
        if not rest.strip(_WHITESPACE):
            return
        if rest[0] != 0x30:
            ctx.parsed.findings.append(Finding(
                code="trailing-data", clause="",
                message=f"{len(rest)} bytes of unrecognised data after the last DER element",
                severity=Severity.WARNING))
            return


def _der_element(der: bytes, ctx: _Context) -> None:
    try:
        parsed_cert = parse_der_certificate(der)
    except MalformedCertificateError as exc:
        for loader, what in ((x509.load_der_x509_csr, "a certificate signing request"),
                             (x509.load_der_x509_crl, "a certificate revocation list")):
            try:
                capture_warnings(lambda loader=loader: loader(der))  # type: ignore[misc]
            except Exception:  # noqa: S112 - not that either; try the next shape
                continue
            ctx.parsed.others.append(what)
            return
        # Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version | serial INTEGER
        # ... }: that shape is a certificate cryptography refused, anything else is not one.
        try:
            outer_header = _tlv(der, 0)[1]
            tbs_tag, tbs_header, _length = _tlv(der, outer_header)
            first_in_tbs = _tlv(der, outer_header + tbs_header)[0]
        except (_TruncatedError, ValueError):
            tbs_tag = first_in_tbs = -1
        if tbs_tag == 0x30 and first_in_tbs in (0xA0, 0x02):
            ctx.add_problem("malformed-certificate", exc.message)
        else:
            ctx.add_problem("garbage", "a DER structure that is not an X.509 certificate")
        return
    ctx.add_certificate(parsed_cert, "der")


def _parse_pkcs7_der(der: bytes, ctx: _Context, *, fmt: str) -> None:
    try:
        certs, caught = capture_warnings(lambda: pkcs7.load_der_pkcs7_certificates(der))
    except UnsupportedAlgorithm as exc:
        ctx.add_problem("unsupported-format", f"PKCS#7 content the agent cannot read: {exc}",
                        position=False)
        return
    except Exception as exc:  # any parse failure of the container
        try:
            _tag, header, length = _tlv(der, 0)
            short = length is not None and header + length > len(der)
        except (_TruncatedError, ValueError):
            short = True
        code = "truncated" if short else "malformed-certificate"
        ctx.add_problem(code, f"cannot read PKCS#7: {exc}")
        return
    if not certs:
        ctx.parsed.others.append("a PKCS#7 structure without certificates")
    for cert in certs:
        try:
            parsed_cert = facts_from_certificate(cert, caught=caught)
        except MalformedCertificateError as exc:
            ctx.add_problem("malformed-certificate", exc.message)
            continue
        ctx.add_certificate(parsed_cert, fmt)


def _password_candidates(passwords: Sequence[bytes]) -> list[bytes | None]:
    out: list[bytes | None] = [None, b""]
    for password in passwords:
        if password not in out:
            out.append(password)
    return out


def _parse_pkcs12(data: bytes, ctx: _Context) -> None:
    candidates = _password_candidates(ctx.passwords)
    last: Exception | None = None
    for password in candidates:
        try:
            bundle, caught = capture_warnings(
                lambda password=password: pkcs12.load_pkcs12(data, password))  # type: ignore[misc]
        except UnsupportedAlgorithm as exc:
            ctx.parsed.fail("unsupported-format",
                            f"PKCS#12 uses an algorithm the agent cannot read: {exc}")
            return
        except Exception as exc:  # wrong password and corrupt data look alike
            last = exc
            continue
        break
    else:
        configured = len(candidates) - 2
        detail = f": {last}" if last is not None and "password" not in str(last).lower() else ""
        ctx.parsed.fail(
            "pkcs12-password",
            "cannot open PKCS#12: wrong password or damaged file (tried no password, the empty "
            f"password and {configured} configured password(s)){detail}")
        return
    protected = password not in (None, b"")
    if bundle.key is not None:
        key_type, key_size = key_description(bundle.key)
        pem = bundle.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()) if ctx.keep_key_pem else None
        ctx.add_key(key_type=key_type, key_size=key_size, encrypted=protected,
                    spki=spki_sha256(bundle.key.public_key()), pem=pem)
    entries = ([bundle.cert] if bundle.cert is not None else []) + list(bundle.additional_certs)
    for entry in entries:
        try:
            parsed_cert = facts_from_certificate(entry.certificate, caught=caught)
        except MalformedCertificateError as exc:
            ctx.add_problem("malformed-certificate", exc.message)
            continue
        ctx.add_certificate(parsed_cert, "pkcs12")
    if not entries and bundle.key is None:
        ctx.parsed.others.append("an empty PKCS#12 bundle")


# ---------------------------------------------------------------- private keys

def _try_passwords(load: object, data: bytes, passwords: Sequence[bytes]) -> object | None:
    for password in passwords:
        if not password:
            continue
        try:
            key: object = load(  # type: ignore[operator]
                data, password, unsafe_skip_rsa_key_validation=True)
            return key
        except (TypeError, ValueError, UnsupportedAlgorithm):
            continue
    return None


def _load_private(load: object, data: bytes, ctx: _Context, *, label: str,
                  header_encrypted: bool, pem: bytes | None) -> None:
    encrypted = header_encrypted or "ENCRYPTED" in label
    key: object | None = None
    if not encrypted:
        try:
            key = load(data, None, unsafe_skip_rsa_key_validation=True)  # type: ignore[operator]
        except TypeError:
            encrypted = True  # "password was not given but private key is encrypted"
        except (ValueError, UnsupportedAlgorithm) as exc:
            ctx.add_problem("garbage", f"unreadable private key: {exc}", position=False)
            return
    if encrypted:
        key = _try_passwords(load, data, ctx.passwords)
    if key is None:
        guessed = {"RSA PRIVATE KEY": "rsa", "EC PRIVATE KEY": "ec",
                   "DSA PRIVATE KEY": "dsa"}.get(label, "unknown")
        ctx.add_key(key_type=guessed, key_size=None, encrypted=True, spki=None, pem=pem)
        return
    key_type, key_size = key_description(key)
    public = key.public_key()  # type: ignore[attr-defined]
    if pem is None and ctx.keep_key_pem:
        # DER keys are kept as PKCS#8 PEM so escrow stores one format
        pem = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
    ctx.add_key(key_type=key_type, key_size=key_size, encrypted=encrypted,
                spki=spki_sha256(public), pem=pem)


def _pem_key(label: bytes, whole: bytes, header_encrypted: bool, ctx: _Context) -> None:
    text = label.decode("ascii", "replace")
    if label == b"OPENSSH PRIVATE KEY":
        def load_ssh(data: bytes, password: bytes | None, **_: object) -> object:
            return serialization.load_ssh_private_key(data, password)

        _load_private(load_ssh, whole, ctx, label=text, header_encrypted=False, pem=whole)
        return
    _load_private(serialization.load_pem_private_key, whole, ctx, label=text,
                  header_encrypted=header_encrypted, pem=whole)


def _parse_key_der(data: bytes, ctx: _Context) -> None:
    before = len(ctx.parsed.keys)
    _load_private(serialization.load_der_private_key, data, ctx, label="DER",
                  header_encrypted=False, pem=None)
    if len(ctx.parsed.keys) == before and not ctx.parsed.problems:
        ctx.parsed.fail("garbage", "a DER structure that is neither a certificate nor a key")
    elif len(ctx.parsed.keys) == before:
        ctx.parsed.fail("garbage", ctx.parsed.problems[0].message)
        ctx.parsed.problems.clear()

