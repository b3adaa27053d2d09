"""Recognise what a store file holds by its content, never by its extension.

PEM (any number of certificates, keys and PKCS#7 blocks, text around them, CRLF line ends),
DER certificates (one or several concatenated), PKCS#7 (PEM or DER), PKCS#12 (tried with no
password, the empty password, then the configured ones) and private keys. Java KeyStores are
recognised by their magic number and refused as ``unsupported-format`` rather than called
garbage. Nothing here touches the filesystem: :func:`parse_content` takes bytes.

The content is hostile: reading is linear in its size and never recursive on its structure
(PEM in one pass over its markers, DER, PKCS#7 and PKCS#12 walked as loops over fixed
schemas), messages are the agent's own sentences (a library's error text can quote the input,
key bytes included), and a file that is plainly not a store entry (text, binary without DER
structure, only CSRs or public keys) is *skipped*, not an error.
"""

from __future__ import annotations

import binascii
import functools
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from policy.decisions import Finding, Severity
from vault.bounded import CPU_SECONDS, TooCostlyError, first_that_opens, too_costly

from .records import CertificateRecord, FileError, FileSkip, KeyRecord
from .x509facts import (
    MalformedCertificateError,
    ParsedCertificate,
    capture_warnings,
    describe_library_error,
    facts_from_certificate,
    key_description,
    parse_der_certificate,
    spki_sha256,
    warning_findings,
)

__all__ = ["Parsed", "parse_content", "sniff"]

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
# Text is UTF-8 without control characters other than layout; DER never is (its INTEGER and
# OID tags are 0x02 and 0x06), so a text file is plainly not a certificate store entry.
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
# A name that promises certificate material makes unrecognised content an error rather than a
# skip: content decides what a file is, a name only makes the agent stricter.
_CERTIFICATE_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".key", ".p12", ".pfx", ".p7b",
                         ".p7c", ".p8", ".jks", ".keystore")
_MAX_LISTED_PROBLEMS = 64
"""Faults listed one by one per file; at the next one, reading stops (a hostile file can hold
300,000, each a parse attempt and a finding), and the bytes left unread are said."""


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
    skipped: FileSkip | None = None
    cert_positions: int = 0
    key_positions: int = 0
    unlisted_problems: int = 0
    unread_bytes: int = 0
    """Bytes not read because the file had too many problems already."""
    others: list[str] = field(default_factory=list)

    def fail(self, code: str, message: str) -> Parsed:
        self.error = FileError(path=self.path, code=code, message=message)
        return self

    def skip(self, code: str, message: str) -> Parsed:
        self.skipped = FileSkip(path=self.path, code=code, message=message)
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


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _TEXT_CONTROLS.search(text) is None


def sniff(data: bytes) -> str:
    """Name the format of ``data``: ``empty``, ``pem``, ``jks``, ``jceks``, ``pkcs12``,
    ``pkcs7``, ``der-key``, ``der`` (certificate-shaped DER), ``text`` (no PEM marker),
    ``binary`` (no DER structure) or ``garbage`` (DER-shaped, but no structure the agent
    knows)."""
    if not data.strip(_WHITESPACE):
        return "empty"
    if data.startswith(_JKS_MAGIC):
        return "jks"
    if data.startswith(_JCEKS_MAGIC):
        return "jceks"
    if b"-----BEGIN " in data:
        return "pem"
    if _is_text(data):
        return "text"
    if data[0] != 0x30:
        return "binary"
    try:
        _tag, header, _length = _tlv(data, 0)
        inner_tag, inner_header, inner_length = _tlv(data, header)
    except (_TruncatedError, ValueError):
        return "der"  # let the certificate path report truncation precisely
    if inner_tag == 0x06 and inner_length is not None:
        oid = data[header + inner_header : header + inner_header + inner_length]
        return "pkcs7" if oid == _SIGNED_DATA_OID else "garbage"
    if inner_tag == 0x02 and inner_length == 1:
        if header + inner_header >= len(data):
            return "der"  # cut inside the version: the certificate path says "truncated"
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


