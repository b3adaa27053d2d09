"""The one renderer of report items: JSON lines, CSV rows, the human table and ``inspect``'s
detail, for ``scan``, ``inspect`` and ``agent run --once`` alike.

Every string a certificate or a file name supplies is written by whoever made the file, so each
output escapes it with its own function from :mod:`untrusted.text`: the table and ``inspect``
with :func:`~untrusted.text.for_terminal` (a CN cannot clear the screen, retitle the terminal
or forge a row, no invisible character hide part of a name), CSV with
:func:`~untrusted.text.for_csv`; JSON is safe by construction, and
:func:`~untrusted.text.json_utf8` keeps a file name that is not UTF-8 exact and writes what the
table escapes as JSON's own ``\\uNNNN`` escapes.

The human table shows dates as Asia/Tokyo calendar days (NOT AFTER is the day DAYS counts to),
fits the terminal width (columns that do not fit are dropped, a name is shortened, but a date,
an action or a finding code is never cut: detail lines wrap between whole items), aligns East
Asian wide characters by their display width (``wcwidth``), shows a certificate found in
several files as one row listing its places, sorts key problems among the certificates by
severity, and gives every warning and critical row a "what to do" line.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

try:
    import orjson
except ImportError:  # pragma: no cover - a platform orjson has no wheel for (see pyproject)
    orjson = None  # type: ignore[assignment]

from policy.cliutil import to_jsonable
from policy.decisions import SEVERITY_TEXT, Finding, Severity
from policy.facts import CertificateFacts
from policy.timeparse import format_instant
from policy.tokyo import tokyo_text
from untrusted.text import (
    SPACES,
    edge_spaces_escaped,
    for_csv,
    for_terminal,
    json_utf8,
    json_utf8_checked,
)

from .monitoring import ExitMode, MonitorTally, exit_status
from .records import FileError, FileResult, FileSkip
from .rows import NO_CONTRACT_JSON, CertificateRow, FileRow, Role, advice_for, what_to_do
from .tablespill import Spilled, TableEntry, TableFile, TableRow, TableSpill

if TYPE_CHECKING:
    from .report import ReportItem, ScanReport

__all__ = [
    "CSV_COLUMNS",
    "TableEntry",
    "TableFile",
    "TableReport",
    "csv_line",
    "csv_row",
    "display_width",
    "dumps",
    "item_json",
    "iter_json",
    "iter_table",
    "json_line",
    "render_csv",
    "render_detail",
    "render_table",
    "status_line",
    "summary_pieces",
    "table_entry",
    "table_file",
    "tokyo_time",
    "urgency",
]

# ---------------------------------------------------------------- JSON

def dumps(obj: Any) -> bytes:
    """One compact JSON object as UTF-8. orjson writes it about five times faster than the
    standard library, which at 100,000 rows of ~2.5 KB is a tenth of a scan. Without orjson (a
    platform it has no wheel for), or for a value it refuses (an integer beyond 64 bits, a file
    name that is not UTF-8), the standard library writes the same document."""
    if orjson is not None:
        try:
            # No copy of orjson's result: the scan joins a batch's lines and drops them (it
            # streams; nothing holds 100,000 rows any more).
            line = orjson.dumps(obj, default=to_jsonable)
        except orjson.JSONEncodeError:
            pass
        else:
            # orjson writes DEL, C1 controls, separators, format characters (bidirectional
            # controls, U+200B...), the other invisible characters (U+3164...) and stacks of
            # marks as they are; the report escapes them as the json module's path does
            # (json_text), checked on the bytes.
            return json_utf8_checked(line)
    return json_utf8(json.dumps(obj, ensure_ascii=False, default=to_jsonable,
                                separators=(",", ":")))


def item_json(item: ReportItem) -> dict[str, Any]:
    """The JSON object of one report item (docs/agent.md, "JSON objects")."""
    if isinstance(item, FileSkip):
        return {"kind": "skipped", **item.to_json(), "severity": "info"}
    if isinstance(item, FileError):
        return {"kind": "error", **item.to_json()}
    return item.to_json()


def json_line(item: ReportItem) -> bytes:
    """One report item as one compact JSON object, UTF-8: :func:`dumps` of :func:`item_json`,
    which a certificate's row writes faster in parts (:func:`_certificate_line`) where orjson
    is installed."""
    if orjson is not None and type(item) is CertificateRow:
        line = _certificate_line(item)
        if line is not None:
            return line
    return dumps(item_json(item))


# A certificate's row, in parts. Most of a row (~2.5 KB) is what the contract says of its
# shape (policy.classification: the tier, the item, the actions' explanations in English and
# Japanese), the same for every certificate of the shape: those parts are written and
# escape-checked once, remembered by the identity of the shared object they are made of (the
# object is kept with them, so its id is never another's while remembered), and spliced
# between the parts each certificate writes of its own (path, names, instants, serial, the
# actions' ``facts``), which are checked one by one. Every part starts and ends at the
# document's own punctuation (ASCII), so checking the parts is checking the whole
# (json_utf8_checked escapes character by character; a run of marks cannot cross an ASCII
# character). tests/agent/test_render_parts.py compares the bytes with dumps(item_json(row)).

_Remembered = dict[int, tuple[Any, bytes]]
_TOLD: _Remembered = {}
"""The classification's shape_json() (contract view) as ``"validity_seconds":...,"days_left":N``."""
_TOLD_NO_CONTRACT: _Remembered = {}
"""The same with :data:`~agent.rows.NO_CONTRACT_JSON` in place (a chain certificate's row)."""
_ACTION_HEADS: _Remembered = {}
"""A decision's shape_json() as ``{"action":...,"computed":{...},"facts":``."""
_FINDINGS: _Remembered = {}
"""A finding's whole object (a shape's findings are shared; a row's own are met once)."""
_SHAPE_FINDINGS: _Remembered = {}
"""A classification's findings tuple as the row's whole ``findings`` array (without its
brackets), when the row shows exactly those (:func:`agent.rows.certificate_row` then holds
the classification's tuple itself)."""
_REMEMBERED_MAX = 1024
"""Entries per table; a table is emptied when full (a hostile store of as many shapes only
makes the rows cost what they did before). As many as the classification's shapes
(policy/classification.py): each entry keeps its source alive, and with 4,096 a scan's worker
peaked at 52 MiB for 100,000 certificates against 38 MiB with 1,024 (31 MiB at 20,000)."""


