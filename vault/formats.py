"""Recognising, validating and converting what the vault keeps: keys, CSRs, certificates,
PKCS#12 bundles and opaque CA documents.

This module parses and generates *asymmetric* objects through ``cryptography``'s X.509 and
serialization APIs; it never touches a cipher, MAC or KDF (those live in :mod:`vault.envelope`
alone). Passwords of encrypted inputs come through a callback so the library never prompts: the
CLI passes one that asks on the terminal or reads ``--password-file``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from .errors import VaultInputError

__all__ = [
    "EXPORT_FORMATS",
    "KEY_SPECS",
    "KINDS",
    "MAX_ENTRY_SIZE",
    "Analysis",
    "ImportedItem",
    "PasswordCallback",
    "analyse",
    "build_csr",
    "convert",
    "generate_key",
    "holds_private_key",
    "public_key_der",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedItem:
    """One thing to store, recognised from an input file."""

    kind: str
    data: bytes
    source: str  # "file.pem"; in a bundle "file.pem#1" (2nd certificate), "#key0", "#csr0"
    meta: dict[str, str] = field(default_factory=dict)


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


def public_key_der(kind: str, data: bytes, *, pkcs12_password: bytes | None = None) -> bytes | None:
    """The SubjectPublicKeyInfo an object holds or certifies (what ``match`` pairs on)."""
    try:
        if kind == "private-key":
            return _spki(_load_key(data).public_key())
        if kind == "certificate":
            return _spki(_load_cert(data).public_key())
        if kind == "csr":
            return _spki(_load_csr(data).public_key())
        if kind == "pkcs12":
            key, cert, _ = pkcs12.load_key_and_certificates(data, pkcs12_password)
            if key is not None:
                return _spki(key.public_key())
            return _spki(cert.public_key()) if cert is not None else None
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        return None
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """What ``put`` needs from an object, from ONE parse (key parsing dominates import cost)."""

    spki: bytes | None  # SubjectPublicKeyInfo DER, for the match tag
    meta: dict[str, str]  # public facts kept as unencrypted metadata


def analyse(kind: str, data: bytes) -> Analysis:
    """Validate ``data`` as ``kind`` and describe it (:class:`VaultInputError` when invalid)."""
    validate_kind(kind, data)
    try:
        if kind == "private-key":
            key = _load_key(data)
            return Analysis(spki=_spki(key.public_key()), meta={"key": _key_description(key)})
        if kind == "certificate":
            cert = _load_cert(data)
            return Analysis(spki=_spki(cert.public_key()), meta=_cert_meta(cert))
        if kind == "csr":
            csr = _load_csr(data)
            return Analysis(spki=_spki(csr.public_key()),
                            meta={"subject": _name(csr.subject), "sans": _sans(csr),
                                  "key": _key_description(csr.public_key())})
        if kind == "pkcs12":
            _check_pkcs12_structure(data)
            return Analysis(spki=public_key_der(kind, data), meta={})
    except TypeError:
        raise VaultInputError("the private key is encrypted: store it with `vault import`, "
                              "which asks for its password and keeps it decrypted under the "
                              "vault's own encryption") from None
    except ValueError as exc:
        raise VaultInputError(f"not a valid {kind}: {_reason(exc)}") from None
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
        pkcs12.load_key_and_certificates(data, None)
    except ValueError as exc:
        if "password" not in str(exc).lower() and "mac" not in str(exc).lower():
            raise


_LONG_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")
_PLAIN_SENTENCE = re.compile(r"[A-Za-z0-9 .,:;()'_/#-]{1,160}")


def _reason(exc: Exception) -> str:
    """cryptography quotes its input in some errors (``InvalidHeader("MC4CAQAw…")`` is a
    private key's first base64 line): its text is used only when it is plainly a fixed
    sentence, never when it could carry key bytes or a parser's debug dump."""
    text = str(exc).split("\n")[0].strip()
    if "ParseError" in text:
        return "a malformed ASN.1 (DER) structure"
    if not text or _LONG_RUN.search(text) or not _PLAIN_SENTENCE.fullmatch(text):
        return f"a malformed encoding ({type(exc).__name__})"
    return text


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
            key = _load_key(data, password)
        except (ValueError, TypeError):
            raise VaultInputError(f"{source}: wrong password for the encrypted private "
                                  "key") from None
    except ValueError as exc:
        raise VaultInputError(f"{source}: not a readable private key: {_reason(exc)}") from None
    # Stored decrypted (as PKCS#8): the vault's encryption protects it, and an escrowed key
    # whose password is forgotten would be worthless.
    return ImportedItem(kind="private-key", data=_pkcs8_pem(key), source=source,
                        meta={"key": _key_description(key)})


def _cert_item(cert: x509.Certificate, source: str) -> ImportedItem:
    return ImportedItem(kind="certificate", data=cert.public_bytes(serialization.Encoding.PEM),
                        source=source, meta=_cert_meta(cert))


def _csr_item(csr: x509.CertificateSigningRequest, source: str) -> ImportedItem:
    return ImportedItem(kind="csr", data=csr.public_bytes(serialization.Encoding.PEM),
                        source=source,
                        meta={"subject": _name(csr.subject), "sans": _sans(csr),
                              "key": _key_description(csr.public_key())})


def _pkcs12_item(data: bytes, source: str, ask: PasswordCallback | None) -> ImportedItem:
    password: bytes | None = None
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, None)
    except ValueError:
        if ask is None:
            raise VaultInputError(f"{source}: the PKCS#12 file needs a password") from None
        password = ask(f"PKCS#12 file {source}")
        if password is None:
            raise VaultInputError(f"{source}: the PKCS#12 file needs a password") from None
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            raise VaultInputError(f"{source}: wrong password for the PKCS#12 file") from None
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
        try:
            if label in _KEY_LABELS:
                where = source + position("private-key") if many else source
                take(_key_item(block, where, ask), "private-key")
            elif label in _CERT_LABELS:
                where = source + position("certificate") if many else source
                take(_cert_item(x509.load_pem_x509_certificate(block), where), "certificate")
            elif label in _CSR_LABELS:
                where = source + position("csr") if many else source
                take(_csr_item(x509.load_pem_x509_csr(block), where), "csr")
            elif label in _PKCS7_LABELS:
                where = f"{source} (PKCS#7 from certificate {position('certificate')})"
                for cert in pkcs7.load_pem_pkcs7_certificates(block):
                    take(_cert_item(cert, source), "certificate")
            elif label in _IGNORED_LABELS:
                continue
            else:
                where = source
                raise VaultInputError(f"{where}: unsupported PEM block "
                                      f"{label.decode('ascii', 'replace')!r}")
        except ValueError as exc:
            raise VaultInputError(f"{where}: malformed {label.decode('ascii', 'replace')}: "
                                  f"{_reason(exc)}") from None
    many = len(found) > 1
    items = [replace(item, source=source + suffix if many else source) for item, suffix in found]
    if not items:
        raise VaultInputError(f"{source}: no key, CSR or certificate in this PEM file")
    return items


