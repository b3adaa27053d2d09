"""The one-shot scan on several cores gives exactly the serial answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent import scanpool
from agent.records import ReadLimits
from agent.report import iter_report, render_streaming
from agent.scan import iter_scan
from policy.catalogue import load_catalogue
from policy.category import Category
from policy.intake import Binding
from policy.settings import PolicySettings
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert, shared_key

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
AT = datetime(2026, 2, 1, 3, 0, 0, tzinfo=UTC)
CERTESCROW = Path(sys.executable).with_name("certescrow")


def _store(root: Path, per_dir: int) -> Path:
    pems = [make_cert(not_before=NB, lifetime=timedelta(days=d), sans=(f"d{d}.example",)).pem
            for d in (90, 199, 365)]
    for n, name in enumerate(("a", "b", "c")):
        for i in range(per_dir):
            write(root / name / f"{i:04}.pem", pems[(i + n) % 3])
    paired = make_cert(not_before=NB, key=shared_key("ec", 21), sans=("paired.example",))
    write(root / "b" / "cert.pem", paired.pem)
    write(root / "b" / "privkey.pem", paired.key_pem(), 0o640)
    write(root / "c" / "junk", b"\x00junk")
    write(root / "expired.pem", make_cert(not_before=NB - timedelta(days=300)).pem)
    return root


def test_jobs_give_byte_identical_output_in_a_real_process(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", per_dir=400)  # 1,200+ files: two workers
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-02-01T00:00:00Z"}
    outputs = {}
    for jobs in ("1", "2"):
        done = subprocess.run([str(CERTESCROW), "scan", "--json", "--jobs", jobs,
                               "--category", "III", str(store)], capture_output=True,
                              env=env, timeout=300, check=False)
        assert done.returncode == 1, done.stderr  # the junk file failed
        outputs[jobs] = done.stdout
    assert outputs["1"] == outputs["2"]
    kinds = [obj["kind"] for obj in json.loads(outputs["1"])]
    assert kinds.count("certificate") == 3 * 400 + 2
    assert kinds.count("error") == 1


def test_a_process_running_threads_is_never_forked(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path / "store", per_dir=3)
    monkeypatch.setattr(scanpool, "MIN_FILES_PER_JOB", 1)

    def no_fork(*args: object, **kwargs: object) -> None:
        raise AssertionError("forked while threads were running")

    monkeypatch.setattr(scanpool, "ProcessPoolExecutor", no_fork)
    catalogue = load_catalogue()
    binding = Binding(category=Category.III)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        parallel = scanpool.render_parallel(
            [store], catalogue, binding=binding, at=AT, settings=PolicySettings(),
            limits=ReadLimits(), fmt="json", jobs=4)
    finally:
        stop.set()
        thread.join()
    serial = render_streaming(
        iter_report(iter_scan([store], limits=ReadLimits(), group_directories=True),
                    catalogue, binding=binding, at=AT), "json")
    assert parallel.lines == serial.lines
    assert (parallel.errors, parallel.certificates) == (serial.errors, serial.certificates)


def test_progress_counts_every_file_across_batches(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", per_dir=2)
    calls: list[tuple[int, int]] = []
    scanpool.render_parallel([store], load_catalogue(), binding=Binding(), at=AT,
                             settings=PolicySettings(), limits=ReadLimits(), fmt="csv", jobs=1,
                             progress=lambda done, total: calls.append((done, total)))
    total = sum(1 for p in store.rglob("*") if p.is_file())
    assert calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_dead_worker_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures.process import BrokenProcessPool

    from agent.errors import AgentError

    class DyingPool:
        def __init__(self, **_: object) -> None:
            pass

        def __enter__(self) -> DyingPool:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def map(self, *_: object) -> list[object]:
            raise BrokenProcessPool("a child process terminated abruptly")

    store = _store(tmp_path / "store", per_dir=2)
    monkeypatch.setattr(scanpool, "MIN_FILES_PER_JOB", 1)
    monkeypatch.setattr(scanpool.threading, "active_count", lambda: 1)
    monkeypatch.setattr(scanpool, "ProcessPoolExecutor", DyingPool)
    with pytest.raises(AgentError, match="--jobs 1"):
        scanpool.render_parallel([store], load_catalogue(), binding=Binding(), at=AT,
                                 settings=PolicySettings(), limits=ReadLimits(), fmt="json",
                                 jobs=2)
