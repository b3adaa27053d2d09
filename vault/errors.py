"""Errors of the vault. Messages never contain key material."""

from __future__ import annotations

__all__ = ["VaultError"]


class VaultError(Exception):
    """Root of the vault's errors. ``exit_code`` is stable across releases."""

    exit_code = 20
