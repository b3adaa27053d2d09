"""Where ``cryptography`` meets bytes from outside: the one boundary every parse of an untrusted
key, CSR, certificate or PKCS#12 in the vault runs inside (:mod:`vault.formats` calls it).

Two things cross it in the vault's words only:

* **Errors.** cryptography parses certificates lazily: loading checks the outer structure, and
  an extension, a name or a public key is decoded when first asked for. So a certificate that
  loads can still raise on ``cert.extensions`` (``DuplicateExtension`` when an extension
  appears twice) or ``cert.public_key()`` (``UnsupportedAlgorithm``), exceptions that are not
  ``ValueError``. Whatever the library raises on input it cannot read becomes one
  :class:`VaultInputError`, exit 27, whose reason is ours: the library's text can quote the
  input (a private key's first base64 line), and a traceback is no message.
* **Warnings.** The library warns about input it still reads (a serial number that is zero or
  negative, which RFC 5280 forbids and a later cryptography will refuse). A warning printed by
  Python is a line naming the library's source file on stderr, in the middle of a command's
  output; here it is recorded instead and becomes a *note* the command shows as its own.

``warnings.catch_warnings`` changes process-wide state; captures are serialised by a lock so
that threads sharing one vault (the daemon) do not undo each other's filter. A warning another
thread raises meanwhile is recorded here too (and is then a note of this object, never lost on
stderr): Python before 3.14 has no per-thread warning filter.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

from .errors import VaultInputError

__all__ = ["LIBRARY_ERRORS", "NON_POSITIVE_SERIAL", "guarded", "reason"]

P = ParamSpec("P")
T = TypeVar("T")

LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    ValueError, TypeError, UnsupportedAlgorithm, InternalError, x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType, x509.InvalidVersion, x509.AttributeNotFound,
    x509.ExtensionNotFound,
)
"""What cryptography raises on input it cannot read (``TypeError``: an encrypted key and no
password). Neither ``click.Abort`` (a prompt interrupted) nor a :class:`VaultError` of a
password callback is among them: those pass through."""

NON_POSITIVE_SERIAL = ("the certificate's serial number is not positive (RFC 5280 requires a "
                       "positive serial)")

_CAPTURE_LOCK = threading.RLock()
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")
_PLAIN_SENTENCE = re.compile(r"[A-Za-z0-9 .,:;()'_/#-]{1,160}")


def guarded(failure: str, read: Callable[P, T], /, *args: P.args,
            **kwargs: P.kwargs) -> tuple[T, tuple[str, ...]]:
    """``read(*args, **kwargs)`` and the notes made of the warnings it raised. A library error
    becomes ``VaultInputError(f"{failure}: {reason}")``; any other exception passes."""
    with _CAPTURE_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = read(*args, **kwargs)
        except LIBRARY_ERRORS as exc:
            raise VaultInputError(f"{failure}: {reason(exc)}") from None
    return result, notes_of(caught)


def notes_of(caught: Iterable[warnings.WarningMessage]) -> tuple[str, ...]:
    """Each distinct warning once, as a note in the vault's words. A warning this module does
    not know is named by its class only: its text is the library's."""
    notes: dict[str, None] = {}
    for item in caught:
        if issubclass(item.category, CryptographyDeprecationWarning) \
                and "serial number" in str(item.message).lower():
            notes[NON_POSITIVE_SERIAL] = None
        else:
            notes[f"the cryptography library warned about its encoding (a "
                  f"{item.category.__name__}, not repeated here)"] = None
    return tuple(notes)


def reason(exc: Exception) -> str:
    """Why the library refused, in the vault's words. cryptography quotes its input in some
    errors (``InvalidHeader("MC4CAQAw…")`` is a private key's first base64 line): its text is
    used only when it is plainly a fixed sentence, never when it could carry key bytes or a
    parser's debug dump."""
    if isinstance(exc, x509.DuplicateExtension):
        # the OID is the parser's dotted decimal rendering: digits and dots, nothing else
        return (f"extension {exc.oid.dotted_string} appears more than once (RFC 5280 allows "
                "each extension once)")
    if isinstance(exc, x509.UnsupportedGeneralNameType):
        return "a name (in subjectAltName or another extension) of a type the vault cannot read"
    if isinstance(exc, x509.InvalidVersion):
        return "an X.509 version the vault cannot read"
    if isinstance(exc, UnsupportedAlgorithm):
        return "an algorithm the vault's cryptography library does not support"
    text = str(exc).split("\n")[0].strip()
    if "ParseError" in text:
        return "a malformed ASN.1 (DER) structure"
    if not text or _LONG_RUN.search(text) or not _PLAIN_SENTENCE.fullmatch(text):
        return f"a malformed encoding ({type(exc).__name__})"
    return text
