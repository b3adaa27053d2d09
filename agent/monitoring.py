"""What ``--exit-status`` answers, decided once for ``scan``, ``agent run --once`` and the daemon.

Two people read a certificate report. The host operator wants to be paged when this host is, or
is about to be, unable to serve TLS: a certificate expiring inside the monitoring windows, a key
that does not match or lies open, a file that should be readable and is not, a chain that does
not verify. The contract desk wants to know when the contract calls for something: a notice
due, a renewal the 90-day proviso blocks, a tier not complied with. Paging the operator of a
healthy certbot host because its 90-day certificates cannot renew a category III contract is
wrong, so every finding counts in exactly one *mode*:

``host`` (the default)
    the findings of :data:`CONTRACT_FINDINGS` and every contract action are left out;
``contract``
    only those;
``all``
    everything.

Every finding and action is still shown in the table and the JSON whatever the mode: the mode
decides the exit status, never what is printed. Unreadable files and runs that read nothing
where a certificate was expected are UNKNOWN in every mode (nothing monitored is never OK).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from policy.decisions import Decision, Finding, Severity

__all__ = [
    "CONTRACT_FINDINGS",
    "EXIT_STATUS",
    "ExitMode",
    "ExpiryWindows",
    "MonitorTally",
    "counts_in",
    "exit_status",
    "worst_counted",
]

EXIT_STATUS: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
"""``--exit-status`` codes (Nagios plugin convention)."""


class ExitMode(enum.StrEnum):
    """Which findings ``--exit-status`` counts (see the module docstring)."""

    HOST = "host"
    CONTRACT = "contract"
    ALL = "all"


CONTRACT_FINDINGS: frozenset[str] = frozenset({
    # what the certificate is to the contract (Art.1, Appx1.1)
    "ca-certificate", "item-mismatch", "binding-category-mismatch", "item-unidentified",
    "ambiguous-item", "issuer-not-recognised", "tier-not-offered", "no-cabf-policy-oid",
    "several-cabf-policy-oids", "vendor-policy-oid-mismatch",
    # Art.3 compliance and the Art.6(3) proviso
    "non-compliant", "transition-allowance", "renewal-blocked",
    # Art.4(7) escrow
    "escrowed", "escrow-failed",
})
"""Finding codes that belong to the contract desk. Every other finding code (expiry, keys,
chains, encodings, unreadable positions) is the host operator's; contract actions
(:class:`~policy.decisions.Decision`) are always the contract desk's."""


def counts_in(code: str) -> ExitMode:
    """The mode in which a finding with ``code`` counts (``HOST`` or ``CONTRACT``)."""
    return ExitMode.CONTRACT if code in CONTRACT_FINDINGS else ExitMode.HOST


def worst_counted(findings: Iterable[Finding], actions: Iterable[Decision],
                  mode: ExitMode) -> Severity:
    """The worst severity among the findings and actions that count in ``mode``."""
    worst = Severity.OK
    for finding in findings:
        if mode is ExitMode.ALL or counts_in(finding.code) is mode:
            worst = max(worst, finding.severity)
    if mode is not ExitMode.HOST:
        for action in actions:
            worst = max(worst, action.severity)
    return worst


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryWindows:
    """When a certificate's approaching end is a host finding (``expires-soon``).

    Both bounds are inclusive and count Asia/Tokyo calendar days left (``days_left``): with the
    defaults, 28 days left is a warning, 29 is nothing, 14 is critical, 15 a warning. The
    defaults are x509-certificate-exporter's alerting defaults. An expired certificate is the
    policy core's ``expired`` finding (critical), not this one.
    """

    warning_days: int = 28
    critical_days: int = 14

    def __post_init__(self) -> None:
        if self.critical_days < 0 or self.warning_days < self.critical_days:
            raise ValueError("expiry windows: need 0 <= critical_days <= warning_days, got "
                             f"critical {self.critical_days}, warning {self.warning_days}")

    def severity(self, days_left: int) -> Severity:
        if days_left <= self.critical_days:
            return Severity.CRITICAL
        if days_left <= self.warning_days:
            return Severity.WARNING
        return Severity.OK


@dataclass(slots=True)
class MonitorTally:
    """What a run has seen, for its exit status: the worst severity counted in each mode, what
    could not be read (errors, and the files they are in), and why nothing was monitored (if
    so)."""

    host: Severity = Severity.OK
    contract: Severity = Severity.OK
    errors: int = 0
    """Error items: a file that could not be read, or one position (a certificate, a key) in
    a file otherwise read."""
    error_files: int = 0
    """The files those errors are in: one file of 50 encrypted keys too costly to try is 50
    errors and 1 file, and must not read as 50 broken files."""
    certificates: int = 0
    unknown_reasons: list[str] = field(default_factory=list)
    last_error_path: str | None = field(default=None, repr=False, compare=False)
    """The file of the last error counted (see :meth:`error`)."""

    def add(self, *, host: Severity, contract: Severity) -> None:
        self.host = max(self.host, host)
        self.contract = max(self.contract, contract)

    def error(self, path: str) -> None:
        """Count one error in the file at ``path``. A file's errors arrive one after another
        (:func:`agent.report.classify_directory` yields a file's items together, and a file is
        read in one batch), so the file is counted when its first error is."""
        self.errors += 1
        if path != self.last_error_path:
            self.error_files += 1
            self.last_error_path = path

    def merge(self, part: MonitorTally) -> None:
        """Count ``part`` (a batch of other files, e.g. a scan worker's) in this tally."""
        self.add(host=part.host, contract=part.contract)
        self.errors += part.errors
        self.error_files += part.error_files
        self.certificates += part.certificates
        self.unknown_reasons.extend(part.unknown_reasons)

    def errors_text(self) -> str:
        """The errors for a summary line: ``3 error(s)``, and the files they are in when a file
        holds several (``50 error(s) in 1 file(s)``)."""
        if self.errors == self.error_files:
            return f"{self.errors} error(s)"
        return f"{self.errors} error(s) in {self.error_files} file(s)"

    def unknown(self, reason: str) -> None:
        """Record that something expected could not be monitored (a missing store, a run that
        read no certificate)."""
        self.unknown_reasons.append(reason)

    def worst(self, mode: ExitMode) -> Severity:
        if mode is ExitMode.HOST:
            return self.host
        if mode is ExitMode.CONTRACT:
            return self.contract
        return max(self.host, self.contract)

    @property
    def is_unknown(self) -> bool:
        return self.errors > 0 or bool(self.unknown_reasons)


def exit_status(tally: MonitorTally, mode: ExitMode = ExitMode.HOST) -> int:
    """The one ``--exit-status`` mapping: 2 critical, else 3 unknown (a file could not be read,
    or nothing was monitored), else 1 warning, else 0.

    Critical beats unknown: a known critical problem must page even when another file is
    unreadable; an unreadable file is worse than a known warning.
    """
    worst = tally.worst(mode)
    if worst >= Severity.CRITICAL:
        return EXIT_STATUS["critical"]
    if tally.is_unknown:
        return EXIT_STATUS["unknown"]
    if worst >= Severity.WARNING:
        return EXIT_STATUS["warning"]
    return EXIT_STATUS["ok"]
