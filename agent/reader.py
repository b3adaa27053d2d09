"""Read one file of a certificate store: safe I/O, then content recognition, never an exception.

This is the function the one-shot scan and the daemon share. Whatever goes wrong with a file
(it is missing, a FIFO, a loop, too large, garbage, a PKCS#12 nobody has the password for) comes
back as a :class:`~agent.records.FileResult` with one :class:`~agent.records.FileError`; only a
bug in the agent itself raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .formats import parse_content
from .records import FileError, FileResult, ReadLimits
from .safeio import ReadError, read_bytes

__all__ = ["ReadLimits", "read_file"]


def read_file(
    path: Path | str,
    *,
    limits: ReadLimits,
    passwords: Sequence[bytes] = (),
    keep_key_pem: bool = False,
    keep_der: bool = False,
) -> FileResult:
    """Read and parse ``path`` under ``limits``' link policy and size cap.

    ``passwords`` open PKCS#12 files and encrypted keys (no password and the empty password are
    always tried first). ``keep_key_pem``/``keep_der`` keep the private key PEM and certificate
    DER in the records, for escrow; otherwise no key material leaves this function.
    """
    name = str(path)
    try:
        got = read_bytes(path, limits=limits)
    except ReadError as failure:
        return FileResult(path=name, error=FileError(path=name, code=failure.code,
                                                     message=failure.message))
    st = got.st
    parsed = parse_content(
        got.data, path=name, passwords=passwords, keep_key_pem=keep_key_pem,
        keep_der=keep_der, mode=st.st_mode & 0o7777, owner_uid=st.st_uid,
    )
    return FileResult(
        path=name,
        certificates=tuple(parsed.certificates) if parsed.error is None else (),
        keys=tuple(parsed.keys) if parsed.error is None else (),
        error=parsed.error,
        findings=tuple(parsed.findings),
        stat=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns),
        cert_errors=tuple(parsed.problems) if parsed.error is None else (),
        skipped=parsed.skipped if parsed.error is None else None,
    )
