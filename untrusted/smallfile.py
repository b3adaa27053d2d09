"""Reading a small file whose path someone else chose, without blocking or running out of
memory.

A FIFO given as a file makes ``open()`` wait for a writer forever, and ``/dev/zero`` reads
until memory runs out: ``[policy] catalogue = "/tmp/fifo"`` hung ``scan`` and a daemon's reload,
and a FIFO as ``--key-file`` hung the vault. The file is opened ``O_NONBLOCK`` (an open of a
FIFO then returns at once), checked with ``fstat`` on the descriptor it was opened as (what is
checked is what is read), refused unless it is a regular file, and read up to a size cap, which
also holds should the file grow while it is read.

The policy's data files and the vault's secret files are read here, each naming the file and
saying what went wrong in its own words: :class:`SmallFileError` carries what happened as data
(a ``problem`` code, the file's mode, its size, the system's error), never a sentence.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["SmallFileError", "kind_of", "read_small_file"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class SmallFileError(Exception):
    """Why the file was not read. ``problem``: ``missing``, ``permission``, ``link`` (a link
    where ``follow_symlinks=False`` refuses one), ``not-regular``, ``too-large`` (``size`` is
    its size, or ``None`` when it grew past the cap while being read), ``io`` (``errno`` and
    ``strerror`` say which; ``opening`` whether it failed before the read)."""

    def __init__(self, problem: str, *, mode: int = 0, size: int | None = None,
                 errno: int | None = None, strerror: str | None = None,
                 opening: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mode = mode
        self.size = size
        self.errno = errno
        self.strerror = strerror
        self.opening = opening


def kind_of(mode: int) -> str:
    """What a file that is not a regular file is, for a sentence."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def read_small_file(path: Path, *, max_bytes: int, follow_symlinks: bool = True,
                    check: Callable[[os.stat_result], None] | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes``, never blocking; raises
    :class:`SmallFileError`. ``check`` is called with the open descriptor's ``fstat`` before
    anything is read (the vault refuses a password file others can read) and may raise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC | (0 if follow_symlinks else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SmallFileError("missing", opening=True) from None
    except PermissionError:
        raise SmallFileError("permission", opening=True) from None
    except OSError as exc:
        if exc.errno == _errno.ELOOP and not follow_symlinks:
            raise SmallFileError("link", opening=True) from None
        raise SmallFileError("io", errno=exc.errno, strerror=exc.strerror,
                             opening=True) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SmallFileError("not-regular", mode=st.st_mode)
        if check is not None:
            check(st)
        if st.st_size > max_bytes:
            raise SmallFileError("too-large", mode=st.st_mode, size=st.st_size)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise SmallFileError("too-large", mode=st.st_mode)
        return b"".join(chunks)
    except OSError as exc:
        raise SmallFileError("io", errno=exc.errno, strerror=exc.strerror) from None
    finally:
        os.close(fd)