def _remember(table: _Remembered, source: Any, text: bytes) -> bytes:
    if len(table) >= _REMEMBERED_MAX:
        table.clear()
    table[id(source)] = (source, text)
    return text


def _told_part(told: dict[str, Any], contract_view: bool) -> bytes:
    """The classification's part (the caller has looked it up already: a call saved)."""
    table = _TOLD if contract_view else _TOLD_NO_CONTRACT
    shown = told if contract_view else {**told, **NO_CONTRACT_JSON}
    return _remember(table, told, json_utf8_checked(
        orjson.dumps(shown, default=to_jsonable)[1:-1]))


_SEVERITY_FINDINGS = tuple(f',"severity":"{text}","findings":['.encode() for text in SEVERITY_TEXT)
_FINDINGS_ACTIONS = b'],"actions":['
_COMMA = b","
_CLOSE = b"}"


def _findings_array(findings: tuple[Finding, ...]) -> bytes:
    """The JSON objects of ``findings``, comma-separated, each made and checked once."""
    out = []
    for finding in findings:
        hit = _FINDINGS.get(id(finding))
        if hit is not None and hit[0] is finding:
            out.append(hit[1])
        else:
            out.append(_remember(_FINDINGS, finding, json_utf8_checked(
                orjson.dumps(finding.to_json(), default=to_jsonable))))
    return _COMMA.join(out)


