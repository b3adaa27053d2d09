"""What a full scan found, for ``agent run --once`` (the long-running daemon keeps no summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .escrow import EscrowRecord
from .records import FileError
from .rows import CertificateRow

__all__ = ["ScanSummary"]


@dataclass(slots=True)
class ScanSummary:
    """What a full scan found; ``--once`` prints it. Its certificates are the one row model of
    :mod:`agent.rows` (issue 11): the same JSON object, roles, key pairing and host findings as
    ``certescrow scan``; the daemon has no row of its own."""

    files: int = 0
    certificates: list[CertificateRow] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    escrowed: list[EscrowRecord] = field(default_factory=list)
    gone: int = 0
    missing_stores: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "certificates": [c.to_json() for c in self.certificates],
            "errors": [e.to_json() for e in self.errors],
            "escrowed": [{"path": e.path, "kind": e.kind, "entry_id": e.entry_id,
                          "created": e.created} for e in self.escrowed],
            "gone": self.gone,
            "missing_stores": self.missing_stores,
        }
