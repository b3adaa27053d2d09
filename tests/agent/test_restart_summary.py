"""After a restart that reads nothing again (the read index says every file is unchanged), the
log still says what is wrong: the lines per kind count what every file said when it was last
read (kept in the read index), and a file's own finding (a 0644 key) is said again. A reviewer
restarted the daemon with a world-readable key and an expired certificate in its stores: the
journal said nothing of either, and ``ready`` gave no summary.
"""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.logs import EventLog, configure_logging
from agent.readindex import READ_INDEX_NAME
from tests.agent.daemon_helpers import CountingReader, SteppingClock, make_daemon, store_config
from tests.certfactory import make_cert

RESTART = "finding: scan after restart, each file as last read: "


pytestmark = pytest.mark.usefixtures("restored_logger")


def _stores(root: Path) -> tuple[Path, Path]:
    """Three 90-day certificates (renewal-blocked: a warning), one of them expired long ago
    (critical), and the key of one, readable by every user (critical)."""
    store = root / "certs"
    store.mkdir(parents=True)
    issued = make_cert(not_before=datetime(2026, 1, 15, tzinfo=UTC), sans=("site.example.jp",))
    (store / "site.pem").write_bytes(issued.pem)
    key = store / "site.key"
    key.write_bytes(issued.key_pem())
    key.chmod(0o644)
    (store / "old.pem").write_bytes(
        make_cert(not_before=datetime(2025, 1, 1, tzinfo=UTC), lifetime=timedelta(days=90),
                  sans=("old.example.jp",)).pem)
    (store / "other.pem").write_bytes(
        make_cert(not_before=datetime(2026, 1, 20, tzinfo=UTC), sans=("other.example.jp",)).pem)
    return store, key


def _run(tmp_path: Path, store: Path) -> tuple[list[str], CountingReader, Any]:
    stream = io.StringIO()
    reader = CountingReader()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                                 clock=SteppingClock(), reader=reader,
                                 read_index_path=tmp_path / "state" / READ_INDEX_NAME,
                                 log=EventLog(configure_logging("text", stream=stream)))
    daemon.full_scan()
    daemon.shutdown()
    return stream.getvalue().splitlines(), reader, intake


def _kind(lines: list[str], code: str) -> str:
    (line,) = [line for line in lines if f" code={code} " in line and " count=" in line]
    return line


def test_a_restart_that_reads_nothing_says_what_is_still_wrong(tmp_path: Path) -> None:
    store, key = _stores(tmp_path)
    first, _, _ = _run(tmp_path, store)
    assert _kind(first, "expired").startswith(
        "error   finding: initial scan: 1 certificate(s) with expired in 1 file(s), e.g. ")
    lines, reader, _ = _run(tmp_path, store)
    assert reader.calls == []  # a restart parses nothing
    expired = _kind(lines, "expired")
    assert expired.startswith(f"error   {RESTART}1 certificate(s) with expired in 1 file(s), "
                              f"e.g. {store / 'old.pem'}; ")
    assert expired.endswith(" severity=critical critical=1 scan=restart")
    blocked = _kind(lines, "renewal-blocked")
    assert blocked.startswith(f"warning {RESTART}3 certificate(s) with renewal-blocked")
    (world,) = [line for line in lines if "code=private-key-world-readable" in line]
    assert world.startswith(f"error   finding: {key}: private key #0 ")
    assert " severity=critical" in world
    # the same lines a first scan of these files logs, but for what each scan was
    assert {line.split(": ", 1)[1].split(" e.g.")[0].rsplit(": ", 1)[-1]
            for line in first if " count=" in line} == \
           {line.split(": ", 1)[1].split(" e.g.")[0].rsplit(": ", 1)[-1]
            for line in lines if " count=" in line}


def test_what_changed_or_went_while_stopped_is_counted_as_it_is_now(tmp_path: Path) -> None:
    store, key = _stores(tmp_path)
    _run(tmp_path, store)
    (store / "old.pem").unlink()  # the expired one went
    key.chmod(0o600)  # the key was fixed: read again
    (store / "other.pem").write_bytes(  # renewed: a second expired one, say
        make_cert(not_before=datetime(2025, 2, 1, tzinfo=UTC), lifetime=timedelta(days=90),
                  sans=("other.example.jp",)).pem)
    lines, reader, _ = _run(tmp_path, store)
    assert sorted(reader.calls) == sorted([str(key), str(store / "other.pem")])
    expired = _kind(lines, "expired")
    assert f"1 certificate(s) with expired in 1 file(s), e.g. {store / 'other.pem'};" in expired
    assert "2 certificate(s) with renewal-blocked [Art.6(3) proviso] in 2 file(s)" in _kind(
        lines, "renewal-blocked")
    assert not [line for line in lines if "world-readable" in line]
    # and a third start, with nothing changed, says the same
    again, reader, _ = _run(tmp_path, store)
    assert reader.calls == []
    assert _kind(again, "expired").split(" e.g.")[0] == expired.split(" e.g.")[0]


def test_a_file_read_again_at_the_restart_is_said_once(tmp_path: Path) -> None:
    store, key = _stores(tmp_path)
    _run(tmp_path, store)
    key.touch()  # its ctime: read again, and still world-readable
    lines, reader, _ = _run(tmp_path, store)
    assert reader.calls == [str(key)]
    assert len([line for line in lines if "code=private-key-world-readable" in line]) == 1


