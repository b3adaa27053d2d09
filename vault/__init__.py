"""The vault: an encrypted escrow of CSRs, private keys, certificates and CA documents
(Art.4(7) of the terms). It knows nothing of the contract beyond an optional contract id.

The daemon escrows through :func:`open_vault` and :meth:`Vault.put`; the CLI drives the rest.
"""

# The names below are imported when first used (PEP 562), not with the package: a command
# that only needs the vault's default path (every command reads the configuration) should not
# import cryptography's X.509 and PKCS#12 parsers with it.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import (
        VaultBusyError,
        VaultConflictError,
        VaultEntryNotFoundError,
        VaultError,
        VaultFormatError,
        VaultInputError,
        VaultIntegrityError,
        VaultLockedError,
        VaultNotFoundError,
        VaultPermissionError,
    )
    from .formats import KINDS
    from .keysource import (
        CredentialSource,
        KeyFileSource,
        KeyringSource,
        MasterKeySource,
        PassphraseSource,
        create_key_file,
        key_source_from_settings,
    )
    from .lifecycle import open_vault, restore_vault
    from .results import EntryInfo, PutRequest, PutResult, VerifyReport
    from .service import Vault
    from .store import default_vault_path

_EXPORTS: dict[str, str] = {
    "VaultBusyError": ".errors",
    "VaultConflictError": ".errors",
    "VaultEntryNotFoundError": ".errors",
    "VaultError": ".errors",
    "VaultFormatError": ".errors",
    "VaultInputError": ".errors",
    "VaultIntegrityError": ".errors",
    "VaultLockedError": ".errors",
    "VaultNotFoundError": ".errors",
    "VaultPermissionError": ".errors",
    "KINDS": ".formats",
    "CredentialSource": ".keysource",
    "KeyFileSource": ".keysource",
    "KeyringSource": ".keysource",
    "MasterKeySource": ".keysource",
    "PassphraseSource": ".keysource",
    "create_key_file": ".keysource",
    "key_source_from_settings": ".keysource",
    "open_vault": ".lifecycle",
    "restore_vault": ".lifecycle",
    "EntryInfo": ".results",
    "PutRequest": ".results",
    "PutResult": ".results",
    "VerifyReport": ".results",
    "Vault": ".service",
    "default_vault_path": ".store",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "KINDS",
    "CredentialSource",
    "EntryInfo",
    "KeyFileSource",
    "KeyringSource",
    "MasterKeySource",
    "PassphraseSource",
    "PutRequest",
    "PutResult",
    "Vault",
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
    "VerifyReport",
    "create_key_file",
    "default_vault_path",
    "key_source_from_settings",
    "open_vault",
    "restore_vault",
]
