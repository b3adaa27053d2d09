"""A public file (a certificate, a CSR) that a command writes as the last step of something it
commits elsewhere: a key stored in the vault, a certificate registered in the ledger.

Written after the commit, a file that cannot be written (a mistyped directory, no permission)
left the commit done and nothing to show for it: an orphan key in the vault, a registered
certificate that superseded the host's working one and that nobody can hand out. Written
before, a failed commit would leave a file naming a key that does not exist. So the file is
*staged* first, complete and fsynced, beside its destination (which proves the directory is
there and writable, and that the name is free), the commit runs, and only then is the staged
file given its name. A failed commit removes the staged file; a process killed between the
commit and the naming leaves a hidden ``.NAME.staged-PID-RANDOM`` (public data, harmless) and
the commit, never a file for a key that is not there.

An existing destination is never replaced without ``force``, as ``vault export --out``: a
``fleet-ca.pem`` overwritten by the certificate of a CA made in the wrong vault would make
the service refuse every agent. A destination that is not a regular file (a link, a device)
is refused even with ``force``: replacing the name would turn ``/dev/null`` or the
``/dev/stdout`` link into a file for everyone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from vault import VaultConflictError
from vault.secretfile import fsync_dir

from .errors import OutputFileError

__all__ = ["StagedFile", "stage_public_file"]


@dataclass(slots=True)
class StagedFile:
    """A complete file beside ``path``, named ``path`` by :meth:`publish`."""

    path: Path
    staged: Path
    force: bool

    def publish(self) -> None:
        """Give the staged file its name: never over a file that appeared meanwhile unless
        ``force``."""
        try:
            if self.force:
                os.replace(self.staged, self.path)
            else:
                os.link(self.staged, self.path)  # fails with EEXIST, never replaces
                os.unlink(self.staged)
        except FileExistsError:
            self.discard()
            raise VaultConflictError(f"{self.path} appeared meanwhile; it was left as it is "
                                     "(use --force to overwrite it)") from None
        except OSError as exc:
            self.discard()
            raise OutputFileError(f"{self.path}: cannot write: {exc.strerror}") from None
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.staged)


def stage_public_file(path: Path, data: bytes, *, force: bool) -> StagedFile:
    """Write ``data`` (public: mode 0644) to a staging file beside ``path``, refusing first a
    ``path`` that exists (unless ``force``) and a directory that cannot take the file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write: {exc.strerror} (nothing was stored or "
                              "registered)") from None
    if mode is not None and not stat.S_ISREG(mode):
        # --force replaces the name: a link (/dev/stdout, a path config management keeps)
        # or a device (/dev/null) would become a regular file for everyone (the re-review);
        # a directory is said as such (click's own check made it a usage error, exit 2)
        what = ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
                else "not a regular file")
        raise OutputFileError(f"{path} is {what}; give the path of a regular file to write "
                              "(nothing was stored or registered)")
    if mode is not None and not force:
        raise VaultConflictError(f"{path} exists; use --force to overwrite it (nothing was "
                                 "stored or registered)")
    directory = path.parent
    staged = directory / f".{path.name}.staged-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                     | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        reason = (f"directory {directory} does not exist" if isinstance(exc, FileNotFoundError)
                  else exc.strerror)
        raise OutputFileError(f"{path}: cannot write: {reason} (nothing was stored or "
                              "registered)") from None
    try:
        os.fchmod(fd, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise OutputFileError(f"{path}: cannot write: {exc.strerror} (nothing was stored or "
                              "registered)") from None
    os.close(fd)
    return StagedFile(path=path, staged=staged, force=force)
