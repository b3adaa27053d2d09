"""The vault: an encrypted escrow of CSRs, private keys, certificates and CA documents
(Art.4(7) of the terms). It knows nothing of the contract beyond an optional contract id.

The daemon escrows through :func:`open_vault` and :meth:`Vault.put`; the CLI drives the rest.
"""

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
