"""Recognising, validating and converting what the vault keeps: keys, CSRs, certificates,
PKCS#12 bundles and opaque CA documents.

This module parses and generates *asymmetric* objects through ``cryptography``'s X.509 and
serialization APIs; it never touches a cipher, MAC or KDF (those live in :mod:`vault.envelope`
alone). Passwords of encrypted inputs come through a callback so the library never prompts: the
CLI passes one that asks on the terminal or reads ``--password-file``.

Every parse of what came from outside, and every read of an attribute of what was parsed (the
library decodes extensions, names and keys lazily), runs inside :func:`vault.boundary.guarded`:
the library's exceptions become :class:`VaultInputError`, its warnings the ``notes`` of the
object read. Sniffing a DER file tries one structure after another; a structure that loads is
what the file is, and an error reading it then is the file's error, never a "document".
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from .boundary import LIBRARY_ERRORS, guarded, reason
from .bounded import Probe, TooCostlyError, first_that_opens, too_costly
from .errors import VaultInputError
from .results import ExportResult

__all__ = [
    "EXPORT_FORMATS",
    "KEY_SPECS",
    "KINDS",
    "MAX_ENTRY_SIZE",
    "Analysis",
    "ImportedItem",
    "PasswordCallback",
    "analyse",
    "analyse_public_key",
    "build_csr",
    "convert",
    "generate_key",
    "holds_private_key",
    "recognise",
    "validate_kind",
]

KINDS = ("private-key", "csr", "certificate", "pkcs12", "document")
EXPORT_FORMATS = ("pem", "der", "p12")
# An entry is sealed in memory in one piece; CA documents are far smaller than this.
MAX_ENTRY_SIZE = 64 * 2**20
KEY_SPECS = ("rsa:2048", "rsa:3072", "rsa:4096", "ec:p256", "ec:p384", "ed25519")

# (description of what needs a password) -> password, or None to give up
PasswordCallback = Callable[[str], bytes | None]
P = ParamSpec("P")
T = TypeVar("T")

# A body runs to the next BEGIN or END marker, never past it: a lazy ``.*?`` looked for the END
# from every BEGIN, quadratic in a file of BEGIN lines (64 KiB: 3 s). Unrolled, unambiguous, no
# possessive quantifier (Python 3.11.2 lacks them); dashes inside a body (DEK-Info) still pass.
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n"
                        rb"[^-]*(?:-(?!----(?:END|BEGIN) )[^-]*)*-----END \1-----\r?\n?")
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY",
               b"DSA PRIVATE KEY"}
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
_IGNORED_LABELS = {b"EC PARAMETERS"}  # `openssl ecparam -genkey` writes these next to the key
_KIND_OF_LABEL = {**dict.fromkeys(_KEY_LABELS, "private-key"),
                  **dict.fromkeys(_CERT_LABELS, "certificate"),
                  **dict.fromkeys(_CSR_LABELS, "csr")}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedItem:
    """One thing to store, recognised from an input file."""

    kind: str
    data: bytes
    source: str  # "file.pem"; in a bundle "file.pem#1" (2nd certificate), "#key0", "#csr0"
    meta: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the library warned about it, in the vault's words


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_description(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _load_key(data: bytes, password: bytes | None = None) -> PrivateKeyTypes:
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password=password)
    return serialization.load_der_private_key(data, password=password)


def _load_cert(data: bytes) -> x509.Certificate:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _load_csr(data: bytes) -> x509.CertificateSigningRequest:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_csr(data)
    return x509.load_der_x509_csr(data)


def _name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return repr(name)


def _sans(ext_owner: x509.Certificate | x509.CertificateSigningRequest) -> str:
    try:
        san = ext_owner.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        return ""
    names = [str(v) for v in san.value.get_values_for_type(x509.DNSName)]
    names += [str(v) for v in san.value.get_values_for_type(x509.IPAddress)]
    return ",".join(names)


def _csr_meta(csr: x509.CertificateSigningRequest) -> dict[str, str]:
    return {"subject": _name(csr.subject), "sans": _sans(csr),
            "key": _key_description(csr.public_key())}


def _cert_meta(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "sans": _sans(cert),
        "key": _key_description(cert.public_key()),
    }


def _public_key_der(kind: str, data: bytes) -> bytes | None:
    if kind == "private-key":
        return _spki(_load_key(data).public_key())
    if kind == "certificate":
        return _spki(_load_cert(data).public_key())
    if kind == "csr":
        return _spki(_load_csr(data).public_key())
    if kind == "pkcs12":
        key, cert, _ = _load_pkcs12(data, None)
        if key is not None:
            return _spki(key.public_key())
        return _spki(cert.public_key()) if cert is not None else None
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """What ``put`` needs from an object, from ONE parse (key parsing dominates import cost)."""

    spki: bytes | None  # SubjectPublicKeyInfo DER, for the match tag
    meta: dict[str, str]  # public facts kept as unencrypted metadata
    notes: tuple[str, ...] = ()  # what the library warned about it, in the vault's words
    same_as: tuple[bytes, ...] = ()
    """The other encodings of the same object that ``put`` may already hold: a certificate
    escrowed by the daemon is DER, one brought in by ``vault import`` is PEM."""


def analyse_public_key(kind: str, data: bytes) -> Analysis:
    """The SubjectPublicKeyInfo an object holds or certifies (what ``match`` pairs on, and
    ``verify`` checks the tag of): ``spki`` is ``None`` when there is none or it cannot be
    read (a PKCS#12 that needs a password), never an exception."""
    try:
        spki, notes = guarded(kind, _public_key_der, kind, data)
    except VaultInputError:
        return Analysis(spki=None, meta={})
    return Analysis(spki=spki, meta={}, notes=notes)


def analyse(kind: str, data: bytes) -> Analysis:
    """Validate ``data`` as ``kind`` and describe it (:class:`VaultInputError` when invalid)."""
    validate_kind(kind, data)
    analysis, notes = guarded(f"not a valid {kind}", _analyse, kind, data)
    return replace(analysis, notes=notes)


def _analyse(kind: str, data: bytes) -> Analysis:
    if kind == "private-key":
        try:
            key = _load_key(data)
        except TypeError:
            raise VaultInputError("the private key is encrypted: store it with `vault import`, "
                                  "which asks for its password and keeps it decrypted under "
                                  "the vault's own encryption") from None
        return Analysis(spki=_spki(key.public_key()), meta={"key": _key_description(key)})
    if kind == "certificate":
        cert = _load_cert(data)
        return Analysis(spki=_spki(cert.public_key()), meta=_cert_meta(cert),
                        same_as=(cert.public_bytes(serialization.Encoding.DER),
                                 cert.public_bytes(serialization.Encoding.PEM)))
    if kind == "csr":
        csr = _load_csr(data)
        return Analysis(spki=_spki(csr.public_key()), meta=_csr_meta(csr))
    if kind == "pkcs12":
        _check_pkcs12_structure(data)
        try:
            spki = _public_key_der(kind, data)
        except LIBRARY_ERRORS:  # needs its password: no tag, `match` cannot pair it
            spki = None
        return Analysis(spki=spki, meta={})
    return Analysis(spki=None, meta={})


def validate_kind(kind: str, data: bytes) -> None:
    if kind not in KINDS:
        raise VaultInputError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    if not data:
        raise VaultInputError(f"empty {kind}: nothing to store")
    if len(data) > MAX_ENTRY_SIZE:
        raise VaultInputError(f"{kind} of {len(data)} bytes is larger than the vault's limit of "
                              f"{MAX_ENTRY_SIZE // 2**20} MiB per entry")


def _check_pkcs12_structure(data: bytes) -> None:
    try:
        _load_pkcs12(data, None)
    except ValueError as exc:
        if "password" not in str(exc).lower() and "mac" not in str(exc).lower():
            raise


def _pkcs8_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _key_item(data: bytes, source: str, ask: PasswordCallback | None) -> ImportedItem:
    try:
        key = _load_key(data)
    except TypeError:  # encrypted, password needed
        if ask is None:
            raise VaultInputError(f"{source}: the private key is encrypted and no password "
                                  "was given") from None
        password = ask(f"private key in {source}")
        if password is None:
            raise VaultInputError(f"{source}: the private key is encrypted; no password "
                                  "given") from None
        try:
            probe = first_that_opens(functools.partial(_load_key, data), [password])
        except TooCostlyError:
            raise VaultInputError(f"{source}: {too_costly('the encrypted private key')}"
                                  ) from None
        if probe.opened is None:
            raise VaultInputError(f"{source}: wrong password for the encrypted private "
                                  "key") from None
        try:
            key = _load_key(data, password)
        except (ValueError, TypeError):
            raise VaultInputError(f"{source}: wrong password for the encrypted private "
                                  "key") from None
    except ValueError as exc:
        raise VaultInputError(f"{source}: not a readable private key: {reason(exc)}") from None
    # Stored decrypted (as PKCS#8): the vault's encryption protects it, and an escrowed key
    # whose password is forgotten would be worthless.
    return ImportedItem(kind="private-key", data=_pkcs8_pem(key), source=source,
                        meta={"key": _key_description(key)})


def _cert_item(cert: x509.Certificate, source: str) -> ImportedItem:
    return ImportedItem(kind="certificate", data=cert.public_bytes(serialization.Encoding.PEM),
                        source=source, meta=_cert_meta(cert))


def _csr_item(csr: x509.CertificateSigningRequest, source: str) -> ImportedItem:
    return ImportedItem(kind="csr", data=csr.public_bytes(serialization.Encoding.PEM),
                        source=source, meta=_csr_meta(csr))


def _read_item(failure: str, read: Callable[P, ImportedItem], /, *args: P.args,
               **kwargs: P.kwargs) -> ImportedItem:
    """``read`` inside the boundary, its warnings the item's notes."""
    item, notes = guarded(failure, read, *args, **kwargs)
    return _noted(item, notes)


def _noted(item: ImportedItem, notes: tuple[str, ...]) -> ImportedItem:
    new = tuple(note for note in notes if note not in item.notes)
    return replace(item, notes=item.notes + new) if new else item


def _loaded(load: Callable[[bytes], T], data: bytes) -> T | None:
    """``load(data)``, or ``None`` when the library refuses it: sniffing, not yet an error."""
    try:
        return load(data)
    except LIBRARY_ERRORS:
        return None


def _certificate_items(certs: list[x509.Certificate], names: list[str],
                       load_notes: tuple[str, ...]) -> list[ImportedItem]:
    """The certificates of a PKCS#7 (named ``names``), each read inside the boundary. Loading
    the container warned about all of them at once; reading each warns again about its own,
    so a note of the load that no certificate repeats goes on the first."""
    items = [_read_item(f"{name}: not a readable certificate", _cert_item, cert, name)
             for cert, name in zip(certs, names, strict=True)]
    left = tuple(note for note in load_notes if not any(note in i.notes for i in items))
    if items and left:
        items[0] = _noted(items[0], left)
    return items


def _open_pkcs12(data: bytes, password: bytes | None) -> object:
    """The PKCS#12 loader as a function of ours: the bounded child may need to pickle it
    (cryptography's own are Rust functions, which do not pickle)."""
    return pkcs12.load_key_and_certificates(data, password)


def _load_pkcs12(data: bytes, password: bytes | None) -> tuple[Any, Any, list[Any]]:
    """The one way the vault opens a PKCS#12: ``password`` tried in a bounded child first
    (:mod:`vault.bounded`: the file names its own key-derivation work, which OpenSSL runs as
    written; a 563-byte file held ``vault import`` for 48 seconds, review 12). The failures
    are the library's kinds in our words: ``ValueError`` (naming the password when it is the
    password), ``UnsupportedAlgorithm``; :class:`VaultInputError` when it costs too much."""
    probed = (hashlib.sha256(data).digest(), password)
    probe = _PROBED.get(probed)
    if probe is None:
        try:
            probe = first_that_opens(functools.partial(_open_pkcs12, data), [password],
                                     unsupported=(UnsupportedAlgorithm,))
        except TooCostlyError:
            probe = _TOO_COSTLY_PROBE
        if len(_PROBED) >= 64:
            _PROBED.clear()
        _PROBED[probed] = probe
    if probe is _TOO_COSTLY_PROBE:
        raise VaultInputError(too_costly("the PKCS#12 file"))
    if probe.unsupported:
        raise UnsupportedAlgorithm("the PKCS#12 file uses an algorithm the library cannot read")
    if probe.opened is None:
        raise ValueError("the PKCS#12 structure is damaged" if probe.damaged
                         else "wrong password for the PKCS#12 file")
    key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    return key, cert, list(extra)


_PROBED: dict[tuple[bytes, bytes | None], Probe] = {}
"""What trying a password on a PKCS#12 found, by its bytes' digest and the password: one
import reads a file several times (is it a PKCS#12, its key, its structure) and must not pay
the bounded child each time (the second re-review: three probes, 6.7 s)."""
_TOO_COSTLY_PROBE = Probe(opened=None)
"""The probe that ran out of time (by identity)."""
_PFX_DATA_OIDS = (bytes.fromhex("06092a864886f70d010701"),  # pkcs7-data
                  bytes.fromhex("06092a864886f70d010702"))  # pkcs7-signedData


def looks_like_pfx(data: bytes) -> bool:
    """Whether ``data`` begins as a PKCS#12 PFX does (SEQUENCE { INTEGER 3, SEQUENCE { OID of
    data or signedData ...} ...}), whole or not: what tells a truncated PKCS#12 from a
    document."""
    pos = 0
    for expected in (0x30, None, 0x30):  # the PFX, its version, the authSafe ContentInfo
        if pos + 2 > len(data):
            return False
        if expected is None:
            if data[pos:pos + 3] != b"\x02\x01\x03":
                return False
            pos += 3
            continue
        if data[pos] != expected:
            return False
        first = data[pos + 1]
        pos += 2 + (first & 0x7F if first > 0x80 else 0)  # into the content
    return data[pos:pos + 11] in _PFX_DATA_OIDS


def _pkcs12_item(data: bytes, source: str, ask: PasswordCallback | None) -> ImportedItem:
    password: bytes | None = None
    try:
        key, cert, extra = _load_pkcs12(data, None)
    except ValueError:
        if ask is None:
            raise VaultInputError(f"{source}: the PKCS#12 file needs a password") from None
        password = ask(f"PKCS#12 file {source}")
        if password is None:
            raise VaultInputError(f"{source}: the PKCS#12 file needs a password") from None
        try:
            key, cert, extra = _load_pkcs12(data, password)
        except ValueError:
            raise VaultInputError(f"{source}: wrong password for the PKCS#12 file") from None
    for held in (cert, *extra):
        if held is not None:
            # cryptography parses extensions on first use: a certificate it cannot read (an
            # extension twice) is refused here as it is in a PEM or DER file
            held.extensions  # noqa: B018 - read for its failure
    meta = {"contains": f"{'key, ' if key is not None else ''}"
                        f"{(1 if cert is not None else 0) + len(extra)} certificate(s)"}
    if cert is not None:
        meta["subject"] = _name(cert.subject)
        meta["not_after"] = cert.not_valid_after_utc.isoformat().replace("+00:00", "Z")
    # Kept as given (the bundle is what the CA or customer handed over), password included:
    # the vault records that one is needed so export can say so.
    meta["password_protected"] = "yes" if password is not None else "no"
    return ImportedItem(kind="pkcs12", data=data, source=source, meta=meta)


def recognise(data: bytes, *, source: str, ask: PasswordCallback | None = None,
              kind: str | None = None) -> list[ImportedItem]:
    """Everything storable in ``data``; a PEM bundle yields one item per object.

    ``kind`` forces the kind (``document`` keeps any bytes as they are). Unrecognisable binary
    data is a document; text that claims to be PEM but does not parse is an error, because
    silently keeping a broken key as a "document" would hide the problem until it is needed.
    """
    if not data:
        raise VaultInputError(f"{source}: empty file, nothing to import")
    if kind == "document":
        return [ImportedItem(kind="document", data=data, source=source)]
    if kind is not None and kind not in KINDS:
        raise VaultInputError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    items = _recognise_pem(data, source, ask) if b"-----BEGIN " in data else None
    if items is None:
        items = _recognise_der(data, source, ask)
    if kind is not None:
        wrong = [item for item in items if item.kind != kind]
        if wrong:
            raise VaultInputError(f"{wrong[0].source}: is a {wrong[0].kind}, not a {kind}")
    return items


def _recognise_pem(data: bytes, source: str,
                   ask: PasswordCallback | None) -> list[ImportedItem] | None:
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks:
        raise VaultInputError(f"{source}: looks like PEM but holds no complete "
                              "-----BEGIN/END----- block (truncated?)")
    # Objects of a bundle are numbered as `scan` numbers them and as the daemon labels what it
    # escrows: certificates 0-based in file order (a PKCS#7 block's certificates included),
    # `#N`; keys `#keyN`; CSRs `#csrN`. A file holding one object keeps its bare name.
    found: list[tuple[ImportedItem, str]] = []
    counts = {"certificate": 0, "private-key": 0, "csr": 0}
    many = len(blocks) > 1

    def position(kind: str) -> str:
        prefix = {"certificate": "", "private-key": "key", "csr": "csr"}[kind]
        return f"#{prefix}{counts[kind]}"

    def take(item: ImportedItem, kind: str) -> None:
        found.append((item, position(kind)))
        counts[kind] += 1

    for match in blocks:
        label, block = match.group(1), match.group(0)
        name = label.decode("ascii", "replace")
        if label in _IGNORED_LABELS:
            continue
        if label in _PKCS7_LABELS:
            where = f"{source} (PKCS#7 from certificate {position('certificate')})"
            certs, notes = guarded(f"{where}: malformed {name}",
                                   pkcs7.load_pem_pkcs7_certificates, block)
            first = counts["certificate"]
            names = [f"{source}#{first + i}" for i in range(len(certs))]
            for item in _certificate_items(certs, names, notes):
                take(item, "certificate")
            continue
        kind = _KIND_OF_LABEL.get(label)
        if kind is None:
            raise VaultInputError(f"{source}: unsupported PEM block {name!r}")
        where = source + position(kind) if many else source
        take(_read_item(f"{where}: malformed {name}", _PEM_READERS[kind], block, where, ask),
             kind)
    many = len(found) > 1
    items = [replace(item, source=source + suffix if many else source) for item, suffix in found]
    if not items:
        raise VaultInputError(f"{source}: no key, CSR or certificate in this PEM file")
    return items


def _pem_key(block: bytes, where: str, ask: PasswordCallback | None) -> ImportedItem:
    return _key_item(block, where, ask)


def _pem_cert(block: bytes, where: str, ask: PasswordCallback | None) -> ImportedItem:
    return _cert_item(x509.load_pem_x509_certificate(block), where)


def _pem_csr(block: bytes, where: str, ask: PasswordCallback | None) -> ImportedItem:
    return _csr_item(x509.load_pem_x509_csr(block), where)


_PEM_READERS = {"private-key": _pem_key, "certificate": _pem_cert, "csr": _pem_csr}


def _recognise_der(data: bytes, source: str, ask: PasswordCallback | None) -> list[ImportedItem]:
    if data[:1] != b"\x30":  # not an ASN.1 SEQUENCE: no DER structure we know
        return [ImportedItem(kind="document", data=data, source=source)]
    unreadable = f"{source}: not a readable"
    cert, notes = guarded(source, _loaded, x509.load_der_x509_certificate, data)
    if cert is not None:
        item = _read_item(f"{unreadable} certificate", _cert_item, cert, source)
        return [_noted(item, notes)]
    csr, notes = guarded(source, _loaded, x509.load_der_x509_csr, data)
    if csr is not None:
        return [_noted(_read_item(f"{unreadable} CSR", _csr_item, csr, source), notes)]
    is_key, _ = guarded(source, _is_der_key, data)
    if is_key:
        return [_read_item(f"{unreadable} private key", _key_item, data, source, ask)]
    certs, notes = guarded(source, _loaded, pkcs7.load_der_pkcs7_certificates, data)
    if certs:
        names = [source] if len(certs) == 1 else [f"{source}#{i}" for i in range(len(certs))]
        return _certificate_items(certs, names, notes)
    try:
        is_pkcs12, _ = guarded(source, _looks_like_pkcs12, data)
    except VaultInputError as exc:
        raise VaultInputError(f"{source}: {exc}") from None
    if is_pkcs12:
        return [_read_item(f"{unreadable} PKCS#12 file", _pkcs12_item, data, source, ask)]
    return [ImportedItem(kind="document", data=data, source=source)]


def _is_der_key(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:  # encrypted: a key all the same
        return True
    except LIBRARY_ERRORS:
        return False
    return True


def _looks_like_pkcs12(data: bytes) -> bool:
    """Whether ``data`` is a PKCS#12 (one that needs a password included). One that begins as
    a PFX but that the library cannot read is refused, not stored as a document: an operator
    importing a truncated ``.p12`` believed its key escrowed (review 12)."""
    try:
        _load_pkcs12(data, None)
        return True
    except ValueError as exc:
        text = str(exc).lower()
        if "password" in text or "mac" in text:
            return True
    except LIBRARY_ERRORS:
        pass
    if looks_like_pfx(data):
        raise VaultInputError("a damaged PKCS#12 file (its RFC 7292 structure cannot be read: "
                              "truncated or corrupted); nothing was imported")
    return False


# ------------------------------------------------------------------------------ export

def holds_private_key(kind: str, fmt: str | None, data: bytes | None = None) -> bool:
    """Whether an export of an entry of ``kind`` in ``fmt`` carries private-key material: a
    key, a PKCS#12 (or a p12 export, which bundles the key), or a document holding a PEM
    private key block. ``data=None`` answers from kind and format alone (before decrypting)."""
    if kind in ("private-key", "pkcs12") or fmt == "p12":
        return True
    return data is not None and b"PRIVATE KEY-----" in data



def convert(kind: str, data: bytes, fmt: str | None, *, entry_id: str,
            p12_password: Callable[[], bytes] | None = None,
            key_pem: bytes | None = None,
            certificates: tuple[bytes, ...] = ()) -> ExportResult:
    """``data`` (as stored) in ``fmt``; ``None`` = as stored, nothing parsed.

    For ``p12`` the bundle is key + certificate: a key entry brings its matching certificate
    (``certificates``), a certificate brings its matching key (``key_pem``). What was stored
    passed :func:`analyse`, but the library reading it may still warn (its ``notes``) or, in
    a later release, refuse it.
    """
    if fmt is None:
        return ExportResult(entry_id=entry_id, data=data)
    if fmt not in EXPORT_FORMATS:
        raise VaultInputError(f"unknown format {fmt!r}; formats are {', '.join(EXPORT_FORMATS)}")
    converted, notes = guarded(f"entry {entry_id} cannot be converted to {fmt}", _convert, kind,
                               data, fmt, entry_id=entry_id, p12_password=p12_password,
                               key_pem=key_pem, certificates=certificates)
    return ExportResult(entry_id=entry_id, data=converted, notes=notes)


def _convert(kind: str, data: bytes, fmt: str, *, entry_id: str,
             p12_password: Callable[[], bytes] | None, key_pem: bytes | None,
             certificates: tuple[bytes, ...]) -> bytes:
    pem = fmt == "pem"
    enc = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    if kind == "private-key" and fmt in ("pem", "der"):
        return _load_key(data).private_bytes(enc, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
    if kind == "certificate" and fmt in ("pem", "der"):
        return _load_cert(data).public_bytes(enc)
    if kind == "csr" and fmt in ("pem", "der"):
        return _load_csr(data).public_bytes(enc)
    if kind == "pkcs12" and fmt == "p12":
        return data
    if fmt == "p12" and kind in ("private-key", "certificate"):
        key_bytes = data if kind == "private-key" else key_pem
        cert_list = [data] if kind == "certificate" else list(certificates)
        key = _load_key(key_bytes) if key_bytes is not None else None
        certs = [_load_cert(c) for c in cert_list]
        if key is not None and not isinstance(key, _P12_KEYS):
            raise VaultInputError(f"entry {entry_id}: a {_key_description(key)} key cannot go "
                                  "into PKCS#12")
        if p12_password is None:
            raise VaultInputError("a PKCS#12 export needs a password")
        password = p12_password()
        if not password:
            raise VaultInputError("a PKCS#12 export needs a non-empty password")
        return pkcs12.serialize_key_and_certificates(
            name=entry_id.encode(), key=key,
            cert=certs[0] if certs else None, cas=certs[1:] or None,
            encryption_algorithm=serialization.BestAvailableEncryption(password),
        )
    raise VaultInputError(f"entry {entry_id} is a {kind}; it cannot be exported as {fmt}"
                          + (" (documents are exported as stored)" if kind == "document" else ""))


_P12_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
             ed448.Ed448PrivateKey)


# ------------------------------------------------------------------------------ generation

def generate_key(spec: str) -> CertificateIssuerPrivateKeyTypes:
    if spec not in KEY_SPECS:
        raise VaultInputError(f"unknown key type {spec!r}; choose one of {', '.join(KEY_SPECS)}")
    algorithm, _, param = spec.partition(":")
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(param))
    if algorithm == "ec":
        return ec.generate_private_key(ec.SECP256R1() if param == "p256" else ec.SECP384R1())
    return ed25519.Ed25519PrivateKey.generate()


def build_csr(key: CertificateIssuerPrivateKeyTypes, *, common_name: str,
              sans: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(key as PKCS#8 PEM, CSR PEM). SANs default to the CN (browsers ignore the CN)."""
    if not common_name or len(common_name) > 64:
        raise VaultInputError("--cn must be 1 to 64 characters (RFC 5280 ub-common-name)")
    names: list[x509.GeneralName] = []
    for value in sans or (common_name,):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                                r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?", value):
                raise VaultInputError(f"--san {value!r} is neither a DNS name nor an IP "
                                      "address") from None
            names.append(x509.DNSName(value))
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .add_extension(x509.SubjectAlternativeName(names), critical=False))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) \
        else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return _pkcs8_pem(key), csr.public_bytes(serialization.Encoding.PEM)
