"""The one-shot scan on several cores writes exactly the serial answer, as it goes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import scanpool
from agent.records import FileError, FileResult, ReadLimits
from agent.report import csv_header, iter_report, render_line
from agent.scan import directory_batches, iter_scan
from policy.catalogue import load_catalogue
from policy.category import Category
from policy.intake import Binding
from policy.settings import PolicySettings
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert, shared_key

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
AT = datetime(2026, 2, 1, 3, 0, 0, tzinfo=UTC)
CERTESCROW = Path(sys.executable).with_name("certescrow")
BINDING = Binding(category=Category.III)


def _store(root: Path, per_dir: int) -> Path:
    pems = [make_cert(not_before=NB, lifetime=timedelta(days=d), sans=(f"d{d}.example",)).pem
            for d in (90, 199, 365)]
    for n, name in enumerate(("a", "b", "c")):
        for i in range(per_dir):
            write(root / name / f"{i:04}.pem", pems[(i + n) % 3])
    paired = make_cert(not_before=NB, key=shared_key("ec", 21), sans=("paired.example",))
    write(root / "b" / "cert.pem", paired.pem)
    write(root / "b" / "privkey.pem", paired.key_pem(), 0o640)
    write(root / "c" / "junk.pem", b"\x00junk")
    write(root / "expired.pem", make_cert(not_before=NB - timedelta(days=300)).pem)
    return root


def _flat_store(root: Path, count: int) -> Path:
    """One flat directory of ``count`` files (``/etc/ssl/certs``), with a certificate at the
    start whose key is the last file: pairing crosses every part of the split directory."""
    pem = make_cert(not_before=NB, sans=("flat.example",)).pem
    paired = make_cert(not_before=NB, key=shared_key("ec", 22), sans=("paired.example",))
    write(root / "0000-cert.pem", paired.pem)
    for i in range(count - 2):
        write(root / f"{i:05}.pem", pem)
    write(root / "zzzz-privkey.pem", paired.key_pem(), 0o600)
    return root


def _stream(paths: list[Path], *, fmt: str = "json", jobs: int = 2,
            progress: scanpool.ProgressCallback | None = None) -> tuple[bytes,
                                                                        scanpool.ScanOutcome]:
    out = io.BytesIO()
    outcome = scanpool.stream_scan(paths, load_catalogue(), binding=BINDING, at=AT,
                                   settings=PolicySettings(), limits=ReadLimits(), fmt=fmt,
                                   jobs=jobs, out=out, progress=progress)
    return out.getvalue(), outcome


def _serial(paths: list[Path], fmt: str) -> bytes:
    """The answer without batches or workers: every file in walk order, classified and
    rendered one by one (``iter_scan`` grouped by directory, whole directories)."""
    items = iter_report(iter_scan(paths, limits=ReadLimits(), group_directories=True),
                        load_catalogue(), binding=BINDING, at=AT)
    lines = [render_line(item, fmt) for item in items]
    if fmt == "csv":
        return csv_header() + b"".join(lines)
    return b"[\n" + b",\n".join(lines) + b"\n]\n" if lines else b"[]\n"


def test_jobs_give_byte_identical_output_in_a_real_process(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", per_dir=400)  # 1,200+ files: two workers
    _flat_store(tmp_path / "store" / "flat", 700)  # split over three batches
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-02-01T00:00:00Z"}
    for fmt in ("--json", "--csv"):
        outputs = {}
        for jobs in ("1", "2"):
            done = subprocess.run([str(CERTESCROW), "scan", fmt, "--jobs", jobs,
                                   "--category", "III", str(store)], capture_output=True,
                                  env=env, timeout=300, check=False)
            assert done.returncode == 1, done.stderr  # the junk file failed
            outputs[jobs] = done.stdout
        assert outputs["1"] == outputs["2"]
    rows = outputs["1"].decode().splitlines()  # the CSV
    assert rows[0].encode() + b"\n" == csv_header()
    assert sum(1 for r in rows if r.startswith("certificate,")) == 3 * 400 + 2 + 699


def test_the_stream_is_the_serial_answer_in_walk_order(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", per_dir=300)
    _flat_store(tmp_path / "store" / "flat", 600)
    for fmt in ("json", "csv"):
        text, outcome = _stream([store], fmt=fmt, jobs=2)
        assert text == _serial([store], fmt)
    objs = json.loads(_stream([store], jobs=2)[0])
    paths = [o["path"] for o in objs]
    assert paths.index(str(store / "a" / "0000.pem")) < paths.index(str(store / "b" / "0000.pem"))
    paired = [o for o in objs if o.get("sans") == ["paired.example"]]
    assert {o["path"].rsplit("/", 1)[1]: o["key_matches"] for o in paired} == {
        "cert.pem": True, "0000-cert.pem": True}  # the flat one: its key is in the last part
    assert outcome.certificates == 3 * 300 + 2 + 599
    assert outcome.has_errors


def test_a_flat_directory_is_shared_by_files(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(1_000):
        (flat / f"{i:04}.pem").write_bytes(b"")
    batches = list(directory_batches([flat], limits=ReadLimits(),
                                     max_files=scanpool.BATCH_FILES))
    assert [len(b.targets) for b in batches] == [250, 250, 250, 250]
    assert len({b.split for b in batches}) == 1
    assert batches[0].split is not None
    assert [t for b in batches for t in b.targets] == sorted(str(p) for p in flat.iterdir())


def test_small_directories_are_packed_whole(tmp_path: Path) -> None:
    for d in range(30):
        for i in range(20):
            write(tmp_path / "tree" / f"d{d:02}" / f"{i:02}.pem", b"")
    batches = list(directory_batches([tmp_path / "tree"], limits=ReadLimits(),
                                     max_files=scanpool.BATCH_FILES))
    assert [len(b.targets) for b in batches] == [240, 240, 120]
    assert all(b.split is None for b in batches)
    for batch in batches:  # no directory cut in two
        names = [str(t) for t in batch.targets]
        assert len(names) % 20 == 0


def test_both_workers_read_a_flat_directory(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pem = make_cert(not_before=NB, sans=("flat.example",)).pem
    for i in range(1_200):  # leaves only: the parts are written as the workers made them
        write(tmp_path / "flat" / f"{i:05}.pem", pem)
    flat = tmp_path / "flat"
    pids = tmp_path / "pids"
    pids.mkdir()
    real = scanpool.read_target

    def recording(target: str | FileError, **kwargs: object) -> FileResult:
        (pids / str(os.getpid())).touch()
        return real(target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scanpool, "read_target", recording)
    text, _ = _stream([flat], jobs=2)
    assert {p.name for p in pids.iterdir()} - {str(os.getpid())} == {
        p.name for p in pids.iterdir()}  # the parent read nothing
    assert len(list(pids.iterdir())) == 2
    assert text == _serial([flat], "json")


def test_a_process_running_threads_is_never_forked(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path / "store", per_dir=3)
    monkeypatch.setattr(scanpool, "MIN_FILES_PER_JOB", 1)

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("forked while threads were running")

    monkeypatch.setattr(scanpool, "ProcessPoolExecutor", no_fork)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        text, _ = _stream([store], jobs=4)
    finally:
        stop.set()
        thread.join()
    assert text == _serial([store], "json")


def test_progress_counts_every_file_across_batches(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", per_dir=200)
    calls: list[tuple[int, int]] = []
    _stream([store], fmt="csv", jobs=2, progress=lambda done, total: calls.append((done, total)))
    total = sum(1 for p in store.rglob("*") if p.is_file())
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def _killing_reader(poison: str, once_marker: Path | None) -> object:
    """A reader that kills its own worker process (SIGKILL, as the OOM killer does) when it
    reaches ``poison``: every time, or with ``once_marker`` only the first time."""
    real = scanpool.read_target
    parent = os.getpid()

    def reader(target: str | FileError, **kwargs: object) -> FileResult:
        if target == poison and os.getpid() != parent:
            if once_marker is None or not once_marker.exists():
                if once_marker is not None:
                    once_marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return real(target, **kwargs)  # type: ignore[arg-type]

    return reader


def test_a_worker_killed_once_loses_nothing(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path / "store", per_dir=400)
    poison = str(store / "b" / "0100.pem")
    monkeypatch.setattr(scanpool, "read_target", _killing_reader(poison, tmp_path / "killed"))
    text, _outcome = _stream([store], jobs=2)
    assert (tmp_path / "killed").exists()  # a worker did die
    monkeypatch.undo()
    assert text == _serial([store], "json")


def test_a_batch_that_kills_its_worker_is_accounted_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path / "store", per_dir=400)
    poison = str(store / "b" / "0100.pem")
    monkeypatch.setattr(scanpool, "read_target", _killing_reader(poison, None))
    text, outcome = _stream([store], jobs=2)
    monkeypatch.undo()
    objs = json.loads(text)
    died = [o for o in objs if o.get("error", {}).get("code") == scanpool.WORKER_DIED]
    assert poison in {o["path"] for o in died}
    assert len(died) <= scanpool.BATCH_FILES  # only the poison's batch
    every_file = {str(p) for p in store.rglob("*") if p.is_file()}
    assert {o["path"] for o in objs} == every_file  # each file is in the output
    others = [o for o in json.loads(_serial([store], "json")) if o["path"] not in
              {d["path"] for d in died}]
    assert [o for o in objs if o["path"] not in {d["path"] for d in died}] == others
    assert outcome.has_errors
    assert "worker died" in capsys.readouterr().err


def test_a_worker_killed_between_batches_breaks_nothing(tmp_path: Path) -> None:
    """A worker killed from outside (the OOM killer, an operator's ``kill -9``) while the
    scan hands out its next batches: the pool it breaks refuses the next ``submit``, and the
    scan starts a new one and writes every file (the attacker review of session 14: a raw
    ``BrokenProcessPool`` traceback and JSON cut off mid-array)."""
    import multiprocessing
    import time

    store = _store(tmp_path / "store", per_dir=400)
    killed: list[int] = []

    def kill_a_worker(done: int, _total: int) -> None:
        if killed:
            return
        workers = multiprocessing.active_children()
        assert workers, "the scan ran without workers"
        killed.append(workers[0].pid or 0)
        os.kill(killed[0], signal.SIGKILL)
        # until the pool has seen it die: its next submit is refused
        deadline = time.monotonic() + 10
        while workers[0].is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)

    text, outcome = _stream([store], jobs=2, progress=kill_a_worker)
    assert killed
    assert text == _serial([store], "json")
    assert outcome.tally.errors == 1  # c/junk.pem's, as in one process: none for the kill
