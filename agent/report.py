"""Reading results + a binding + the policy core's classification -> report rows.

No rule lives here: validity, tier, renewability, findings and actions all come from
:func:`policy.classification.classify_certificate`. This module pairs keys with certificates,
merges the reader's findings with the policy's, sorts by urgency and renders JSON, CSV and a
table. The monitoring exit status (Nagios convention) is decided here, once, from severities.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from policy.catalogue import Catalogue
from policy.classification import CertificateClassification, classify_certificate
from policy.cliutil import to_jsonable
from policy.decisions import Finding, Severity
from policy.intake import Binding
from policy.settings import PolicySettings

from .records import CertificateRecord, FileError, FileResult, KeyRecord

__all__ = [
    "EXIT_STATUS",
    "CertificateRow",
    "FileRow",
    "ScanReport",
    "build_report",
    "iter_json",
    "render_csv",
    "render_table",
]

EXIT_STATUS: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
"""``--exit-status`` codes (Nagios plugin convention). Precedence: critical, then unknown (a file
or certificate could not be read), then warning, then ok."""


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRow:
    """One certificate at one place, with what the contract makes of it."""

    record: CertificateRecord
    classification: CertificateClassification
    findings: tuple[Finding, ...]
    """Reader findings (odd encodings, keys on disk in the same file) then the policy's."""
    key_matches: bool | None
    """Whether a private key in the same file (or, for a leaf, the same directory) matches;
    ``None`` when there is no key to compare with."""

    @property
    def severity(self) -> Severity:
        return max([f.severity for f in self.findings]
                   + [a.severity for a in self.classification.actions], default=Severity.OK)

    @property
    def location(self) -> str:
        return f"{self.record.path}#{self.record.index}"

    def to_json(self) -> dict[str, Any]:
        c = self.classification
        f = self.record.facts
        out: dict[str, Any] = {
            "kind": "certificate",
            "path": self.record.path,
            "index": self.record.index,
            "format": self.record.fmt,
        }
        base = c.to_json()
        out.update(base)
        out.update({
            "serial": f.serial,
            "issuer_org": f.issuer_org,
            "issuer_cn": f.issuer_cn,
            "not_before": _instant(f.not_before_utc),
            "not_after": _instant(f.not_after_utc),
            "key_type": f.key_type,
            "key_size": f.key_size,
            "signature_algorithm": f.signature_algorithm,
            "policy_oids": list(f.policy_oids),
            "is_ca": f.is_ca,
            "self_signed": f.self_signed,
            "key_matches": self.key_matches,
            "severity": self.severity.name.lower(),
            "findings": [x.to_json() for x in self.findings],
        })
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRow:
    """A readable file without certificates that still has something to say (a key file)."""

    path: str
    keys: tuple[KeyRecord, ...]
    findings: tuple[Finding, ...]

    @property
    def severity(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.OK)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "file",
            "path": self.path,
            "keys": [_key_json(k) for k in self.keys],
            "severity": self.severity.name.lower(),
            "findings": [x.to_json() for x in self.findings],
        }


def _key_json(key: KeyRecord) -> dict[str, Any]:
    return {"index": key.index, "key_type": key.key_type, "key_size": key.key_size,
            "encrypted": key.encrypted, "spki_sha256": key.spki_sha256,
            "mode": f"{key.mode:04o}", "owner_uid": key.owner_uid}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanReport:
    rows: tuple[CertificateRow, ...]
    """Sorted by urgency: worst severity first, then fewest days left."""
    files: tuple[FileRow, ...]
    errors: tuple[FileError, ...]
    """Files that failed, and certificates that failed at a position (with ``index``)."""
    at: datetime

    @property
    def severity(self) -> Severity:
        return max([r.severity for r in self.rows] + [f.severity for f in self.files],
                   default=Severity.OK)

    def exit_status(self) -> int:
        """Nagios: 2 critical; else 3 unknown when anything could not be read; else 1 warning;
        else 0."""
        worst = self.severity
        if worst >= Severity.CRITICAL:
            return EXIT_STATUS["critical"]
        if self.errors:
            return EXIT_STATUS["unknown"]
        if worst >= Severity.WARNING:
            return EXIT_STATUS["warning"]
        return EXIT_STATUS["ok"]

    def to_json(self) -> list[dict[str, Any]]:
        return list(_iter_objects(self))


