"""``vault import`` of a malformed key: the error names the file, never the key's bytes.

cryptography's error for a PKCS#8 key with blank lines between its base64 lines quotes that
line (for Ed25519, the whole key); the vault's import errors passed it on.
"""

from __future__ import annotations

import pytest

from tests.agent.hostile_keys import hostile_key_files, key_material_windows, leaked_windows
from vault.errors import VaultInputError
from vault.formats import recognise


@pytest.mark.parametrize("name", sorted(hostile_key_files()))
def test_a_malformed_key_is_refused_without_quoting_it(name: str) -> None:
    data = hostile_key_files()[name]
    try:
        recognise(data, source=name, ask=lambda _what: b"correct horse")
    except VaultInputError as exc:
        message = str(exc)
    else:
        return  # read (the damage spared it): nothing printed
    assert name in message
    assert not leaked_windows(message, key_material_windows([data])), message
    assert "ParseError" not in message


def test_a_file_of_begin_lines_is_refused_in_linear_time() -> None:
    # The import's PEM pattern looked for an END from every BEGIN: 64 KiB of BEGIN lines took
    # seconds, 1 MiB minutes. The bound is generous; bench/bench_hostile_pem.py measures.
    import time

    data = b"-----BEGIN CERTIFICATE-----\n" * (1024 * 1024 // 28)
    started = time.perf_counter()
    with pytest.raises(VaultInputError, match="no complete"):
        recognise(data, source="hostile.pem")
    assert time.perf_counter() - started < 20.0


def test_legacy_encrypted_pem_headers_with_dashes_still_parse() -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.certfactory import make_cert

    issued = make_cert()
    legacy = issued.key.private_bytes(  # Proc-Type / DEK-Info: AES-256-CBC headers
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"pw"))
    items = recognise(issued.pem + legacy, source="both.pem", ask=lambda _what: b"pw")
    assert [item.kind for item in items] == ["certificate", "private-key"]
