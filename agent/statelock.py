"""One agent per state directory: the read index, the outbox and the ledger beside them are
written by one process only.

A second ``agent run`` on the same state directory (an operator trying the daemon in the
foreground while the unit runs) started without a word: two processes then rewrote one read
index and reported every change twice (the review of session 13). The first holds an
exclusive ``flock`` on ``agent.lock`` there for its life; the kernel drops it when the process
ends, however it ends, so no stale lock survives a crash or a SIGKILL.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from .errors import AgentError

__all__ = ["LOCK_NAME", "StateBusyError", "StateLock"]

LOCK_NAME = "agent.lock"


class StateBusyError(AgentError):
    """Another agent holds the state directory."""

    exit_code = 32


class StateLock:
    """The state directory's lock, held from :meth:`acquire` to :meth:`release` (or exit)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StateBusyError` naming the holder's pid."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                         | os.O_NONBLOCK, 0o600)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, "not a regular file")
        except OSError as exc:
            why = {errno.ELOOP: "is a symbolic link (never followed)",
                   errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EISDIR: "is a directory", errno.EINVAL: "is not a regular file",
                   errno.EROFS: "is on a read-only filesystem",
                   errno.ENOTDIR: "a part of its path is not a directory"}.get(
                       exc.errno or 0, errno.errorcode.get(exc.errno or 0, "error"))
            raise AgentError(f"{self.path}: cannot take the state directory's lock: {why}; "
                             "it must be a regular file the agent's user may write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise AgentError(f"{self.path}: cannot lock the state directory "
                                 f"({errno.errorcode.get(exc.errno or 0, 'error')})") from None
            raise StateBusyError(
                f"{self.path.parent}: another certescrow agent{holder} is running with this "
                "state directory (its read index, outbox and ledger are that agent's); stop "
                "it first (`systemctl stop certescrow-agent`; to check a host the daemon "
                "watches, `certescrow scan --exit-status` reads without writing), or give "
                "this one its own state directory (that of its SQLite ledger; with PostgreSQL "
                "the per-user one, $XDG_STATE_HOME/certescrow)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    """`` (pid N)`` as the holder wrote it, when it is a plain number (the file is ours, but
    read as untrusted all the same: only digits are shown)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
