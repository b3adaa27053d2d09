"""Reading results + a binding + the policy core's classification -> report rows.

No rule lives here: validity, tier, renewability, findings and actions all come from
:func:`policy.classification.classify_certificate`; the row a certificate becomes (its role, its
key pairing, the host findings) from :mod:`agent.rows`; the exit status from
:mod:`agent.monitoring`. This module walks the results one directory at a time, sorts by urgency
and keeps the streaming render path of the one-shot scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, NamedTuple

from policy.catalogue import Catalogue
from policy.classification import CertificateClassification, classify_certificate
from policy.decisions import Finding, Severity
from policy.intake import Binding
from policy.settings import PolicySettings

from .monitoring import EXIT_STATUS, ExitMode, ExpiryWindows, MonitorTally, exit_status
from .records import CertificateRecord, FileError, FileResult, FileSkip
from .render import (
    CSV_COLUMNS,
    csv_line,
    csv_row,
    item_json,
    iter_json,
    json_line,
    render_csv,
    render_table,
)
from .rows import (
    CertificateRow,
    FileRow,
    KeysBeside,
    certificate_row,
    pair_key,
    place_certificates,
)

__all__ = [
    "EXIT_STATUS",
    "CertificateRow",
    "FileRow",
    "RenderedLine",
    "RenderedReport",
    "ReportItem",
    "ScanReport",
    "assemble",
    "build_report",
    "classify_directory",
    "csv_header",
    "group_by_directory",
    "iter_json",
    "iter_report",
    "render_csv",
    "render_items",
    "render_line",
    "render_streaming",
    "render_table",
    "tally_item",
    "urgency_key",
]

NOTHING_READ = "no certificate was read: nothing is monitored"

ReportItem = CertificateRow | FileRow | FileError | FileSkip
"""What :func:`iter_report` yields: a classified certificate, a key file, a failure, or a file
skipped as plainly not a store entry."""


def tally_item(tally: MonitorTally, item: ReportItem) -> None:
    """Count one report item for the exit status (the daemon's summary counts the same way)."""
    if isinstance(item, FileError):
        tally.error(item.path)
    elif isinstance(item, FileSkip):
        return  # information: certbot's README beside the certificates is normal
    else:
        if isinstance(item, CertificateRow):
            tally.certificates += 1
        tally.add(host=item.host_severity, contract=item.contract_severity)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanReport:
    rows: tuple[CertificateRow, ...]
    """Sorted by urgency: worst severity first, then fewest days left."""
    files: tuple[FileRow, ...]
    errors: tuple[FileError, ...]
    """Files that failed, and certificates that failed at a position (with ``index``)."""
    at: datetime

    skipped: tuple[FileSkip, ...] = ()
    """Files plainly not a store entry (certbot's ``README``): information only."""

    @property
    def severity(self) -> Severity:
        return max([r.severity for r in self.rows] + [f.severity for f in self.files],
                   default=Severity.OK)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def tally(self, *, nothing_read: str | None = NOTHING_READ) -> MonitorTally:
        """What the exit status is decided from: every row, key file and error counted by
        :func:`tally_item`. ``nothing_read``: the UNKNOWN reason when the report has no
        certificate and no error (``None``: the caller says why itself, e.g. the daemon per
        store)."""
        tally = MonitorTally()
        for row in self.rows:
            tally_item(tally, row)
        for file_row in self.files:
            tally_item(tally, file_row)
        for error in self.errors:
            tally_item(tally, error)
        if not self.rows and not self.errors and nothing_read is not None:
            tally.unknown(nothing_read)
        return tally

    def exit_status(self, mode: ExitMode = ExitMode.HOST) -> int:
        """Nagios: 2 critical; else 3 unknown when anything could not be read, or nothing was;
        else 1 warning; else 0 (:func:`agent.monitoring.exit_status`)."""
        return exit_status(self.tally(), mode)

    def to_json(self) -> list[dict[str, Any]]:
        items: list[ReportItem] = [*self.rows, *self.files, *self.errors, *self.skipped]
        return [item_json(item) for item in items]


def _sort_key(row: CertificateRow) -> tuple[int, int, str, int]:
    return (-int(row.severity), row.classification.days_left, row.record.path, row.record.index)


def urgency_key(item: ReportItem, seq: Any) -> tuple[Any, ...]:
    """Report order: certificates by urgency (worst severity, then fewest days left), then
    key files (worst first), then failures in the order met (``seq``)."""
    if isinstance(item, CertificateRow):
        return (0, *_sort_key(item))
    if isinstance(item, FileRow):
        return (1, -int(item.severity), item.path, 0)
    if isinstance(item, FileSkip):
        return (3, seq, "", 0)
    return (2, seq, "", 0)


def group_by_directory(results: Iterable[FileResult]) -> list[FileResult]:
    """Stable reordering that puts the files of one directory next to each other, which is
    what :func:`iter_report` needs to pair keys with certificates."""
    groups: dict[str, list[FileResult]] = {}
    for result in results:
        groups.setdefault(os.path.dirname(result.path), []).append(result)
    return [result for group in groups.values() for result in group]


def iter_report(
    results: Iterable[FileResult],
    catalogue: Catalogue,
    *,
    binding: Binding,
    at: datetime,
    settings: PolicySettings | None = None,
    dir_keys: frozenset[str] = frozenset(),
    windows: ExpiryWindows | None = None,
) -> Iterator[ReportItem]:
    """Classify as the results arrive, one directory at a time, so a caller can render and
    drop each row instead of holding 100,000 classified certificates.

    Key pairing looks at the keys of the file and of its directory, so the results of one
    directory must be consecutive (:func:`group_by_directory`, or the order a walk yields).
    ``dir_keys``: SPKI SHA-256 of keys found in parts of the directory read elsewhere (a large
    directory split over the scan's workers, :mod:`agent.scanpool`).
    """
    settings = settings if settings is not None else PolicySettings()
    windows = windows if windows is not None else ExpiryWindows()
    batch: list[FileResult] = []
    current = ""
    for result in results:
        directory = os.path.dirname(result.path)
        if batch and directory != current:
            yield from _classify_directory(batch, catalogue, binding, at, settings, dir_keys,
                                           windows)
            batch = []
        current = directory
        batch.append(result)
    if batch:
        yield from _classify_directory(batch, catalogue, binding, at, settings, dir_keys,
                                       windows)


def _classify_directory(batch: Sequence[FileResult], catalogue: Catalogue, binding: Binding,
                        at: datetime, settings: PolicySettings, elsewhere: frozenset[str],
                        windows: ExpiryWindows) -> Iterator[ReportItem]:
    def classify(record: CertificateRecord) -> CertificateClassification:
        return classify_certificate(record.facts, catalogue, binding=binding, at=at,
                                    settings=settings)

    return classify_directory(batch, classify=classify, at=at, windows=windows,
                              elsewhere=elsewhere)


def classify_directory(
    batch: Sequence[FileResult],
    *,
    classify: Callable[[CertificateRecord], CertificateClassification | None],
    at: datetime,
    windows: ExpiryWindows,
    elsewhere: frozenset[str] = frozenset(),
    extra: Callable[[CertificateRecord], Sequence[Finding]] = lambda record: (),
    store: str | None = None,
) -> Iterator[ReportItem]:
    """The report items of one directory's files: the one place that turns reading results
    into rows, for ``scan``, ``inspect`` and ``agent run --once`` alike.

    Each file is its error, its skip, its position errors, then its certificates (placed among
    the whole directory: ``chain.pem`` beside ``cert.pem``; paired with the directory's keys),
    or -- without certificates -- a key file row when it has keys or findings (a 0644
    ``privkey.pem``). ``classify``: the policy core's classification (``None``: the caller
    could not classify it and said so; no row); ``extra``: findings the caller adds to a
    certificate (the daemon's escrow); ``store``: the daemon's store root.
    """
    dir_keys = KeysBeside.of(k for r in batch for k in r.keys)
    placements = place_certificates(batch)
    for result in batch:
        if result.error is not None:
            yield result.error
            continue
        if result.skipped is not None:
            yield result.skipped
            continue
        file_findings = result.findings
        if result.cert_errors:  # most files have none: no set, no copy
            yield from result.cert_errors
            position_codes = {e.code for e in result.cert_errors}
            file_findings = tuple(f for f in file_findings if f.code not in position_codes)
        if not result.certificates:
            if file_findings or result.keys:
                yield FileRow(path=result.path, keys=result.keys, findings=file_findings)
            continue
        for record in result.certificates:
            classification = classify(record)
            if classification is None:
                continue
            placement = placements[(record.path, record.index)]
            yield certificate_row(
                record, classification, placement=placement,
                pairing=pair_key(record, role=placement.role, file_keys=result.keys,
                                 dir_keys=dir_keys, elsewhere=elsewhere),
                at=at, windows=windows, file_findings=file_findings,
                extra_findings=extra(record), store=store)


def build_report(
    results: Iterable[FileResult],
    catalogue: Catalogue,
    *,
    binding: Binding,
    at: datetime,
    settings: PolicySettings | None = None,
    windows: ExpiryWindows | None = None,
) -> ScanReport:
    """Classify every certificate of ``results`` with ``binding`` as of ``at``."""
    rows: list[CertificateRow] = []
    files: list[FileRow] = []
    errors: list[FileError] = []
    skipped: list[FileSkip] = []
    for item in iter_report(group_by_directory(results), catalogue, binding=binding, at=at,
                            settings=settings, windows=windows):
        if isinstance(item, CertificateRow):
            rows.append(item)
        elif isinstance(item, FileRow):
            files.append(item)
        elif isinstance(item, FileSkip):
            skipped.append(item)
        else:
            errors.append(item)
    rows.sort(key=_sort_key)
    files.sort(key=lambda f: (-int(f.severity), f.path))
    return ScanReport(rows=tuple(rows), files=tuple(files), errors=tuple(errors), at=at,
                      skipped=tuple(skipped))


@dataclass(slots=True)
class RenderedReport:
    """A report already rendered line by line (JSON or CSV, UTF-8), sorted by urgency: what
    the one-shot scan keeps in memory instead of the classified objects (measured: ~2 KB a
    certificate as UTF-8 bytes, against ~4.4 KB as objects and ~4 KB as ``str``, which turns
    two bytes a character as soon as a Japanese explanation appears)."""

    header: bytes
    lines: list[bytes]
    separator: bytes
    footer: bytes
    worst: Severity
    errors: int
    certificates: int
    tally: MonitorTally = field(default_factory=MonitorTally)
    """What the exit status is decided from (:func:`agent.monitoring.exit_status`)."""

    @property
    def has_errors(self) -> bool:
        return self.errors > 0

    def exit_status(self, mode: ExitMode = ExitMode.HOST) -> int:
        return exit_status(self.tally, mode)

    def write(self, out: IO[bytes]) -> None:
        out.write(self.header)
        for n, line in enumerate(self.lines):
            if n:
                out.write(self.separator)
            out.write(line)
        out.write(self.footer)


class RenderedLine(NamedTuple):
    """One rendered report item: its urgency key, its text (UTF-8), what it counts for.

    A named tuple rather than a frozen dataclass because 100,000 of them cross from the scan's
    worker processes to the parent: pickling a tuple costs a third of a dataclass, ~4 µs a
    line saved."""

    key: tuple[Any, ...]
    text: bytes
    severity: int
    kind: int
    """0 certificate, 1 key file, 2 error, 3 skipped."""
    host: int = 0
    """The severity counted by ``--exit-status=host``."""
    contract: int = 0
    """The severity counted by ``--exit-status=contract``."""
    path: str = ""
    """An error's file (errors are counted by file too: :class:`MonitorTally`)."""


def render_items(items: Iterable[ReportItem], fmt: str,
                 seq_base: tuple[int, ...] = (0,)) -> list[RenderedLine]:
    """Render each item as it is classified (``fmt`` = ``json`` or ``csv``). ``seq_base``
    orders failures met in different batches (the parallel scan)."""
    render = json_line if fmt == "json" else csv_line
    out: list[RenderedLine] = []
    for seq, item in enumerate(items):
        out.append(_rendered(item, render(item), (*seq_base, seq)))
    return out


def _rendered(item: ReportItem, text: bytes, seq: Any) -> RenderedLine:
    if isinstance(item, FileError | FileSkip):
        kind = 2 if isinstance(item, FileError) else 3
        return RenderedLine(key=urgency_key(item, seq), text=text, severity=0, kind=kind,
                            path=item.path)
    return RenderedLine(key=urgency_key(item, seq), text=text, severity=int(item.severity),
                        kind=0 if isinstance(item, CertificateRow) else 1,
                        host=int(item.host_severity), contract=int(item.contract_severity))


def render_line(item: ReportItem, fmt: str) -> bytes:
    """One item as one line of ``fmt`` (``json``: a compact object, no separator; ``csv``: a
    row with its newline), UTF-8: what the streaming scan writes (:mod:`agent.scanpool`)."""
    return json_line(item) if fmt == "json" else csv_line(item)


def csv_header() -> bytes:
    """The CSV header row."""
    return csv_row(list(CSV_COLUMNS)).encode("utf-8")


def assemble(lines: list[RenderedLine], fmt: str) -> RenderedReport:
    """Sort rendered lines by urgency into one document."""
    certificates = sum(1 for line in lines if line.kind == 0)
    tally = MonitorTally(host=Severity(max((line.host for line in lines), default=0)),
                         contract=Severity(max((line.contract for line in lines), default=0)),
                         certificates=certificates)
    for line in lines:  # in the order rendered, a file's errors together (MonitorTally.error)
        if line.kind == 2:
            tally.error(line.path)
    errors = tally.errors
    lines.sort(key=lambda line: line.key)
    worst = Severity(max((line.severity for line in lines), default=0))
    if not certificates and not errors:
        tally.unknown(NOTHING_READ)
    texts = [line.text for line in lines]
    if fmt == "json":
        header, separator, footer = (b"[\n", b",\n", b"\n]\n") if texts else (b"[", b"", b"]\n")
    else:
        header, separator, footer = csv_row(list(CSV_COLUMNS)).encode("utf-8"), b"", b""
    return RenderedReport(header=header, lines=texts, separator=separator, footer=footer,
                          worst=worst, errors=errors, certificates=certificates, tally=tally)


def render_streaming(items: Iterable[ReportItem], fmt: str) -> RenderedReport:
    """Render each item as it is classified, keep only the text and its sort key, and sort
    once at the end."""
    return assemble(render_items(items, fmt), fmt)
