"""Faults a real host produces: killed processes, damaged files, missing keyrings, shared
directories. Each test builds the state with real files (or a real killed process)."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import stat
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.vault.conftest import StepClock
from tests.vault.helpers import sql
from vault import (
    KeyFileSource,
    KeyringSource,
    Vault,
    VaultConflictError,
    VaultInputError,
    VaultIntegrityError,
    VaultLockedError,
    VaultNotFoundError,
    VaultPermissionError,
    create_key_file,
    key_source_from_settings,
    open_vault,
    restore_vault,
)
from vault import audit as audit_log
from vault.envelope import new_key

# ------------------------------------------------------------------ stale pending key (rotation)


def pending(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".next")


def test_a_pending_key_left_by_a_rotation_killed_before_commit_is_removed_on_open(
        vault: Vault, vault_path: Path, key_file: Path) -> None:
    entry = vault.put("document", b"still here").entry_id
    vault.close()
    # What a rotation killed after staging and before its commit leaves: a complete .next
    # holding a key that opens nothing.
    KeyFileSource(key_file).stage(new_key())
    assert pending(key_file).exists()
    with open_vault(vault_path, KeyFileSource(key_file)) as reopened:
        assert reopened.get(entry) == b"still here"
    assert not pending(key_file).exists()


def test_a_partial_pending_key_is_removed_too(vault: Vault, vault_path: Path,
                                              key_file: Path) -> None:
    vault.close()
    fd = os.open(pending(key_file), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"q0Fz")  # killed mid-write (in-place staging)
    os.close(fd)
    with open_vault(vault_path, KeyFileSource(key_file)):
        pass
    assert not pending(key_file).exists()


def test_a_pending_key_the_vault_is_keyed_with_is_promoted_not_removed(
        vault: Vault, vault_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = vault.put("document", b"rotated").entry_id
    with monkeypatch.context() as patch:
        patch.setattr(KeyFileSource, "promote", lambda self: None)  # killed before promotion
        vault.rotate_key()
    vault.close()
    staged = pending(key_file).read_bytes()
    with open_vault(vault_path, KeyFileSource(key_file)) as reopened:
        assert reopened.get(entry) == b"rotated"
    assert key_file.read_bytes() == staged
    assert not pending(key_file).exists()


def test_a_pending_key_being_staged_by_another_process_is_left_alone(
        vault: Vault, vault_path: Path, key_file: Path) -> None:
    """A rotation stages its key while holding the write lock; another process opening the
    vault meanwhile must not remove it (the rotation may be about to commit)."""
    vault.close()
    holder = sqlite3.connect(vault_path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        KeyFileSource(key_file).stage(new_key())
        started = time.monotonic()
        with open_vault(vault_path, KeyFileSource(key_file)):
            pass  # busy: the pending key is not touched, and the open does not wait long
        assert pending(key_file).exists()
        assert time.monotonic() - started < 10
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ------------------------------------------------------------------ verify


def test_verify_runs_the_full_integrity_check(vault: Vault, vault_path: Path) -> None:
    for n in range(30):
        vault.put("document", f"doc {n}".encode(), label=f"label-{n:02d}")
    vault.close()
    # A damaged index: its entries no longer match the table. quick_check cannot see this.
    with closing(sqlite3.connect(vault_path)) as conn:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = 'CREATE INDEX entries_kind ON "
                     "entries(kind, label)' WHERE name = 'entries_kind'")
        conn.commit()
    with closing(sqlite3.connect(vault_path)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    with open_vault(vault_path, vault._source) as reopened:  # type: ignore[arg-type]
        report = reopened.verify()
    assert not report.ok
    assert any(p.startswith("SQLite structure:") and "entries_kind" in p
               for p in report.problems)
    assert not any("label-" in p for p in report.problems)


def test_invalid_utf8_in_a_column_is_an_integrity_problem_that_quotes_nothing(
        vault: Vault, vault_path: Path, source: KeyFileSource) -> None:
    vault.put("document", b"one", label="fine")
    entry = vault.put("document", b"two", label="fine too").entry_id
    vault.close()
    sql(vault_path, "UPDATE entries SET label = CAST(X'5345435245544cff' AS TEXT) WHERE id = ?",
        (entry,))  # "SECRETL" and a byte that is not UTF-8
    with open_vault(vault_path, source) as reopened:
        report = reopened.verify()
        assert not report.ok
        assert any("not valid UTF-8" in p for p in report.problems)
        assert report.entries_checked == 1  # the other entry is still checked
        assert not any("SECRET" in p for p in report.problems)
        with pytest.raises(VaultIntegrityError) as caught:
            reopened.entries()
        assert "SECRET" not in str(caught.value)
        assert "not valid UTF-8" in str(caught.value)


# ------------------------------------------------------------------ init


def test_a_failed_init_leaves_no_vault_and_a_second_init_works(
        tmp_path: Path, source: KeyFileSource, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state" / "vault.sqlite3"

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(audit_log, "append", broken)  # fails after schema and header are written
        with pytest.raises(OSError, match="No space"):
            open_vault(path, source, create=True)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # no staging file either
    with open_vault(path, source, create=True) as vault:
        vault.put("document", b"works")
        assert vault.verify().ok


def _init_child(path: Path, key_file: Path) -> None:
    try:
        open_vault(path, KeyFileSource(key_file), create=True).close()
    finally:
        os._exit(0)


@pytest.mark.slow
def test_sigkill_during_init_never_leaves_a_broken_vault(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    create_key_file(key_file)
    rng = random.Random(11)
    seen = {"absent": 0, "complete": 0}
    for run in range(25):
        path = tmp_path / f"v{run}" / "vault.sqlite3"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _init_child(path, key_file)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if path.exists():
            seen["complete"] += 1
            with open_vault(path, KeyFileSource(key_file)) as vault:
                assert vault.verify().ok
            continue
        seen["absent"] += 1
        with open_vault(path, KeyFileSource(key_file), create=True) as vault:  # init again
            assert vault.verify().ok
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    assert seen["absent"] > 0, seen


def test_an_incomplete_vault_file_from_an_older_release_says_what_to_do(
        private_dir: Path, source: KeyFileSource) -> None:
    path = private_dir / "vault.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
        conn.execute("PRAGMA application_id = 1128616534")
        conn.execute("PRAGMA user_version = 1")
    path.chmod(0o600)
    with pytest.raises(VaultNotFoundError, match=r"not a complete vault.*move it away"):
        open_vault(path, source, create=True)


# ------------------------------------------------------------------ keys that live elsewhere


def test_a_missing_key_file_directory_is_created_private(tmp_path: Path) -> None:
    key_file = tmp_path / "fresh-home" / ".config" / "certescrow" / "vault.key"
    create_key_file(key_file)
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["vault.key"]


def test_a_fifo_as_key_file_is_refused_naming_it(vault: Vault, vault_path: Path,
                                                 tmp_path: Path) -> None:
    vault.close()
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    signal.alarm(5)  # a regression would block in open() forever
    try:
        with pytest.raises(VaultLockedError, match=r"key\.fifo is a FIFO"):
            open_vault(vault_path, KeyFileSource(fifo))
    finally:
        signal.alarm(0)


def test_a_plaintext_file_keyring_is_refused_with_the_key_file_advice(
        keyring_backend: object, private_dir: Path) -> None:
    with pytest.raises(VaultLockedError) as caught:
        open_vault(private_dir / "v.sqlite3", key_source_from_settings({}), create=True)
    message = str(caught.value)
    assert "PlaintextKeyring, a plaintext file, not an OS keyring" in message
    assert "--key-file" in message
    assert "CERTESCROW_VAULT_KEY_FILE" in message
    assert not (private_dir / "v.sqlite3").exists()


def test_a_plaintext_file_keyring_is_accepted_only_when_asked_and_with_a_warning(
        keyring_backend: object, private_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = key_source_from_settings(
        {}, environ={"CERTESCROW_VAULT_ALLOW_PLAINTEXT_KEYRING": "1"})
    assert source == KeyringSource(allow_plaintext=True)
    with caplog.at_level(logging.WARNING, logger="certescrow.vault"):
        open_vault(private_dir / "v.sqlite3", source, create=True).close()
    assert any("plaintext file keyring" in r.getMessage() for r in caplog.records)


def test_no_keyring_at_all_says_how_to_use_a_key_file(private_dir: Path) -> None:
    import keyring
    from keyring.backends.fail import Keyring as NoKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        with pytest.raises(VaultLockedError, match=r"no OS keyring is available.*--key-file"
                                                   r".*CERTESCROW_VAULT_KEY_FILE"):
            open_vault(private_dir / "v.sqlite3", KeyringSource(), create=True)
    finally:
        keyring.set_keyring(previous)


# ------------------------------------------------------------------ permission advice


@pytest.mark.parametrize("kind", ["sticky", "someone else's", "home"])
def test_no_advice_to_chmod_a_shared_directory(tmp_path: Path, source: KeyFileSource,
                                               kind: str) -> None:
    if kind == "home":
        directory = Path(os.environ["HOME"])
        directory.chmod(0o755)
    else:
        directory = tmp_path / "shared"
        directory.mkdir()
        directory.chmod(0o1777 if kind == "sticky" else 0o755)
        if kind == "someone else's":
            if os.geteuid() != 0:
                pytest.skip("needs root to give a directory to another user")
            os.chown(directory, 65534, 65534)
    with pytest.raises(VaultPermissionError) as caught:
        open_vault(directory / "vault.sqlite3", source, create=True)
    message = str(caught.value)
    assert "chmod " not in message.replace(str(tmp_path), "")
    assert "choose a private directory" in message
    assert not (directory / "vault.sqlite3").exists()


def test_a_private_directory_that_is_merely_loose_gets_the_chmod(private_dir: Path,
                                                                 source: KeyFileSource) -> None:
    private_dir.chmod(0o750)
    with pytest.raises(VaultPermissionError, match=r"chmod 700 "):
        open_vault(private_dir / "vault.sqlite3", source, create=True)


# ------------------------------------------------------------------ rotation and restore


def test_rotation_can_keep_the_old_key_which_still_opens_older_backups(
        vault: Vault, vault_path: Path, key_file: Path, tmp_path: Path,
        clock: StepClock) -> None:
    entry = vault.put("document", b"before rotation").entry_id
    backup = vault.backup(tmp_path / "before.sqlite3")
    old_key = key_file.read_bytes()
    result = vault.rotate_key(keep_old_key=True)
    vault.close()
    assert result.old_key_kept is not None
    kept = Path(result.old_key_kept)
    assert kept.parent == key_file.parent
    assert kept.name.startswith("master.key.retired-20260401T")
    assert kept.read_bytes() == old_key
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert "backups made before this rotation open only with it" in result.old_key_note

    # The new key does not open the old backup: refused before anything is replaced, and the
    # error names the backup (not a staging copy) and says which key it needs.
    with pytest.raises(VaultLockedError) as caught:
        restore_vault(backup, vault_path, KeyFileSource(key_file), force=True)
    message = str(caught.value)
    assert message.startswith(f"backup {backup}:")
    assert ".restore-" not in message
    assert "the master key that was current when it was taken" in message
    # A readable sentence that names the backup, not "does not open vault it".
    assert f"key file {key_file} does not open this backup (wrong key" in message
    assert "vault it" not in message
    assert "the backup was last keyed with a key-file source" in message
    with open_vault(vault_path, KeyFileSource(key_file)) as live:
        assert live.get(entry) == b"before rotation"
        assert live.verify().ok
    # The kept key restores it.
    restored = tmp_path / "restored" / "vault.sqlite3"
    restore_vault(backup, restored, KeyFileSource(kept))
    with open_vault(restored, KeyFileSource(kept)) as old:
        assert old.get(entry) == b"before rotation"


def test_rotation_refuses_to_destroy_the_only_key_to_a_backup_made_with_it(
        vault: Vault, key_file: Path, tmp_path: Path) -> None:
    vault.put("document", b"x")
    backup = vault.backup(tmp_path / "minutes-ago.sqlite3")
    old_key = key_file.read_bytes()
    with pytest.raises(VaultConflictError) as caught:
        vault.rotate_key()
    message = str(caught.value)
    assert f"made with the current key (the last to {backup} at " in message
    assert "--keep-old-key" in message
    assert "--discard-old-key" in message
    assert key_file.read_bytes() == old_key  # nothing changed
    assert vault.verify().ok
    with pytest.raises(VaultInputError, match="not both"):
        vault.rotate_key(keep_old_key=True, discard_old_key=True)
    # Either explicit answer rotates.
    assert vault.rotate_key(keep_old_key=True).old_key_kept is not None
    vault.backup(tmp_path / "after-first.sqlite3")
    assert vault.rotate_key(discard_old_key=True).old_key_kept is None
    # The other side: backups made before the last rotation are not under the current key.
    assert vault.rotate_key().old_key_kept is None


def test_rotation_to_a_new_key_file_leaves_the_old_key_and_needs_no_answer(
        vault: Vault, key_file: Path, tmp_path: Path) -> None:
    vault.backup(tmp_path / "b.sqlite3")
    vault.rotate_key(KeyFileSource(tmp_path / "new.key"))
    assert key_file.exists()


def test_rotation_without_keeping_says_what_older_backups_need(vault: Vault) -> None:
    result = vault.rotate_key()
    assert result.old_key_kept is None
    assert "backups made before this rotation open only with the old key" \
        in result.old_key_note
    assert "--keep-old-key" in result.old_key_note


def test_restore_errors_name_the_backup_file(vault: Vault, vault_path: Path,
                                             source: KeyFileSource, tmp_path: Path) -> None:
    not_a_vault = tmp_path / "notes.txt"
    not_a_vault.write_text("just text, no database\n" * 200)
    with pytest.raises(VaultIntegrityError, match=f"{not_a_vault}"):
        restore_vault(not_a_vault, vault_path, source, force=True)
    with pytest.raises(VaultNotFoundError, match=f"backup {tmp_path / 'missing'} does not"):
        restore_vault(tmp_path / "missing", vault_path, source, force=True)
    with pytest.raises(VaultConflictError, match="use --force"):
        restore_vault(vault.backup(tmp_path / "b.sqlite3"), vault_path, source)
    assert [p.name for p in vault_path.parent.iterdir() if ".restore-" in p.name] == []


def test_staging_files_of_killed_restores_are_removed_by_the_next_restore(
        vault: Vault, vault_path: Path, source: KeyFileSource, tmp_path: Path) -> None:
    backup = vault.backup(tmp_path / "b.sqlite3")
    vault.close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0)
    os.waitpid(pid, 0)  # a process that is gone, as a killed restore's would be
    abandoned = vault_path.with_name(f".{vault_path.name}.restore-{pid}-0a0b0c0d")
    abandoned.write_bytes(b"encrypted copy of a backup")
    restore_vault(backup, vault_path, source, force=True)
    assert sorted(p.name for p in vault_path.parent.iterdir()
                  if p.name.startswith(".")) == []
