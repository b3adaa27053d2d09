"""The daemon's read index on disk: a restart reads nothing that did not change, and an index
that cannot be trusted is discarded whole (issue 12)."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.logs import EventLog, configure_logging
from agent.reader import read_file
from agent.readindex import READ_INDEX_NAME, PersistentIndex, ReadIndexFile
from agent.records import FileError, FileResult, FileSkip, ReadLimits
from policy.decisions import Finding, Severity
from tests.agent.daemon_helpers import CountingReader, SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def _store(root: Path, count: int = 12) -> Path:
    for i in range(count):
        write(root / f"d{i % 3}" / f"site{i:03}.pem", make_cert(sans=(f"s{i}.example.jp",)).pem)
    return root


def _log() -> tuple[EventLog, io.StringIO]:
    stream = io.StringIO()
    return EventLog(configure_logging("text", stream=stream)), stream


def _start(tmp_path: Path, store: Path, **kwargs: object) -> tuple[object, CountingReader]:
    reader = CountingReader()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                                 clock=SteppingClock(), reader=reader,
                                 read_index_path=tmp_path / "state" / READ_INDEX_NAME, **kwargs)
    daemon.full_scan()
    daemon.shutdown()
    return intake, reader


def test_a_restart_on_an_unchanged_store_reads_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path / "certs")
    _, first = _start(tmp_path, store)
    assert len(first.calls) == 12
    intake, again = _start(tmp_path, store)
    assert again.calls == []  # nothing read, nothing parsed
    assert intake.reported == []  # type: ignore[attr-defined]  # the binding did not change
    assert intake.gone == []  # type: ignore[attr-defined]


def test_a_restart_reads_exactly_what_changed_while_it_was_down(tmp_path: Path) -> None:
    store = _store(tmp_path / "certs")
    _start(tmp_path, store)
    replacement = make_cert(sans=("s4.example.jp",), serial=404)
    changed = store / "d1" / "site004.pem"
    write(changed, replacement.pem)
    gone = store / "d2" / "site005.pem"
    gone.unlink()
    chmodded = store / "d0" / "site000.pem"
    chmodded.chmod(0o600)  # the ctime changes: read again (a finding may change)
    intake, reader = _start(tmp_path, store)
    assert sorted(reader.calls) == sorted([str(changed), str(chmodded)])
    assert [o.facts.sha256 for o in intake.reported  # type: ignore[attr-defined]
            if o.location == str(changed)] == [replacement.sha256]
    assert intake.gone == [str(gone)]  # type: ignore[attr-defined]


def _index_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / READ_INDEX_NAME


@pytest.mark.parametrize("damage", ["garbage", "another-database", "another-host",
                                    "edited-row", "not-a-result", "version-3", "version-4"])
def test_an_index_that_cannot_be_trusted_is_discarded_with_a_log_line(
        tmp_path: Path, damage: str) -> None:
    store = _store(tmp_path / "certs")
    _start(tmp_path, store)
    path = _index_file(tmp_path)
    if damage == "garbage":
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    elif damage == "another-database":
        path.unlink()
        other = sqlite3.connect(path)
        other.execute("CREATE TABLE journal (id INTEGER, body TEXT)")
        other.commit()
        other.close()
    else:
        db = sqlite3.connect(path)
        if damage == "another-host":
            db.execute("UPDATE meta SET value = 'web2' WHERE name = 'host'")
        elif damage == "version-3":  # its facts were stored before policy.facts.storable
            db.execute("UPDATE meta SET value = '3' WHERE name = 'version'")
        elif damage == "version-4":  # it does not know what its files said (no problems)
            db.execute("UPDATE meta SET value = '4' WHERE name = 'version'")
            db.execute("DROP TABLE problems")
        elif damage == "edited-row":  # the row's digest catches it at the start
            raw, entry = db.execute("SELECT path, entry FROM files WHERE CAST(path AS TEXT) "
                                    "LIKE '%site003.pem'").fetchone()
            edited = bytearray(entry)
            edited[-1] ^= 1  # one bit of the certificate's SHA-256
            db.execute("UPDATE files SET entry = ? WHERE path = ?", (bytes(edited), raw))
        else:  # digests recomputed, but an entry that is not one
            from agent.readindex import row_digest

            raw, raw_target, result_sha256 = db.execute(
                "SELECT path, target, result_sha256 FROM files LIMIT 1").fetchone()
            path = os.fsdecode(raw)
            target = os.fsdecode(raw_target) if raw_target else path
            db.execute("UPDATE files SET entry = ?, digest = ? WHERE path = ?",
                       (b"x", row_digest(path, b"x", target, result_sha256), raw))
        db.commit()
        db.close()
    log, stream = _log()
    _intake, reader = _start(tmp_path, store, log=log)
    assert len(reader.calls) == 12  # nothing trusted: every file read again
    lines = [line for line in stream.getvalue().splitlines() if "read index discarded" in line]
    assert len(lines) == 1, stream.getvalue()
    assert "evil" not in stream.getvalue()
    if damage.startswith("version-"):
        # an upgrade, said as one (it read "tables missing" for an index of the last release)
        assert f"written by another release (index version {damage[-1]}" in lines[0]
    # and a fresh index was written: the next restart reads nothing
    _, reader = _start(tmp_path, store)
    assert reader.calls == []


def _forge(db: sqlite3.Connection, blob: bytes | None = None) -> str:
    """Rewrite site003.pem's row with its digests recomputed (what only someone who can
    write the state directory could do): a wrong type inside, or ``blob``."""
    import hashlib

    from agent.readindex import row_digest

    raw, entry, raw_target, old = db.execute(
        "SELECT f.path, f.entry, f.target, r.result FROM files f JOIN results r "
        "ON r.path = f.path WHERE CAST(f.path AS TEXT) LIKE '%site003.pem'").fetchone()
    if blob is None:
        blob = old.replace(b'"s3.example.jp"', b"3")
    result_sha256 = hashlib.sha256(blob).digest()
    path = os.fsdecode(raw)
    target = os.fsdecode(raw_target) if raw_target else path
    db.execute("UPDATE results SET result = ? WHERE path = ?", (blob, raw))
    db.execute("UPDATE files SET result_sha256 = ?, digest = ? WHERE path = ?",
               (result_sha256, row_digest(path, entry, target, result_sha256), raw))
    return path


def _restart(tmp_path: Path, store: Path) -> tuple[Any, Any, CountingReader, io.StringIO]:
    """A daemon over the index a first start left (not started yet): it, its intake, its
    reader counting what it reads, and its log."""
    log, stream = _log()
    reader = CountingReader()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                                 clock=SteppingClock(), reader=reader, log=log,
                                 read_index_path=_index_file(tmp_path))
    return daemon, intake, reader, stream


@pytest.mark.parametrize("forgery", ["edited-result", "wrong-type", "unstorable-text"])
def test_a_result_that_does_not_check_out_is_never_served(tmp_path: Path,
                                                         forgery: str) -> None:
    """Results are checked when they are read back (a start reads none): an edited one, or
    a forged one of the wrong type, is refused then, and its file read again."""
    store = _store(tmp_path / "certs")
    _start(tmp_path, store)
    db = sqlite3.connect(_index_file(tmp_path))
    if forgery == "edited-result":
        forged = str(store / "d0" / "site003.pem")
        db.execute("UPDATE results SET result = replace(result, 's3.example.jp', "
                   "'evil.example') WHERE path = ?", (os.fsencode(forged),))
    elif forgery == "unstorable-text":  # what an index of version 3 could hold (review 4)
        old = db.execute("SELECT result FROM results WHERE CAST(path AS TEXT) "
                         "LIKE '%site003.pem'").fetchone()[0]
        forged = _forge(db, old.replace(b'"s3.example.jp"', b'"s3\\u0000evil.example.jp"'))
    else:
        forged = _forge(db)
    db.commit()
    db.close()
    daemon, _, reader, stream = _restart(tmp_path, store)
    daemon.full_scan()
    assert reader.calls == []  # a start reads no result back
    # read back when asked for (a change beside it, a gone file, the heartbeat's inventory)
    assert daemon.index.get(forged) is None
    assert "entry discarded" in stream.getvalue()  # refused when read back, not served
    assert len(daemon.sync.queue) == 1  # and queued to be read again, not forgotten
    assert "evil" not in stream.getvalue()
    daemon.full_scan()
    assert reader.calls == [forged]  # and that file alone is read again
    result = daemon.index.get(forged)
    assert result is not None
    assert result.certificates[0].facts.sans == ("s3.example.jp",)
    daemon.shutdown()


def test_every_kind_of_result_round_trips(tmp_path: Path) -> None:
    issued = make_cert(sans=("a.example.jp", "192.0.2.1"))
    write(tmp_path / "s" / "both.pem", issued.pem + issued.key_pem(), 0o644)
    write(tmp_path / "s" / "junk.pem", b"\x00junk")
    results = [read_file(tmp_path / "s" / name, limits=ReadLimits(), keep_key_pem=True,
                         keep_der=True) for name in ("both.pem", "junk.pem")]
    results.append(FileResult(
        path=str(tmp_path / "s" / "README"),
        skipped=FileSkip(path=str(tmp_path / "s" / "README"), code="readme", message="m"),
        findings=(Finding(code="x", clause="Art.1", message="日本語", severity=Severity.CRITICAL),),
        cert_errors=(FileError(path="p", code="c", message="m", index=2),)))
    log, _ = _log()
    index = PersistentIndex(ReadIndexFile(tmp_path / "ri.sqlite3", host="h", log=log))
    index.load()
    for n, result in enumerate(results):
        index.put(result.path, (1, n, 3, 4, 5), result, target="/t")
    index.flush()
    index.file.close()
    again = PersistentIndex(ReadIndexFile(tmp_path / "ri.sqlite3", host="h", log=log))
    assert again.load() == 3
    for result in results:
        back = again.get(result.path)
        assert back is not None
        # key material is never written
        assert all(k.pem is None for k in back.keys)
        assert all(c.der is None for c in back.certificates)
        bare = replace(result, keys=tuple(replace(k, pem=None) for k in result.keys),
                       certificates=tuple(replace(c, der=None) for c in result.certificates))
        assert back == bare
    assert again.key_of(results[0].path) == (1, 0, 3, 4, 5)
    assert oct(os.stat(tmp_path / "ri.sqlite3").st_mode & 0o777) == "0o600"


_WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from agent.logs import EventLog
from agent.readindex import PersistentIndex, ReadIndexFile
from agent.records import FileResult
index = PersistentIndex(ReadIndexFile(__import__("pathlib").Path(sys.argv[2]), host="h",
                                      log=EventLog()))
index.load()
n = 0
while True:
    for i in range(500):
        n += 1
        index.put(f"/s/{i:04}.pem", (1, n, 3, 4, 5), FileResult(path=f"/s/{i:04}.pem"))
    index.flush()
    print(n, flush=True)
"""


