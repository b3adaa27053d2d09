"""The envelope: AES-256-GCM data keys wrapped by the master key, bound to their row."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from vault import envelope
from vault.envelope import Binding, Sealed, seal, unseal
from vault.errors import VaultFormatError, VaultIntegrityError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "vault-envelope.json").read_text())

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))


def binding(**changes: Any) -> Binding:
    base = Binding(vault_id=b"V" * 16, entry_id="0011223344556677", kind="private-key",
                   version=1, meta_digest=envelope.metadata_digest([("label", '"x"')]))
    return replace(base, **changes)


@settings(max_examples=60, deadline=None)
@given(plaintext=st.binary(max_size=4096), entry_id=st.text(min_size=1, max_size=40),
       kind=st.sampled_from(["private-key", "csr", "certificate", "pkcs12", "document"]),
       version=st.integers(min_value=1, max_value=2**32 - 1))
def test_unseal_of_seal_returns_the_plaintext(plaintext: bytes, entry_id: str, kind: str,
                                              version: int) -> None:
    b = binding(entry_id=entry_id, kind=kind, version=version)
    assert unseal(MASTER, b, seal(MASTER, b, plaintext)) == plaintext


def test_seal_draws_fresh_nonces_and_data_keys_so_equal_plaintexts_differ() -> None:
    first, second = seal(MASTER, binding(), b"same"), seal(MASTER, binding(), b"same")
    assert first.ciphertext != second.ciphertext
    assert first.wrapped_key != second.wrapped_key
    # nonce = bytes 1..13 of each blob
    assert first.ciphertext[1:13] != second.ciphertext[1:13]


def test_blob_sizes_follow_the_documented_layout() -> None:
    sealed = seal(MASTER, binding(), b"x" * 100)
    assert len(sealed.wrapped_key) == 1 + 12 + 32 + 16
    assert len(sealed.ciphertext) == 1 + 12 + 100 + 16
    assert sealed.wrapped_key[0] == sealed.ciphertext[0] == envelope.BLOB_VERSION


@pytest.mark.parametrize("change", [
    {"entry_id": "7766554433221100"},
    {"kind": "certificate"},
    {"version": 2},
    {"vault_id": b"W" * 16},
    {"meta_digest": envelope.metadata_digest([("label", '"y"')])},
], ids=["entry-id", "kind", "version", "vault", "metadata"])
def test_a_ciphertext_moved_to_another_binding_fails_authentication(change: dict[str, Any]) -> None:
    sealed = seal(MASTER, binding(), b"secret key material")
    with pytest.raises(VaultIntegrityError) as info:
        unseal(MASTER, binding(**change), sealed)
    assert "secret" not in str(info.value)


def test_wrong_master_key_is_the_same_integrity_error() -> None:
    sealed = seal(MASTER, binding(), b"payload")
    with pytest.raises(VaultIntegrityError, match="integrity check failed"):
        unseal(OTHER_MASTER, binding(), sealed)


@pytest.mark.parametrize("field", ["wrapped_key", "ciphertext"])
@pytest.mark.parametrize("position", [1, 13, -1])
def test_any_flipped_bit_is_detected(field: str, position: int) -> None:
    sealed = seal(MASTER, binding(), b"payload bytes")
    blob = bytearray(getattr(sealed, field))
    blob[position] ^= 0x01
    with pytest.raises(VaultIntegrityError):
        unseal(MASTER, binding(), replace(sealed, **{field: bytes(blob)}))


def _flip_last(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 0x01])


def test_every_integrity_failure_reads_the_same_whatever_failed() -> None:
    sealed = seal(MASTER, binding(), b"payload")
    messages = set()
    # Flip a bit (setting the byte to zero was a no-op one time in 256: a flaky test).
    for bad in (replace(sealed, wrapped_key=_flip_last(sealed.wrapped_key)),
                replace(sealed, ciphertext=_flip_last(sealed.ciphertext)),
                replace(sealed, ciphertext=sealed.ciphertext[:5])):
        with pytest.raises(VaultIntegrityError) as info:
            unseal(MASTER, binding(), bad)
        messages.add(str(info.value))
    assert len(messages) == 1


def test_a_blob_of_an_unknown_format_version_is_a_format_error_not_tampering() -> None:
    sealed = seal(MASTER, binding(), b"payload")
    future = Sealed(wrapped_key=b"\x02" + sealed.wrapped_key[1:], ciphertext=sealed.ciphertext)
    with pytest.raises(VaultFormatError, match="version 2 is not supported"):
        unseal(MASTER, binding(), future)


def test_rewrap_changes_only_the_wrap_and_the_new_key_opens_the_payload() -> None:
    sealed = seal(MASTER, binding(), b"payload")
    rewrapped = envelope.rewrap(MASTER, OTHER_MASTER, binding(), sealed.wrapped_key)
    moved = Sealed(wrapped_key=rewrapped, ciphertext=sealed.ciphertext)
    assert unseal(OTHER_MASTER, binding(), moved) == b"payload"
    with pytest.raises(VaultIntegrityError):
        unseal(MASTER, binding(), moved)


def test_the_vault_secret_opens_only_with_its_master_key_and_vault_id() -> None:
    wrapped = envelope.wrap_secret(MASTER, b"V" * 16, b"S" * 32)
    assert envelope.unwrap_secret(MASTER, b"V" * 16, wrapped) == b"S" * 32
    assert envelope.unwrap_secret(OTHER_MASTER, b"V" * 16, wrapped) is None
    assert envelope.unwrap_secret(MASTER, b"W" * 16, wrapped) is None


# ------------------------------------------------------------------ known-answer vectors

@pytest.mark.parametrize("case", VECTORS["entries"], ids=lambda c: c["kind"])
def test_known_answer_vectors_are_reproduced(case: dict[str, Any]) -> None:
    b = Binding(vault_id=bytes.fromhex(case["vault_id"]), entry_id=case["entry_id"],
                kind=case["kind"], version=case["version"],
                meta_digest=bytes.fromhex(case["meta_digest"]))
    sealed = envelope._seal_from_parts(
        bytes.fromhex(case["master_key"]), b, bytes.fromhex(case["plaintext"]),
        data_key=bytes.fromhex(case["data_key"]), wrap_nonce=bytes.fromhex(case["wrap_nonce"]),
        payload_nonce=bytes.fromhex(case["payload_nonce"]))
    assert sealed.wrapped_key.hex() == case["wrapped_key"]
    assert sealed.ciphertext.hex() == case["ciphertext"]
    assert unseal(bytes.fromhex(case["master_key"]), b, sealed) == bytes.fromhex(case["plaintext"])


def _documented_aad(purpose: int, case: dict[str, Any]) -> bytes:
    """The AAD exactly as docs/vault-format.md describes it, built independently."""
    entry, kind = case["entry_id"].encode(), case["kind"].encode()
    return (b"certescrow-vault\x00" + bytes((purpose, 1)) + bytes.fromhex(case["vault_id"])
            + struct.pack(">H", len(entry)) + entry + struct.pack(">H", len(kind)) + kind
            + struct.pack(">I", case["version"]) + bytes.fromhex(case["meta_digest"]))


@pytest.mark.parametrize("case", VECTORS["entries"], ids=lambda c: c["kind"])
def test_vectors_decrypt_with_plain_aes_gcm_and_the_documented_layout(case: dict[str, Any]) -> None:
    assert _documented_aad(1, case).hex() == case["aad_wrap"]
    assert _documented_aad(2, case).hex() == case["aad_payload"]
    wrapped = bytes.fromhex(case["wrapped_key"])
    data_key = AESGCM(bytes.fromhex(case["master_key"])).decrypt(
        wrapped[1:13], wrapped[13:], _documented_aad(1, case))
    assert data_key.hex() == case["data_key"]
    blob = bytes.fromhex(case["ciphertext"])
    assert AESGCM(data_key).decrypt(blob[1:13], blob[13:], _documented_aad(2, case)).hex() \
        == case["plaintext"]


def test_metadata_digest_vector_matches_its_documented_encoding() -> None:
    h = hashlib.sha256(b"certescrow-vault meta v1\x00")
    for name, value in VECTORS["meta_digest_fields"]:
        h.update(struct.pack(">H", len(name)) + name.encode())
        h.update(struct.pack(">I", len(value)) + value.encode())
    assert h.hexdigest() == VECTORS["entries"][0]["meta_digest"]


def test_secret_wrap_and_subkey_vectors() -> None:
    v = VECTORS["secret"]
    master, vault_id, secret = (bytes.fromhex(v[k]) for k in ("master_key", "vault_id", "secret"))
    wrapped = envelope._wrap_secret_from_parts(master, vault_id, secret,
                                               nonce=bytes.fromhex(v["nonce"]))
    assert wrapped.hex() == v["wrapped_secret"]
    keys = envelope.derive_subkeys(master, vault_id, secret)
    expected_fp = HKDF(algorithm=hashes.SHA256(), length=32, salt=vault_id,
                       info=b"certescrow-vault fingerprint v1").derive(secret)
    assert keys.fingerprint.hex() == v["fingerprint_key"] == expected_fp.hex()
    assert keys.match.hex() == v["match_key"]
    assert keys.audit.hex() == v["audit_key"]
    mac = hmac.new(keys.fingerprint, digestmod=hashlib.sha256)
    for part in (b"document", b"hello"):
        mac.update(struct.pack(">Q", len(part)) + part)
    assert mac.hexdigest() == v["fingerprint_of_document_hello"]
