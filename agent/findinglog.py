"""The daemon's per-certificate warnings, and the first scan's one line per kind.

A start reads every certificate again, so the first scan does not log one warning per
certificate: it counts them by kind (event, code, clause) and logs one line per kind with the
count and an example path (the per-certificate lines go to debug level). From then on a
certificate that changes is logged on its own.

The count is of certificates, not of the places they were found: certbot keeps one certificate
in four files (``live/cert.pem``, ``live/fullchain.pem`` and their ``archive/`` generations), and
"4 certificate(s)" for one would send an operator looking for three that do not exist. The
places are counted apart ("in N file(s)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policy.decisions import Severity

from .logs import EventLog
from .rows import CertificateRow

__all__ = ["FindingLog"]


@dataclass(slots=True)
class _Kind:
    """One kind of finding counted by the first scan: the distinct certificates (SHA-256)
    and the files they were found in."""

    example: str
    certificates: set[str] = field(default_factory=set)
    places: set[str] = field(default_factory=set)


class FindingLog:
    """Logs what the contract says about each certificate the daemon accepts."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._tally: dict[tuple[str, str, str], _Kind] | None = None

    @property
    def counting(self) -> bool:
        return self._tally is not None

    def start_counting(self) -> None:
        """From now until :meth:`flush`, count per kind instead of logging each certificate."""
        self._tally = {}

    def certificate(self, seen: CertificateRow) -> None:
        # The row (agent/rows.py) already left the contract view out of a chain certificate
        # (certbot's chain.pem) and put its validity on its leaf's row.
        where = seen.location
        logged: set[str] = set()
        for finding in seen.findings:
            if finding.severity >= Severity.WARNING:
                logged.add(finding.code)
                self._warn(("finding", finding.code, finding.clause), seen,
                           f"{where}: {finding.message}", code=finding.code,
                           clause=finding.clause)
        # What the contract now calls for (a non-compliant certificate, a notice due), unless a
        # finding above already said it.
        for action in seen.actions:
            if action.severity >= Severity.WARNING and action.action.value not in logged:
                due = action.due.isoformat() if action.due else ""
                self._warn(("action", action.action.value, action.clause), seen,
                           f"{where}: {action.explanation_en}", action=action.action.value,
                           clause=action.clause, due=due)

    def _warn(self, kind: tuple[str, str, str], seen: CertificateRow, message: str,
              **fields: Any) -> None:
        """A per-certificate warning; while counting it is counted (and logged at debug
        level) for :meth:`flush`."""
        fields.update(path=seen.record.path, sha256=seen.record.facts.sha256)
        if self._tally is None:
            self.log.warning(kind[0], message, **fields)
            return
        self.log.debug(kind[0], message, **fields)
        entry = self._tally.get(kind)
        if entry is None:
            entry = self._tally[kind] = _Kind(example=seen.record.path)
        entry.certificates.add(seen.record.facts.sha256)
        entry.places.add(seen.record.path)

    def flush(self) -> None:
        """One line per kind of finding or action counted; back to one line per certificate."""
        tally, self._tally = self._tally, None
        for (event, code, clause), kind in sorted((tally or {}).items()):
            count, files, example = len(kind.certificates), len(kind.places), kind.example
            self.log.warning(
                event,
                f"initial scan: {count} certificate(s) with {code}"
                + (f" [{clause}]" if clause else "")
                + f" in {files} file(s), e.g. {example}; `certescrow scan` or "
                "`certescrow policy actions` lists them",
                count=count, files=files, example=example, clause=clause,
                **({"code": code} if event == "finding" else {"action": code}),
            )