def _promises_certificate(path: str) -> bool:
    return os.path.basename(path).lower().endswith(_CERTIFICATE_SUFFIXES)


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
    """Everything in ``data``. Never raises for bad content; its messages never quote it."""
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
    if kind in ("text", "binary"):
        what = "text without any PEM block" if kind == "text" else \
            "binary data that is neither PEM nor DER"
        if _promises_certificate(path):
            return parsed.fail("garbage", f"named like a certificate or key but holds {what}")
        return parsed.skip("not-certificate-material",
                           f"not a certificate store entry: {what}")
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
                           "a DER structure that is none the agent knows (X.509, PKCS#7, "
                           "PKCS#12, private key)")
    return _finish(parsed)


def _where(problem: FileError) -> str:
    if problem.index is not None:
        return f"certificate #{problem.index}"
    if problem.key_index is not None:
        return f"private key #{problem.key_index}"
    return "the file"


def _more_problems(parsed: Parsed) -> str:
    """How many problems there were (the listed ones included) and what was left unread: the
    reader stops at the first problem past :data:`_MAX_LISTED_PROBLEMS`, unless it was the
    last thing in the file."""
    total = len(parsed.problems) + parsed.unlisted_problems
    if parsed.unread_bytes:
        return (f"reading stopped after {total} problems; the last {parsed.unread_bytes} "
                "byte(s) of the file were not read")
    return f"{total} problems; only the first {len(parsed.problems)} are listed"


def _finish(parsed: Parsed) -> Parsed:
    if parsed.error is not None:
        return parsed
    stopped = bool(parsed.unlisted_problems or parsed.unread_bytes)
    if not parsed.certificates and not parsed.keys and parsed.problems:
        first = parsed.problems[0]
        message = first.message
        more = len(parsed.problems) - 1 + parsed.unlisted_problems
        if more:
            message += f" (and {more} more problem(s))"
        if parsed.unread_bytes:  # (else "and N more" has said it all)
            message += f"; {_more_problems(parsed)}"
        parsed.problems.clear()
        return parsed.fail(first.code, message)
    if stopped:
        # A part of the file left unread is a read failure of the file, like the listed ones:
        # an error (exit status UNKNOWN), never a finding that pages as CRITICAL on the healthy
        # certificates read before it.
        parsed.problems.append(FileError(path=parsed.path, code="more-problems",
                                         message=_more_problems(parsed)))
    for problem in parsed.problems:
        parsed.findings.append(Finding(
            code=problem.code, clause="", message=f"{_where(problem)}: {problem.message}",
            severity=Severity.CRITICAL))
    if not parsed.certificates and not parsed.keys and not parsed.problems:
        held = ", ".join(dict.fromkeys(parsed.others)) or "nothing the agent reads"
        parsed.skip("no-certificate", f"no certificate or private key; it holds {held}")
    return parsed


KEY_TRIALS_SECONDS: float = CPU_SECONDS
"""What trying the passwords on the encrypted keys of ONE file may take together. Each key is
tried in its own bounded child (:mod:`vault.bounded`: 3 s of CPU), but a file may hold
thousands of key blocks: 30 scrypt-costly keys held a scan 30 s, a 10 MiB file of them hours,
and the daemon's watchdog ping with it (the attacker review of session 14). An honest file
holds one key that opens in milliseconds."""