def _certificate_line(row: CertificateRow) -> bytes | None:
    """``dumps(item_json(row))``, written in parts (see above); ``None`` when orjson refuses a
    part (a lone surrogate, an integer beyond 64 bits): the caller's :func:`dumps` then writes
    the whole row as the json module does."""
    record = row.record
    c = row.classification
    f = c.facts
    # A UTC instant as orjson writes it with OPT_UTC_Z: format_instant's text (which is
    # orjson's too); any other offset is converted by format_instant first.
    before, after = f.not_before_utc, f.not_after_utc
    try:
        head = orjson.dumps({
            "kind": "certificate", "path": record.path, "index": record.index,
            "format": record.fmt, "role": row.role._value_, "store": row.store,
            "sha256": f.sha256, "subject": f.subject, "subject_cn": f.subject_cn,
            "issuer": f.issuer, "sans": f.sans,
            "not_before": before if before.tzinfo is UTC else format_instant(before),
            "not_after": after if after.tzinfo is UTC else format_instant(after),
        }, default=to_jsonable, option=orjson.OPT_UTC_Z)
        told = c.shape_json()
        hit = (_TOLD if row.contract_view else _TOLD_NO_CONTRACT).get(id(told))
        parts = [json_utf8_checked(head[:-1]), _COMMA,
                 hit[1] if hit is not None and hit[0] is told
                 else _told_part(told, row.contract_view),
                 _SEVERITY_FINDINGS[row.severity]]
        findings = row.findings
        hit = _SHAPE_FINDINGS.get(id(findings))
        if hit is not None and hit[0] is findings:
            parts.append(hit[1])
        else:
            array = _findings_array(findings)
            parts.append(array if findings is not c.findings
                         else _remember(_SHAPE_FINDINGS, findings, array))
        parts.append(_FINDINGS_ACTIONS)
        first = True
        for action in row.actions:
            if not first:
                parts.append(_COMMA)
            first = False
            told = action.shape_json()
            hit = _ACTION_HEADS.get(id(told))
            if hit is not None and hit[0] is told:
                parts.append(hit[1])
            else:
                parts.append(_remember(_ACTION_HEADS, told, json_utf8_checked(
                    orjson.dumps(told, default=to_jsonable)[:-1] + b',"facts":')))
            parts.append(json_utf8_checked(orjson.dumps(dict(action.facts),
                                                        default=to_jsonable)))
            parts.append(_CLOSE)
        r = record.facts
        parts.append(_SEVERITIES[row.host_severity][row.contract_severity])
        parts.append(json_utf8_checked(orjson.dumps(r.serial, default=to_jsonable)))
        parts.append(_issued_part(r))
        matches = row.key_matches
        parts.append(_KEY_MATCHES[matches] if matches is None or type(matches) is bool
                     else b',"key_matches":' + orjson.dumps(matches, default=to_jsonable) + b"}")
    except orjson.JSONEncodeError:
        return None
    return b"".join(parts)


_SEVERITIES = tuple(tuple(f'],"host_severity":"{h}","contract_severity":"{c}","serial":'.encode()
                          for c in SEVERITY_TEXT) for h in SEVERITY_TEXT)
_KEY_MATCHES = {True: b',"key_matches":true}', False: b',"key_matches":false}',
                None: b',"key_matches":null}'}
_ISSUED: dict[tuple[Any, ...], bytes] = {}
"""What a row says of its certificate's issuer and key, remembered by the values themselves
(a store's certificates share a few issuers and key types) and their types where equal values
of two types are written differently (``True == 1``, ``256 == 256.0``)."""


def _issued_part(facts: CertificateFacts) -> bytes:
    """``,"issuer_org":...,"self_signed":...`` of ``facts``, made and checked once per value."""
    key_size, is_ca, self_signed = facts.key_size, facts.is_ca, facts.self_signed
    issued = (facts.issuer_org, facts.issuer_cn, facts.key_type, key_size,
              facts.signature_algorithm, facts.policy_oids, is_ca, self_signed,
              type(key_size), type(is_ca), type(self_signed))
    part = _ISSUED.get(issued)
    if part is None:
        if len(_ISSUED) >= _REMEMBERED_MAX:
            _ISSUED.clear()
        part = _ISSUED[issued] = b"," + json_utf8_checked(orjson.dumps({
            "issuer_org": facts.issuer_org, "issuer_cn": facts.issuer_cn,
            "key_type": facts.key_type, "key_size": key_size,
            "signature_algorithm": facts.signature_algorithm,
            "policy_oids": facts.policy_oids, "is_ca": is_ca, "self_signed": self_signed,
        }, default=to_jsonable)[1:-1])
    return part


def iter_json(report: ScanReport) -> Iterator[str]:
    """The report as one JSON array, streamed: one object per line.

    A scan of 100,000 certificates produces hundreds of megabytes of indented JSON; one
    compact object per line keeps memory flat, is several times faster to encode, and is
    still a single JSON document (``jq '.[]'`` reads it, ``grep`` finds a line).
    """
    yield "["
    first = True
    for item in _items(report):
        yield ("\n" if first else ",\n") + json_line(item).decode("utf-8", "surrogateescape")
        first = False
    yield "\n]\n"


