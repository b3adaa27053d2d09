"""Reading and writing small secret files: master keys, pending keys, passwords, exports.

One place for the traps, because each of them has bitten a caller:

* **Reading.** A FIFO given as ``--key-file`` would block ``open()`` forever, and ``/dev/zero``
  would be read until memory runs out: :func:`untrusted.smallfile.read_small_file` (which the
  policy's data files share) opens without blocking, checks the descriptor it opened and
  stops at a size cap; the mode checks here run on that descriptor before a byte is read.
  ``follow_symlinks=False`` refuses a link for files the vault itself creates (a pending
  key), where a link can only be someone else's doing.
* **Writing.** A plaintext secret written to a temporary file and renamed survives a
  ``SIGKILL`` between the two as a stray copy beside the destination. So a secret is written to
  an anonymous ``O_TMPFILE`` inode (which the kernel frees if the process dies) and linked to
  its name only once complete; where the filesystem or the sandbox cannot do that, the
  destination itself is created exclusively (mode 0600) and written in place, so a kill leaves
  at most a partial destination and never a second file.

Errors are :class:`SecretFileError` with a ``problem`` code and a message naming the file and
never its content; each caller maps them to its own error class (a missing key file locks the
vault, a missing password file is bad input).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from pathlib import Path

from untrusted.smallfile import SmallFileError, kind_of, read_small_file

__all__ = [
    "SecretFileError",
    "describe_uid",
    "fsync_dir",
    "read_secret_file",
    "same_path",
    "write_secret_file",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Filesystems (st_dev) where linking an anonymous file failed: later writes there go straight
# to the in-place path instead of writing (and fsyncing) every secret twice.
_NO_ANONYMOUS_LINK: set[int] = set()


class SecretFileError(Exception):
    """A secret file that cannot be used. ``problem`` is one of ``missing``, ``permission``,
    ``not-regular``, ``too-large``, ``exposed`` (group/others can read it), ``foreign`` (another
    user owns it), ``exists`` (a write that would overwrite), ``io``. The message names the
    file, never its content."""

    def __init__(self, message: str, *, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def _exposed_to(st: os.stat_result) -> str | None:
    """Who besides the owner can read a password file: others, or a group this process does
    not run as (``root:certescrow 0640`` is how a service user is given a secret, the same rule
    as for passwords written in the configuration)."""
    mode = st.st_mode & 0o777
    if mode & 0o004:
        return "others"
    if mode & 0o040 and st.st_gid != os.getegid():
        return f"group {st.st_gid}, which this process does not run as"
    return None


def describe_uid(uid: int) -> str:
    """``uid 65534 (nobody)`` for messages; the name is the system's, not the file maker's."""
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def read_secret_file(path: Path, *, what: str, max_bytes: int = 4096,
                     refuse_mode: int = 0, follow_symlinks: bool = True,
                     private: bool = False, own: bool = False) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), never blocking.

    ``refuse_mode``: permission bits that must be clear (``0o077``: only the owner may read it;
    ``0o007``: others may not); checked on the open descriptor, so what is checked is what is
    read. ``private``: the file holds passwords, so refuse it when others can read it, or a
    group other than this process's own (``exposed``), with the ``chmod`` that fixes it.
    ``own``: the file must belong to this process's user (``foreign`` otherwise): a key file
    another user owns, however strict its mode, is a key that user holds a copy of (root
    reads it all the same, so mode bits alone do not say it is ours).
    """

    def check(st: os.stat_result) -> None:
        if own and st.st_uid != os.geteuid():
            raise SecretFileError(
                f"{what} {path} belongs to {describe_uid(st.st_uid)}, not to "
                f"{describe_uid(os.geteuid())} that runs this command", problem="foreign")
        loose = st.st_mode & refuse_mode
        if loose:
            who = "others" if loose & 0o007 else "its group"
            raise SecretFileError(
                f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: {who} can read it",
                problem="exposed")
        reader = _exposed_to(st) if private else None
        if reader is not None:
            raise SecretFileError(
                f"{what} {path} holds passwords but is readable by {reader} (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): run `chmod 600 {path}` (or `chmod 640` "
                "with the service's own group)", problem="exposed")

    try:
        return read_small_file(path, max_bytes=max_bytes, follow_symlinks=follow_symlinks,
                               check=check)
    except SmallFileError as exc:
        raise SecretFileError(_said(exc, path, what=what, max_bytes=max_bytes),
                              problem=_PROBLEMS.get(exc.problem, exc.problem)) from None


_PROBLEMS = {"link": "not-regular"}


def _said(exc: SmallFileError, path: Path, *, what: str, max_bytes: int) -> str:
    """:class:`SmallFileError` in the words the vault's callers have always shown."""
    if exc.problem == "missing":
        return f"{what} {path} does not exist"
    if exc.problem == "permission":
        return f"{what} {path}: permission denied"
    if exc.problem == "link":
        return (f"{what} {path} is a symbolic link; the vault wrote it as a file and refuses "
                "to follow a link there")
    if exc.problem == "not-regular":
        return f"{what} {path} is {kind_of(exc.mode)}; it must be a regular file"
    if exc.problem == "too-large":
        if exc.size is None:
            return f"{what} {path} is too large (more than {max_bytes} bytes)"
        return f"{what} {path} is too large ({exc.size} bytes; at most {max_bytes})"
    return f"{what} {path}: cannot {'open' if exc.opening else 'read'}: {exc.strerror}"