@dataclass(slots=True)
class TrialBudget:
    """What trying passwords may take in this process, across files: a bucket of ``burst``
    seconds refilled at ``rate`` seconds a second. The budget of one file bounds one file; ten
    thousand small files of one costly key each still held a scan (or the daemon's first
    scan) for hours (the re-review of session 14). Past the bucket, a key is not tried until
    it refills: the work password trials can take is bounded by ``burst`` plus ``rate`` of
    the time the process runs. An honest store's keys open in milliseconds."""

    burst: float = 60.0
    rate: float = 0.1
    tokens: float = 60.0
    free: float = 0.05
    """What one trial may take without drawing on the bucket: an honest file, the fork of its
    child included (~4 ms), so that a store of honest PKCS#12 files never runs it dry."""
    at: float = field(default_factory=time.monotonic)

    def allows(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens > 0

    def spend(self, seconds: float) -> None:
        self.tokens -= max(0.0, seconds - self.free)


TRIALS = TrialBudget()
"""This process's budget (a forked scan worker has its own copy)."""


@dataclass(slots=True)
class _Context:
    parsed: Parsed
    passwords: Sequence[bytes]
    keep_key_pem: bool
    keep_der: bool
    mode: int
    owner_uid: int
    trials_seconds: float = 0.0
    """Time spent so far trying the passwords on this file's encrypted keys."""
    trials_stopped: bool = False
    """The file's budget is spent (or a key was too costly): no further key is tried."""

    def add_certificate(self, parsed_cert: ParsedCertificate, fmt: str) -> None:
        p = self.parsed
        p.certificates.append(CertificateRecord(
            path=p.path, index=p.cert_positions, fmt=fmt, facts=parsed_cert.facts,
            findings=parsed_cert.findings, spki_sha256=parsed_cert.spki_sha256,
            der=parsed_cert.der if self.keep_der else None))
        p.cert_positions += 1

    def add_problem(self, code: str, message: str, *, slot: str | None = "certificate") -> None:
        """A failure at the next certificate position (``slot="certificate"``), the next
        private key position (``"key"``), or of the file as a whole (``None``)."""
        p = self.parsed
        index = key_index = None
        if slot == "certificate":
            index = p.cert_positions
            p.cert_positions += 1
        elif slot == "key":
            key_index = p.key_positions
            p.key_positions += 1
        if len(p.problems) >= _MAX_LISTED_PROBLEMS:
            p.unlisted_problems += 1
            return
        p.problems.append(FileError(path=p.path, code=code, message=message, index=index,
                                    key_index=key_index))

    def add_key(self, *, key_type: str, key_size: int | None, encrypted: bool,
                spki: str | None, pem: bytes | None,
                caught: Sequence[warnings.WarningMessage] = ()) -> None:
        p = self.parsed
        index = p.key_positions
        p.key_positions += 1
        p.keys.append(KeyRecord(
            path=p.path, index=index, key_type=key_type, key_size=key_size,
            encrypted=encrypted, spki_sha256=spki, mode=self.mode, owner_uid=self.owner_uid,
            pem=pem if self.keep_key_pem else None))
        p.findings.extend(_key_findings(index, key_type, key_size, encrypted, self.mode))
        if caught:
            p.findings.extend(warning_findings(caught, what=_key_name(index, key_type, key_size)))


def _key_name(index: int, key_type: str, key_size: int | None) -> str:
    return f"private key #{index} ({key_type}{f' {key_size}' if key_size else ''})"


def _key_findings(index: int, key_type: str, key_size: int | None, encrypted: bool,
                  mode: int) -> list[Finding]:
    what = _key_name(index, key_type, key_size)
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
# PEM is read in one pass over its BEGIN/END markers, not with a pattern that looks for a
# block's END from every BEGIN (a file of BEGIN lines without END made that quadratic: 10 s at
# 256 KiB) and not by re-parsing the rest of a block whose END went missing (recursion: ~1,000
# nested BEGIN lines raised RecursionError). Labels cannot hold '-', so each marker is found in
# time proportional to its own length, and every byte is looked at a bounded number of times.
# No possessive quantifier or atomic group: Python 3.11.2 (Debian 12) predates them.

_MARKER = re.compile(rb"-----(BEGIN|END) ([A-Z0-9 #]+)-----")
_AFTER_BEGIN = re.compile(rb"[ \t]*\r?\n")


@dataclass(slots=True)  # internal, never changed: a frozen init costs a setattr a field
class _PemBlock:
    start: int
    label: bytes
    body: bytes
    whole: bytes


@dataclass(slots=True)
class _PemFault:
    start: int
    label: bytes
    code: str
    reason: str


def _pem_items(data: bytes) -> Iterator[_PemBlock | _PemFault]:
    """Complete blocks and faulty ones, in file order. A block runs from a BEGIN line to the
    first END after it; a BEGIN met before that END means the earlier block lost its END
    (``truncated``), as does the end of the file. An END whose label differs from its BEGIN's
    closes the block as truncated too; an END with no open block is text around blocks."""
    open_label: bytes | None = None
    open_start = body_start = 0
    clean_begin = True
    for marker in _MARKER.finditer(data):
        kind, label = marker.group(1), marker.group(2)
        if kind == b"BEGIN":
            if open_label is not None:
                yield _PemFault(open_start, open_label, "truncated",
                                "has no END line: the file is truncated")
            open_label, open_start = label, marker.start()
            after = _AFTER_BEGIN.match(data, marker.end())
            clean_begin = after is not None
            body_start = after.end() if after is not None else marker.end()
            continue
        if open_label is None:
            continue
        if label != open_label:
            yield _PemFault(open_start, open_label, "truncated",
                            f"ends with an END line for '{_label_text(label)}': its own END "
                            "line is missing")
        elif not clean_begin:
            yield _PemFault(open_start, open_label, "garbage", "has text after its BEGIN line")
        else:
            yield _PemBlock(open_start, open_label, data[body_start : marker.start()],
                            data[open_start : marker.end()])
        open_label = None
    if open_label is not None:
        yield _PemFault(open_start, open_label, "truncated",
                        "has no END line: the file is truncated")


def _label_text(label: bytes) -> str:
    return label.decode("ascii", "replace")[:40]


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


_ONE_CERTIFICATE = (b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----")


def _single_certificate(data: bytes) -> _PemBlock | None:
    """The block of a file that holds one certificate and nothing else that looks like a
    marker (most files of a store), found without the general walk: its BEGIN and END hold
    the file's only four runs of five dashes, so :func:`_pem_items` would yield this block
    and nothing else (every marker it matches holds two such runs)."""
    if data.count(b"-----") != 4:
        return None
    begin, end = _ONE_CERTIFICATE
    start = data.find(begin)
    if start < 0:
        return None
    stop = data.find(end, start + len(begin))
    after = _AFTER_BEGIN.match(data, start + len(begin))
    if stop < 0 or after is None or after.end() > stop:
        return None
    return _PemBlock(start, b"CERTIFICATE", data[after.end() : stop],
                     data[start : stop + len(end)])


def _parse_pem(data: bytes, ctx: _Context) -> None:
    single = _single_certificate(data)
    if single is not None:
        _pem_block(single.label, single.body, single.whole, ctx)
        return
    blocks = 0
    for item in _pem_items(data):
        if ctx.parsed.unlisted_problems:
            ctx.parsed.unread_bytes = len(data) - item.start
            break
        if isinstance(item, _PemFault):
            _pem_fault(item, ctx)
        else:
            blocks += 1
            _pem_block(item.label, item.body, item.whole, ctx)
    if blocks == 0 and not ctx.parsed.problems:
        ctx.parsed.fail("garbage", "text mentions a PEM header but holds no complete PEM block")


def _slot(label: bytes) -> str | None:
    """Which position a PEM block takes: a certificate's, a private key's, or none."""
    if label in _CERT_LABELS or label in _PKCS7_LABELS:
        return "certificate"
    if label.endswith(b"PRIVATE KEY"):
        return "key"
    return None


def _pem_fault(fault: _PemFault, ctx: _Context) -> None:
    slot = _slot(fault.label)
    code = fault.code
    if code == "garbage" and slot == "certificate":
        code = "malformed-certificate"
    ctx.add_problem(code, f"PEM block '{_label_text(fault.label)}' {fault.reason}", slot=slot)


def _pem_block(label: bytes, body: bytes, whole: bytes, ctx: _Context) -> None:
    try:
        der, header_encrypted = _pem_body(body)
    except (binascii.Error, ValueError):
        slot = _slot(label)
        code = "malformed-certificate" if slot == "certificate" else "garbage"
        ctx.add_problem(code, f"PEM block '{_label_text(label)}' is not valid base64", slot=slot)
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
        ctx.parsed.others.append(
            _OTHER_LABELS.get(label, f"a '{_label_text(label)}' PEM block"))


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
# Every walk over DER here is a loop over a fixed schema, never a recursion on the input's
# nesting; what cryptography parses it parses against fixed schemas too.

def _parse_der_sequence(data: bytes, ctx: _Context) -> None:
    pos = 0
    size = len(data)
    significant = len(data.rstrip(_WHITESPACE))  # no slicing per element: 2 bytes each is legal
    while pos < size:
        if ctx.parsed.unlisted_problems:
            ctx.parsed.unread_bytes = size - pos
            return
        try:
            _tag, header, length = _tlv(data, pos)
        except _TruncatedError:
            ctx.add_problem("truncated", "DER ends inside an element header: truncated")
            return
        except ValueError:
            ctx.add_problem("garbage", "not DER: a length field longer than 8 bytes")
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
        if pos >= significant:
            return
        if data[pos] != 0x30:
            ctx.parsed.findings.append(Finding(
                code="trailing-data", clause="",
                message=f"{size - pos} bytes of unrecognised data after the last DER element",
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


def _declares_more_than(der: bytes) -> bool:
    """Whether the outermost element claims more bytes than ``der`` holds."""
    try:
        _tag, header, length = _tlv(der, 0)
    except (_TruncatedError, ValueError):
        return True
    return length is not None and header + length > len(der)


def _parse_pkcs7_der(der: bytes, ctx: _Context, *, fmt: str) -> None:
    try:
        # imported here: it pulls in the email package, ~5 ms of every scan's start
        from cryptography.hazmat.primitives.serialization import pkcs7

        certs, caught = capture_warnings(lambda: pkcs7.load_der_pkcs7_certificates(der))
    except UnsupportedAlgorithm:
        ctx.add_problem("unsupported-format",
                        "PKCS#7 content the agent cannot read (a content type or algorithm "
                        "the library does not support)", slot=None)
        return
    except Exception as exc:  # any parse failure of the container
        if _declares_more_than(der):
            ctx.add_problem("truncated", "PKCS#7 is shorter than its declared length: the "
                            "file is truncated")
        else:
            ctx.add_problem("malformed-certificate",
                            describe_library_error(exc, "cannot read PKCS#7"))
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


_PKCS7_DATA_OID = bytes.fromhex("2a864886f70d010701")  # 1.2.840.113549.1.7.1
_PKCS7_ENCRYPTED_OID = bytes.fromhex("2a864886f70d010706")  # 1.2.840.113549.1.7.6
_CERT_BAG_OID = bytes.fromhex("2a864886f70d010c0a0103")  # 1.2.840.113549.1.12.10.1.3
_X509_CERT_OID = bytes.fromhex("2a864886f70d01091601")  # 1.2.840.113549.1.9.22.1


class _Pkcs12ShapeError(Exception):
    """The PKCS#12 structure itself is damaged (not a password question)."""


def _element(data: bytes, pos: int, end: int, tag: int | None = None) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``, inside ``end``."""
    try:
        got, header, length = _tlv(data, pos)
    except (_TruncatedError, ValueError):
        raise _Pkcs12ShapeError from None
    if length is None or pos + header + length > end or (tag is not None and got != tag):
        raise _Pkcs12ShapeError
    return got, pos + header, pos + header + length


def _pkcs12_outline(data: bytes) -> tuple[list[bytes], bool]:
    """The certificates a PKCS#12 holds in the clear, and whether any part is encrypted, read
    by walking RFC 7292's fixed structure (PFX -> AuthenticatedSafe -> SafeContents ->
    CertBag): used only to tell a damaged file or a malformed certificate from a wrong
    password when the library refuses the file. Raises :class:`_Pkcs12ShapeError`."""
    _t, pfx, pfx_end = _element(data, 0, len(data), 0x30)
    _t, _s, pos = _element(data, pfx, pfx_end, 0x02)  # version
    _t, ci, ci_end = _element(data, pos, pfx_end, 0x30)  # authSafe ContentInfo
    _t, oid_start, oid_end = _element(data, ci, ci_end, 0x06)
    if data[oid_start:oid_end] != _PKCS7_DATA_OID:
        return [], True  # public-key integrity mode (signedData): not walked
    _t, wrapped, wrapped_end = _element(data, oid_end, ci_end, 0xA0)
    _t, safe, safe_end = _element(data, wrapped, wrapped_end, 0x04)
    _t, pos, seq_end = _element(data, safe, safe_end, 0x30)  # AuthenticatedSafe
    certificates: list[bytes] = []
    encrypted = False
    while pos < seq_end:
        _t, info, info_end = _element(data, pos, seq_end, 0x30)
        pos = info_end
        _t, oid_start, oid_end = _element(data, info, info_end, 0x06)
        if data[oid_start:oid_end] != _PKCS7_DATA_OID:
            encrypted = encrypted or data[oid_start:oid_end] == _PKCS7_ENCRYPTED_OID
            continue
        _t, wrapped, wrapped_end = _element(data, oid_end, info_end, 0xA0)
        _t, contents, contents_end = _element(data, wrapped, wrapped_end, 0x04)
        _t, bag, bags_end = _element(data, contents, contents_end, 0x30)  # SafeContents
        while bag < bags_end:
            _t, bag_start, bag_end = _element(data, bag, bags_end, 0x30)
            bag = bag_end
            _t, oid_start, oid_end = _element(data, bag_start, bag_end, 0x06)
            if data[oid_start:oid_end] != _CERT_BAG_OID:
                continue
            _t, value, value_end = _element(data, oid_end, bag_end, 0xA0)
            _t, cert_bag, cert_bag_end = _element(data, value, value_end, 0x30)
            _t, oid_start, oid_end = _element(data, cert_bag, cert_bag_end, 0x06)
            if data[oid_start:oid_end] != _X509_CERT_OID:
                continue
            _t, explicit, explicit_end = _element(data, oid_end, cert_bag_end, 0xA0)
            _t, der_start, der_end = _element(data, explicit, explicit_end, 0x04)
            certificates.append(data[der_start:der_end])
    return certificates, encrypted


def _pkcs12_refused(data: bytes, ctx: _Context, tried: int, damaged: bool) -> None:
    """No candidate password opened the file: say why without blaming a password for what a
    password cannot cause."""
    try:
        clear_certificates, encrypted = _pkcs12_outline(data)
    except _Pkcs12ShapeError:
        if _declares_more_than(data):
            ctx.parsed.fail("truncated", "PKCS#12 is shorter than its declared length: the "
                            "file is truncated")
        else:
            ctx.parsed.fail("garbage", "PKCS#12 whose structure is damaged (RFC 7292)")
        return
    parsed_any = False
    for der in clear_certificates:
        try:
            parsed_cert = parse_der_certificate(der)
        except MalformedCertificateError as exc:
            ctx.add_problem("malformed-certificate", exc.message)
            parsed_any = True
            continue
        ctx.add_certificate(parsed_cert, "pkcs12")
        parsed_any = True
    if ctx.parsed.problems:
        # a certificate in the clear is malformed: that, not a password, is why it failed
        ctx.add_problem("malformed-certificate",
                        "the library refuses this PKCS#12 because of the malformed "
                        "certificate(s) in it; its keys were not read", slot=None)
        return
    if damaged and not encrypted:
        ctx.parsed.fail("garbage", "PKCS#12 the library cannot read although nothing in it is "
                        "encrypted: the file is damaged")
        return
    message = ("cannot open PKCS#12: wrong password or damaged file (tried no password, the "
               f"empty password and {tried} configured password(s))")
    if parsed_any:
        ctx.add_problem("pkcs12-password", message, slot=None)
    else:
        ctx.parsed.fail("pkcs12-password", message)


def _open_pkcs12(data: bytes, password: bytes | None) -> object:
    """The PKCS#12 loader as a function of ours: the bounded child may need to pickle it
    (cryptography's own are Rust functions, which do not pickle)."""
    return pkcs12.load_pkcs12(data, password)


def _parse_pkcs12(data: bytes, ctx: _Context) -> None:
    candidates = _password_candidates(ctx.passwords)
    if not TRIALS.allows():
        ctx.parsed.fail("too-costly", _budget_spent("the PKCS#12"))
        return
    started = time.monotonic()
    try:
        probe = first_that_opens(functools.partial(_open_pkcs12, data), candidates,
                                 unsupported=(UnsupportedAlgorithm,))
    except TooCostlyError:
        ctx.parsed.fail("too-costly", too_costly("PKCS#12"))
        return
    finally:
        TRIALS.spend(time.monotonic() - started)
    if probe.unsupported:
        ctx.parsed.fail("unsupported-format", "PKCS#12 uses an algorithm the agent cannot read")
        return
    if probe.opened is None:
        _pkcs12_refused(data, ctx, len(candidates) - 2, probe.damaged)
        return
    password = candidates[probe.opened]
    try:
        bundle, caught = capture_warnings(lambda: pkcs12.load_pkcs12(data, password))
    except Exception:  # opened in the child: only a library that changes its mind gets here
        ctx.parsed.fail("garbage", "PKCS#12 the library could not read a second time")
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
# cryptography's key errors quote the input (a PEM body line: the key itself), so none of their
# text is ever used here: each failure is one of our own sentences.

_KeyLoader = Callable[..., object]
"""One of the three below: functions of ours, so that the bounded child can pickle them."""


def _pem_private_key(data: bytes, password: bytes | None, **options: bool) -> object:
    return serialization.load_pem_private_key(data, password, **options)


def _der_private_key(data: bytes, password: bytes | None, **options: bool) -> object:
    return serialization.load_der_private_key(data, password, **options)


def _ssh_private_key(data: bytes, password: bytes | None, **_options: bool) -> object:
    return serialization.load_ssh_private_key(data, password)


def _load(load: _KeyLoader, data: bytes, password: bytes | None,
          ) -> tuple[object, tuple[warnings.WarningMessage, ...]]:
    return capture_warnings(
        lambda: load(data, password, unsafe_skip_rsa_key_validation=True))


def _try_passwords(load: _KeyLoader, data: bytes, passwords: Sequence[bytes],
                   ) -> tuple[object, tuple[warnings.WarningMessage, ...]] | None:
    """The key opened with the first of ``passwords`` that does, found in a bounded child
    (:mod:`vault.bounded`: an encrypted key names its own PBKDF2 or scrypt cost). Raises
    :class:`~vault.bounded.TooCostlyError`."""
    candidates = [password for password in passwords if password]
    if not candidates:
        return None
    probe = first_that_opens(
        functools.partial(load, data, unsafe_skip_rsa_key_validation=True), candidates)
    if probe.opened is None:
        return None
    try:
        return _load(load, data, candidates[probe.opened])
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return None


def _budget_spent(what: str) -> str:
    return (f"{what} was not tried with the passwords: costly files have taken this run's "
            f"budget for trying them ({TRIALS.burst:g} s, then {TRIALS.rate:.0%} of the time; "
            "no honest store needs that)")


def _key_block(label: str) -> str:
    return "a DER private key" if label == "DER" else f"the '{label}' PEM block"


def _load_private(load: _KeyLoader, data: bytes, ctx: _Context, *, label: str,
                  header_encrypted: bool, pem: bytes | None) -> None:
    encrypted = header_encrypted or "ENCRYPTED" in label
    loaded: tuple[object, tuple[warnings.WarningMessage, ...]] | None = None
    if not encrypted:
        try:
            loaded = _load(load, data, None)
        except TypeError:
            encrypted = True  # "password was not given but private key is encrypted"
        except UnsupportedAlgorithm:
            ctx.add_problem("unsupported-format", f"{_key_block(label)} uses an algorithm the "
                            "agent cannot read", slot="key")
            return
        except ValueError:
            ctx.add_problem("garbage", f"{_key_block(label)} is malformed: its encoding cannot "
                            "be read (the key's bytes are not repeated here)", slot="key")
            return
    if encrypted and ctx.passwords and ctx.trials_stopped:
        ctx.add_problem("too-costly", f"{_key_block(label)} was not tried with the passwords: "
                        f"trying them on the file's encrypted keys took {KEY_TRIALS_SECONDS:g} "
                        "s already (no honest file needs that)", slot="key")
        return
    if encrypted and ctx.passwords and not TRIALS.allows():
        ctx.add_problem("too-costly", _budget_spent(_key_block(label)), slot="key")
        return
    if encrypted:
        started = time.monotonic()
        try:
            loaded = _try_passwords(load, data, ctx.passwords)
        except TooCostlyError:
            ctx.trials_stopped = True
            ctx.add_problem("too-costly", too_costly(_key_block(label)),
                            slot="key")
            return
        finally:
            spent = time.monotonic() - started
            ctx.trials_seconds += spent
            TRIALS.spend(spent)
            if ctx.trials_seconds >= KEY_TRIALS_SECONDS:
                ctx.trials_stopped = True
    if loaded is None:
        guessed = {"RSA PRIVATE KEY": "rsa", "EC PRIVATE KEY": "ec",
                   "DSA PRIVATE KEY": "dsa"}.get(label, "unknown")
        ctx.add_key(key_type=guessed, key_size=None, encrypted=True, spki=None, pem=pem)
        return
    key, caught = loaded
    key_type, key_size = key_description(key)
    public = key.public_key()  # type: ignore[attr-defined]
    if ctx.keep_key_pem and (pem is None or encrypted):
        # DER keys are kept as PKCS#8 PEM so escrow stores one format; a key opened with a
        # configured password is kept decrypted, as a PKCS#12's is: the vault keeps keys
        # under its own encryption and refuses one it cannot open (an escrowed key whose
        # password is forgotten would be worthless). In memory only, until escrowed.
        pem = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
    ctx.add_key(key_type=key_type, key_size=key_size, encrypted=encrypted,
                spki=spki_sha256(public), pem=pem, caught=caught)


def _pem_key(label: bytes, whole: bytes, header_encrypted: bool, ctx: _Context) -> None:
    text = _label_text(label)
    if label == b"OPENSSH PRIVATE KEY":
        _load_private(_ssh_private_key, whole, ctx, label=text, header_encrypted=False,
                      pem=whole)
        return
    _load_private(_pem_private_key, whole, ctx, label=text,
                  header_encrypted=header_encrypted, pem=whole)


def _parse_key_der(data: bytes, ctx: _Context) -> None:
    before = len(ctx.parsed.keys)
    _load_private(_der_private_key, data, ctx, label="DER",
                  header_encrypted=False, pem=None)
    if len(ctx.parsed.keys) == before and not ctx.parsed.problems:
        ctx.parsed.fail("garbage", "a DER structure that is neither a certificate nor a key")
    elif len(ctx.parsed.keys) == before:
        ctx.parsed.fail(ctx.parsed.problems[0].code, ctx.parsed.problems[0].message)
        ctx.parsed.problems.clear()
