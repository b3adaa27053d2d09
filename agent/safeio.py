"""Open and read one file of a certificate store without being tricked by the filesystem.

Traps handled here, once:

* a FIFO in a store would block a naive ``open()`` forever: the type is checked with ``stat``
  before opening, and the open uses ``O_NONBLOCK`` in case the file is swapped in between;
* a symbolic link may point anywhere (``/etc/shadow``) or at itself: with a store root the path
  is resolved one component at a time from held directory descriptors (``dir_fd`` +
  ``O_NOFOLLOW``), so what is checked is what is opened, and the resolved target must lie inside
  the root or an allowed root (the walk starts at the root itself while the root is still the
  directory it was, which halves the syscalls of a read); without a root (one-shot scan) the
  kernel follows links and reports loops (``ELOOP``);
* a huge file is refused from ``fstat`` before a byte is read, and reading stops at the cap in
  case it grows;
* a file replaced or removed while it is read (certbot renews by unlink + symlink) is
  ``vanished``, so the daemon can retry it.
"""

from __future__ import annotations

import errno
import os
import stat as statmod
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .records import ReadLimits

__all__ = [
    "ReadError",
    "SafeRead",
    "error_for_os_error",
    "forget_resolved_roots",
    "read_bytes",
    "resolve_within",
    "within_roots",
]

_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_CHUNK = 1 << 16
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = os.O_RDONLY | _O_CLOEXEC | _O_NOCTTY | _O_NONBLOCK


