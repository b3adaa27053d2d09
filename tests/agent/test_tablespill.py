"""The human table's records spilled to SQLite (:mod:`agent.tablespill`) make exactly the table
the in-memory algorithm made before (a copy of it is kept here as the reference), and the scan's
parent keeps no record per certificate."""

from __future__ import annotations

import io
import os
import sys
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import scanpool
from agent.monitoring import MonitorTally
from agent.records import FileError, FileSkip
from agent.render import _fit_columns, _render_table_row, urgency
from agent.rows import Role
from agent.tablespill import TableEntry, TableFile, TableRow, TableSpill, sort_key
from policy.decisions import Severity

# ---------------------------------------------------------------- the reference

_CHAIN_ROLES = frozenset({Role.INTERMEDIATE.value, Role.ROOT.value})


def _reference_merge(rows: Sequence[TableEntry]) -> list[TableRow]:
    """``agent.render._merge`` as it was before the spill (commit e842d27)."""
    groups: dict[tuple[bytes, str], list[TableEntry]] = {}
    for row in rows:
        groups.setdefault((row.sha256, row.role), []).append(row)
    out: list[TableRow] = []
    for group in groups.values():
        if len(group) == 1:
            (one,) = group
            out.append(TableRow(one.severity, one.days, one.location, one, one.findings,
                                (one,)))
            continue
        worst = max(group, key=lambda r: (r.severity, -r.days))
        findings: dict[str, int] = {}
        for row in group:
            for code, severity in row.findings:
                kept = findings.get(code)
                if kept is None or severity > kept:
                    findings[code] = severity
        out.append(TableRow(max(r.severity for r in group), worst.days, group[0].location,
                            worst, tuple(findings.items()), tuple(group)))
    return out


def _reference_rows(batches: Sequence[Sequence[TableEntry]], files: Sequence[TableFile], *,
                    by_urgency: bool) -> tuple[list[TableRow], int]:
    """The table's rows and the chain count as ``scan`` (``by_urgency``: ``_Writer.finish``
    sorted) or ``TableReport.of`` made them, then ``iter_table``."""
    entries = [e for batch in batches for e in batch]
    file_list = list(files)
    if by_urgency:
        entries.sort(key=urgency)
        file_list.sort(key=lambda f: (-f.severity, f.path))
    shown = [r for r in entries if r.role not in _CHAIN_ROLES or r.severity >= Severity.WARNING]
    table = _reference_merge(shown) + [
        TableRow(f.severity, None, f.path, f, f.findings, None) for f in file_list]
    table.sort(key=lambda r: (-r.severity, r.days is None,
                              r.days if r.days is not None else 0, r.first))
    return table, len(entries) - len(shown)


# ---------------------------------------------------------------- random records

# Few values, so that places collide: equal SHA-256 with different roles, one certificate in
# several files, equal paths and positions, ties in severity and days. Paths mix ASCII,
# Japanese, a character beyond the BMP (UTF-16 would sort it before U+E000), lone surrogates
# (a file name that is not UTF-8, after os.fsdecode), "#" (a place is "path#position") and
# prefixes of one another.
_PATH_PIECES = ["a", "b", "#", "1", "/", "é", "証", "\ud800", "\udcff", "\ue000", "\U0001f600",
                "\x7f"]
_paths = st.lists(st.sampled_from(_PATH_PIECES), max_size=4).map("".join)
_texts = st.text(alphabet=st.sampled_from([*_PATH_PIECES, " ", "x"]), max_size=5)
_severities = st.sampled_from([int(s) for s in Severity])
_codes = st.sampled_from(["expired", "expires-soon", "chain-expired", "no-san", "key-mismatch"])
_findings = st.lists(st.tuples(_codes, _severities), max_size=3).map(tuple)
_actions = st.lists(st.tuples(st.sampled_from(["notify", "renewal-blocked"]),
                              st.none() | st.integers(730_000, 740_000), _severities),
                    max_size=2).map(tuple)

_entries = st.builds(
    TableEntry,
    severity=_severities,
    days=st.integers(-2, 2) | st.integers(-3_000_000, 3_000_000),
    path=_paths,
    position=st.integers(0, 11),  # "#10" sorts before "#9" as a string
    sha256=st.sampled_from([b"\x00" * 32, b"\x01" * 32, b"\xff" * 32]),
    role=st.sampled_from([r.value for r in Role]),
    name=_texts, not_after=st.integers(1, 3_652_059), tier=_texts, category=_texts,
    item=_texts, findings=_findings, actions=_actions)
_files = st.builds(TableFile, path=_paths, severity=_severities, keys=st.integers(0, 3),
                   findings=_findings)


def _spilled(batches: Sequence[Sequence[TableEntry]], files: Sequence[TableFile], *,
             by_urgency: bool) -> tuple[list[TableRow], int]:
    spill = TableSpill(by_urgency=by_urgency)
    try:
        for batch in batches:
            spill.add_entries(batch)
        spill.add_files(files)
        rows = list(spill.rows())
        assert list(spill.iter_entries()) == [e for batch in batches for e in batch]
        assert list(spill.iter_files()) == list(files)
        return rows, spill.hidden
    finally:
        spill.close()


def _lines(rows: Sequence[TableRow]) -> list[str]:
    columns, name_width = _fit_columns(100)
    return [line for row in rows for line in _render_table_row(row, columns, name_width, 100)]


