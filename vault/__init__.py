"""The vault: an encrypted escrow of CSRs, private keys, certificates and CA documents."""

from .errors import VaultError

__all__ = ["VaultError"]