def test_a_writer_killed_mid_write_leaves_a_loadable_index(tmp_path: Path) -> None:
    path = tmp_path / "ri.sqlite3"
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, repo, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # at least one transaction committed
    time.sleep(0.3)  # then killed wherever it is
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    log, stream = _log()
    index = PersistentIndex(ReadIndexFile(path, host="h", log=log))
    assert index.load() == 500  # a whole committed batch: all 500 paths, none torn
    assert "discarded" not in stream.getvalue()
    generations = {(index.key_of(f"/s/{i:04}.pem")[1] - 1) // 500  # type: ignore[index]
                   for i in range(500)}
    assert len(generations) == 1  # every row from the same transaction


def test_a_first_scan_read_ahead_by_workers_reports_what_one_process_does(
        tmp_path: Path) -> None:
    from agent import readpool

    store = tmp_path / "certs"
    pem = make_cert(sans=("many.example.jp",)).pem
    for i in range(readpool.MIN_FILES + 100):
        write(store / f"d{i // 200}" / f"c{i:04}.pem", pem)
    reported = {}
    for workers in (0, 1):
        daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path / str(workers),
                                     clock=SteppingClock())
        daemon.sync.read_ahead_workers = workers
        daemon.full_scan()
        daemon.shutdown()
        assert daemon.sync.files_read == readpool.MIN_FILES + 100
        assert daemon.sync.files_read_ahead == (readpool.MIN_FILES + 100) * workers
        reported[workers] = sorted(((o.location, o.facts) for o in intake.reported),
                                   key=lambda pair: pair[0])
    assert reported[1] == reported[0]
    assert len(reported[1]) == readpool.MIN_FILES + 100


