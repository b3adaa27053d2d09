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
