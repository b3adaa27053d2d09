"""AEAD and the envelope format: the only module of the vault that imports ``cryptography.hazmat``.

Layout (format version 1; see docs/vault-format.md for the byte-level description):

* a *data key* (32 random bytes) per entry version encrypts the payload with AES-256-GCM;
* the data key is wrapped by the master key with AES-256-GCM as well (not AES-KW, RFC 3394):
  AES-KW has no associated data, so a wrapped key could be moved to another row unnoticed; GCM
  lets the wrap carry the same binding (vault id, entry id, kind, version, metadata digest) as
  the payload. A 96-bit random nonce per wrap is safe: a master key wraps far fewer than the
  2^32 messages NIST SP 800-38D allows under random nonces;
* every blob starts with its format version byte so a future release can read old blobs and an
  old release refuses new ones with :class:`VaultFormatError` rather than "integrity failure".

As in pyca's Fernet, the public :func:`seal` draws randomness and the private
:func:`_seal_from_parts` is deterministic, so known-answer vectors pin the format
(tests/vectors/vault-*.json). Every authentication failure raises the *same*
:class:`VaultIntegrityError`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import VaultFormatError, VaultIntegrityError

__all__ = [
    "BLOB_VERSION",
    "KEY_SIZE",
    "NONCE_SIZE",
    "Binding",
    "Sealed",
    "VaultKeys",
    "derive_subkeys",
    "hmac_tag",
    "integrity_error",
    "metadata_digest",
    "new_key",
    "rewrap",
    "scrypt_derive",
    "seal",
    "unseal",
    "unwrap_secret",
    "wrap_secret",
]

BLOB_VERSION = 1
KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12  # 96-bit GCM nonce
TAG_SIZE = 16
DOMAIN = b"certescrow-vault\x00"

PURPOSE_WRAP = 1  # a data key wrapped by the master key
PURPOSE_PAYLOAD = 2  # an entry's payload under its data key
PURPOSE_SECRET = 3  # the vault secret (header) wrapped by the master key

_INTEGRITY_MESSAGE = "integrity check failed: the vault data was altered, swapped or rolled back"


def integrity_error(where: str) -> VaultIntegrityError:
    """The one integrity error. ``where`` names the object (entry id, "header"), never the check."""
    return VaultIntegrityError(f"{where}: {_INTEGRITY_MESSAGE}")


def new_key() -> bytes:
    return os.urandom(KEY_SIZE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """What a ciphertext is bound to through the AEAD associated data.

    Moving a payload or a wrapped key to another row, another vault, another kind, another
    version or other metadata makes authentication fail.
    """

    vault_id: bytes  # 16 random bytes, fixed at init
    entry_id: str
    kind: str
    version: int
    meta_digest: bytes  # 32 bytes, see metadata_digest()

    def aad(self, purpose: int) -> bytes:
        if len(self.vault_id) != 16 or len(self.meta_digest) != 32:
            raise ValueError("vault_id must be 16 bytes and meta_digest 32 bytes")
        return b"".join((
            DOMAIN,
            bytes((purpose, BLOB_VERSION)),
            self.vault_id,
            _lp(self.entry_id.encode()),
            _lp(self.kind.encode()),
            struct.pack(">I", self.version),
            self.meta_digest,
        ))


def _lp(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("field too long for the envelope")
    return struct.pack(">H", len(value)) + value


def metadata_digest(fields: list[tuple[str, str]]) -> bytes:
    """SHA-256 over length-prefixed ``name, value`` pairs in the given (fixed) order.

    A hash, not a MAC: it only needs to be collision resistant, the AEAD does the authenticating.
    Values are UTF-8; a file name's byte that is not UTF-8 (a lone surrogate ``U+DCNN`` of
    ``os.fsdecode``) is that byte (``surrogateescape``), as the file name has it. Text that is
    valid UTF-8 encodes exactly as before, so no stored digest changes.
    """
    h = hashlib.sha256(b"certescrow-vault meta v1\x00")
    for name, value in fields:
        h.update(_lp(name.encode()))
        raw = value.encode("utf-8", "surrogateescape")
        h.update(struct.pack(">I", len(raw)) + raw)
    return h.digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Sealed:
    """A sealed entry: the wrapped data key and the payload, stored in separate columns so a
    key rotation rewrites only the 61-byte wraps, never the payloads."""

    wrapped_key: bytes
    ciphertext: bytes


def _check_version(blob: bytes, where: str) -> None:
    if not blob:
        raise integrity_error(where)
    if blob[0] != BLOB_VERSION:
        raise VaultFormatError(
            f"{where}: blob format version {blob[0]} is not supported by this release "
            f"(it reads version {BLOB_VERSION}); upgrade certescrow"
        )


def _encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if len(nonce) != NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes")
    return bytes((BLOB_VERSION,)) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes, where: str) -> bytes:
    _check_version(blob, where)
    if len(blob) < 1 + NONCE_SIZE + TAG_SIZE:
        raise integrity_error(where)
    try:
        return AESGCM(key).decrypt(blob[1:1 + NONCE_SIZE], blob[1 + NONCE_SIZE:], aad)
    except InvalidTag:
        raise integrity_error(where) from None


def seal(master_key: bytes, binding: Binding, plaintext: bytes) -> Sealed:
    """Encrypt ``plaintext`` under a fresh data key, wrapped by ``master_key``."""
    return _seal_from_parts(
        master_key, binding, plaintext,
        data_key=new_key(), wrap_nonce=os.urandom(NONCE_SIZE),
        payload_nonce=os.urandom(NONCE_SIZE),
    )


def _seal_from_parts(master_key: bytes, binding: Binding, plaintext: bytes, *,
                     data_key: bytes, wrap_nonce: bytes, payload_nonce: bytes) -> Sealed:
    """Deterministic core of :func:`seal`, for known-answer vectors only. Never reuse nonces."""
    if len(master_key) != KEY_SIZE or len(data_key) != KEY_SIZE:
        raise ValueError("keys must be 32 bytes")
    return Sealed(
        wrapped_key=_encrypt(master_key, wrap_nonce, data_key, binding.aad(PURPOSE_WRAP)),
        ciphertext=_encrypt(data_key, payload_nonce, plaintext, binding.aad(PURPOSE_PAYLOAD)),
    )


def unseal(master_key: bytes, binding: Binding, sealed: Sealed) -> bytes:
    where = f"entry {binding.entry_id}"
    data_key = _decrypt(master_key, sealed.wrapped_key, binding.aad(PURPOSE_WRAP), where)
    if len(data_key) != KEY_SIZE:
        raise integrity_error(where)
    return _decrypt(data_key, sealed.ciphertext, binding.aad(PURPOSE_PAYLOAD), where)


def rewrap(old_master: bytes, new_master: bytes, binding: Binding, wrapped_key: bytes) -> bytes:
    """The same data key wrapped by ``new_master`` (fresh nonce); the payload is untouched."""
    return _rewrap_from_parts(old_master, new_master, binding, wrapped_key,
                              nonce=os.urandom(NONCE_SIZE))


def _rewrap_from_parts(old_master: bytes, new_master: bytes, binding: Binding,
                       wrapped_key: bytes, *, nonce: bytes) -> bytes:
    aad = binding.aad(PURPOSE_WRAP)
    data_key = _decrypt(old_master, wrapped_key, aad, f"entry {binding.entry_id}")
    return _encrypt(new_master, nonce, data_key, aad)


def _secret_aad(vault_id: bytes) -> bytes:
    return DOMAIN + bytes((PURPOSE_SECRET, BLOB_VERSION)) + vault_id


def wrap_secret(master_key: bytes, vault_id: bytes, secret: bytes) -> bytes:
    """Wrap the vault secret (the header's key check value and the root of the HMAC subkeys)."""
    return _wrap_secret_from_parts(master_key, vault_id, secret, nonce=os.urandom(NONCE_SIZE))


def _wrap_secret_from_parts(master_key: bytes, vault_id: bytes, secret: bytes, *,
                            nonce: bytes) -> bytes:
    return _encrypt(master_key, nonce, secret, _secret_aad(vault_id))


def unwrap_secret(master_key: bytes, vault_id: bytes, wrapped: bytes) -> bytes | None:
    """The vault secret, or ``None`` when ``master_key`` is not this vault's key.

    A wrong key and a tampered header are indistinguishable here by design; callers report
    "this key does not open the vault" before anything is written.
    """
    _check_version(wrapped, "vault header")
    try:
        secret = AESGCM(master_key).decrypt(wrapped[1:1 + NONCE_SIZE], wrapped[1 + NONCE_SIZE:],
                                            _secret_aad(vault_id))
    except InvalidTag:
        return None
    return secret if len(secret) == KEY_SIZE else None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class VaultKeys:
    """The unlocked master key and the subkeys HKDF derives from the vault secret.

    ``repr`` is redacted so a traceback or debug log that prints locals shows no key.
    """

    def __repr__(self) -> str:
        return "VaultKeys(<redacted>)"

    master: bytes
    fingerprint: bytes  # keyed fingerprint of (kind, plaintext): idempotent put
    match: bytes  # keyed tag of a public key: pairs keys with certificates undecrypted
    audit: bytes  # MAC anchoring the audit chain head


def derive_subkeys(master_key: bytes, vault_id: bytes, secret: bytes) -> VaultKeys:
    """HKDF-SHA256 subkeys from the vault secret (not from the master key itself).

    The secret is random, fixed at init and wrapped by the master key, so rotating the master
    key re-wraps it and the fingerprints, match tags and audit MACs stay valid: rotation never
    has to decrypt a payload.
    """

    def sub(label: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=vault_id,
                    info=b"certescrow-vault " + label + b" v1").derive(secret)

    return VaultKeys(master=master_key, fingerprint=sub(b"fingerprint"), match=sub(b"match"),
                     audit=sub(b"audit"))


def hmac_tag(key: bytes, *parts: bytes) -> str:
    """Hex HMAC-SHA256 over length-prefixed parts (unambiguous concatenation)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(struct.pack(">Q", len(part)) + part)
    return mac.hexdigest()


def scrypt_derive(passphrase: bytes, *, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(passphrase)
