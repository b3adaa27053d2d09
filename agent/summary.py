"""What a full scan found, for ``agent run --once`` (the long-running daemon keeps no summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policy.decisions import Finding, Severity

from .escrow import EscrowRecord
from .records import CertificateRecord, FileError

__all__ = ["CertificateSeen", "ScanSummary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSeen:
    """One certificate as the daemon saw and classified it (for ``agent run --once``)."""

    record: CertificateRecord
    store: str
    key_matches: bool | None
    classification: Any
    findings: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        facts = self.record.facts
        out: dict[str, Any] = {
            "path": self.record.path,
            "index": self.record.index,
            "store": self.store,
            "sha256": facts.sha256,
            "subject": facts.subject,
            "issuer": facts.issuer,
            "sans": list(facts.sans),
            "not_before": facts.not_before_utc,
            "not_after": facts.not_after_utc,
            "key_matches": self.key_matches,
        }
        if self.classification is not None:
            data = self.classification.to_json()
            for key in ("validity_seconds", "tier", "renewable", "days_left", "item",
                        "category", "compliant", "actions"):
                if key in data:
                    out[key] = data[key]
            findings = list(data.get("findings", []))
        else:
            findings = []
        findings.extend(f.to_json() for f in (*self.record.findings, *self.findings))
        out["findings"] = findings
        return out

    @property
    def severity(self) -> Severity:
        worst = Severity.OK
        for finding in (*self.record.findings, *self.findings):
            worst = max(worst, finding.severity)
        if self.classification is not None:
            for finding in self.classification.findings:
                worst = max(worst, finding.severity)
            for action in self.classification.actions:
                worst = max(worst, action.severity)
        return worst


@dataclass(slots=True)
class ScanSummary:
    """What a full scan found; ``--once`` prints it."""

    files: int = 0
    certificates: list[CertificateSeen] = field(default_factory=list)
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