def _recognise_der(data: bytes, source: str, ask: PasswordCallback | None) -> list[ImportedItem]:
    if data[:1] == b"\x30":  # an ASN.1 SEQUENCE: try the DER structures we know
        try:
            return [_cert_item(x509.load_der_x509_certificate(data), source)]
        except ValueError:
            pass
        try:
            return [_csr_item(x509.load_der_x509_csr(data), source)]
        except ValueError:
            pass
        try:
            serialization.load_der_private_key(data, password=None)
            return [_key_item(data, source, ask)]
        except TypeError:
            return [_key_item(data, source, ask)]
        except (ValueError, x509.UnsupportedGeneralNameType):
            pass
        try:
            certs = pkcs7.load_der_pkcs7_certificates(data)
            if certs:
                if len(certs) == 1:
                    return [_cert_item(certs[0], source)]
                return [_cert_item(c, f"{source}#{i}") for i, c in enumerate(certs)]
        except ValueError:
            pass
        if _looks_like_pkcs12(data):
            return [_pkcs12_item(data, source, ask)]
    return [ImportedItem(kind="document", data=data, source=source)]


def _looks_like_pkcs12(data: bytes) -> bool:
    try:
        pkcs12.load_key_and_certificates(data, None)
        return True
    except ValueError as exc:
        text = str(exc).lower()
        return "password" in text or "mac" in text
    except TypeError:
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
            key_pem: bytes | None = None, certificates: tuple[bytes, ...] = ()) -> bytes:
    """``data`` (as stored) in ``fmt``; ``None`` = as stored.

    For ``p12`` the bundle is key + certificate: a key entry brings its matching certificate
    (``certificates``), a certificate brings its matching key (``key_pem``).
    """
    if fmt is None:
        return data
    if fmt not in EXPORT_FORMATS:
        raise VaultInputError(f"unknown format {fmt!r}; formats are {', '.join(EXPORT_FORMATS)}")
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