def test_a_damaged_row_of_what_files_said_is_left_out_not_a_crash(tmp_path: Path) -> None:
    store, _ = _stores(tmp_path)
    _run(tmp_path, store)
    db = sqlite3.connect(tmp_path / "state" / READ_INDEX_NAME)
    db.execute("UPDATE problems SET said = x'00' WHERE CAST(path AS TEXT) LIKE '%other.pem'")
    db.commit()
    db.close()
    lines, reader, _ = _run(tmp_path, store)
    assert reader.calls == []
    # other.pem's row of the wrong shape is left out; site.pem and old.pem still count
    assert f"{RESTART}2 certificate(s) with renewal-blocked" in _kind(lines, "renewal-blocked")


def _edited(tmp_path: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    db = sqlite3.connect(tmp_path / "state" / READ_INDEX_NAME)
    for statement in statements:
        db.execute(statement, params if "?" in statement else ())
    db.commit()
    db.close()


def test_kinds_no_daemon_writes_discard_what_the_files_said_with_one_line(
        tmp_path: Path) -> None:
    """A kind with a terminal escape in it, or numbered out of range: what the files said is
    dropped (it only feeds this summary), said once, never a crash (the second re-review of
    session 13)."""
    store, _ = _stores(tmp_path)
    _run(tmp_path, store)
    _edited(tmp_path, "UPDATE kinds SET event = 'evil\x1b[31m' WHERE code = 'expired'")
    lines, reader, _ = _run(tmp_path, store)
    assert reader.calls == []
    assert len([line for line in lines if "read-index-said-discarded" in line]) == 1
    assert not [line for line in lines if RESTART in line]
    assert "\x1b" not in "\n".join(lines)


def test_a_kinds_table_of_another_shape_discards_the_index_not_the_daemon(
        tmp_path: Path) -> None:
    """Its ids as text crashed every start (a TypeError in the summary, a systemd restart
    loop): a table of another shape is a foreign index, discarded with its line."""
    store, _ = _stores(tmp_path)
    _run(tmp_path, store)
    _edited(tmp_path, "ALTER TABLE kinds RENAME TO k2",
            "CREATE TABLE kinds (id, event, code, clause)",
            "INSERT INTO kinds SELECT CAST(id AS TEXT), event, code, clause FROM k2",
            "DROP TABLE k2")
    lines, reader, _ = _run(tmp_path, store)
    assert any("read-index-discarded" in line and "another shape" in line for line in lines)
    assert len(reader.calls) > 0  # everything read again


def test_rows_of_files_the_index_does_not_hold_or_too_large_are_not_counted(
        tmp_path: Path) -> None:
    """A row for /etc/passwd made the log name it at every restart, and a 70 MB row claimed
    5,000,000 expired certificates (400 MB at start)."""
    import struct

    store, _ = _stores(tmp_path)
    _run(tmp_path, store)
    db = sqlite3.connect(tmp_path / "state" / READ_INDEX_NAME)
    (expired,) = db.execute("SELECT id FROM kinds WHERE code = 'expired'").fetchone()
    db.close()
    row = struct.pack("<iQH", 0, 7, expired | 0x8000)
    _edited(tmp_path, "INSERT INTO problems (path, said) VALUES (?, ?)",
            params=(b"/etc/passwd", row))
    lines, _, _ = _run(tmp_path, store)
    assert "/etc/passwd" not in "\n".join(lines)
    assert f"{RESTART}1 certificate(s) with expired" in _kind(lines, "expired")
    _edited(tmp_path, "UPDATE problems SET said = ? WHERE CAST(path AS TEXT) LIKE '%old.pem'",
            params=(row * 100_000,))
    lines, _, _ = _run(tmp_path, store)
    assert len([line for line in lines if "read-index-said-discarded" in line]) == 1
    assert not [line for line in lines if RESTART in line]


def test_a_restart_still_says_a_br_clause_finding_and_the_rest(tmp_path: Path) -> None:
    """A publicly trusted certificate longer than BR §6.3.2 allows: the read index refused
    its own clause (no ``§`` in the characters it accepted), so the second start logged
    read-index-said-discarded and no expired line, and the third said nothing at all (the
    review of session 16)."""
    store = tmp_path / "certs"
    store.mkdir()
    (store / "long.pem").write_bytes(
        make_cert(not_before=datetime(2026, 1, 15, tzinfo=UTC), lifetime=timedelta(days=400),
                  issuer_org="Sectigo Limited", sans=("long.example.jp",)).pem)
    (store / "old.pem").write_bytes(
        make_cert(not_before=datetime(2025, 1, 1, tzinfo=UTC), lifetime=timedelta(days=90),
                  sans=("old.example.jp",)).pem)
    first, _, _ = _run(tmp_path, store)
    said = {code: _kind(first, code).split(": ", 2)[2].removesuffix(" scan=initial")
            for code in ("expired", "public-max-validity-exceeded")}
    assert "[BR §6.3.2]" in said["public-max-validity-exceeded"]
    for _ in range(2):  # the second start, and the third
        lines, reader, _ = _run(tmp_path, store)
        assert reader.calls == []
        assert not [line for line in lines if "read-index-said-discarded" in line]
        for code, text in said.items():
            assert _kind(lines, code).split(RESTART, 1)[1] == f"{text} scan=restart"