class ReadError(Exception):
    """A file that cannot be read, with the stable code of :data:`agent.records.ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SafeRead:
    data: bytes
    st: os.stat_result
    real_path: str
    """The resolved path under a store root; the path as given for one-shot reads (where
    resolving it would cost more syscalls than the read itself)."""


# Tests replace this to make a file vanish in the middle of a read.
_read: Callable[[int, int], bytes] = os.read


def _type_failure(st: os.stat_result) -> ReadError | None:
    mode = st.st_mode
    if statmod.S_ISREG(mode):
        return None
    if statmod.S_ISFIFO(mode):
        return ReadError("fifo", "is a named pipe (FIFO); not read, a reader would block")
    if statmod.S_ISDIR(mode):
        return ReadError("not-regular-file", "is a directory, not a file")
    if statmod.S_ISSOCK(mode):
        return ReadError("not-regular-file", "is a socket, not a file")
    if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode):
        return ReadError("not-regular-file", "is a device, not a file")
    return ReadError("not-regular-file", "is not a regular file")


def _os_failure(exc: OSError, *, what: str = "") -> ReadError:
    prefix = f"{what}: " if what else ""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ReadError("permission-denied", f"{prefix}permission denied")
    if exc.errno == errno.ELOOP:
        return ReadError("symlink-loop", f"{prefix}too many levels of symbolic links (a loop)")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ReadError("not-found", f"{prefix}no such file")
    if exc.errno == errno.ESTALE:
        return ReadError("vanished", f"{prefix}the file vanished while being read")
    if exc.errno in (errno.ENXIO, errno.EAGAIN):
        return ReadError("not-regular-file", f"{prefix}not a readable regular file ({reason})")
    return ReadError("io-error", f"{prefix}{reason}")


@lru_cache(maxsize=256)
def _real_root(root: str) -> str:
    # Cached because every read of a file asks it (a realpath is a readlink per component);
    # a root that is a link can be retargeted, so the daemon calls forget_resolved_roots()
    # before each full scan (start, resync, reload, observer restart).
    return os.path.realpath(root)


def forget_resolved_roots() -> None:
    """Resolve store roots (and their allowed roots) afresh from the next read on.

    ``ln -sfn d2 link`` on a store root ``link`` keeps its path and moves every file under it:
    checked against the cached ``d1``, each of ``d2``'s files read as a link outside the store,
    until the process ended."""
    _real_root.cache_clear()
    _root_identity.cache_clear()


def _within(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def error_for_os_error(exc: OSError, *, what: str = "") -> ReadError:
    """The stable error code and message for an ``OSError`` met while reading a store."""
    return _os_failure(exc, what=what)


def within_roots(real_path: str, limits: ReadLimits) -> bool:
    """Whether an already resolved path lies inside ``limits``' root or allowed roots (always
    true without a root: the one-shot scan follows links anywhere)."""
    if limits.root is None:
        return True
    roots = (_real_root(str(limits.root)),
             *(_real_root(str(r)) for r in limits.allowed_roots))
    return _within(real_path, roots)


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


@lru_cache(maxsize=256)
def _root_identity(real_root: str) -> tuple[int, int] | None:
    """(device, inode) of the directory at ``real_root`` reached without following any link
    (``O_NOFOLLOW`` on every component); ``None`` when a component is a link or missing, in
    which case files under it are always resolved from ``/``."""
    dir_fd = os.open("/", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        for name in _split(real_root):
            child = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC,
                            dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = child
        st = os.fstat(dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    return st.st_dev, st.st_ino


def _open_root(absolute: str, roots: tuple[str, ...]) -> tuple[int, list[str], list[str]] | None:
    """Start the walk at the allowed root that contains ``absolute``, not at ``/``: the
    components above a store root are the same for all its files, and walking them again cost
    three syscalls each per file. The root is opened by its resolved path and used only while
    it is the directory that path led to without following any link (same device and inode,
    so the same tree below it: a component swapped for a link elsewhere changes the inode);
    otherwise, or for a path under no root, the walk starts at ``/``.
    Returns ``(dir_fd, real components so far, components still to walk)``."""
    for root in roots:
        if root == "/" or not absolute.startswith(root + "/"):
            continue
        try:
            fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            same = (st.st_dev, st.st_ino) == _root_identity(root)
        except OSError:
            same = False
        if not same:  # replaced, or reached through a link: take the long way this time
            os.close(fd)
            _root_identity.cache_clear()
            return None
        return fd, _split(root), _split(absolute[len(root):])
    return None


def resolve_within(path: Path | str, limits: ReadLimits
                   ) -> tuple[int, str, str, os.stat_result]:
    """Resolve ``path`` component by component from held directory descriptors.

    Returns ``(parent_dir_fd, final_name, real_path, final_lstat)`` where ``final_name`` is not
    a symbolic link (at the moment it was checked: ``final_lstat``) and ``real_path`` lies
    inside the allowed roots. The caller owns ``parent_dir_fd``. Raises :class:`ReadError`.
    """
    if limits.root is None:
        raise ValueError("resolve_within needs a store root")
    roots = (_real_root(str(limits.root)),
             *(_real_root(str(r)) for r in limits.allowed_roots))
    absolute = os.path.abspath(path)
    start = _open_root(absolute, roots)
    if start is not None:
        dir_fd, real, pending = start
    else:
        pending = _split(absolute)
        real = []
        dir_fd = os.open("/", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    links = 0
    followed_link = False
    try:
        while True:
            if not pending:
                raise ReadError("not-regular-file", "is a directory, not a file")
            name = pending.pop(0)
            if pending and name != "..":
                # The common case first: a real directory, opened without following a link
                # (one call where a stat and an open were two). Anything else (a link, a file,
                # an error) is looked at below as before.
                try:
                    child = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC,
                                    dir_fd=dir_fd)
                except OSError:
                    pass
                else:
                    os.close(dir_fd)
                    dir_fd = child
                    real.append(name)
                    continue
            if name == "..":
                if real:
                    real.pop()
                parent = os.open("..", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC, dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = parent
                continue
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError as exc:
                if followed_link and exc.errno == errno.ENOENT:
                    raise ReadError("not-found", "dangling symbolic link: its target "
                                      "does not exist") from None
                raise _os_failure(exc) from None
            if statmod.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise ReadError("symlink-loop",
                                      "too many levels of symbolic links (a loop)")
                target = os.readlink(name, dir_fd=dir_fd)
                followed_link = True
                if target.startswith("/"):
                    os.close(dir_fd)
                    dir_fd = os.open("/", os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
                    real = []
                pending = _split(target) + pending
                continue
            if pending:
                if not statmod.S_ISDIR(st.st_mode):
                    raise ReadError("not-found", "a path component is not a directory")
                try:
                    child = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC,
                                    dir_fd=dir_fd)
                except OSError as exc:
                    raise _os_failure(exc) from None
                os.close(dir_fd)
                dir_fd = child
                real.append(name)
                continue
            real.append(name)
            real_path = "/" + "/".join(real)
            if not _within(real_path, roots):
                allowed = ", ".join(roots)
                what = "symbolic link resolves to" if followed_link else "path lies at"
                raise ReadError(
                    "link-outside-root",
                    f"{what} {real_path}, outside the store's allowed roots ({allowed}); "
                    "not followed",
                )
            result_fd, dir_fd = dir_fd, -1
            return result_fd, name, real_path, st
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


def read_bytes(path: Path | str, *, limits: ReadLimits) -> SafeRead:
    """Read a whole regular file under the link policy and size cap of ``limits``.

    Raises :class:`ReadError` (never anything else for a bad file): the message does not
    repeat the path, the caller prefixes it.
    """
    try:
        if limits.root is None:
            return _read_unrooted(path, limits)
        return _read_rooted(path, limits)
    except ReadError:
        raise
    except OSError as exc:
        raise _os_failure(exc) from None


def _read_unrooted(path: Path | str, limits: ReadLimits) -> SafeRead:
    text = os.fspath(path)
    try:
        st = os.stat(text)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(text):
            raise ReadError("not-found", "dangling symbolic link: its target does not "
                              "exist") from None
        raise _os_failure(exc) from None
    failure = _type_failure(st)
    if failure is not None:
        raise failure
    if st.st_size > limits.max_size:
        raise _too_large(st.st_size, limits)
    try:
        fd = os.open(text, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ReadError("vanished", "the file vanished before it could be opened") from None
        raise _os_failure(exc) from None
    return _read_fd(fd, limits, st, text)


def _read_rooted(path: Path | str, limits: ReadLimits) -> SafeRead:
    for _attempt in range(3):
        # ``st`` is the walk's own lstat of the last component (not a link then); a swap since
        # is caught by O_NOFOLLOW (a link) or by _read_fd's identity check (another file).
        dir_fd, name, real_path, st = resolve_within(path, limits)
        try:
            failure = _type_failure(st)
            if failure is not None:
                raise failure
            if st.st_size > limits.max_size:
                raise _too_large(st.st_size, limits)
            try:
                fd = os.open(name, _READ_FLAGS | _O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue  # became a link between stat and open
                if exc.errno == errno.ENOENT:
                    raise ReadError("vanished",
                                      "the file vanished before it could be opened") from None
                raise _os_failure(exc) from None
        finally:
            os.close(dir_fd)
        return _read_fd(fd, limits, st, real_path)
    raise ReadError("vanished", "the file kept being replaced while it was opened")


def _too_large(size: int, limits: ReadLimits) -> ReadError:
    return ReadError("too-large", f"{size} bytes, over the {limits.max_size}-byte cap; not read")


def _read_fd(fd: int, limits: ReadLimits, before: os.stat_result, real_path: str) -> SafeRead:
    try:
        st = os.fstat(fd)
        failure = _type_failure(st)
        if failure is not None:
            raise failure
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise ReadError("vanished", "the file was replaced while it was opened")
        if st.st_size > limits.max_size:
            raise _too_large(st.st_size, limits)
        chunks: list[bytes] = []
        total = 0
        first = st.st_size + 1
        while True:
            want = first if not chunks else _CHUNK
            try:
                chunk = _read(fd, want)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ESTALE):
                    raise ReadError("vanished",
                                      "the file vanished while being read") from None
                raise _os_failure(exc) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limits.max_size:
                raise _too_large(total, limits)
            if len(chunks) == 1 and len(chunk) <= st.st_size:
                break  # asked for one byte more than fstat's size and got less: that was EOF
        after = os.fstat(fd)
        if after.st_nlink == 0:
            raise ReadError("vanished", "the file was removed while it was being read")
        return SafeRead(data=b"".join(chunks), st=after, real_path=real_path)
    finally:
        os.close(fd)
