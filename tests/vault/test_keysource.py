"""Master key sources: key file (0600), systemd credential, real keyring, scrypt passphrase."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from vault import (
    CredentialSource,
    KeyFileSource,
    KeyringSource,
    PassphraseSource,
    create_key_file,
    key_source_from_settings,
    open_vault,
)
from vault.errors import (
    VaultConflictError,
    VaultFormatError,
    VaultInputError,
    VaultLockedError,
    VaultPermissionError,
)
from vault.keysource import KdfParams, read_key_file

FAST_SCRYPT = {"n": 2**10, "r": 8, "p": 1}


def test_create_key_file_writes_a_random_0600_key_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k"
    key = create_key_file(path)
    assert len(key) == 32
    assert (path.stat().st_mode & 0o777) == 0o600
    assert base64.b64decode(path.read_text().strip()) == key
    assert read_key_file(path) == key
    with pytest.raises(VaultConflictError, match="already exists"):
        create_key_file(path)
    assert read_key_file(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary file left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    create_key_file(path)
    path.chmod(mode)
    with pytest.raises(VaultPermissionError, match=f"mode {mode:04o}.*chmod 600"):
        KeyFileSource(path).load(None)


def test_a_0400_key_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "k"
    key = create_key_file(path)
    path.chmod(0o400)
    assert KeyFileSource(path).load(None) == key


@pytest.mark.parametrize("content", [b"\x01" * 32, (b"ab" * 32) + b"\n",
                                     base64.b64encode(b"\x01" * 32) + b"\n"],
                         ids=["raw", "hex", "base64"])
def test_key_files_hold_raw_hex_or_base64_keys(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k"
    path.write_bytes(content)
    path.chmod(0o600)
    assert len(read_key_file(path)) == 32


def test_a_key_file_with_the_wrong_length_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(base64.b64encode(b"short") + b"\n")
    path.chmod(0o600)
    with pytest.raises(VaultLockedError, match="does not hold a 32-byte key"):
        read_key_file(path)


def test_a_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VaultLockedError, match="does not exist"):
        KeyFileSource(tmp_path / "nope").load(None)


def test_credential_source_reads_credentials_directory(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    key = create_key_file(creds / "certescrow-vault-key")
    (creds / "certescrow-vault-key").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert CredentialSource().load(None) == key


def test_credential_source_without_systemd_says_what_to_do() -> None:
    with pytest.raises(VaultLockedError, match=r"CREDENTIALS_DIRECTORY is not set"):
        CredentialSource().load(None)


def test_real_keyring_backend_stores_and_returns_the_key(keyring_backend: object,
                                                         tmp_path: Path) -> None:
    import keyring

    source = KeyringSource(service="certescrow-test", username="vault-master-key",
                           allow_plaintext=True)
    with pytest.raises(VaultLockedError, match="no master key in the OS keyring"):
        source.load(None)
    key, kdf = source.create()
    assert kdf is None
    assert source.load(None) == key
    assert source.create() == (key, None)  # an existing keyring key is adopted, not replaced
    stored = keyring.get_password("certescrow-test", "vault-master-key")
    assert stored is not None
    assert base64.b64decode(stored) == key
    # It really lives in the file keyring under the isolated HOME.
    assert Path(os.environ["HOME"]) in Path(keyring_backend.file_path).parents  # type: ignore[attr-defined]


def test_vault_opens_from_the_real_keyring(keyring_backend: object, tmp_path: Path) -> None:
    directory = tmp_path / "d"
    source = KeyringSource(allow_plaintext=True)
    with open_vault(directory / "v.sqlite3", source, create=True) as vault:
        entry = vault.put("document", b"kept in the keyring's vault").entry_id
    with open_vault(directory / "v.sqlite3", KeyringSource(allow_plaintext=True)) as vault:
        assert vault.get(entry) == b"kept in the keyring's vault"


def test_passphrase_derives_the_same_key_from_the_header_parameters() -> None:
    source = PassphraseSource(get_passphrase=lambda confirm: "correct horse",
                              new_params=FAST_SCRYPT)
    key, kdf = source.create()
    assert kdf is not None
    assert kdf.n == 2**10
    assert len(kdf.salt) == 16
    assert source.load(kdf) == key
    wrong = PassphraseSource(get_passphrase=lambda confirm: "wrong horse")
    assert wrong.load(kdf) != key


def test_passphrase_comes_from_the_environment_never_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTESCROW_VAULT_PASSPHRASE", "from the environment")
    source = PassphraseSource(new_params=FAST_SCRYPT)
    key, kdf = source.create()
    assert source.load(kdf) == key


def test_passphrase_without_environment_or_terminal_is_a_clear_error() -> None:
    with pytest.raises(VaultLockedError, match="CERTESCROW_VAULT_PASSPHRASE"):
        PassphraseSource(new_params=FAST_SCRYPT).create()


def test_hostile_scrypt_parameters_in_a_header_are_refused() -> None:
    good = KdfParams(salt=b"s" * 16, n=2**14, r=8, p=1).to_json()
    assert KdfParams.from_json(good).n == 2**14
    for bad in ({**good, "n": 2**30}, {**good, "n": 1000}, {**good, "kdf": "argon9"},
                {**good, "salt": "!!"}):
        with pytest.raises(VaultFormatError):
            KdfParams.from_json(bad)


def test_key_source_from_settings_follows_the_vault_section(tmp_path: Path) -> None:
    assert key_source_from_settings({}) == KeyringSource()
    assert key_source_from_settings({"key_source": "keyring", "keyring_service": "s",
                                     "keyring_username": "u"}) == KeyringSource("s", "u")
    assert key_source_from_settings({"key_source": "credential", "credential": "c"}) \
        == CredentialSource("c")
    assert key_source_from_settings({"key_source": "key-file", "key_file": str(tmp_path / "k")}) \
        == KeyFileSource(tmp_path / "k")
    assert isinstance(key_source_from_settings({"key_source": "passphrase"}), PassphraseSource)
    # --key-file wins over whatever is configured
    assert key_source_from_settings({"key_source": "credential"}, key_file=tmp_path / "f") \
        == KeyFileSource(tmp_path / "f")


def test_key_source_from_settings_rejects_bad_configuration() -> None:
    with pytest.raises(VaultInputError, match="needs \\[vault\\] key_file"):
        key_source_from_settings({"key_source": "key-file"})
    with pytest.raises(VaultInputError, match="not one of keyring, credential"):
        key_source_from_settings({"key_source": "tpm"})


def test_keyring_rotation_in_place_replaces_the_key_and_survives_a_lost_promotion(
        keyring_backend: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    path = tmp_path / "d" / "v.sqlite3"
    source = KeyringSource(service="certescrow-rot", allow_plaintext=True)
    with open_vault(path, source, create=True) as vault:
        entry = vault.put("document", b"rotated in the keyring").entry_id
        first = keyring.get_password("certescrow-rot", "vault-master-key")
        vault.rotate_key()
    second = keyring.get_password("certescrow-rot", "vault-master-key")
    assert second != first
    assert keyring.get_password("certescrow-rot", "vault-master-key.next") is None

    # Commit done, promotion lost (crash): the next open adopts the pending key.
    def crash(self: KeyringSource) -> None:
        raise KeyboardInterrupt

    with open_vault(path, source) as vault, monkeypatch.context() as patch:
        patch.setattr(KeyringSource, "promote", crash)
        with pytest.raises(KeyboardInterrupt):
            vault.rotate_key()
    assert keyring.get_password("certescrow-rot", "vault-master-key") == second
    with open_vault(path, source) as vault:
        assert vault.get(entry) == b"rotated in the keyring"
    third = keyring.get_password("certescrow-rot", "vault-master-key")
    assert third not in (first, second)
    assert keyring.get_password("certescrow-rot", "vault-master-key.next") is None
