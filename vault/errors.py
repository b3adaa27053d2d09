"""Errors of the vault. Messages never contain key material.

Each class has a stable ``exit_code`` (20-29) that the root CLI returns. Integrity failures are
deliberately one class with one message shape: telling an attacker *which* check failed (the
wrapped key, the payload, the binding) would help them forge the next attempt.
"""

from __future__ import annotations

__all__ = [
    "VaultBusyError",
    "VaultConflictError",
    "VaultEntryNotFoundError",
    "VaultError",
    "VaultFormatError",
    "VaultInputError",
    "VaultIntegrityError",
    "VaultLockedError",
    "VaultNotFoundError",
    "VaultPermissionError",
]


class VaultError(Exception):
    """Root of the vault's errors. ``exit_code`` is stable across releases."""

    exit_code = 20


class VaultNotFoundError(VaultError):
    """There is no vault at the path (and creation was not asked for)."""

    exit_code = 21


class VaultLockedError(VaultError):
    """The master key is missing, unreadable, or does not open this vault."""

    exit_code = 22


class VaultIntegrityError(VaultError):
    """Something stored failed authentication: tampered, swapped, rolled back or truncated."""

    exit_code = 23


class VaultFormatError(VaultError):
    """A format version this release does not know (vault, blob or key file)."""

    exit_code = 24


class VaultPermissionError(VaultError):
    """A vault file, its directory or a key file is readable by others (or not ours to read)."""

    exit_code = 25


class VaultEntryNotFoundError(VaultError):
    """No entry with that id (or the prefix is ambiguous)."""

    exit_code = 26


class VaultInputError(VaultError):
    """Input the vault cannot take: unrecognised file, wrong kind, wrong password."""

    exit_code = 27


class VaultBusyError(VaultError):
    """Another process held the vault's write lock for longer than the busy timeout."""

    exit_code = 28


class VaultConflictError(VaultError):
    """The operation would overwrite something that exists (a file, a vault) without --force."""

    exit_code = 29
