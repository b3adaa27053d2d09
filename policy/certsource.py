"""How policy commands get certificates out of files without parsing X.509 themselves.

The policy package never imports a crypto library: the agent turns certificates into
:class:`~policy.facts.CertificateFacts`. A policy command that takes certificate files
(``policy classify``, ``contract bind``) asks for a :class:`CertificateReader`, which the root
``certescrow`` command provides: the agent's reader, the same one ``scan`` and the daemon use,
so every command reads PEM, DER, PKCS#7 and PKCS#12 alike and reports the same error codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .decisions import Finding
from .errors import PolicyError
from .facts import CertificateFacts

__all__ = [
    "READER_KEY",
    "CertificateEntry",
    "CertificateFile",
    "CertificateFileError",
    "CertificateReader",
]

READER_KEY = "certificate_reader"
"""Where the root command puts the reader in the click context object."""


class CertificateFileError(PolicyError):
    """A certificate file, or one position in it, that cannot be read. ``code`` is one of the
    agent's stable kebab-case error codes (``not-found``, ``truncated``, ``garbage``,
    ``unsupported-format``, ``no-certificate``, ``malformed-certificate`` …)."""

    exit_code = 17

    def __init__(self, path: Path | str, code: str, reason: str,
                 index: int | None = None) -> None:
        where = f"{path}" if index is None else f"{path}[{index}]"
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.code = code
        self.reason = reason
        self.index = index


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEntry:
    """One certificate of a file, with what reading it revealed."""

    index: int
    facts: CertificateFacts
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateFile:
    """The readable certificates of a file, and the positions that could not be read."""

    path: str
    entries: tuple[CertificateEntry, ...]
    errors: tuple[CertificateFileError, ...] = ()


class CertificateReader(Protocol):
    def __call__(self, path: Path) -> CertificateFile:
        """Read ``path``; raise :class:`CertificateFileError` when the file yields no
        certificate at all."""
        ...


def require_reader(obj: object) -> CertificateReader:
    """The reader the root command registered; a clear error when a policy command is run
    outside ``certescrow`` (e.g. a test invoking the group directly)."""
    reader = obj.get(READER_KEY) if isinstance(obj, dict) else None
    if reader is None:
        raise PolicyError("no certificate reader: run this through the `certescrow` command, "
                          "which provides the agent's certificate reader")
    return reader  # type: ignore[no-any-return]


def entries_or_raise(contents: CertificateFile) -> Sequence[CertificateEntry]:
    """Every entry, or the first per-position error when a file had only unreadable ones."""
    if not contents.entries and contents.errors:
        raise contents.errors[0]
    return contents.entries
