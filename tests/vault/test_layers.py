"""The vault's layering, checked on its source so a violation fails CI."""

from __future__ import annotations

import ast
from pathlib import Path

import vault

VAULT_DIR = Path(vault.__file__).parent
SYMMETRIC = ("cryptography.hazmat.primitives.ciphers", "cryptography.hazmat.primitives.kdf",
             "cryptography.hazmat.primitives.hmac", "cryptography.hazmat.primitives.keywrap")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_vault_imports_nothing_from_policy_or_agent() -> None:
    for path in VAULT_DIR.glob("*.py"):
        bad = {n for n in imports_of(path) if n.split(".")[0] in ("policy", "agent")}
        assert not bad, f"{path.name} imports {bad}"


def test_only_the_envelope_touches_ciphers_kdfs_and_macs() -> None:
    for path in VAULT_DIR.glob("*.py"):
        crypto = {n for n in imports_of(path) if n.startswith(SYMMETRIC) or n == "hmac"}
        if path.name == "envelope.py":
            assert crypto
        else:
            assert not crypto, f"{path.name} imports {crypto}"


def test_only_envelope_and_formats_import_cryptography_hazmat() -> None:
    # formats parses and generates asymmetric keys (serialization APIs live under hazmat).
    for path in VAULT_DIR.glob("*.py"):
        hazmat = {n for n in imports_of(path) if n.startswith("cryptography.hazmat")}
        if path.name not in ("envelope.py", "formats.py"):
            assert not hazmat, f"{path.name} imports {hazmat}"


def test_public_api_names_what_the_daemon_uses() -> None:
    for name in ("open_vault", "key_source_from_settings", "Vault", "PutResult", "VaultError",
                 "MasterKeySource"):
        assert name in vault.__all__
        assert hasattr(vault, name)
