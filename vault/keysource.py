"""Where the master key comes from, behind one small protocol.

* :class:`KeyringSource` - the OS keyring (``keyring``); the default for an operator's shell.
* :class:`CredentialSource` - a systemd credential, ``$CREDENTIALS_DIRECTORY/<name>``; the
  default for the daemon (``LoadCredentialEncrypted=`` keeps it encrypted at rest by the TPM or
  the host key).
* :class:`KeyFileSource` - a file holding 32 random bytes (base64), refused unless 0600 or
  stricter; :func:`create_key_file` writes one atomically.
* :class:`PassphraseSource` - scrypt over a passphrase; the salt and cost parameters live in the
  vault header so the vault describes how to unlock itself (as borg's key blob does).

A source only produces bytes; whether they open the vault is decided by the key check value in
the header (:mod:`vault.service`), before anything is written. Sources that can hold a second,
*pending* key (keyring and key file) support in-place rotation that survives a crash at any
moment: the new key is staged before the rotation commits and promoted after, and a vault that
no longer opens with the current key is tried with the pending one.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .envelope import KEY_SIZE, new_key, scrypt_derive
from .errors import (
    VaultConflictError,
    VaultFormatError,
    VaultInputError,
    VaultLockedError,
    VaultNotFoundError,
    VaultPermissionError,
)
from .secretfile import SecretFileError, fsync_dir, read_secret_file, write_secret_file
from .store import check_private_dir, make_private_dir

__all__ = [
    "ALLOW_PLAINTEXT_KEYRING_ENV",
    "KEY_FILE_ADVICE",
    "KEY_SOURCE_KINDS",
    "PASSPHRASE_ENV",
    "CredentialSource",
    "KdfParams",
    "KeepsOldKey",
    "KeyFileSource",
    "KeyringSource",
    "MasterKeySource",
    "PassphraseSource",
    "StagedRotation",
    "check_key_file_place",
    "create_key_file",
    "key_source_from_settings",
    "read_key_file",
]

KEY_SOURCE_KINDS = ("keyring", "credential", "key-file", "passphrase")
PASSPHRASE_ENV = "CERTESCROW_VAULT_PASSPHRASE"  # noqa: S105 - a variable name, not a secret

# scrypt defaults: N=2^17, r=8, p=1 is the cost the scrypt paper recommends for file encryption
# (~128 MiB, a few hundred ms). The limits stop a hostile header from demanding unbounded work.
SCRYPT_DEFAULT = {"n": 2**17, "r": 8, "p": 1}
_SCRYPT_MAX_N, _SCRYPT_MAX_R, _SCRYPT_MAX_P = 2**22, 32, 16


@dataclass(frozen=True, slots=True, kw_only=True)
class KdfParams:
    """scrypt parameters, stored in the vault header (never secret)."""

    salt: bytes
    n: int
    r: int
    p: int

    def to_json(self) -> dict[str, Any]:
        return {"kdf": "scrypt", "salt": base64.b64encode(self.salt).decode(), "n": self.n,
                "r": self.r, "p": self.p}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KdfParams:
        try:
            if data.get("kdf") != "scrypt":
                # the header is stored content: named by what it is not, never quoted
                raise VaultFormatError("the vault header names a key derivation other than "
                                       "scrypt, the one this release knows")
            params = cls(salt=base64.b64decode(data["salt"]), n=int(data["n"]),
                         r=int(data["r"]), p=int(data["p"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise VaultFormatError("malformed scrypt parameters in the vault header") from None
        n, r, p = params.n, params.r, params.p
        if n < 2 or n & (n - 1) or n > _SCRYPT_MAX_N or not 1 <= r <= _SCRYPT_MAX_R \
                or not 1 <= p <= _SCRYPT_MAX_P or len(params.salt) < 16:
            raise VaultFormatError(f"scrypt parameters out of range in the vault header "
                                   f"(n={n}, r={r}, p={p})")
        return params


@runtime_checkable
class MasterKeySource(Protocol):
    """Produces the 32-byte master key. ``kind`` is one of :data:`KEY_SOURCE_KINDS`."""

    @property
    def kind(self) -> str: ...

    def describe(self) -> str:
        """Where the key comes from, for messages (never the key)."""
        ...

    def load(self, kdf: KdfParams | None) -> bytes:
        """The key, or :class:`VaultLockedError` saying what is missing."""
        ...

    def create(self) -> tuple[bytes, KdfParams | None]:
        """A key for a new vault (or a rotation target): the existing one where the source
        already holds a key (keyring entry, key file), else a fresh one it stores."""
        ...


@runtime_checkable
class KeepsOldKey(Protocol):
    """A source that can keep a retired key beside its current one (for older backups)."""

    def keep_copy(self, key: bytes, label: str) -> str: ...


@runtime_checkable
class StagedRotation(Protocol):
    """A source that can hold a pending key next to the current one (in-place rotation)."""

    def stage(self, key: bytes) -> None: ...

    def has_pending(self) -> bool:
        """A pending key exists, readable or not (a partial one from a killed rotation)."""
        ...

    def pending(self) -> bytes | None: ...

    def promote(self) -> None: ...

    def discard(self) -> None:
        """Remove the pending key (a rotation that never committed)."""
        ...


def _decode_key(raw: bytes, where: str) -> bytes:
    """32 raw bytes, or 32 bytes as base64 or hex text (trailing whitespace ignored)."""
    if len(raw) == KEY_SIZE:
        return raw
    text = raw.strip()
    try:
        if len(text) == 2 * KEY_SIZE:
            key = bytes.fromhex(text.decode("ascii"))
        else:
            key = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        key = b""
    if len(key) != KEY_SIZE:
        raise VaultLockedError(f"{where} does not hold a 32-byte key (expected base64, hex or "
                               "32 raw bytes)")
    return key


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


# ------------------------------------------------------------------ key files and credentials

def read_key_file(path: Path, *, what: str = "key file", strict_mode: bool = True,
                  follow_symlinks: bool = True) -> bytes:
    """Read a key file, refusing anything but a regular file (a FIFO would block the open
    forever) and, checked on the open file, one that group or others can read.

    ``strict_mode`` (every key file the vault keeps; not a systemd credential, whose mode,
    owner and directory systemd sets) also refuses a file another user owns and one in a
    directory that others can write or that is not this user's or root's
    (:func:`check_key_file_place`): a file planted there by someone else, 0600 or not, is a
    key they hold a copy of (root reads it all the same, so its mode says nothing).
    """
    try:
        raw = read_secret_file(path, what=what, max_bytes=4096,
                               refuse_mode=0o077 if strict_mode else 0o007,
                               follow_symlinks=follow_symlinks, own=strict_mode)
    except SecretFileError as exc:
        if exc.problem == "exposed":
            raise VaultPermissionError(f"{exc}; the vault refuses it (chmod 600 {path}, and "
                                       "replace the key if it was exposed)") from None
        if exc.problem == "foreign":
            raise VaultPermissionError(
                f"{exc}: its owner may hold a copy of the master key, so the vault refuses "
                "it (run the command as that user, or use a key file of your own)") from None
        if exc.problem == "permission":
            raise VaultPermissionError(str(exc)) from None
        raise VaultLockedError(str(exc)) from None
    if strict_mode:
        check_key_file_place(path, what=what)
    return _decode_key(raw, f"{what} {path}")


def check_key_file_place(path: Path, *, what: str = "key file") -> None:
    """Refuse a key file whose directory (the one named, and the one a link leads to) others
    can write or that belongs to someone but this user or root: the vault file's own rule
    (:func:`vault.store.check_private_dir`), short of mode 0700."""
    path = Path(path)
    named = path.parent if str(path.parent) else Path(".")
    directories = [named]
    real = Path(os.path.realpath(path)).parent
    if real != Path(os.path.realpath(named)):
        directories.append(real)
    for directory in directories:
        try:
            check_private_dir(directory, holds=f"{what} {path}")
        except VaultNotFoundError:
            raise VaultLockedError(f"{what} {path} does not exist") from None


def _key_file_bytes(key: bytes) -> bytes:
    return (_encode_key(key) + "\n").encode("ascii")


def create_key_file(path: Path, key: bytes | None = None) -> bytes:
    """Write a new random key to ``path`` (0600), never over an existing file.

    A missing directory is created with mode 0700 (the README's first run names a key file in
    a directory that does not exist yet). The key goes through :func:`write_secret_file`: an
    anonymous file linked into place when complete, so a crash leaves either no key file or a
    complete one, and never a stray copy of the key beside it.
    """
    key = new_key() if key is None else key
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise VaultConflictError(f"key file {path} already exists; refusing to overwrite it")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        try:
            make_private_dir(directory)
        except OSError as exc:
            raise VaultInputError(f"cannot create key file {path}: cannot create directory "
                                  f"{directory}: {exc.strerror}") from None
    check_key_file_place(path)  # before the key exists: never write it where others can
    try:
        write_secret_file(path, _key_file_bytes(key), what="key file")
    except SecretFileError as exc:
        if exc.problem == "exists":
            raise VaultConflictError(f"key file {path} already exists; refusing to overwrite "
                                     "it") from None
        raise VaultInputError(str(exc)) from None
    return key


def _replace_key_file(path: Path, key: bytes, *, what: str) -> None:
    """Replace (or create) ``path`` with ``key`` (0600), leaving no other copy of the key."""
    try:
        write_secret_file(path, _key_file_bytes(key), what=what, replace=True)
    except SecretFileError as exc:
        raise VaultInputError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class KeyFileSource:
    """A key file, 0600 enforced. Its pending key (rotation) lives in ``<file>.next``."""

    path: Path

    @property
    def kind(self) -> str:
        return "key-file"

    def describe(self) -> str:
        return f"key file {self.path}"

    @property
    def pending_path(self) -> Path:
        return self.path.with_name(self.path.name + ".next")

    def load(self, kdf: KdfParams | None) -> bytes:
        return read_key_file(self.path)

    def create(self) -> tuple[bytes, KdfParams | None]:
        """A new key written to the file, or the key of a file that exists already.

        An existing file is adopted (an operator may provision the key before ``init``, or
        re-key two vaults to one file) only through :func:`read_key_file`'s checks: this
        user's own file, 0600/0400, in a directory nobody else can write. One planted by
        another user (``vault init --key-file /tmp/x.key``) would make a vault its planter
        can open."""
        if self.path.exists():
            return read_key_file(self.path), None
        return create_key_file(self.path), None

    def stage(self, key: bytes) -> None:
        _replace_key_file(self.pending_path, key, what="pending key file")

    def has_pending(self) -> bool:
        return self.pending_path.exists() or self.pending_path.is_symlink()

    def pending(self) -> bytes | None:
        if not self.has_pending():
            return None
        try:
            return read_key_file(self.pending_path, what="pending key file",
                                 follow_symlinks=False)
        except (VaultLockedError, VaultPermissionError):
            return None  # a partial or foreign file: never a key to adopt

    def promote(self) -> None:
        try:
            os.replace(self.pending_path, self.path)
        except FileNotFoundError:
            return  # another process promoted it already
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.pending_path.unlink(missing_ok=True)
        fsync_dir(self.path.parent)

    def keep_copy(self, key: bytes, label: str) -> str:
        """Keep ``key`` in ``<file>.<label>`` (0600, never over a file); returns its path."""
        copy = self.path.with_name(f"{self.path.name}.{label}")
        try:
            write_secret_file(copy, _key_file_bytes(key), what="old key file")
        except SecretFileError as exc:
            raise VaultConflictError(str(exc)) if exc.problem == "exists" \
                else VaultInputError(str(exc)) from None
        return str(copy)


@dataclass(frozen=True, slots=True)
class CredentialSource:
    """A systemd credential (``LoadCredential=``/``LoadCredentialEncrypted=``)."""

    name: str = "certescrow-vault-key"

    @property
    def kind(self) -> str:
        return "credential"

    def describe(self) -> str:
        return f"systemd credential {self.name!r}"

    def _path(self) -> Path:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise VaultLockedError(
                f"the vault's master key is the systemd credential {self.name!r}, but "
                "$CREDENTIALS_DIRECTORY is not set (run under systemd with "
                f"LoadCredentialEncrypted={self.name}:..., or use --key-file)"
            )
        if "/" in self.name or self.name in ("", ".", ".."):
            raise VaultInputError(f"invalid credential name {self.name!r}")
        return Path(directory) / self.name

    def load(self, kdf: KdfParams | None) -> bytes:
        # systemd owns the mode of credential files (0400, sometimes group-readable by the
        # service's group); refuse only a world-readable one.
        return read_key_file(self._path(), what="credential file", strict_mode=False)

    def create(self) -> tuple[bytes, KdfParams | None]:
        # A service cannot mint its own credential: it is provisioned by the operator
        # (`systemd-creds encrypt`), so a new vault adopts the existing one.
        return self.load(None), None


KEY_FILE_ADVICE = ("use a key file instead: pass --key-file FILE or set "
                   "CERTESCROW_VAULT_KEY_FILE=FILE (`certescrow vault init` creates it, mode "
                   '0600), or set [vault] key_source = "key-file" and key_file in the '
                   "configuration")
ALLOW_PLAINTEXT_KEYRING_ENV = "CERTESCROW_VAULT_ALLOW_PLAINTEXT_KEYRING"

_log = logging.getLogger("certescrow.vault")


def _backend_name(backend: object) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _is_plaintext_backend(backend: object) -> bool:
    """keyrings.alt's PlaintextKeyring (and anything named like it) keeps passwords in a
    plaintext file: it is not an OS keyring, whatever ``keyring`` chose it for."""
    return any(cls.__name__ == "PlaintextKeyring" for cls in type(backend).__mro__)


def _is_no_backend(backend: object) -> bool:
    module = type(backend).__module__
    return module in ("keyring.backends.fail", "keyring.backends.null")


@dataclass(frozen=True, slots=True)
class KeyringSource:
    """The OS keyring through ``keyring`` (base64 text). The pending key is ``<username>.next``.

    A plaintext file "keyring" (keyrings.alt's PlaintextKeyring, which ``keyring`` picks on a
    machine with no OS keyring when keyrings.alt is installed) is refused unless
    ``allow_plaintext`` (``$CERTESCROW_VAULT_ALLOW_PLAINTEXT_KEYRING=1``), and then used with a
    warning: the master key would sit unencrypted in a file, which a key file does as well but
    says so.
    """

    service: str = "certescrow"
    username: str = "vault-master-key"
    allow_plaintext: bool = False

    @property
    def kind(self) -> str:
        return "keyring"

    def describe(self) -> str:
        return f"OS keyring (service {self.service!r}, user {self.username!r})"

    def _check_backend(self) -> None:
        import keyring

        try:
            backend = keyring.get_keyring()
        except Exception as exc:  # keyring's own start-up failure (a bad backend), mapped here
            raise VaultLockedError(f"the OS keyring cannot be used ({exc.__class__.__name__}); "
                                   f"{KEY_FILE_ADVICE}") from None
        chain = list(getattr(backend, "backends", None) or ()) \
            if type(backend).__name__ == "ChainerBackend" else [backend]
        usable = [b for b in chain if not _is_no_backend(b)]
        if not usable:
            raise VaultLockedError(f"no OS keyring is available on this machine (keyring "
                                   f"backend: {_backend_name(backend)}); {KEY_FILE_ADVICE}")
        if _is_plaintext_backend(usable[0]):
            if not self.allow_plaintext:
                raise VaultLockedError(
                    f"the keyring backend is {_backend_name(usable[0])}, a plaintext file, not "
                    "an OS keyring: the vault will not keep its master key there; "
                    f"{KEY_FILE_ADVICE} (to accept the plaintext file anyway, set "
                    f"{ALLOW_PLAINTEXT_KEYRING_ENV}=1)")
            _log.warning("the vault's master key is kept in %s, a plaintext file keyring "
                         "(allowed by %s): anyone who can read that file can open the vault",
                         _backend_name(usable[0]), ALLOW_PLAINTEXT_KEYRING_ENV)

    def _get(self, username: str) -> str | None:
        import keyring
        import keyring.errors

        self._check_backend()
        try:
            value = keyring.get_password(self.service, username)
        except keyring.errors.NoKeyringError:
            raise VaultLockedError(f"no OS keyring is available on this machine; "
                                   f"{KEY_FILE_ADVICE}") from None
        except keyring.errors.KeyringError as exc:
            raise VaultLockedError(f"{self.describe()}: the keyring cannot be read: "
                                   f"{exc.__class__.__name__}") from None
        return value if isinstance(value, str) else None

    def _set(self, username: str, value: str) -> None:
        import keyring
        import keyring.errors

        self._check_backend()
        try:
            keyring.set_password(self.service, username, value)
        except keyring.errors.NoKeyringError:
            raise VaultLockedError(f"no OS keyring is available on this machine; "
                                   f"{KEY_FILE_ADVICE}") from None
        except keyring.errors.KeyringError as exc:
            raise VaultLockedError(f"{self.describe()}: cannot store the key: "
                                   f"{exc.__class__.__name__}") from None

    def _delete(self, username: str) -> None:
        import keyring
        import keyring.errors

        try:
            keyring.delete_password(self.service, username)
        except keyring.errors.PasswordDeleteError:
            pass
        except keyring.errors.KeyringError as exc:
            raise VaultLockedError(f"{self.describe()}: cannot delete the pending key: "
                                   f"{exc.__class__.__name__}") from None

    def load(self, kdf: KdfParams | None) -> bytes:
        value = self._get(self.username)
        if value is None:
            raise VaultLockedError(f"no master key in the {self.describe()}; create the vault "
                                   "with `certescrow vault init`, or use --key-file")
        return _decode_key(value.encode("ascii", "replace"), self.describe())

    def create(self) -> tuple[bytes, KdfParams | None]:
        if self._get(self.username) is not None:
            return self.load(None), None
        key = new_key()
        self._set(self.username, _encode_key(key))
        return key, None

    def stage(self, key: bytes) -> None:
        self._set(self.username + ".next", _encode_key(key))

    def has_pending(self) -> bool:
        return self._get(self.username + ".next") is not None

    def pending(self) -> bytes | None:
        value = self._get(self.username + ".next")
        if value is None:
            return None
        try:
            return _decode_key(value.encode("ascii", "replace"), self.describe())
        except VaultLockedError:
            return None

    def promote(self) -> None:
        value = self._get(self.username + ".next")
        if value is None:
            return
        self._set(self.username, value)
        self._delete(self.username + ".next")

    def discard(self) -> None:
        self._delete(self.username + ".next")

    def keep_copy(self, key: bytes, label: str) -> str:
        """Keep ``key`` as the entry ``<username>.<label>``; returns where (for messages)."""
        username = f"{self.username}.{label}"
        self._set(username, _encode_key(key))
        return f"keyring entry (service {self.service!r}, user {username!r})"


def _default_passphrase(confirm: bool) -> str:
    """The passphrase from ``$CERTESCROW_VAULT_PASSPHRASE``, else a prompt on a terminal.

    Never from argv: command lines are visible to every user of the machine.
    """
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise VaultLockedError(f"the vault is locked with a passphrase: set {PASSPHRASE_ENV} or "
                               "run on a terminal to be asked for it")
    import click

    text: str = click.prompt("Vault passphrase", hide_input=True,
                             confirmation_prompt=confirm, err=True)
    return text


@dataclass(frozen=True, slots=True)
class PassphraseSource:
    """scrypt(passphrase); ``get_passphrase(confirm)`` supplies it (prompt or environment)."""

    get_passphrase: Callable[[bool], str] = _default_passphrase
    new_params: Mapping[str, int] | None = None  # scrypt n/r/p for new keys (tests lower n)

    @property
    def kind(self) -> str:
        return "passphrase"

    def describe(self) -> str:
        return "passphrase (scrypt)"

    def _passphrase(self, confirm: bool) -> bytes:
        """The passphrase's bytes: the bytes the user set, not a re-encoding that can fail.

        An environment value reaches Python as text in which each byte that is not UTF-8 is a
        lone surrogate (PEP 383: ``Pa55\\xffphrase`` is ``'Pa55\\udcffphrase'``); a strict
        ``encode`` of it raised ``UnicodeEncodeError`` quoting the byte and its position.
        ``surrogateescape`` turns each back into its byte, so such a passphrase works (and is
        on a UTF-8 system exactly ``os.environb``'s bytes), and a UTF-8 one derives the same
        key as it always did. Text that still cannot be bytes (a terminal's undecodable
        input) is an error that shows none of it.
        """
        try:
            secret = self.get_passphrase(confirm).encode("utf-8", "surrogateescape")
        except UnicodeError:
            raise VaultLockedError("the passphrase cannot be read as bytes (not valid text in "
                                   f"this terminal's encoding); set it in {PASSPHRASE_ENV} "
                                   "instead, where any bytes are taken as they are") from None
        if not secret:
            raise VaultLockedError("an empty passphrase cannot lock a vault")
        return secret

    def load(self, kdf: KdfParams | None) -> bytes:
        if kdf is None:
            raise VaultLockedError("this vault was not created with a passphrase (its header "
                                   "holds no scrypt parameters); use its key file or keyring")
        return scrypt_derive(self._passphrase(False), salt=kdf.salt, n=kdf.n, r=kdf.r, p=kdf.p)

    def create(self) -> tuple[bytes, KdfParams | None]:
        params = dict(SCRYPT_DEFAULT)
        params.update(self.new_params or {})
        kdf = KdfParams(salt=os.urandom(16), n=params["n"], r=params["r"], p=params["p"])
        key = scrypt_derive(self._passphrase(True), salt=kdf.salt, n=kdf.n, r=kdf.r, p=kdf.p)
        return key, kdf


def key_source_from_settings(settings: Mapping[str, Any], *, key_file: Path | None = None,
                             environ: Mapping[str, str] | None = None) -> MasterKeySource:
    """The source the ``[vault]`` configuration names; ``key_file`` (``--key-file``) wins.
    ``environ`` (default ``os.environ``) may allow a plaintext file keyring."""
    environ = os.environ if environ is None else environ
    if key_file is not None:
        return KeyFileSource(Path(key_file).expanduser())
    kind = str(settings.get("key_source") or "keyring")
    if kind == "keyring":
        return KeyringSource(service=str(settings.get("keyring_service") or "certescrow"),
                             username=str(settings.get("keyring_username")
                                          or "vault-master-key"),
                             allow_plaintext=environ.get(ALLOW_PLAINTEXT_KEYRING_ENV, "")
                             .strip().lower() in ("1", "yes", "true"))
    if kind == "credential":
        return CredentialSource(str(settings.get("credential") or "certescrow-vault-key"))
    if kind == "key-file":
        configured = str(settings.get("key_file") or "")
        if not configured:
            raise VaultInputError('[vault] key_source = "key-file" needs [vault] key_file '
                                  "(or pass --key-file)")
        return KeyFileSource(Path(configured).expanduser())
    if kind == "passphrase":
        return PassphraseSource()
    raise VaultInputError(f"[vault] key_source = {kind!r} is not one of "
                          f"{', '.join(KEY_SOURCE_KINDS)}")
