"""The daemon's per-certificate warnings, and the first scan's one line per kind.

A start reads every certificate again, so the first scan does not log one warning per
certificate: it counts them by kind (event, code, clause) and logs one line per kind with the
count and an example path (the per-certificate lines go to debug level). So does the first scan
of a store a reload added, for that store, and the scan of a store that takes over files another
store read (one removed from inside it). From then on a certificate that changes is logged on
its own.

The count is of certificates, not of the places they were found: certbot keeps one certificate
in four files (``live/cert.pem``, ``live/fullchain.pem`` and their ``archive/`` generations), and
"4 certificate(s)" for one would send an operator looking for three that do not exist. The
places are counted apart ("in N file(s)").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policy.decisions import SEVERITY_TEXT, Severity

from .index import KindCount
from .logs import EventLog
from .rows import CertificateRow

__all__ = ["SCANS", "FindingLog", "Kind", "LoggedWarning", "level_of", "warnings_of"]

SCANS = {"initial": "initial scan", "reload": "scan after reload",
         "restart": "scan after restart, each file as last read"}
"""What a scan whose warnings are counted was (the ``scan`` field), and how its lines begin: the
first scan after a start that read every file, the one after a SIGHUP that changed a store's
binding, or the first after a restart, whose unchanged files were not read again (what they
said when they were read is counted from the read index: agent/readindex.py)."""


def level_of(severity: Severity | str) -> int:
    """The log level of a finding or action of ``severity``: a critical one is an error, so
    that ``journalctl -p err`` (the ``<3>`` prefix) shows it; a warning is a warning."""
    critical = (severity == "critical" if isinstance(severity, str)
                else severity >= Severity.CRITICAL)
    return logging.ERROR if critical else logging.WARNING


@dataclass(slots=True)
class _Kind:
    """One kind of finding counted by the first scan: the distinct certificates (SHA-256)
    and the files they were found in."""

    example: str
    certificates: set[int] = field(default_factory=set)
    """The first 64 bits of each one's SHA-256 (a number: a first scan of 100,000
    certificates would otherwise keep 100,000 hex strings, 11 MiB, for a count)."""
    places: set[str] = field(default_factory=set)
    critical: set[int] = field(default_factory=set)
    """Of :attr:`certificates`, those for which it was critical (an ``expired`` is always,
    a ``notify`` action when overdue): the kind's line is an error when there is one."""
    critical_example: str = ""

    def count(self, certificate: int, path: str, severity: str) -> None:
        self.certificates.add(certificate)
        self.places.add(path)
        if severity == "critical":
            self.critical.add(certificate)
            if not self.critical_example:
                self.critical_example = path


Kind = tuple[str, str, str, str]
"""``(event, code, clause, severity)``: ``finding`` or ``action``, its code (an action's name),
its clause, and ``warning`` or ``critical``."""

LoggedWarning = tuple[Kind, str, dict[str, str]]
"""``((event, code, clause, severity), message, fields)``: one warning about one
certificate."""


def warnings_of(seen: CertificateRow) -> tuple[LoggedWarning, ...]:
    """What the contract says about a certificate that is worth a warning: its findings of
    warning severity or worse, then what it calls for (a non-compliant certificate, a notice
    due) unless a finding already said it. Pure: a read-ahead worker computes it too."""
    # The row (agent/rows.py) already left the contract view out of a chain certificate
    # (certbot's chain.pem) and put its validity on its leaf's row.
    where = seen.location
    found: list[LoggedWarning] = []
    logged: set[str] = set()
    for finding in seen.findings:
        if finding.severity >= Severity.WARNING:
            logged.add(finding.code)
            severity = SEVERITY_TEXT[finding.severity]
            found.append((("finding", finding.code, finding.clause, severity),
                          f"{where}: {finding.message}",
                          {"code": finding.code, "clause": finding.clause,
                           "severity": severity}))
    for action in seen.actions:
        if action.severity >= Severity.WARNING and action.action.value not in logged:
            due = action.due.isoformat() if action.due else ""
            severity = SEVERITY_TEXT[action.severity]
            found.append((("action", action.action.value, action.clause, severity),
                          f"{where}: {action.explanation_en}",
                          {"action": action.action.value, "clause": action.clause,
                           "due": due, "severity": severity}))
    return tuple(found)


def _certificate_id(sha256: str) -> int:
    try:
        return int(sha256[:16], 16)
    except ValueError:  # not hex (facts made by hand): still one number per certificate
        return hash(sha256)