def same_path(one: Path, other: Path) -> bool:
    """Whether two paths lead to the same place (an output named over a file it must never
    replace, by any path). A link loop leads nowhere (``resolve`` raised RuntimeError, a
    traceback): it is not that file, and the writer refuses it as a link."""
    try:
        return one.expanduser().resolve() == other.expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def fsync_dir(directory: Path) -> None:
    """Make a link, rename or unlink in ``directory`` durable."""
    with contextlib.suppress(OSError):  # some filesystems refuse to fsync a directory
        fd = os.open(directory, os.O_RDONLY | _CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_LINK_FAILURES = (errno.EXDEV, errno.ENOENT, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP,
                  errno.EINVAL, errno.ENOSYS)


def _link_fd(fd: int, path: Path) -> None:
    """Give the open anonymous file ``fd`` the name ``path`` (``linkat``; never replaces).

    ``linkat(fd, "", AT_EMPTY_PATH)`` first (Linux >= 6.10 allows it to the file's opener,
    older kernels only with CAP_DAC_READ_SEARCH), then ``linkat`` of ``/proc/self/fd/N`` with
    ``AT_SYMLINK_FOLLOW`` (which a sandboxed /proc may refuse with EXDEV)."""
    target = os.fsencode(path)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        linkat = libc.linkat
    except (OSError, AttributeError):
        linkat = None
    if linkat is not None:
        linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_int]
        linkat.restype = ctypes.c_int
        if linkat(fd, b"", _AT_FDCWD, target, _AT_EMPTY_PATH) == 0:
            return
        code = ctypes.get_errno()
        if code not in _LINK_FAILURES:
            raise OSError(code, os.strerror(code), str(path))
    os.link(f"/proc/self/fd/{fd}", path, follow_symlinks=True)


def _link_anonymous(directory: Path, path: Path, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` to an ``O_TMPFILE`` inode in ``directory`` and link it as ``path``.

    False when the filesystem (or the sandbox: the ``/proc/self/fd`` link may be refused with
    ``EXDEV``) cannot do it; the caller then writes in place. Nothing named exists until the
    complete, fsynced file is linked, and a process killed before that leaves nothing at all.
    """
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if not tmpfile:
        return False
    try:
        device = os.stat(directory).st_dev
    except FileNotFoundError:
        return False
    if device in _NO_ANONYMOUS_LINK:
        return False
    try:
        fd = os.open(directory, tmpfile | os.O_WRONLY | _CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            _NO_ANONYMOUS_LINK.add(device)
            return False
        raise
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, data)
        os.fsync(fd)
        for _attempt in range(5):
            if replace:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            try:
                _link_fd(fd, path)
                return True
            except FileExistsError:
                if not replace:
                    raise
            except OSError as exc:
                if exc.errno in _LINK_FAILURES:
                    _NO_ANONYMOUS_LINK.add(device)
                    return False
                raise
        raise FileExistsError(errno.EEXIST, "the destination keeps reappearing", str(path))
    finally:
        os.close(fd)


def _write_in_place(path: Path, data: bytes, *, replace: bool) -> None:
    """Create ``path`` exclusively (0600, no link followed) and write it; on an error the
    partial file is removed. A SIGKILL can leave a partial ``path``, never another file."""
    if replace:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def write_secret_file(path: Path, data: bytes, *, what: str, replace: bool = False,
                      anonymous: bool = True) -> None:
    """Write ``data`` to ``path`` with mode 0600, leaving no other copy at any moment.

    ``replace=False`` never overwrites (an existing ``path`` is ``problem="exists"``).
    ``anonymous=False`` skips the ``O_TMPFILE`` attempt (tests of the in-place path).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if replace:
        # Replacing takes the name: a link's target, or a device (/dev/null), would be left
        # behind and the name made a file of secrets for everyone to find (the re-review)
        try:
            mode: int | None = os.lstat(path).st_mode
        except OSError:
            mode = None  # absent (or unreachable: the write says why)
        if mode is not None and not stat.S_ISREG(mode):
            what_it_is = "a symbolic link" if stat.S_ISLNK(mode) else kind_of(mode)
            raise SecretFileError(f"cannot write {what} {path}: it is {what_it_is}; give the "
                                  "path of a regular file", problem="not-regular")
    old_umask = os.umask(0o077)
    try:
        if not (anonymous and _link_anonymous(directory, path, data, replace=replace)):
            _write_in_place(path, data, replace=replace)
    except FileExistsError:
        raise SecretFileError(f"{what} {path} already exists", problem="exists") from None
    except FileNotFoundError:
        raise SecretFileError(f"cannot write {what} {path}: directory {directory} does not "
                              "exist", problem="missing") from None
    except PermissionError:
        raise SecretFileError(f"cannot write {what} {path}: permission denied",
                              problem="permission") from None
    except OSError as exc:
        raise SecretFileError(f"cannot write {what} {path}: {exc.strerror}",
                              problem="io") from None
    finally:
        os.umask(old_umask)
    fsync_dir(directory)
