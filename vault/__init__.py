"""The vault: an encrypted escrow of CSRs, private keys, certificates and CA documents
(Art.4(7) of the terms). It knows nothing of the contract beyond an optional contract id.

The daemon escrows through :func:`open_vault` and :meth:`Vault.put`; the CLI drives the rest.
"""

# Re-exported names are imported when first used (vault/lazyexports.py says why).
from __future__ import annotations

from typing import TYPE_CHECKING

from .lazyexports import lazy_exports

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
    from .results import EntryInfo, ExportResult, PutRequest, PutResult, VerifyReport
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
    "ExportResult": ".results",
    "PutRequest": ".results",
    "PutResult": ".results",
    "VerifyReport": ".results",
    "Vault": ".service",
    "default_vault_path": ".store",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "KINDS",
    "CredentialSource",
    "EntryInfo",
    "ExportResult",
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