def _pairing(results: Sequence[FileResult]) -> dict[str, set[str]]:
    by_dir: dict[str, set[str]] = defaultdict(set)
    for result in results:
        directory = os.path.dirname(result.path)
        by_dir[directory].update(k.spki_sha256 for k in result.keys if k.spki_sha256)
    return by_dir


def _key_matches(record: CertificateRecord, result: FileResult,
                 dir_keys: set[str]) -> bool | None:
    """Keys in the same file decide; otherwise a leaf is compared with the keys of its
    directory (certbot's ``cert.pem`` / ``privkey.pem``). A CA certificate beside a key (the
    chain in ``chain.pem``) is not expected to match, so it is ``None`` rather than ``False``."""
    if record.spki_sha256 is None:
        return None
    own = {k.spki_sha256 for k in result.keys if k.spki_sha256}
    if own:
        return record.spki_sha256 in own
    if not dir_keys:
        return None
    if record.spki_sha256 in dir_keys:
        return True
    return None if record.facts.is_ca else False


def _sort_key(row: CertificateRow) -> tuple[int, int, str, int]:
    return (-int(row.severity), row.classification.days_left, row.record.path, row.record.index)


def build_report(
    results: Iterable[FileResult],
    catalogue: Catalogue,
    *,
    binding: Binding,
    at: datetime,
    settings: PolicySettings | None = None,
) -> ScanReport:
    """Classify every certificate of ``results`` with ``binding`` as of ``at``."""
    results = list(results)
    settings = settings if settings is not None else PolicySettings()
    dir_keys = _pairing(results)
    rows: list[CertificateRow] = []
    files: list[FileRow] = []
    errors: list[FileError] = []
    for result in results:
        if result.error is not None:
            errors.append(result.error)
            continue
        errors.extend(result.cert_errors)
        position_codes = {e.code for e in result.cert_errors}
        file_findings = tuple(f for f in result.findings if f.code not in position_codes)
        if not result.certificates:
            if file_findings or result.keys:
                files.append(FileRow(path=result.path, keys=result.keys,
                                     findings=file_findings))
            continue
        keys_here = dir_keys.get(os.path.dirname(result.path), set())
        for record in result.certificates:
            classification = classify_certificate(record.facts, catalogue, binding=binding,
                                                  at=at, settings=settings)
            rows.append(CertificateRow(
                record=record, classification=classification,
                findings=(*record.findings, *file_findings, *classification.findings),
                key_matches=_key_matches(record, result, keys_here)))
    rows.sort(key=_sort_key)
    files.sort(key=lambda f: (-int(f.severity), f.path))
    return ScanReport(rows=tuple(rows), files=tuple(files), errors=tuple(errors), at=at)


# ---------------------------------------------------------------- rendering

def iter_json(report: ScanReport) -> Iterator[str]:
    """The report as one JSON array, streamed: one object per line.

    A scan of 100,000 certificates produces hundreds of megabytes of indented JSON; one
    compact object per line keeps memory flat, is several times faster to encode, and is
    still a single JSON document (``jq '.[]'`` reads it, ``grep`` finds a line).
    """
    yield "["
    first = True
    for obj in _iter_objects(report):
        yield ("\n" if first else ",\n") + json.dumps(obj, ensure_ascii=False,
                                                        default=to_jsonable)
        first = False
    yield "\n]\n"


def _iter_objects(report: ScanReport) -> Iterator[dict[str, Any]]:
    for row in report.rows:
        yield row.to_json()
    for file_row in report.files:
        yield file_row.to_json()
    for error in report.errors:
        yield {"kind": "error", **error.to_json()}