def test_without_orjson_the_json_module_writes_a_result_that_reads_back_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.readindex as readindex

    issued = make_cert(sans=("a.example.jp",))
    write(tmp_path / "both.pem", issued.pem + issued.key_pem(), 0o600)
    result = read_file(tmp_path / "both.pem", limits=ReadLimits(), keep_key_pem=True)
    decode = readindex._decoder(FileResult, {})
    fast = readindex._dump_result(result)
    monkeypatch.setattr(readindex, "orjson", None)
    slow = readindex._dump_result(result)
    assert b"PRIVATE KEY" not in fast + slow  # key material is never written
    assert decode(readindex._loads(fast)) == decode(readindex._loads(slow))
    assert decode(readindex._loads(slow)).keys[0].pem is None


def test_a_file_name_that_is_not_utf8_is_remembered_too(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    name = os.fsdecode(b"caf\xe9.pem")  # Latin-1 on disk: a lone surrogate in Python
    write(store / name, make_cert(sans=("cafe.example.jp",)).pem)
    _, first = _start(tmp_path, store)
    assert first.calls == [str(store / name)]
    _, again = _start(tmp_path, store)
    assert again.calls == []


def test_a_first_start_read_ahead_writes_the_rows_a_stat_and_a_hash_of_each_file_give(
        tmp_path: Path) -> None:
    """What the workers read and send back (issue 12: as field values, agent/readpool.py) is
    indexed as read: each row holds its file's own stat identity and the SHA-256 of the
    certificate in it, and a restart reads nothing."""
    import hashlib
    import struct

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from agent import readpool

    store = tmp_path / "certs"
    pems = [make_cert(sans=(f"w{k}.example.jp",), serial=300 + k).pem for k in range(5)]
    count = readpool.MIN_FILES + 50
    for i in range(count):
        write(store / f"d{i // 100}" / f"c{i:04}.pem", pems[i % 5])
    path = tmp_path / "state" / READ_INDEX_NAME
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock(), read_index_path=path)
    daemon.sync.read_ahead_workers = 1
    daemon.full_scan()
    daemon.shutdown()
    assert daemon.sync.files_read_ahead == count
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT path, entry FROM files").fetchall()
    assert len(rows) == count
    for raw_path, entry in rows:
        name = os.fsdecode(raw_path)
        st = os.stat(name)
        assert struct.unpack_from("<QQQqq", entry) == (
            st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with open(name, "rb") as f:
            der = x509.load_pem_x509_certificate(f.read()).public_bytes(Encoding.DER)
        assert entry[41:] == struct.pack("<I32s", 0, hashlib.sha256(der).digest())
    _, again = _start(tmp_path, store)
    assert again.calls == []


def test_what_workers_send_back_is_rebuilt_equal_to_what_they_read(tmp_path: Path) -> None:
    """Results cross from the workers as field values (agent/readpool.py's reducers): every
    record type comes back equal, of its own type."""
    from multiprocessing.reduction import ForkingPickler

    from agent import readpool

    issued = make_cert(sans=("k.example.jp",))
    write(tmp_path / "both.pem", issued.pem + issued.key_pem(), 0o644)
    write(tmp_path / "junk.pem", b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    write(tmp_path / "README", b"just text\n")
    results = [read_file(tmp_path / name, limits=ReadLimits())
               for name in ("both.pem", "junk.pem", "README", "missing.pem")]
    results.append(FileResult(path="/x", error=FileError(path="/x", code="c", message="m"),
                              skipped=FileSkip(path="/x", code="s", message="m"),
                              findings=(Finding(code="f", clause="", message="m",
                                                severity=Severity.WARNING),)))
    assert any(r.keys for r in results)
    assert any(r.findings for r in results)
    back = ForkingPickler.loads(bytes(ForkingPickler.dumps(results)))
    assert back == results
    assert [type(r) for r in back] == [type(r) for r in results]
    assert type(back[0].certificates[0].facts) is type(results[0].certificates[0].facts)
    assert readpool._SETTERS  # (the reducers are registered)


def test_a_read_ahead_worker_records_a_parser_warning_on_its_certificate_only(
        tmp_path: Path) -> None:
    """Read-ahead workers record the parser's warnings once per batch, as the one-shot scan's
    do (issue 12): a worker counts as running one thread (its parent lifeline is a bare
    thread, agent/workerlife.py), and each warning is still a finding on the certificate that
    caused it, and on no other."""
    import threading

    from agent import readpool
    from tests.agent.scan_fixtures import nonpositive_serial_der

    ahead = readpool.ReadAhead([], limits=ReadLimits(), passwords=(), workers=1)
    try:
        assert ahead._pool is not None
        assert ahead._pool.submit(threading.active_count).result(timeout=60) == 1
    finally:
        ahead.close()
    store = tmp_path / "certs"
    good = make_cert(sans=("good.example",)).der
    count = readpool.MIN_FILES + 100
    for i in range(count):
        write(store / f"{i:04}.der", nonpositive_serial_der(-1) if i in (3, 450) else good)
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock())
    daemon.sync.read_ahead_workers = 1
    daemon.full_scan()
    try:
        assert daemon.sync.files_read_ahead == count
        flagged = set()
        for i in range(count):
            result = daemon.index.get(str(store / f"{i:04}.der"))
            assert result is not None
            assert len(result.certificates) == 1
            if any(f.code == "non-positive-serial" for f in result.certificates[0].findings):
                flagged.add(i)
    finally:
        daemon.shutdown()
    assert flagged == {3, 450}


def test_a_result_discarded_during_a_collecting_scan_is_read_again_not_reported_gone(
        tmp_path: Path) -> None:
    """``agent run --once`` collects a summary, which reads stored results back: one that did
    not check out was discarded and its file taken for gone by the reconciliation after the
    scan (the ledger recorded it gone; the summary left it out) instead of being read again
    (review 5)."""
    store = _store(tmp_path / "certs")
    _start(tmp_path, store)
    db = sqlite3.connect(_index_file(tmp_path))
    forged = _forge(db)
    db.commit()
    db.close()
    daemon, intake, reader, stream = _restart(tmp_path, store)
    summary = daemon.full_scan(collect=True)
    daemon.shutdown()
    assert reader.calls == [forged]  # read again, and only it
    assert "entry discarded" in stream.getvalue()
    assert intake.gone == []  # type: ignore[attr-defined]
    assert forged in summary.read  # accounted for: its certificate is in the summary
    assert summary.files_read == 1
    assert len(summary.read) == 12


def test_a_restart_rereads_only_the_escrow_directories_that_hold_a_key(tmp_path: Path) -> None:
    """Every file of an escrow store was read again at every start (so that a vault replaced
    while the daemon was down gets its keys back), against what the docs promise: only the
    directories holding a key are (review 12). The replaced vault still gets its key."""
    from vault import KeyFileSource, open_vault

    store = _store(tmp_path / "certs")  # d0, d1, d2: certificates only
    issued = make_cert(sans=("keyed.example.jp",))
    write(store / "d0" / "keyed.pem", issued.pem)
    write(store / "d0" / "keyed.key", issued.key_pem())
    junk = store / "d0" / "junk.p12"  # an error: it escrows nothing, and is not read again
    junk.write_bytes(b"\x30\x03\x02\x01\x03")
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    vault_path = tmp_path / "vault" / "vault.sqlite3"

    def start() -> CountingReader:
        reader = CountingReader()

        def factory() -> Any:
            return open_vault(vault_path, KeyFileSource(key_file), create=True)

        daemon, _ = make_daemon(store_config([{"path": str(store), "escrow": True}]), tmp_path,
                                clock=SteppingClock(), reader=reader, vault_factory=factory,
                                read_index_path=tmp_path / "state" / READ_INDEX_NAME)
        daemon.full_scan()
        daemon.shutdown()
        return reader

    assert len(start().calls) == 15
    again = start()  # the vault as it was: only the directory holding a key is read again
    keyed = sorted(str(p) for p in (store / "d0").iterdir() if p != junk)
    assert sorted(again.calls) == keyed
    for leftover in vault_path.parent.iterdir():  # the vault removed while the daemon was down
        leftover.unlink()
    replaced = start()  # ... so every escrow store is read again, and it gets its key back
    assert len(replaced.calls) == 14
    with open_vault(vault_path, KeyFileSource(key_file)) as vault:
        assert [entry.kind for entry in vault.entries(kind="private-key")] == ["private-key"]
    assert sorted(start().calls) == keyed


def test_a_replaced_vault_gets_back_a_certificate_paired_with_a_key_elsewhere(
        tmp_path: Path) -> None:
    """Re-reading only the directories holding a key left out a certificate in a
    subdirectory escrowed with the key above it: a vault replaced while the daemon was down
    did not get it back (the re-review of review 12)."""
    from vault import KeyFileSource, open_vault

    store = tmp_path / "store"
    issued = make_cert(sans=("paired.example.jp",))
    write(store / "key.pem", issued.key_pem())
    write(store / "sub" / "c1.pem", issued.pem)
    key_file = tmp_path / "keys" / "vault.key"
    key_file.parent.mkdir(mode=0o700)
    vault_path = tmp_path / "vault" / "vault.sqlite3"

    def start() -> set[str]:
        daemon, _ = make_daemon(
            store_config([{"path": str(store), "escrow": True}]), tmp_path,
            clock=SteppingClock(), reader=CountingReader(),
            vault_factory=lambda: open_vault(vault_path, KeyFileSource(key_file), create=True),
            read_index_path=tmp_path / "state" / READ_INDEX_NAME)
        daemon.full_scan()
        daemon.shutdown()
        with open_vault(vault_path, KeyFileSource(key_file), create=True) as vault:
            return {entry.kind for entry in vault.entries()}

    vault_path.parent.mkdir(mode=0o700)
    with open_vault(vault_path, KeyFileSource(key_file), create=True) as vault:
        empty = vault.backup(tmp_path / "empty.bak")
    first = start()
    if "certificate" not in first:
        pytest.skip("this layout does not pair the certificate with the key")
    for leftover in vault_path.parent.iterdir():
        leftover.unlink()
    assert start() == first
    # restored from a backup made before: the same file (SQLite's backup API copies into
    # it), other content; the daemon's check by inode missed it (the second re-review)
    from vault.lifecycle import restore_vault

    restore_vault(empty, vault_path, KeyFileSource(key_file), force=True)
    assert start() == first
