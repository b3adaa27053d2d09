"""One X.509 certificate -> :class:`~policy.facts.CertificateFacts`, inside an error boundary.

``cryptography`` parses lazily: a certificate loads, and a malformed extension or name raises
only when it is read. So every field the agent needs is read here, at once, inside one
``try``: a certificate that fails anywhere becomes one :class:`MalformedCertificateError` for its
position, and the rest of the file goes on. Library warnings about odd-but-parseable
certificates (a serial number that is zero or negative, ...) are recorded and turned into
findings, never printed to stderr: a warning filter set to ``error`` (as in the tests) must not
turn a readable certificate into a crash.

``warnings.catch_warnings`` swaps process-global state; the agent parses on one worker thread,
which is what makes that safe.
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from policy.decisions import Finding, Severity
from policy.facts import FACT_LIST_LIMIT, SAN_LIMIT, CertificateFacts, storable

__all__ = [
    "MalformedCertificateError",
    "ParsedCertificate",
    "capture_warnings",
    "describe_library_error",
    "facts_from_certificate",
    "key_description",
    "parse_der_certificate",
    "recording_warnings",
    "safe_library_text",
    "spki_sha256",
    "warning_findings",
]

T = TypeVar("T")

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class MalformedCertificateError(Exception):
    """A certificate that cannot be parsed or whose fields cannot all be read."""

    def __init__(self, message: str, findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.findings = findings


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedCertificate:
    facts: CertificateFacts
    findings: tuple[Finding, ...]
    spki_sha256: str | None
    der: bytes


_RECORDING: list[warnings.WarningMessage] | None = None
"""Where warnings go inside :func:`recording_warnings` (``None`` outside)."""
_RECORDING_THREAD = 0


def capture_warnings(func: Callable[[], T]) -> tuple[T, tuple[warnings.WarningMessage, ...]]:
    """Run ``func`` with every warning recorded instead of shown (or raised)."""
    recording = _RECORDING
    if recording is not None and threading.get_ident() == _RECORDING_THREAD:
        # inside recording_warnings(): the filter is set already; keep what func adds
        mark = len(recording)
        try:
            result = func()
            caught = tuple(recording[mark:])
        finally:
            del recording[mark:]
        return result, caught
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        result = func()
    return result, tuple(log)


@contextmanager
def recording_warnings() -> Iterator[None]:
    """Record warnings once for a whole batch of files instead of once per certificate
    (``warnings.catch_warnings`` and its filter cost about as much as reading a name): inside,
    :func:`capture_warnings` only notes what its function added. Only in a process with one
    thread, since the filter is process-global (a scan's worker, or the one-shot scan in its
    own process); with other threads running it does nothing and each capture sets its own.
    A warning from outside any capture is dropped with the batch, never printed."""
    global _RECORDING, _RECORDING_THREAD
    if _RECORDING is not None or threading.active_count() > 1:
        yield
        return
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        _RECORDING, _RECORDING_THREAD = log, threading.get_ident()
        try:
            yield
        finally:
            _RECORDING, _RECORDING_THREAD = None, 0


def warning_findings(caught: Iterable[warnings.WarningMessage], *,
                     what: str = "") -> tuple[Finding, ...]:
    """Library warnings as findings, one per distinct message. ``what`` names the object
    (``"private key #0 (dsa 1024)"``) when it is not the certificate the findings sit on.

    The warning's text is the library's, so it passes :func:`safe_library_text` first (it is a
    static sentence today; nothing guarantees that stays so)."""
    seen: dict[str, Finding] = {}
    prefix = f"{what}: " if what else ""
    for item in caught:
        text = str(item.message)
        if text in seen:
            continue
        lowered = text.lower()
        category = item.category.__name__
        if "serial number" in lowered:
            code = "non-positive-serial"
            message = ("serial number is zero or negative, which RFC 5280 §4.1.2.2 forbids; "
                       "cryptography warns that it will refuse such certificates")
        elif "deprecated" in lowered or category == "CryptographyDeprecationWarning":
            code = "deprecated-algorithm"
            said = safe_library_text(text)
            message = (f"{prefix}cryptography deprecates what this uses and will stop reading "
                       f"it" + (f" ({said})" if said else ""))
        else:
            code = "parser-warning"
            said = safe_library_text(text) or "a warning the agent does not repeat"
            message = f"{prefix}{category}: {said}"
        seen[text] = Finding(code=code, clause="", message=message, severity=Severity.WARNING)
    return tuple(seen.values())


# A library message is shown only when it cannot be carrying input bytes: no run of base64 or
# hex long enough to be key material, no Python bytes literal, no escape sequence, short.
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")
_SAFE_TEXT = re.compile(r"[A-Za-z0-9 .,:;()'_/#-]*")
_MAX_LIBRARY_TEXT = 160


def safe_library_text(text: str) -> str | None:
    """``text`` (a library's exception or warning text) if it is plainly a fixed sentence,
    else ``None``. cryptography quotes input in some errors (``InvalidHeader("MC4CAQAw…")``
    quotes a private key's first base64 line), so nothing it says is printed unchecked."""
    text = text.strip()
    if (not text or len(text) > _MAX_LIBRARY_TEXT or _LONG_RUN.search(text)
            or not _SAFE_TEXT.fullmatch(text)):
        return None
    return text


def spki_sha256(public_key: object) -> str | None:
    """SHA-256 of the DER SubjectPublicKeyInfo; what pairs a certificate with its key."""
    try:
        der = public_key.public_bytes(*_SPKI)  # type: ignore[attr-defined]
    except Exception:  # an exotic key simply cannot be paired
        return None
    return hashlib.sha256(der).hexdigest()


def key_description(public_key: object) -> tuple[str, int | None]:
    """(``rsa``/``ec``/``ed25519``/``ed448``/``dsa``/``dh``/``unknown``, size in bits)."""
    if isinstance(public_key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "rsa", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "ec", public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "ed448", 456
    if isinstance(public_key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return "dsa", public_key.key_size
    if type(public_key).__name__ in ("DHPrivateKey", "DHPublicKey"):
        # by name: touching cryptography's dh classes raises its FFDH deprecation warning
        return "dh", getattr(public_key, "key_size", None)
    return "unknown", None


def _first(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    for attribute in name.get_attributes_for_oid(oid):
        value = attribute.value
        return value if isinstance(value, str) else value.hex()
    return None


def parse_der_certificate(der: bytes) -> ParsedCertificate:
    """Load a DER certificate and read every field; raises :class:`MalformedCertificateError`."""

    def load_and_read() -> tuple[CertificateFacts, str | None, bytes]:
        return _read_all(x509.load_der_x509_certificate(der), der)

    try:
        (facts, spki, der_bytes), caught = capture_warnings(load_and_read)
    except Exception as exc:  # the boundary: any parse failure is one error
        raise MalformedCertificateError(_describe(exc)) from None
    findings = warning_findings(caught) if caught else ()
    facts, altered = storable(facts)
    if altered:
        findings = (*findings, _altered(altered))
    return ParsedCertificate(facts=facts, findings=findings, spki_sha256=spki, der=der_bytes)


def _altered(fields: tuple[str, ...]) -> Finding:
    """Said of a certificate whose text :func:`policy.facts.storable` had to change: the fields
    by name only (their text is the attacker's)."""
    return Finding(
        code="certificate-text-altered", clause="", severity=Severity.WARNING,
        message=f"{', '.join(fields)}: a NUL character, an invalid character or a value longer "
                f"than a ledger stores (a SAN over {SAN_LIMIT} characters, more than "
                f"{FACT_LIST_LIMIT} entries): recorded escaped (NUL as \\00) or shortened "
                "(ending in \u2026); the SHA-256 and dates are exact. A legitimate CA issues "
                "no such certificate")


def facts_from_certificate(
    cert: x509.Certificate,
    *,
    der: bytes | None = None,
    caught: Iterable[warnings.WarningMessage] = (),
) -> ParsedCertificate:
    """Read every field of ``cert``; raises :class:`MalformedCertificateError` on the first that
    fails. ``caught`` are warnings already recorded while loading it."""
    try:
        (facts, spki, der_bytes), more = capture_warnings(lambda: _read_all(cert, der))
    except Exception as exc:  # the boundary: any lazy parse failure
        raise MalformedCertificateError(_describe(exc)) from None
    findings = warning_findings((*caught, *more))
    facts, altered = storable(facts)
    if altered:
        findings = (*findings, _altered(altered))
    return ParsedCertificate(facts=facts, findings=findings, spki_sha256=spki, der=der_bytes)


_PARSE_KINDS = {
    "ShortData": "the data ends before the structure does (truncated)",
    "UnexpectedTag": "a field of the wrong type",
    "InvalidTag": "an invalid tag",
    "InvalidLength": "an invalid length",
    "InvalidValue": "an invalid value",
    "ExtraData": "extra data after the structure",
    "IntegerOverflow": "a number too large",
    "InvalidSetOrdering": "a SET whose elements are out of order",
    "EncodedDefault": "a DEFAULT value that DER must omit",
    "OidTooLong": "an object identifier too long",
    "UnknownDefinedBy": "an unknown algorithm or type identifier",
    "IndefiniteLengthUnsupported": "a BER indefinite length, which DER forbids",
    "NonCanonicalEncoding": "a non-canonical encoding",
}
_PARSE_KIND = re.compile(r"kind: (\w+)")
_PARSE_LOCATION = re.compile(r'location: \["?([A-Za-z0-9_:]+)')


def describe_library_error(exc: BaseException, what: str) -> str:
    """``what`` failed, in our words: the kind of ASN.1 fault and the field it sits in when
    cryptography's Rust error says so (never its ``ParseError { kind: … }`` dump), else the
    library's sentence only if :func:`safe_library_text` passes it."""
    text = str(exc)
    if "ParseError" in text:
        kind = _PARSE_KIND.search(text)
        location = _PARSE_LOCATION.search(text)
        fault = _PARSE_KINDS.get(kind.group(1) if kind else "", "an invalid DER encoding")
        where = f" in {location.group(1).split('::')[-1]}" if location else ""
        return f"{what}: ASN.1 parse error{where}: {fault}"
    said = safe_library_text(text)
    if said is None:
        return f"{what} ({type(exc).__name__})"
    return f"{what}: {said}"


def _describe(exc: Exception) -> str:
    """A certificate parse failure as a sentence for people (see
    :func:`describe_library_error`)."""
    return describe_library_error(exc, "cannot parse certificate")


# ---------------------------------------------------------------- raw DER shortcuts
# cryptography builds Python objects for names and keys on first access, and that, not the
# parse, is what a scan of 100,000 certificates spends its time on. The raw TBS fields are
# sliced out here instead (cryptography has already validated the whole structure when it
# loaded the certificate), names are rendered once per distinct encoding, and the key's type
# and size are read from the SubjectPublicKeyInfo. Anything unexpected falls back to the
# cryptography objects.

def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of element) of the DER element at ``pos``."""
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError("unsupported DER length")
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    start = pos + 2 + count
    return tag, start, start + length


def _tbs_fields(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(issuer, subject, subjectPublicKeyInfo) encodings of a certificate's TBS."""
    _tag, cert_start, _end = _header(der, 0)
    _tag, pos, _tbs_end = _header(der, cert_start)
    tag, _start, end = _header(der, pos)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = end
        tag, _start, end = _header(der, pos)
    pos = end  # serialNumber
    pos = _header(der, pos)[2]  # signature AlgorithmIdentifier
    _tag, _start, end = _header(der, pos)
    issuer = der[pos:end]
    pos = _header(der, end)[2]  # validity
    _tag, _start, end = _header(der, pos)
    subject = der[pos:end]
    _tag, _start, spki_end = _header(der, end)
    return issuer, subject, der[end:spki_end]


_RSA = bytes.fromhex("2a864886f70d010101")
_EC = bytes.fromhex("2a8648ce3d0201")
_CURVES = {
    bytes.fromhex("2a8648ce3d030107"): 256,  # P-256
    bytes.fromhex("2b81040022"): 384,  # P-384
    bytes.fromhex("2b81040023"): 521,  # P-521
    bytes.fromhex("2b8104000a"): 256,  # secp256k1
}
_EDWARDS = {bytes.fromhex("2b6570"): ("ed25519", 256), bytes.fromhex("2b6571"): ("ed448", 456)}


def _key_from_spki(spki: bytes) -> tuple[str, int | None] | None:
    _tag, pos, _end = _header(spki, 0)
    _tag, alg_start, alg_end = _header(spki, pos)
    tag, oid_start, oid_end = _header(spki, alg_start)
    if tag != 0x06:
        return None
    oid = spki[oid_start:oid_end]
    if oid in _EDWARDS:
        return _EDWARDS[oid]
    if oid == _EC and oid_end < alg_end:
        tag, curve_start, curve_end = _header(spki, oid_end)
        size = _CURVES.get(spki[curve_start:curve_end]) if tag == 0x06 else None
        return ("ec", size) if size is not None else None
    if oid == _RSA:
        tag, bits_start, _bits_end = _header(spki, alg_end)
        if tag != 0x03:
            return None
        _tag, seq_start, _seq_end = _header(spki, bits_start + 1)  # skip unused-bits byte
        tag, n_start, n_end = _header(spki, seq_start)
        if tag != 0x02:
            return None
        return "rsa", int.from_bytes(spki[n_start:n_end], "big").bit_length()
    return None


_KEY_CACHE: dict[bytes, tuple[str, int | None, str] | None] = {}
_KEY_CACHE_MAX = 4096


def _key_info(spki: bytes) -> tuple[str, int | None, str] | None:
    """(key type, size, SPKI SHA-256) of an encoded SubjectPublicKeyInfo, ``None`` when
    :func:`_key_from_spki` does not know it; remembered by the encoding (bounded): a leaf
    appears in ``cert.pem`` and ``fullchain.pem``, and a renewal may keep its key."""
    if spki in _KEY_CACHE:
        return _KEY_CACHE[spki]
    key = _key_from_spki(spki)
    info = None if key is None else (*key, hashlib.sha256(spki).hexdigest())
    if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
        _KEY_CACHE.clear()
    _KEY_CACHE[spki] = info
    return info


# RFC 4514 short names exactly as cryptography renders them (x509/name.py _NAMEOID_TO_NAME);
# any other attribute type sends the name down cryptography's own path.
_SHORT_NAMES = {
    bytes.fromhex("550403"): "CN",
    bytes.fromhex("550407"): "L",
    bytes.fromhex("550408"): "ST",
    bytes.fromhex("55040a"): "O",
    bytes.fromhex("55040b"): "OU",
    bytes.fromhex("550406"): "C",
    bytes.fromhex("550409"): "STREET",
    bytes.fromhex("0992268993f22c640119"): "DC",
    bytes.fromhex("0992268993f22c640101"): "UID",
}
_TEXT_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii"}  # UTF8/Printable/IA5String
_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def _escape_dn_value(value: str) -> str:
    """RFC 4514 §2.4 escaping, character for character as cryptography does it."""
    if not value:
        return ""
    value = (value.replace("\\", "\\\\").replace('"', '\\"').replace("+", "\\+")
             .replace(",", "\\,").replace(";", "\\;").replace("<", "\\<")
             .replace(">", "\\>").replace("\0", "\\00"))
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def _fast_name(raw: bytes) -> tuple[str, str | None, str | None] | None:
    """(RFC 4514 string, first O, first CN) straight from the DER of a Name whose every RDN
    is one attribute of a common type with a text value; ``None`` for anything else."""
    tag, pos, end = _header(raw, 0)
    if tag != 0x30 or end != len(raw):
        return None
    parts: list[str] = []
    org = cn = None
    while pos < end:
        tag, set_start, set_end = _header(raw, pos)
        if tag != 0x31:
            return None
        tag, atv_start, atv_end = _header(raw, set_start)
        if tag != 0x30 or atv_end != set_end:
            return None  # several attributes in one RDN: cryptography's path
        tag, oid_start, oid_end = _header(raw, atv_start)
        short = _SHORT_NAMES.get(raw[oid_start:oid_end]) if tag == 0x06 else None
        if short is None:
            return None
        tag, value_start, value_end = _header(raw, oid_end)
        encoding = _TEXT_TAGS.get(tag)
        if encoding is None or value_end != atv_end:
            return None
        try:
            value = raw[value_start:value_end].decode(encoding)
        except UnicodeDecodeError:
            return None  # cryptography decides whether that is malformed
        if tag == 0x13 and not _PRINTABLE.issuperset(value):
            return None  # not a valid PrintableString: let cryptography judge it
        if short == "O" and org is None:
            org = value
        elif short == "CN" and cn is None:
            cn = value
        parts.append(f"{short}={_escape_dn_value(value)}")
        pos = set_end
    parts.reverse()  # RFC 4514 writes the most specific RDN first
    return ",".join(parts), org, cn


_NAME_CACHE: dict[bytes, tuple[str, str | None, str | None]] = {}
_NAME_CACHE_MAX = 8192


def _name_info(raw: bytes | None, name: Callable[[], x509.Name], *,
               memo: bool) -> tuple[str, str | None, str | None]:
    """(RFC 4514 string, first O, first CN) of a name; with ``memo`` remembered by its
    encoding (a store's certificates share a handful of issuers; subjects are all distinct)."""
    if raw is not None and memo:
        hit = _NAME_CACHE.get(raw)
        if hit is not None:
            return hit
    fast = _fast_name(raw) if raw is not None else None
    if fast is not None:
        info = fast
    else:
        value = name()
        info = (value.rfc4514_string(), _first(value, NameOID.ORGANIZATION_NAME),
                _first(value, NameOID.COMMON_NAME))
    if raw is not None and memo:
        if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
            _NAME_CACHE.clear()
        _NAME_CACHE[raw] = info
    return info


def _read_all(
    cert: x509.Certificate, der: bytes | None
) -> tuple[CertificateFacts, str | None, bytes]:
    if der is None:
        der = cert.public_bytes(serialization.Encoding.DER)
    try:
        raw_issuer, raw_subject, raw_spki = _tbs_fields(der)
        key = _key_info(raw_spki)
    except (IndexError, ValueError):
        raw_issuer = raw_subject = raw_spki = b""
        key = None
    subject_text, _subject_org, subject_cn = _name_info(raw_subject or None,
                                                        lambda: cert.subject, memo=False)
    issuer_text, issuer_org, issuer_cn = _name_info(raw_issuer or None, lambda: cert.issuer,
                                                    memo=True)
    sans: list[str] = []
    policy_oids: list[str] = []
    is_ca = False
    for extension in cert.extensions:
        value = extension.value
        # by exact type: isinstance against cryptography's ABCs costs an ABC check each, and
        # cryptography builds these classes itself, never subclasses
        kind = type(value)
        if kind is x509.SubjectAlternativeName:
            for general_name in value:
                name_kind = type(general_name)
                if name_kind is x509.DNSName:
                    sans.append(general_name.value)
                elif name_kind is x509.IPAddress:
                    sans.append(str(general_name.value))
        elif kind is x509.CertificatePolicies:
            policy_oids.extend(p.policy_identifier.dotted_string for p in value)
        elif kind is x509.BasicConstraints:
            is_ca = value.ca
    spki: str | None
    if key is not None:
        key_type, key_size, spki = key
    else:
        try:
            public_key: object = cert.public_key()
        except Exception:  # an unsupported algorithm is odd, not malformed
            public_key = None
        key_type, key_size = key_description(public_key)
        spki = spki_sha256(public_key) if public_key is not None else None
    oid = cert.signature_algorithm_oid
    signature_algorithm = getattr(oid, "_name", "") or oid.dotted_string
    if signature_algorithm == "Unknown OID":
        signature_algorithm = oid.dotted_string
    self_signed = False
    if (raw_subject == raw_issuer if raw_subject else
            cert.subject.public_bytes() == cert.issuer.public_bytes()):
        try:
            cert.verify_directly_issued_by(cert)
            self_signed = True
        except Exception:  # self-issued but not self-signed
            self_signed = False
    facts = CertificateFacts(
        sha256=hashlib.sha256(der).hexdigest(),
        not_before_utc=cert.not_valid_before_utc,
        not_after_utc=cert.not_valid_after_utc,
        subject=subject_text,
        subject_cn=subject_cn,
        issuer=issuer_text,
        issuer_org=issuer_org,
        issuer_cn=issuer_cn,
        serial=format(cert.serial_number, "x"),
        sans=tuple(sans),
        policy_oids=tuple(policy_oids),
        is_ca=is_ca,
        self_signed=self_signed,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=signature_algorithm,
    )
    return facts, spki, der