@settings(max_examples=400, deadline=None)
@given(batches=st.lists(st.lists(_entries, max_size=8), max_size=5),
       files=st.lists(_files, max_size=4), by_urgency=st.booleans())
def test_the_spilled_table_is_the_in_memory_table(
        batches: list[list[TableEntry]], files: list[TableFile], by_urgency: bool) -> None:
    expected, expected_chain = _reference_rows(batches, files, by_urgency=by_urgency)
    rows, chain = _spilled(batches, files, by_urgency=by_urgency)
    assert rows == expected
    assert chain == expected_chain
    assert _lines(rows) == _lines(expected)


@given(st.text(), st.text())
def test_sort_keys_order_as_python_orders_strings(a: str, b: str) -> None:
    assert (sort_key(a) < sort_key(b)) == (a < b)
    assert sort_key(a).decode("utf-8", "surrogatepass") == a


@given(errors=st.lists(st.builds(FileError, path=_paths, code=_texts, message=_texts,
                                 index=st.none() | st.integers(0, 5),
                                 key_index=st.none() | st.integers(0, 5)), max_size=4),
       skipped=st.lists(st.builds(FileSkip, path=_paths, code=_texts, message=_texts),
                        max_size=4))
def test_errors_and_skipped_files_come_back_in_order(errors: list[FileError],
                                                     skipped: list[FileSkip]) -> None:
    spill = TableSpill(by_urgency=True)
    try:
        spill.add_problems(errors[:2], skipped[:1])
        spill.add_problems(errors[2:], skipped[1:])
        assert list(spill.iter_errors()) == errors
        assert list(spill.iter_skipped()) == skipped
        assert (spill.errors, spill.skipped) == (len(errors), len(skipped))
    finally:
        spill.close()


def _entry(i: int) -> TableEntry:
    return TableEntry(severity=i % 4, days=i % 97, path=f"store/d{i // 250}/cert{i}.pem",
                      position=0, sha256=i.to_bytes(32, "big"), role="leaf",
                      name=f"host{i}.example.jp", not_after=739_000 + i % 97, tier="6m",
                      category="III", item="byo", findings=(("expires-soon", 2),),
                      actions=(("notify", 738_990, 1),))


def _open_files() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_the_spill_file_is_unlinked_as_soon_as_it_exists() -> None:
    """SQLite deletes the temporary database of ``connect("")`` by unlinking it when it opens
    it: a process killed with SIGKILL leaves nothing behind."""
    before = _open_files()
    spill = TableSpill(by_urgency=True)
    try:
        for start in range(0, 20_000, 250):  # past the page cache: the file is written
            spill.add_entries(_entry(i) for i in range(start, start + 250))
        opened = {fd: target for fd, target in _open_files().items()
                  if before.get(fd) != target and target.startswith("/")}
        assert opened, "the spill never wrote its file"
        assert all(target.endswith(" (deleted)") for target in opened.values()), opened
    finally:
        spill.close()


def test_the_scans_parent_keeps_no_record_per_certificate() -> None:
    """The scan's writer spills each batch (one ``executemany``) and keeps none: 20,000 more
    certificates add no Python memory to speak of, and every one is in the spill."""
    writer = scanpool._Writer(io.BytesIO(), "table", at=datetime(2026, 2, 1, tzinfo=UTC))

    def batch(start: int) -> scanpool._Rendered:
        part = scanpool._TablePart(entries=[_entry(i) for i in range(start, start + 250)],
                                   files=[TableFile(path=f"k{start}.key", severity=3, keys=1,
                                                    findings=(("x", 3),))],
                                   quiet_files=1, errors=[], skipped=[])
        return scanpool._Rendered(text=b"", lines=0, tally=MonitorTally(), context=0, files=250,
                                  table=part)

    tracemalloc.start()
    try:
        for start in range(0, 2_000, 250):
            writer.write(batch(start))
        settled, _ = tracemalloc.get_traced_memory()
        for start in range(2_000, 22_000, 250):
            writer.write(batch(start))
        grown = tracemalloc.get_traced_memory()[0] - settled
    finally:
        tracemalloc.stop()
    outcome = writer.finish()
    table = outcome.table
    assert table is not None
    try:
        # a TableEntry is ~1 KB: 20,000 kept would be ~20 MB
        assert grown < 256 * 1024, grown
        assert len(table.entries) == 22_000
        assert len(table.files) == 88
        assert table.quiet_files == 88
        rows = table.records.rows()
        assert next(rows).severity == Severity.CRITICAL
        assert sum(1 for _ in rows) == 22_000 + 88 - 1
        for value in (getattr(writer, name) for name in scanpool._Writer.__slots__):
            assert not isinstance(value, list | dict | tuple | set) or len(value) < 250
    finally:
        table.close()


def test_nothing_is_added_once_the_rows_are_read(tmp_path: Path) -> None:
    spill = TableSpill(by_urgency=False)
    try:
        spill.add_entries([_entry(1)])
        assert len(list(spill.rows())) == 1
        with pytest.raises(RuntimeError, match="already read"):
            spill.add_entries([_entry(2)])
        assert len(list(spill.rows())) == 1  # read again: the same table
    finally:
        spill.close()
