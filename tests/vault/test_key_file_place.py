"""A master key file must be the user's own, in a directory nobody else can write.

The reviewer's reproduction, run as root: ``nobody`` wrote a 0600 key to ``/tmp/planted.key``,
and ``vault init --key-file /tmp/planted.key`` adopted it, so nobody's copy of the key opened
the vault; ``rotate-key --new-key-file`` adopted such a file too. The vault file was already
refused in ``/tmp`` and in directories of other users: the key file now meets the same rule.
Ownership is exercised with ``os.chown`` to ``nobody`` (65534), so these tests need root.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from vault import KeyFileSource, create_key_file, open_vault
from vault.cli import vault_group
from vault.errors import VaultPermissionError

NOBODY = 65534
PLANTED = base64.b64encode(b"A" * 32) + b"\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to give a file to another user")


def _planted_key(path: Path, *, owner: int = NOBODY) -> Path:
    """What ``su nobody -c "umask 077; printf KEY > FILE"`` leaves: a 0600 file of nobody's."""
    path.write_bytes(PLANTED)
    path.chmod(0o600)
    os.chown(path, owner, owner)
    return path


def _sticky_shared_dir(tmp_path: Path) -> Path:
    """A directory with /tmp's semantics: world-writable and sticky."""
    directory = tmp_path / "shared-tmp"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


@needs_root
def test_a_key_file_owned_by_another_user_is_refused_even_0600(tmp_path: Path) -> None:
    planted = _planted_key(tmp_path / "planted.key")
    with pytest.raises(VaultPermissionError) as caught:
        KeyFileSource(planted).load(None)
    message = str(caught.value)
    assert f"key file {planted} belongs to uid {NOBODY}" in message
    assert "may hold a copy of the master key" in message
    assert "QUFB" not in message


@needs_root
def test_init_never_adopts_another_users_key_file(tmp_path: Path, private_dir: Path) -> None:
    planted = _planted_key(tmp_path / "planted.key")
    vault_path = private_dir / "v.sqlite3"
    with pytest.raises(VaultPermissionError, match="belongs to uid 65534"):
        open_vault(vault_path, KeyFileSource(planted), create=True)
    assert not vault_path.exists()
    assert planted.read_bytes() == PLANTED  # left as it was


@needs_root
def test_rotation_never_adopts_another_users_key_file(vault_path: Path, source: KeyFileSource,
                                                      tmp_path: Path) -> None:
    planted = _planted_key(tmp_path / "planted.key")
    with open_vault(vault_path, source, create=True) as vault:
        entry = vault.put("document", b"kept under my key").entry_id
        with pytest.raises(VaultPermissionError, match="belongs to uid 65534"):
            vault.rotate_key(KeyFileSource(planted))
    with open_vault(vault_path, source) as vault:  # still keyed by the old key
        assert vault.get(entry) == b"kept under my key"


def test_a_key_file_in_a_sticky_world_writable_directory_is_refused(tmp_path: Path) -> None:
    shared = _sticky_shared_dir(tmp_path)
    own = shared / "mine.key"
    own.write_bytes(PLANTED)
    own.chmod(0o600)  # this user's own 0600 file: the directory is what is wrong
    with pytest.raises(VaultPermissionError) as caught:
        KeyFileSource(own).load(None)
    message = str(caught.value)
    assert f"directory {shared} of key file {own} has mode 1777" in message
    assert "choose a private directory" in message
    assert "chmod " not in message.replace(str(tmp_path), "")


def test_no_new_key_file_is_written_into_a_shared_directory(tmp_path: Path,
                                                            private_dir: Path) -> None:
    shared = _sticky_shared_dir(tmp_path)
    with pytest.raises(VaultPermissionError, match="shared or system directory"):
        create_key_file(shared / "new.key")
    with pytest.raises(VaultPermissionError, match="shared or system directory"):
        open_vault(private_dir / "v.sqlite3", KeyFileSource(shared / "new.key"), create=True)
    assert list(shared.iterdir()) == []
    assert not (private_dir / "v.sqlite3").exists()


def test_a_key_file_in_a_group_writable_directory_of_ones_own_gets_the_chmod(
        tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    key = create_key_file(directory / "k")
    directory.chmod(0o775)
    with pytest.raises(VaultPermissionError, match=rf"has mode 0775.*chmod go-w {directory}"):
        KeyFileSource(directory / "k").load(None)
    directory.chmod(0o755)  # readable by others is fine: the file itself is 0600
    assert KeyFileSource(directory / "k").load(None) == key


@needs_root
def test_a_key_file_in_another_users_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    create_key_file(directory / "k")
    os.chown(directory, NOBODY, NOBODY)  # they can replace the file, whatever its owner
    with pytest.raises(VaultPermissionError,
                       match=rf"directory {directory} of key file .* belongs to uid 65534"):
        KeyFileSource(directory / "k").load(None)


def test_a_link_into_a_shared_directory_is_judged_by_where_it_leads(tmp_path: Path,
                                                                    private_dir: Path) -> None:
    shared = _sticky_shared_dir(tmp_path)
    target = shared / "k"
    target.write_bytes(PLANTED)
    target.chmod(0o600)
    link = private_dir / "k"
    link.symlink_to(target)
    with pytest.raises(VaultPermissionError, match=f"directory {shared} of key file {link}"):
        KeyFileSource(link).load(None)


@needs_root
@pytest.mark.parametrize("command", ["init", "rotate-key"])
def test_the_cli_refuses_a_planted_key_file_with_exit_25(tmp_path: Path, private_dir: Path,
                                                         command: str) -> None:
    planted = _planted_key(tmp_path / "planted.key")
    vault_path = private_dir / "v.sqlite3"
    if command == "init":
        args = ["init", "--vault", str(vault_path), "--key-file", str(planted)]
    else:
        own = tmp_path / "own" / "master.key"
        init = CliRunner().invoke(vault_group, ["init", "--vault", str(vault_path),
                                                "--key-file", str(own)], obj={"config": {}})
        assert init.exit_code == 0, init.output
        args = ["rotate-key", "--vault", str(vault_path), "--key-file", str(own),
                "--new-key-file", str(planted), "--discard-old-key"]
    result = CliRunner().invoke(vault_group, args, obj={"config": {}})
    assert isinstance(result.exception, VaultPermissionError)
    assert result.exception.exit_code == 25
    assert f"key file {planted} belongs to uid {NOBODY} (nobody)" in str(result.exception)
    if command == "init":
        assert not vault_path.exists()


@needs_root
def test_the_vault_file_in_another_users_0700_directory_is_refused_like_a_key_file(
        tmp_path: Path, source: KeyFileSource) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(VaultPermissionError, match=rf"vault directory {directory} belongs to "
                                                   "uid 65534"):
        open_vault(directory / "v.sqlite3", source, create=True)
    assert not (directory / "v.sqlite3").exists()