class FindingLog:
    """Logs what the contract says about each certificate the daemon accepts."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._tally: dict[tuple[str, str, str], _Kind] | None = None
        self._scan = "initial"
        self._store: str | None = None

    @property
    def counting(self) -> bool:
        return self._tally is not None

    def start_counting(self, scan: str = "initial", *, store: str | None = None) -> None:
        """From now until :meth:`flush`, count per kind instead of logging each certificate;
        ``scan`` (a key of :data:`SCANS`) says what the lines will say the scan was, ``store``
        the one store it was of (the first scan of a store a reload added), if not all."""
        self._tally = {}
        self._scan = scan
        self._store = store

    @property
    def counts_kinds_only(self) -> bool:
        """Whether what it is given now is only counted, by kind: counting, and not logging
        at debug level (so a warning's message and fields are not used)."""
        return self._tally is not None and not self.log.logger.isEnabledFor(logging.DEBUG)

    def certificate(self, seen: CertificateRow) -> None:
        self.warnings(seen.record.path, seen.record.facts.sha256, warnings_of(seen))

    def warnings(self, path: str, sha256: str, warnings: Sequence[LoggedWarning]) -> None:
        """Log (or, while counting, count) the warnings :func:`warnings_of` found for the
        certificate ``sha256`` at ``path`` (a read-ahead worker may have found them; when
        :attr:`counts_kinds_only`, only their kinds are read)."""
        tally = self._tally
        if tally is not None and not self.log.logger.isEnabledFor(logging.DEBUG):
            # The first scan's usual case (100,000 certificates, two warnings each): counted,
            # with no debug line built to be thrown away.
            certificate = _certificate_id(sha256) if warnings else 0
            for kind, _, _ in warnings:
                entry = tally.get(kind[:3])
                if entry is None:
                    entry = tally[kind[:3]] = _Kind(example=path)
                entry.count(certificate, path, kind[3])
            return
        for kind, message, fields in warnings:
            self._warn(kind, path, sha256, message, **fields)

    def _warn(self, kind: Kind, path: str, sha256: str, message: str,
              **fields: Any) -> None:
        """A per-certificate warning (an error when critical); while counting it is counted
        (and logged at debug level) for :meth:`flush`."""
        fields.update(path=path, sha256=sha256)
        if self._tally is None:
            self.log.log(level_of(kind[3]), kind[0], message, **fields)
            return
        self.log.debug(kind[0], message, **fields)
        entry = self._tally.get(kind[:3])
        if entry is None:
            entry = self._tally[kind[:3]] = _Kind(example=path)
        entry.count(_certificate_id(sha256), path, kind[3])

    def stop_counting(self) -> None:
        """Back to one line per certificate, forgetting what was counted (the caller logs the
        count from elsewhere: :meth:`log_kinds`)."""
        self._tally = None

    def flush(self) -> None:
        """One line per kind of finding or action counted, an error when one certificate of
        the kind was critical; back to one line per certificate."""
        tally, self._tally = self._tally, None
        self.log_kinds(self._scan, [
            (event, code, clause, len(kind.certificates), len(kind.critical), len(kind.places),
             kind.critical_example or kind.example)
            for (event, code, clause), kind in sorted((tally or {}).items())],
            store=self._store)

    def log_kinds(self, scan: str, kinds: Iterable[KindCount], *,
                  store: str | None = None) -> None:
        """One line per kind: ``(event, code, clause, certificates, critical, files,
        example)``, the example one of the critical ones when there are any; ``store``: the
        one store counted (``initial scan of /srv/new: …``, field ``store``)."""
        label = SCANS.get(scan, scan) + (f" of {store}" if store is not None else "")
        where = {"store": store} if store is not None else {}
        for event, code, clause, count, critical, files, example in kinds:
            severity = "critical" if critical else "warning"
            self.log.log(
                level_of(severity),
                event,
                f"{label}: {count} certificate(s) with {code}"
                + (f" [{clause}]" if clause else "")
                + (f" ({critical} critical)" if 0 < critical < count else "")
                + f" in {files} file(s), e.g. {example}; `certescrow scan` or "
                "`certescrow policy actions` lists them",
                count=count, files=files, example=example, clause=clause,
                **({"code": code} if event == "finding" else {"action": code}),
                severity=severity, critical=critical, scan=scan, **where,
            )
