"""What reading one file of a certificate store yields: plain frozen values, no open files.

The reader never raises for bad input; everything it learnt about a file, good or bad, is one
:class:`FileResult`. A file that could not be read at all carries exactly one :class:`FileError`
with a stable code (see :data:`ERROR_CODES`), so a scan accounts for every file it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from policy.decisions import Finding
from policy.facts import CertificateFacts

__all__ = [
    "ERROR_CODES",
    "SKIP_CODES",
    "CertificateRecord",
    "FileError",
    "FileResult",
    "FileSkip",
    "KeyRecord",
    "ReadLimits",
]

ERROR_CODES: dict[str, str] = {
    "not-found": "the path does not exist (or is a dangling symbolic link)",
    "permission-denied": "the agent may not read the file or directory",
    "not-regular-file": "a directory, device or socket where a file was expected",
    "fifo": "a named pipe: never read, since a reader would block forever",
    "too-large": "larger than the configured size cap; not read",
    "symlink-loop": "symbolic links that point back at themselves",
    "link-outside-root": "a symbolic link whose target lies outside the store's allowed roots",
    "vanished": "the file disappeared or was replaced while it was being read",
    "empty": "the file is empty (or whitespace only)",
    "truncated": "a PEM block without its END line, or DER shorter than its declared length",
    "garbage": "neither PEM nor a DER structure the agent knows",
    "unsupported-format": "a recognised container the agent does not read (Java KeyStore)",
    "pkcs12-password": "a PKCS#12 file that none of the configured passwords opens",
    "too-costly": "a PKCS#12 file or encrypted key whose passwords could not be tried within 3 "
                  "s of CPU: it asks for more key-derivation work than any honest file",
    "malformed-certificate": "a certificate that cryptography cannot parse",
    "more-problems": "beside the certificates read, a file with more than 64 problems: how many "
                     "there were and how many bytes were left unread",
    "io-error": "any other operating-system error while reading",
    "worker-died": "the scan worker process reading the file died (killed, or out of memory)",
}
"""Stable, kebab-case error codes with what each means; docs/agent.md renders this table."""

SKIP_CODES: dict[str, str] = {
    "not-certificate-material": "text (a README, a configuration file) or binary data with no "
                                "PEM marker and no DER structure: not a certificate store entry",
    "no-certificate": "PEM or DER holding only objects that are not certificates or private keys "
                      "(a certificate signing request, a public key, a CRL, parameters)",
    "vanished": "listed by the one-shot scan's walk, removed before it could be read, and "
                "still gone when looked at again (a deploy tool replacing a link): nothing to "
                "read, not an error (the daemon reads it again on its next event instead)",
}
"""Why a file was skipped: it is plainly not a store entry. A skip is information (severity
info), never an error; a file that looks like a certificate and cannot be read is an error."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadLimits:
    """How far the reader may go.

    ``root=None`` is the one-shot ``scan``: symbolic links are followed anywhere (loops are
    still detected). With a ``root`` (the daemon's store) a link is followed only when its fully
    resolved target lies inside ``root`` or one of ``allowed_roots`` (certbot's ``live/`` ->
    ``../archive/``); anything else is a ``link-outside-root`` error, never a silent skip.
    ``max_size`` is inclusive: a file of exactly ``max_size`` bytes is read.
    """

    max_size: int = 10 * 1024 * 1024
    root: Path | None = None
    allowed_roots: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRecord:
    """One certificate at one position of one file."""

    path: str
    index: int
    """0-based position among the certificates of the file (malformed ones count too)."""
    fmt: str
    """Container it came from: ``pem``, ``der``, ``pkcs7`` or ``pkcs12``."""
    facts: CertificateFacts
    findings: tuple[Finding, ...] = ()
    """Parse-level findings: odd-but-parseable encodings, library warnings turned into facts."""
    spki_sha256: str | None = None
    """SHA-256 of the DER SubjectPublicKeyInfo, to pair the certificate with its private key."""
    der: bytes | None = None
    """The DER bytes, kept only when the caller asked for escrow material."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """A private key found in a store. Never holds key material unless escrow asked for it."""

    path: str
    index: int
    """0-based position among the keys of the file (a key that cannot be read takes one too,
    as its error's ``key_index``)."""
    key_type: str
    """``rsa``, ``ec``, ``ed25519``, ``ed448``, ``dsa``, ``dh``, or ``unknown`` (encrypted,
    unopened)."""
    key_size: int | None
    encrypted: bool
    spki_sha256: str | None
    """``None`` when the key is encrypted and no configured password opens it."""
    mode: int
    """Permission bits of the file (``st_mode & 0o7777``)."""
    owner_uid: int
    pem: bytes | None = None
    """Kept only with ``keep_key_pem=True`` (escrow): the PEM block as found; a DER key, a
    PKCS#12's key or an encrypted key opened with a configured password as decrypted PKCS#8
    PEM (what the vault stores); an encrypted key no password opens as found."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileError:
    """Why a file could not be read, or, at a position inside it, one certificate (``index``)
    or one private key (``key_index``). A file-level error has neither."""

    path: str
    code: str
    message: str
    index: int | None = None
    """0-based certificate position, counted as :attr:`CertificateRecord.index` is."""
    key_index: int | None = None
    """0-based private-key position, counted as :attr:`KeyRecord.index` is (unreadable keys
    take a position too)."""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path}
        if self.index is not None:
            out["index"] = self.index
        if self.key_index is not None:
            out["key_index"] = self.key_index
        out["error"] = {"code": self.code, "message": self.message}
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSkip:
    """Why a readable file holds nothing for the agent (a code of :data:`SKIP_CODES`). Its
    severity is info: certbot's ``live/README`` beside the certificates is normal."""

    path: str
    code: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "skipped": {"code": self.code, "message": self.message}}


@dataclass(frozen=True, slots=True, kw_only=True)
class FileResult:
    """Everything one read of one file produced."""

    path: str
    certificates: tuple[CertificateRecord, ...] = ()
    keys: tuple[KeyRecord, ...] = ()
    error: FileError | None = None
    """Set when nothing usable came out of the file; then ``certificates`` is empty."""
    findings: tuple[Finding, ...] = ()
    """File-level findings: private keys on disk, their permissions, a malformed certificate
    among good ones, trailing data."""
    stat: tuple[int, int, int, int, int] | None = None
    """``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of the file actually read
    (after links); the ctime changes with a chmod or chown, which can change a finding."""
    cert_errors: tuple[FileError, ...] = ()
    """Per-position failures (``malformed-certificate`` with ``index``) in an otherwise
    readable file; each also appears as a finding."""
    skipped: FileSkip | None = None
    """Set when the file is plainly not a certificate store entry (then ``error`` is ``None``
    and there are no certificates or keys): accounted for, at severity info."""

    @property
    def ok(self) -> bool:
        return self.error is None