def _items(report: ScanReport) -> Iterator[ReportItem]:
    yield from report.rows
    yield from report.files
    yield from report.errors
    yield from report.skipped


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = (
    "kind", "path", "index", "sha256", "subject", "issuer", "sans", "not_before", "not_after",
    "validity_seconds", "tier", "renewable", "days_left", "item", "category", "compliant",
    "key_matches", "severity", "findings", "actions", "error_code", "error_message", "role",
)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        # A multi-valued cell of attacker text (SANs): each value escaped on its own, its ";"
        # too, so a SAN "evil.example;www.bank.example" stays one value (review 12).
        return ";".join(for_csv(str(v)).replace(";", "\\u003b") for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # the agent's own number: -3 days left is no formula to neutralise
    return for_csv(str(value))


def _csv_cells(item: ReportItem) -> list[str]:
    cells: dict[str, Any]
    if isinstance(item, CertificateRow):
        c = item.classification
        f = item.record.facts
        contract = item.contract_view
        cells = {
            "kind": "certificate", "path": item.record.path, "index": item.record.index,
            "sha256": f.sha256, "subject": f.subject, "issuer": f.issuer,
            "sans": f.sans, "not_before": format_instant(f.not_before_utc),
            "not_after": format_instant(f.not_after_utc), "validity_seconds": c.validity_seconds,
            "tier": c.tier.value, "renewable": c.renewable if contract else None,
            "days_left": c.days_left, "item": c.item if contract else None,
            "category": c.category.value if contract else None,
            "compliant": c.compliant if contract else None,
            "key_matches": item.key_matches, "severity": item.severity.name.lower(),
            "findings": ";".join(x.code for x in item.findings),
            "actions": ";".join(f"{a.action.value}@{a.due.isoformat() if a.due else ''}"
                                for a in item.actions),
            "role": item.role.value,
        }
    elif isinstance(item, FileRow):
        cells = {"kind": "file", "path": item.path, "severity": item.severity.name.lower(),
                 "findings": ";".join(x.code for x in item.findings)}
    elif isinstance(item, FileSkip):
        cells = {"kind": "skipped", "path": item.path, "severity": "info",
                 "findings": item.code}
    else:
        cells = {"kind": "error", "path": item.path, "index": item.index,
                 "error_code": item.code, "error_message": item.message}
    return [_csv_value(cells.get(col)) for col in CSV_COLUMNS]


def csv_row(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def csv_line(item: ReportItem) -> bytes:
    """One CSV row (with its newline), UTF-8; every cell escaped with :func:`for_csv`."""
    return csv_row(_csv_cells(item)).encode("utf-8")


def render_csv(report: ScanReport) -> str:
    """One line per certificate, key file, error and skipped file. Multi-valued cells are
    ``;``-separated; actions are ``action@due``."""
    return csv_row(list(CSV_COLUMNS)) + "".join(
        csv_line(item).decode("utf-8") for item in _items(report))


# ---------------------------------------------------------------- terminal text


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide characters take two)."""
    from wcwidth import wcswidth  # only the table needs it: ~9 ms of every scan's start

    width = wcswidth(text)
    return width if width >= 0 else len(text)


def _field(text: str) -> str:
    """An untrusted name or path for a cell or the end of a line: :func:`for_terminal`, and
    the spaces at its edges escaped, which a gap there does not show."""
    return edge_spaces_escaped(for_terminal(text))


def _cut(text: str, width: int) -> str:
    out: list[str] = []
    used = 0
    for char in text:
        w = max(display_width(char), 0)
        if used + w > width:
            break
        out.append(char)
        used += w
    return "".join(out)


def _shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` display columns with an ellipsis (names only, never dates).

    A cut inside a run of spaces shows that run escaped: ``host.example.jp``, thirty spaces
    and ``.evil.example`` cut to ``host.example.jp    …`` read as ``host.example.jp`` itself,
    the part that matters cut off; ``host.example.jp\\u0020\\u0…`` does not."""
    if display_width(text) <= width:
        return text
    kept = _cut(text, width - 1)
    if kept.rstrip(SPACES) != kept:
        kept = _cut(edge_spaces_escaped(kept), width - 1)
    return kept + "…"


def _pad(text: str, width: int, *, right: bool = False) -> str:
    gap = max(width - display_width(text), 0)
    return " " * gap + text if right else text + " " * gap


def _wrap(label: str, pieces: Sequence[str], width: int, *, joiner: str = ", ",
          indent: str = "    ") -> list[str]:
    """``label`` then ``pieces`` packed into lines of at most ``width`` columns, broken only
    between pieces: a piece (a date, an action, a path) is never cut; one longer than a line
    stands alone on its line."""
    lines: list[str] = []
    current = f"{indent}{label}"
    start = True
    for piece in pieces:
        addition = piece if start else joiner + piece
        if not start and display_width(current + addition) > width:
            lines.append(current + joiner.rstrip())
            current = indent + "  " + piece
        else:
            current += addition
        start = False
    lines.append(current)
    return lines


def _words(text: str) -> list[str]:
    return text.split(" ")


def tokyo_time(at: datetime) -> str:
    """An instant as Asia/Tokyo wall time, to the minute."""
    return tokyo_text(at)


@dataclass(frozen=True, slots=True)
class _Column:
    title: str
    width: int
    right: bool = False
    optional: bool = False


_COLUMNS = (
    _Column("SEVERITY", 8),
    _Column("DAYS", 5, right=True),
    _Column("NOT AFTER", 10),
    _Column("TIER", 9, optional=True),
    _Column("CAT", 3, optional=True),
    _Column("ITEM", 16, optional=True),
)
_MIN_NAME = 12


def _fit_columns(width: int) -> tuple[list[_Column], int]:
    """The columns that fit ``width`` with at least ``_MIN_NAME`` columns left for NAME (the
    optional ones are dropped from the right), and the NAME width."""
    columns = list(_COLUMNS)
    while True:
        used = sum(c.width + 1 for c in columns)
        if width - used >= _MIN_NAME or not any(c.optional for c in columns):
            return columns, max(width - used, _MIN_NAME)
        last = max(i for i, c in enumerate(columns) if c.optional)
        columns.pop(last)


_SHARED: dict[Any, Any] = {}
_SHARED_MAX = 4096


def _shared(value: Any) -> Any:
    """One object for equal small values (a row's findings are mostly the same few codes):
    the scan's workers pickle it once a batch, and the table holds it once. Bounded: a hostile
    store of many different combinations only empties the cache."""
    kept = _SHARED.get(value)
    if kept is not None:
        return kept
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()
    _SHARED[value] = value
    return value


def table_entry(row: CertificateRow) -> TableEntry:
    """The table's record of ``row``."""
    c = row.classification
    f = row.record.facts
    name = f.sans[0] if f.sans else (f.subject_cn or f.subject)
    if len(f.sans) > 1:
        name += f" +{len(f.sans) - 1}"
    contract = row.contract_view
    return TableEntry(
        severity=int(row.severity), days=c.days_left, path=row.record.path,
        position=row.record.index, sha256=bytes.fromhex(f.sha256), role=row.role.value,
        name=name, not_after=row.not_after_day.toordinal(),
        tier=c.tier.value if contract else row.role.value,
        category=c.category.value if contract else "-",
        item=_shared((c.item or " or ".join(c.candidates) or "?") if contract else "-"),
        findings=_shared(tuple((x.code, int(x.severity)) for x in row.findings)),
        actions=tuple((a.action.value, a.due.toordinal() if a.due else None, int(a.severity))
                      for a in row.actions))


def table_file(file_row: FileRow) -> TableFile:
    return TableFile(path=file_row.path, severity=int(file_row.severity),
                     keys=len(file_row.keys),
                     findings=_shared(tuple((x.code, int(x.severity))
                                            for x in file_row.findings)))


@dataclass(frozen=True, slots=True, kw_only=True)
class TableReport:
    """Everything the human table prints, and nothing more: what ``scan`` (no ``--json``)
    holds until it sorts, instead of every classified row (issue 12: 145 MiB at 20,000
    certificates against 51 MiB for ``--json``), and that spilled to a private temporary
    database (:mod:`agent.tablespill`), so that memory does not grow with the store. Close it
    when the table is written."""

    records: TableSpill
    """The certificates, key files at warning or worse, errors and skipped files, which
    also merges and orders the table's rows (:meth:`TableSpill.rows`)."""
    quiet_files: int
    """Key files without a problem: only counted."""
    at: datetime
    tally: MonitorTally

    @property
    def entries(self) -> Spilled[TableEntry]:
        """Every certificate's record, in arrival order."""
        return Spilled(lambda: self.records.entries, self.records.iter_entries)

    @property
    def files(self) -> Spilled[TableFile]:
        """Key files at warning or worse (the others are only counted: ``quiet_files``)."""
        return Spilled(lambda: self.records.files, self.records.iter_files)

    @property
    def errors(self) -> Spilled[FileError]:
        return Spilled(lambda: self.records.errors, self.records.iter_errors)

    @property
    def skipped(self) -> Spilled[FileSkip]:
        return Spilled(lambda: self.records.skipped, self.records.iter_skipped)

    def close(self) -> None:
        self.records.close()

    @classmethod
    def of(cls, report: ScanReport, tally: MonitorTally | None = None) -> TableReport:
        """The table's view of a report of classified rows (``inspect``, ``agent run``): its
        rows are merged in the report's order (already by urgency)."""
        loud = [f for f in report.files if f.severity >= Severity.WARNING]
        records = TableSpill(by_urgency=False)
        try:
            records.add_entries(table_entry(r) for r in report.rows)
            records.add_files(table_file(f) for f in loud)
            records.add_problems(report.errors, report.skipped)
        except BaseException:
            records.close()
            raise
        return cls(records=records, quiet_files=len(report.files) - len(loud), at=report.at,
                   tally=tally if tally is not None else report.tally())


def urgency(entry: TableEntry) -> tuple[int, int, str, int]:
    """Most urgent first: worst severity, then fewest days left (then the place)."""
    return (-entry.severity, entry.days, entry.path, entry.position)


def _render_table_row(row: TableRow, columns: Sequence[_Column], name_width: int,
                      width: int) -> list[str]:
    # more days than the column holds: a certificate "valid until 9999" (RFC 5280's no
    # well-defined expiration) shows no count rather than breaking the columns
    days = "-" if row.days is None or abs(row.days) > 99_999 else str(row.days)
    shown = row.shown
    actions: tuple[tuple[str, int | None, int], ...] = ()
    if isinstance(shown, TableEntry):
        cells = {"NOT AFTER": date.fromordinal(shown.not_after).isoformat(),
                 "TIER": shown.tier, "CAT": shown.category, "ITEM": shown.item}
        name = shown.name
        actions = shown.actions
        places = [p.location for p in row.places or ()]
    else:
        cells = {"NOT AFTER": "-", "TIER": "key", "CAT": "-", "ITEM": "-"}
        name = f"private key file ({shown.keys} key(s))" if shown.keys else "file"
        places = [shown.path]
    severity = Severity(row.severity)
    values = {"SEVERITY": severity.name.lower(), "DAYS": days, **cells}
    head = " ".join(_pad(for_terminal(_shorten(values[c.title], c.width)) if c.optional
                         else values[c.title], c.width, right=c.right) for c in columns)
    lines = [f"{head} {_shorten(_field(name), name_width)}".rstrip()]
    dues = [(action, date.fromordinal(due).isoformat() if due is not None else None, sev)
            for action, due, sev in actions]
    notes = [code for code, sev in row.findings if sev >= Severity.WARNING]
    notes += [f"{action}@{due}" if due else action for action, due, _ in dues]
    if notes:
        lines.extend(_wrap("findings/actions: ", notes, width))
    if severity >= Severity.WARNING:
        advice = advice_for(row.findings, dues)
        if advice:
            lines.extend(_wrap("what to do: ", _words("; ".join(advice)), width, joiner=" "))
    lines.extend(_wrap("in: ", [_field(p) for p in places], width))
    return lines


def render_table(report: ScanReport | TableReport, *, width: int | None = None,
                 mode: ExitMode = ExitMode.HOST, tally: MonitorTally | None = None) -> str:
    """The human table: most urgent first (key files among the certificates), each row with
    its findings, what to do and where it was found; then errors and skipped files. ``tally``:
    what the summary line says (default: the report's own; the daemon's knows its stores)."""
    return "\n".join(iter_table(report, width=width, mode=mode, tally=tally))


def iter_table(report: ScanReport | TableReport, *, width: int | None = None,
               mode: ExitMode = ExitMode.HOST, tally: MonitorTally | None = None
               ) -> Iterator[str]:
    """:func:`render_table` line by line: a table of 100,000 certificates is ~25 MB of text,
    which ``scan`` writes as it goes instead of joining it first."""
    if isinstance(report, TableReport):
        yield from _iter_table(report, width=width, mode=mode, tally=tally)
        return
    table_report = TableReport.of(report, tally)
    try:
        yield from _iter_table(table_report, width=width, mode=mode, tally=tally)
    finally:
        table_report.close()


def _iter_table(table_report: TableReport, *, width: int | None, mode: ExitMode,
                tally: MonitorTally | None) -> Iterator[str]:
    if tally is None:
        tally = table_report.tally
    width = width if width is not None else shutil.get_terminal_size().columns
    width = max(width, 40)
    columns, name_width = _fit_columns(width)
    records = table_report.records
    started = False
    for row in records.rows():
        if not started:
            header = " ".join(_pad(c.title, c.width, right=c.right) for c in columns)
            yield f"{header} NAME"
            started = True
        yield from _render_table_row(row, columns, name_width, width)
    if table_report.errors:
        if started:
            yield ""  # a blank line between two sections, never before the first
        started = True
        yield "Errors (could not be read):"
        for error in table_report.errors:
            where = error.path if error.index is None else f"{error.path}#{error.index}"
            yield from _wrap("", _words(for_terminal(
                f"{where}: {error.code}: {error.message}")), width, joiner=" ", indent="  ")
    if table_report.skipped:
        if started:
            yield ""
        started = True
        yield "Skipped (not certificate store entries, info):"
        for skip in table_report.skipped:
            yield from _wrap("", _words(for_terminal(
                f"{skip.path}: {skip.code}: {skip.message}")), width, joiner=" ", indent="  ")
    if started:
        yield ""
    yield from _wrap("", summary_pieces(
        tally, mode=mode, at=table_report.at, certificates=records.entries,
        skipped=records.skipped), width, joiner=" ", indent="")
    chain = records.hidden
    quiet_keys = table_report.quiet_files
    if chain or quiet_keys:
        yield from _wrap("", _words(
            f"({chain} chain certificate(s) shown with their leaves, {quiet_keys} key "
            "file(s) without a problem; --json lists them)"), width, joiner=" ", indent="")


def _status_pieces(report: ScanReport, mode: ExitMode) -> list[str]:
    return summary_pieces(report.tally(), mode=mode, at=report.at,
                          certificates=len(report.rows), skipped=len(report.skipped))


def status_line(report: ScanReport, *, mode: ExitMode = ExitMode.HOST) -> str:
    """The summary under the table: counts, the monitoring verdict and why, the time."""
    return " ".join(_status_pieces(report, mode))


def summary_pieces(tally: MonitorTally, *, mode: ExitMode, at: datetime, certificates: int,
                   skipped: int = 0) -> list[str]:
    """The summary line in pieces that a narrow terminal may put on separate lines (a count, a
    verdict and the time are never split)."""
    verdict = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}[exit_status(tally, mode)]
    pieces = [f"{certificates} certificate(s),", f"{tally.errors_text()},",
              f"{skipped} skipped;", f"{mode.value} status {verdict}"]
    pieces += [f"({for_terminal(reason)})" for reason in tally.unknown_reasons]
    pieces.append(f"(as of {tokyo_time(at)})")
    return pieces


