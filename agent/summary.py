"""What a full scan found, for ``agent run --once`` (the long-running daemon keeps no summary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.decisions import Finding
from policy.facts import CertificateFacts

from .escrow import EscrowRecord
from .records import FileError, FileResult, FileSkip
from .render import item_json
from .rows import CertificateRow, FileRow

__all__ = ["ScanSummary"]


@dataclass(slots=True)
class ScanSummary:
    """What a full scan found; ``--once`` prints it. Its rows are built as ``certescrow
    scan`` builds them (:func:`agent.report.classify_directory`, one directory at a time, after
    the scan): the same certificate rows (roles, key pairing, host findings), key file rows
    (a 0644 ``privkey.pem``), errors and skipped files; the daemon has no row of its own."""

    files: int = 0
    """Files the scan accounted for (read now, or unchanged since the read index read them),
    each once."""
    files_read: int = 0
    """Of all files met, those read (parsed) by this scan: a set re-read while it settled
    counts each time it was read; unchanged files are not read again."""
    certificates: list[CertificateRow] = field(default_factory=list)
    key_files: list[FileRow] = field(default_factory=list)
    """Readable files without certificates that have keys or findings (scan's ``file``)."""
    errors: list[FileError] = field(default_factory=list)
    skipped: list[FileSkip] = field(default_factory=list)
    escrowed: list[EscrowRecord] = field(default_factory=list)
    gone: int = 0
    missing_stores: list[str] = field(default_factory=list)
    read: dict[str, tuple[Any, FileResult]] = field(default_factory=dict, repr=False)
    """Every file the scan accounted for, by path: (its store, its reading), in the order met;
    the rows are made from them once the scan is done (:meth:`collect`)."""
    previous: dict[tuple[str, int], CertificateFacts] = field(default_factory=dict, repr=False)
    """The certificate a renewal replaced at a place (the Art.3 proviso's transition)."""
    extra: dict[tuple[str, int], tuple[Finding, ...]] = field(default_factory=dict, repr=False)
    """The daemon's own findings for a certificate (escrow)."""

    def collect(self, store: Any, result: FileResult, *,
                previous: Mapping[int, CertificateFacts] | None = None,
                extra: Mapping[int, Sequence[Finding]] | None = None) -> None:
        """Account for ``result`` (read now, or unchanged since the index read it) under
        ``store``; a path met twice is counted once, as last met."""
        self.read.pop(result.path, None)
        self.read[result.path] = (store, result)
        for index, facts in (previous or {}).items():
            self.previous[(result.path, index)] = facts
        for index, findings in (extra or {}).items():
            if findings:
                self.extra[(result.path, index)] = tuple(findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_read": self.files_read,
            "certificates": [c.to_json() for c in self.certificates],
            "key_files": [item_json(f) for f in self.key_files],
            "errors": [item_json(e) for e in self.errors],
            "skipped": [item_json(s) for s in self.skipped],
            "escrowed": [{"path": e.path, "kind": e.kind, "entry_id": e.entry_id,
                          "created": e.created} for e in self.escrowed],
            "gone": self.gone,
            "missing_stores": self.missing_stores,
        }
