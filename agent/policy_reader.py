"""The agent's reader, offered to the policy commands that take certificate files.

``policy classify`` and ``contract bind`` read certificates through this adapter (the root
command registers it), so the policy package needs no crypto library and every command shares
one reader: the same formats, the same link policy as one-shot ``scan``, the same error codes.
"""

from __future__ import annotations

from pathlib import Path

from policy.certsource import CertificateEntry, CertificateFile, CertificateFileError

from .reader import read_file
from .records import ReadLimits

__all__ = ["read_certificate_file"]


def read_certificate_file(path: Path) -> CertificateFile:
    """Certificates of ``path`` as policy entries; :class:`CertificateFileError` for a file with
    none (its code is the reader's: an error's, a skip's such as ``no-certificate``, or
    ``no-certificate`` for a file of private keys only)."""
    result = read_file(Path(path), limits=ReadLimits())
    if result.error is not None:
        raise CertificateFileError(path, result.error.code, result.error.message)
    errors = tuple(
        CertificateFileError(path, failure.code, failure.message, index=failure.index)
        for failure in result.cert_errors
    )
    if result.skipped is not None:
        raise CertificateFileError(path, result.skipped.code, result.skipped.message)
    if not result.certificates and not errors:
        held = f" (it holds {len(result.keys)} private key(s))" if result.keys else ""
        raise CertificateFileError(path, "no-certificate", f"no certificate in this file{held}")
    entries = tuple(
        CertificateEntry(index=record.index, facts=record.facts, findings=record.findings)
        for record in result.certificates
    )
    return CertificateFile(path=str(path), entries=entries, errors=errors)