# ---------------------------------------------------------------- inspect


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _instant(at: datetime) -> str:
    """An instant as its Asia/Tokyo day and time, with the UTC instant it is."""
    try:
        return f"{tokyo_time(at)} ({format_instant(at)})"
    except OverflowError:  # 9999-12-31 plus nine hours is past what datetime holds
        return format_instant(at)


def render_certificate(row: CertificateRow, heading: str) -> list[str]:
    """``inspect``'s block for one certificate: every field, escaped for the terminal."""
    t = for_terminal
    c = row.classification
    f = row.record.facts
    days, rest = divmod(c.validity_seconds, 86_400)
    lines = [
        t(heading),
        f"  role:           {row.role.value}",
        f"  subject:        {_field(f.subject)}",
        f"  issuer:         {_field(f.issuer)}",
        f"  serial:         {t(f.serial)}",
        f"  sha256:         {f.sha256}",
        f"  SANs:           {', '.join(_field(san) for san in f.sans) or '-'}",
        f"  not before:     {_instant(f.not_before_utc)}",
        f"  not after:      {row.not_after_day.isoformat()} ({c.days_left} day(s) left, "
        f"Asia/Tokyo; {format_instant(f.not_after_utc)})",
        f"  validity:       {days} d{f' {rest} s' if rest else ''} ({c.validity_seconds} s) "
        f"-> tier {c.tier.value}",
        f"  key:            {t(f.key_type)}{f' {f.key_size}' if f.key_size else ''}; "
        f"signature {t(f.signature_algorithm)}",
        f"  policies:       {t(', '.join(f.policy_oids)) or '-'}",
        f"  CA / self-signed: {_yes_no(f.is_ca)} / {_yes_no(f.self_signed)}",
    ]
    if row.contract_view:
        lines += [
            f"  item:           {t(c.item or ' or '.join(c.candidates) or '?')} "
            f"(category {c.category.value}); contracted tier "
            f"{c.contracted_tier.value if c.contracted_tier else '-'}; compliant "
            f"{_yes_no(c.compliant)}",
            f"  renewable:      {_yes_no(c.renewable)}",
        ]
    else:
        why = ("it comes with a leaf" if row.role in (Role.INTERMEDIATE, Role.ROOT)
               else "no server certificate beside it")
        lines.append(f"  contract:       - (not a contract certificate: {why})")
    lines += [
        f"  key matches:    {_yes_no(row.key_matches)}",
        f"  severity:       {row.severity.name.lower()} (host {row.host_severity.name.lower()},"
        f" contract {row.contract_severity.name.lower()})",
    ]
    if row.findings:
        lines.append("  findings:")
        for finding in row.findings:
            clause = f" ({finding.clause})" if finding.clause else ""
            lines.append(f"    [{finding.severity.name.lower()}] {finding.code}{clause}: "
                         f"{t(finding.message)}")
    if row.actions:
        lines.append("  actions:")
        for action in row.actions:
            due = f" due {action.due.isoformat()}" if action.due else ""
            lines.append(f"    {action.action.value}{due} ({action.clause}): "
                         f"{t(action.explanation_en)}")
    advice = what_to_do(row.findings, row.actions, limit=4)
    if advice and row.severity >= Severity.WARNING:
        lines.append("  what to do:")
        lines.extend(f"    - {t(a)}" for a in advice)
    return lines


