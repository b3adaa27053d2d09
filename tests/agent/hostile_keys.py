"""Malformed private keys of every type, made at test time, and a check for their bytes.

cryptography's errors can quote the input (``InvalidHeader("MC4CAQAw…")`` is a PKCS#8 key's
first base64 line), so the tests feed these files through every output and look for any run of
their base64 or hex there.
"""

from __future__ import annotations

import base64
import functools
import re
import warnings
from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["WINDOW", "hostile_key_files", "key_material_windows", "leaked_windows"]

WINDOW = 16
"""A run of this many characters of a key's base64 or hex is a leak (a base64 line is 64)."""

_E = serialization.Encoding
_F = serialization.PrivateFormat
_RUN = re.compile(rf"[A-Za-z0-9+/=]{{{WINDOW},}}")


@functools.cache
def _keys() -> dict[str, object]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "dsa": dsa.generate_private_key(1024),  # noqa: S505 - made to be broken, never used
    }


def _blank_lines(pem: bytes) -> bytes:
    return b"\n\n".join(pem.split(b"\n"))


def _spaces(pem: bytes) -> bytes:
    return b"\n".join(line + b"  \t" if line and b"-----" not in line else line
                      for line in pem.split(b"\n")).replace(b"\n", b"\r\n")


def _flip(pem: bytes) -> bytes:
    lines = pem.split(b"\n")
    middle = len(lines) // 2
    lines[middle] = lines[middle][:4] + b"!!!!" + lines[middle][8:]
    return b"\n".join(lines)


def _cut(pem: bytes) -> bytes:
    lines = pem.split(b"\n")
    return b"\n".join(lines[:2] + lines[-3:])


def _first_byte_wrong(der: bytes) -> bytes:
    return der[:6] + bytes([der[6] ^ 0xFF]) + der[7:]


@functools.cache
def hostile_key_files() -> dict[str, bytes]:
    """``name -> content``: every type, PEM and DER, encrypted and not, with blank lines, odd
    whitespace, flipped and cut bodies."""
    files: dict[str, bytes] = {}
    encryption = serialization.BestAvailableEncryption(b"correct horse")
    for kind, key in _keys().items():
        formats = [("pkcs8", _F.PKCS8)]
        if kind in ("rsa", "ec", "dsa"):
            formats.append(("traditional", _F.TraditionalOpenSSL))
        if kind != "ed448":
            formats.append(("openssh", _F.OpenSSH))
        for fmt_name, fmt in formats:
            for enc_name, enc in (("plain", serialization.NoEncryption()),
                                  ("encrypted", encryption)):
                if fmt_name == "openssh" and enc_name == "encrypted":
                    continue  # needs the bcrypt module, which the test environment lacks
                with warnings.catch_warnings():  # making an OpenSSH DSA key warns
                    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                    pem = key.private_bytes(_E.PEM, fmt, enc)  # type: ignore[attr-defined]
                for damage, change in (("blank", _blank_lines), ("spaces", _spaces),
                                       ("flip", _flip), ("cut", _cut)):
                    files[f"{kind}-{fmt_name}-{enc_name}-{damage}.pem"] = change(pem)
        for enc_name, enc in (("plain", serialization.NoEncryption()), ("encrypted", encryption)):
            der = key.private_bytes(_E.DER, _F.PKCS8, enc)  # type: ignore[attr-defined]
            files[f"{kind}-der-{enc_name}-cut.der"] = der[: len(der) - 7]
            files[f"{kind}-der-{enc_name}-flip.der"] = _first_byte_wrong(der)
    return files


def key_material_windows(contents: Iterable[bytes]) -> set[str]:
    """Every ``WINDOW``-character run of the files' base64 text, of the base64 of the bytes it
    decodes to (at each alignment) and of their hex."""
    windows: set[str] = set()

    def add(text: str) -> None:
        for run in _RUN.findall(text):
            windows.update(run[i : i + WINDOW] for i in range(len(run) - WINDOW + 1))

    for content in contents:
        text = content.decode("latin-1")
        add(text)
        body = b"".join(line for line in content.splitlines() if b"-----" not in line
                        and b":" not in line)
        raw = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"===", validate=False) \
            if b"-----BEGIN" in content else content
        for shift in range(3):
            add(base64.b64encode(raw[shift:]).decode())
        add(raw.hex())
        add(raw.hex().upper())
    return windows


def leaked_windows(output: str, windows: set[str]) -> set[str]:
    """The key windows that appear in ``output``."""
    found: set[str] = set()
    for run in _RUN.findall(output):
        for i in range(len(run) - WINDOW + 1):
            if run[i : i + WINDOW] in windows:
                found.add(run[i : i + WINDOW])
    return found