CSV_COLUMNS = (
    "kind", "path", "index", "sha256", "subject", "issuer", "sans", "not_before", "not_after",
    "validity_seconds", "tier", "renewable", "days_left", "item", "category", "compliant",
    "key_matches", "severity", "findings", "actions", "error_code", "error_message",
)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_csv(report: ScanReport) -> str:
    """One line per certificate, key file and error. Multi-valued cells are ``;``-separated;
    actions are ``action@due``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        c = row.classification
        f = row.record.facts
        cells: dict[str, Any] = {
            "kind": "certificate", "path": row.record.path, "index": row.record.index,
            "sha256": f.sha256, "subject": f.subject, "issuer": f.issuer,
            "sans": ";".join(f.sans), "not_before": _instant(f.not_before_utc),
            "not_after": _instant(f.not_after_utc), "validity_seconds": c.validity_seconds,
            "tier": c.tier.value, "renewable": c.renewable, "days_left": c.days_left,
            "item": c.item, "category": c.category.value, "compliant": c.compliant,
            "key_matches": row.key_matches, "severity": row.severity.name.lower(),
            "findings": ";".join(x.code for x in row.findings),
            "actions": ";".join(f"{a.action.value}@{a.due.isoformat() if a.due else ''}"
                                for a in c.actions),
        }
        writer.writerow([_csv_value(cells.get(col)) for col in CSV_COLUMNS])
    for file_row in report.files:
        cells = {"kind": "file", "path": file_row.path,
                 "severity": file_row.severity.name.lower(),
                 "findings": ";".join(x.code for x in file_row.findings)}
        writer.writerow([_csv_value(cells.get(col)) for col in CSV_COLUMNS])
    for error in report.errors:
        cells = {"kind": "error", "path": error.path, "index": error.index,
                 "error_code": error.code, "error_message": error.message}
        writer.writerow([_csv_value(cells.get(col)) for col in CSV_COLUMNS])
    return buffer.getvalue()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(report: ScanReport) -> str:
    """A human table, most urgent first, then key files and errors."""
    lines: list[str] = []
    header = (f"{'SEVERITY':<9} {'DAYS':>5} {'NOT AFTER':<10} {'TIER':<9} {'CAT':<3} "
              f"{'ITEM':<22} {'RENEW':<5} {'NAME':<28} {'FINDINGS / ACTIONS':<30} LOCATION")
    if report.rows:
        lines.append(header)
    for row in report.rows:
        c = row.classification
        f = row.record.facts
        name = f.sans[0] if f.sans else (f.subject_cn or f.subject)
        if len(f.sans) > 1:
            name += f" +{len(f.sans) - 1}"
        notes = [x.code for x in row.findings if x.severity >= Severity.WARNING]
        notes += [f"{a.action.value}@{a.due.isoformat()}" if a.due else a.action.value
                  for a in c.actions[:2]]
        lines.append(
            f"{row.severity.name.lower():<9} {c.days_left:>5} "
            f"{f.not_after_utc.date().isoformat():<10} {c.tier.value:<9} "
            f"{c.category.value:<3} {_cut(c.item or '?', 22):<22} "
            f"{'yes' if c.renewable else 'no':<5} {_cut(name, 28):<28} "
            f"{_cut(', '.join(notes) or '-', 30):<30} {row.location}")
    if report.files:
        lines.append("")
        lines.append("Files without certificates:")
        for file_row in report.files:
            codes = ", ".join(x.code for x in file_row.findings) or "-"
            lines.append(f"  {file_row.severity.name.lower():<9} {file_row.path}: "
                         f"{len(file_row.keys)} key(s); {codes}")
    if report.errors:
        lines.append("")
        lines.append("Errors:")
        for error in report.errors:
            where = error.path if error.index is None else f"{error.path}#{error.index}"
            lines.append(f"  {where}: {error.code}: {error.message}")
    lines.append("")
    lines.append(
        f"{len(report.rows)} certificate(s), {len(report.errors)} error(s); worst: "
        f"{report.severity.name.lower()} (as of {_instant(report.at)})")
    return "\n".join(lines)
