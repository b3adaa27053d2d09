"""Reading the provider's data files (a catalogue, a schedule) without trusting their path.

``Path.read_text`` on a FIFO waits for a writer forever, and on ``/dev/zero`` reads until
memory runs out: ``[policy] catalogue = "/tmp/fifo"`` hung ``scan``, ``check-config`` and a
daemon's reload (the re-review of session 13). So the file is read as the vault reads
its small files (:func:`untrusted.smallfile.read_small_file`: opened without blocking, checked
on the descriptor it was opened as, a regular file of at most ``max_bytes``), in its own words.
"""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from untrusted.smallfile import SmallFileError, read_small_file

__all__ = ["DATA_FILE_MAX", "DataFileError", "read_data_file"]

DATA_FILE_MAX = 1 << 20
"""A catalogue or a schedule is a few KiB; a MiB is room to grow, not a memory hazard."""


class DataFileError(Exception):
    """Why the file cannot be used, in our words (the caller names the file)."""


def read_data_file(path: Path, *, max_bytes: int) -> str:
    """The UTF-8 text of the regular file ``path``; raises :class:`DataFileError`."""
    try:
        data = read_small_file(path, max_bytes=max_bytes)
    except SmallFileError as exc:
        raise DataFileError(_said(exc, max_bytes)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError("is not UTF-8 text, expected a TOML file") from None


def _said(exc: SmallFileError, max_bytes: int) -> str:
    if exc.problem == "missing":
        return "does not exist"
    if exc.problem == "permission":
        return "cannot be read: permission denied"
    if exc.problem == "not-regular":
        if stat.S_ISDIR(exc.mode):
            return "is a directory, expected a TOML file"
        return ("is not a regular file (a FIFO, a device or a socket is never read: it could "
                "block or never end)")
    if exc.problem == "too-large":
        if exc.size is None:  # it grew while being read
            return f"is over the {max_bytes}-byte limit"
        return f"is {exc.size} bytes, over the {max_bytes}-byte limit"
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"cannot be {'opened' if exc.opening else 'read'} ({name})"
