"""A vault's life outside one open: creating it (complete, or not at all), opening it, and
restoring it from a backup (checked end to end before anything is replaced).

:func:`open_vault` is what the CLI and the daemon call; the :class:`~vault.service.Vault` it
returns does the rest.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import sqlite3
from pathlib import Path

from . import audit as audit_log
from .envelope import derive_subkeys, new_key, wrap_secret
from .errors import (
    VaultConflictError,
    VaultError,
    VaultInputError,
    VaultIntegrityError,
    VaultLockedError,
    VaultNotFoundError,
)
from .keysource import KdfParams, MasterKeySource
from .results import RestoreResult
from .secretfile import fsync_dir
from .service import Clock, Vault, _iso, _read_header, _system_clock, default_actor
from .store import (
    FORMAT_VERSION,
    Store,
    check_private_dir,
    make_private_dir,
    translate_sqlite_error,
)

__all__ = ["open_vault", "restore_vault"]


def open_vault(path: Path, source: MasterKeySource | None, *, create: bool = False,
               clock: Clock | None = None, actor: str | None = None,
               settle_pending_key: bool = True) -> Vault:
    """Open (or with ``create=True`` create) the vault at ``path`` and unlock it with ``source``.

    A new vault takes its key from ``source.create()`` (a key file that does not exist is
    written, an empty keyring entry filled, a passphrase asked twice) and is built completely in
    a temporary file before it appears at ``path`` (:func:`_create_vault_file`). ``source=None``
    opens it locked, for metadata only. ``settle_pending_key=False`` leaves a pending rotation
    key alone (restore opens a backup's copy with it, which must not decide for the live vault).
    """
    path = Path(path).expanduser()
    clock = clock or _system_clock
    actor = actor or default_actor()
    if create and not (path.exists() or path.is_symlink()):
        if source is None:
            raise VaultLockedError("creating a vault needs a key source")
        _create_vault_file(path, source, clock=clock, actor=actor)
    store = Store.open(path)
    try:
        header = _read_header(store)
        if header is None:
            raise VaultNotFoundError(
                f"{path} is not a complete vault (no header; a `vault init` of an older release "
                "was interrupted?): it holds no entries; move it away and run `certescrow "
                "vault init` again")
        vault = Vault(store, header, clock=clock, actor=actor)
        if source is not None:
            vault.unlock(source, settle_pending_key=settle_pending_key)
        return vault
    except BaseException:
        store.close()
        raise


def _staging_path(path: Path, what: str) -> Path:
    """``.<name>.<what>-<pid>-<random>`` beside ``path``: the pid lets a later run tell the
    staging file of a killed process from one still in use."""
    return path.with_name(f".{path.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_abandoned_staging(path: Path, what: str) -> None:
    """Staging files (still encrypted) of ``init`` or ``restore`` runs that were killed."""
    prefix = f".{path.name}.{what}-"
    with contextlib.suppress(OSError):
        for candidate in path.parent.iterdir():
            name = candidate.name
            if not name.startswith(prefix) or name.endswith(("-wal", "-shm", "-journal")):
                continue
            pid_text = name[len(prefix):].split("-", 1)[0]
            if not pid_text.isdigit():
                continue
            try:
                os.kill(int(pid_text), 0)
            except ProcessLookupError:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(str(candidate) + suffix).unlink(missing_ok=True)
            except OSError:
                continue  # alive (EPERM: another user's process)


def _create_vault_file(path: Path, source: MasterKeySource, *, clock: Clock,
                       actor: str) -> None:
    """Build a complete vault in ``.<name>.init-<pid>-<random>`` beside ``path`` and link it
    into place: a failure or a kill at any moment leaves no vault at ``path`` (a later
    ``init`` works), never a half-built one that every command refuses. ``link`` fails if
    another process created the vault meanwhile; that one is then used."""
    make_private_dir(path.parent)
    check_private_dir(path.parent)
    _remove_abandoned_staging(path, "init")
    key, kdf = source.create()  # may prompt or touch the keyring: before any file is made
    staging = _staging_path(path, "init")
    try:
        store = Store.open(staging, create=True)
        try:
            _initialise(store, source.kind, key, kdf, clock=clock, actor=actor)
        finally:
            store.close()  # the last connection checkpoints the WAL into the file
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(staging, path)
        except FileExistsError:
            pass  # another process created it meanwhile: that vault is used
        except OSError as exc:
            # A filesystem without hard links: rename, which cannot refuse an existing name,
            # so only when none has appeared (a race with another init is then last-wins).
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK) or path.exists():
                raise
            os.rename(staging, path)
        fsync_dir(path.parent)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(staging) + suffix).unlink(missing_ok=True)


def _initialise(store: Store, key_source_kind: str, key: bytes, kdf: KdfParams | None, *,
                clock: Clock, actor: str) -> None:
    vault_id, secret = os.urandom(16), new_key()
    created_at = _iso(clock())
    try:
        with store.write() as conn:
            for name, value in (("format_version", str(FORMAT_VERSION).encode()),
                                ("vault_id", vault_id), ("created_at", created_at.encode()),
                                ("key_source", key_source_kind.encode()),
                                ("wrapped_secret", wrap_secret(key, vault_id, secret))):
                Store.set_meta(conn, name, value)
            if kdf is not None:
                Store.set_meta(conn, "kdf", json.dumps(kdf.to_json()).encode())
            keys = derive_subkeys(key, vault_id, secret)
            audit_log.append(conn, audit_key=keys.audit, vault_id=vault_id, at=clock(),
                             actor=actor, action="init", detail={"key_source": key_source_kind})
    except sqlite3.Error as exc:
        raise translate_sqlite_error(store.path, exc) from None


def _check_backup(backup: Path, staging: Path, source: MasterKeySource, *,
                  clock: Clock | None, actor: str | None) -> int:
    """Copy ``backup`` to ``staging`` and verify it end to end with ``source``'s key, before
    anything is replaced. Every error names the backup (never the staging copy), and a key that
    does not open it says which key a backup needs. Returns the number of entries."""
    try:
        try:
            src = sqlite3.connect(backup.absolute().as_uri() + "?mode=ro", uri=True)
            try:
                dst = sqlite3.connect(staging)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise translate_sqlite_error(backup, exc) from None
        with open_vault(staging, source, clock=clock, actor=actor,
                        settle_pending_key=False) as candidate:
            report = candidate.verify()
    except VaultLockedError as exc:
        # The message names the staging copy as "vault STAGING": the user knows the backup.
        message = str(exc).replace(f"vault {staging}", "this backup").replace(
            "the vault was last keyed", "the backup was last keyed").replace(
            str(staging), str(backup))
        raise VaultLockedError(
            f"backup {backup}: {message}"
            + "; a backup opens only with the master key that was current when it was taken "
            "(after `vault rotate-key`, the old key: see `vault rotate-key --keep-old-key`)"
        ) from None
    except VaultError as exc:
        message = str(exc).replace(str(staging), str(backup))
        if str(backup) not in message:
            message = f"backup {backup}: {message}"
        raise type(exc)(message) from None
    if not report.ok:
        raise VaultIntegrityError(f"backup {backup} fails verification: {report.problems[0]}")
    return report.entries_checked


def restore_vault(backup: Path, path: Path, source: MasterKeySource, *, force: bool = False,
                  clock: Clock | None = None, actor: str | None = None) -> RestoreResult:
    """Replace the vault at ``path`` with ``backup`` after verifying the backup end to end with
    ``source``'s key. Into a live vault the copy goes through SQLite's backup API, so other
    connections (the daemon) switch atomically from the old content to the restored one."""
    backup, path = Path(backup).expanduser(), Path(path).expanduser()
    if not backup.exists():
        raise VaultNotFoundError(f"backup {backup} does not exist")
    if not backup.is_file():
        raise VaultInputError(f"backup {backup} is not a regular file")
    exists = path.exists()
    if exists and not force:
        raise VaultConflictError(f"vault {path} exists; restoring replaces its whole content "
                                 "(use --force)")
    make_private_dir(path.parent)
    _remove_abandoned_staging(path, "restore")
    staging = _staging_path(path, "restore")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        entries = _check_backup(backup, staging, source, clock=clock, actor=actor)
        if exists:
            with open_vault(path, None) as live:
                live.replace_content_from(staging)
        else:
            os.replace(staging, path)
        with open_vault(path, source, clock=clock, actor=actor) as restored:
            restored.record_restore(backup)
        return RestoreResult(path=path, entries=entries, replaced=exists)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(staging) + suffix).unlink(missing_ok=True)
