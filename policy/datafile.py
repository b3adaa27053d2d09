"""Reading the provider's data files (a catalogue, a schedule) without trusting their path.

``Path.read_text`` on a FIFO waits for a writer forever, and on ``/dev/zero`` reads until
memory runs out: ``[policy] catalogue = "/tmp/fifo"`` hung ``scan``, ``check-config`` and a
daemon's reload (the re-review of session 13). So the file is opened without blocking,
checked on the descriptor it was opened as (a regular file, at most ``max_bytes``), then read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["DATA_FILE_MAX", "DataFileError", "read_data_file"]

DATA_FILE_MAX = 1 << 20
"""A catalogue or a schedule is a few KiB; a MiB is room to grow, not a memory hazard."""


class DataFileError(Exception):
    """Why the file cannot be used, in our words (the caller names the file)."""


def read_data_file(path: Path, *, max_bytes: int) -> str:
    """The UTF-8 text of the regular file ``path``; raises :class:`DataFileError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DataFileError("does not exist") from None
    except IsADirectoryError:
        raise DataFileError("is a directory, expected a TOML file") from None
    except PermissionError:
        raise DataFileError("cannot be read: permission denied") from None
    except OSError as exc:
        raise DataFileError(f"cannot be opened ({errno.errorcode.get(exc.errno or 0, 'error')})"
                            ) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise DataFileError("is a directory, expected a TOML file")
        if not stat.S_ISREG(st.st_mode):
            raise DataFileError("is not a regular file (a FIFO, a device or a socket is never "
                                "read: it could block or never end)")
        if st.st_size > max_bytes:
            raise DataFileError(f"is {st.st_size} bytes, over the {max_bytes}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:  # it grew while being read
                raise DataFileError(f"is over the {max_bytes}-byte limit")
            chunks.append(chunk)
    except OSError as exc:
        raise DataFileError(f"cannot be read ({errno.errorcode.get(exc.errno or 0, 'error')})"
                            ) from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError("is not UTF-8 text, expected a TOML file") from None