def render_detail(report: ScanReport, result: FileResult | None) -> str:
    """``inspect FILE|DIR``: every certificate in the order of ``report.rows`` (the caller's:
    file by file, each in file order), the keys of ``result`` (one file), each key file's
    findings under its name (a directory has several) and the failures, all escaped for the
    terminal."""
    t = for_terminal
    lines: list[str] = []
    for row in report.rows:
        if lines:
            lines.append("")
        lines.extend(render_certificate(
            row, f"Certificate #{row.record.index} ({row.record.fmt}) {row.record.path}"))
    if result is not None and result.keys:
        lines.append("")
        lines.append("Private keys:")
        for key in result.keys:
            lines.append(f"  #{key.index}: {t(key.key_type)}"
                         f"{f' {key.key_size}' if key.key_size else ''}, "
                         f"{'encrypted' if key.encrypted else 'unencrypted'}, mode "
                         f"{key.mode:04o}, owner uid {key.owner_uid}")
    for file_row in report.files:
        if file_row.findings:
            lines.append(t(f"Key file {file_row.path}:"))
        for finding in file_row.findings:
            lines.append(f"  [{finding.severity.name.lower()}] {finding.code}: "
                         f"{t(finding.message)}")
    for skip in report.skipped:
        lines.append(t(f"Skipped: {skip.path}: {skip.code}: {skip.message}"))
    if report.errors:
        lines.append("")
        for error in report.errors:
            where = error.path if error.index is None else f"{error.path}#{error.index}"
            lines.append(t(f"Error: {where}: {error.code}: {error.message}"))
    return "\n".join(lines)
