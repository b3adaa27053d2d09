"""Concurrent writers and crashes, with real processes: no event is ever lost."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from policy.events import ContractChanged
from policy.ledger import Ledger
from tests.policy.ledger_fixtures import T0, accepted

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import sys
    import time
    from datetime import timedelta
    from pathlib import Path
    from policy.events import ContractChanged
    from policy.intake import Observation
    from policy.ledger import Ledger
    from tests.policy.ledger_fixtures import T0, facts

    path, name, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    go = Path(sys.argv[5])
    with Ledger.open(path) as ledger:
        while not go.exists():  # start line: every writer begins at once
            time.sleep(0.001)
        for i in range(count):
            at = T0 + timedelta(minutes=i)
            if mode == "events":
                ledger.append(ContractChanged(contract_id="c1", at_utc=at,
                                              service=f"{name}-{i}"))
            else:
                obs = Observation(facts=facts(tag=f"{name}-{i}"), host=name,
                                  location=f"/certs/{i}.pem", index=0, observed_at_utc=at)
                ledger.report([obs], at=at)
            print(i, flush=True)
""")


def _spawn(path: str, name: str, count: int, mode: str, go: Path) -> subprocess.Popen[str]:
    # ``path``: an SQLite file or a postgresql:// DSN (tests/policy/conftest.py).
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, path, name, str(count), mode, str(go)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_writer_processes_never_lose_an_event(tmp_path: Path,
                                                        ledger_location: str) -> None:
    path = ledger_location
    with Ledger.open(path) as ledger:
        ledger.append(accepted(at=T0))
    per_process = 60
    writers = [_spawn(path, f"cli{n}", per_process, "events", tmp_path / "go")
               for n in range(4)]
    writers += [_spawn(path, f"agent{n}", per_process, "intake", tmp_path / "go")
                for n in range(2)]
    (tmp_path / "go").touch()
    for proc in writers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.split() == [str(i) for i in range(per_process)]
    with Ledger.open(path) as ledger:
        assert ledger.count() == 1 + 6 * per_process
        services = {e.event.service for e in ledger.journal("c1")
                    if isinstance(e.event, ContractChanged)}
        assert services == {f"cli{n}-{i}" for n in range(4) for i in range(per_process)}
        assert len(ledger.unbound_observations()) == 2 * per_process


def test_concurrent_intake_of_the_same_observation_records_it_once(
        tmp_path: Path, ledger_location: str) -> None:
    path = ledger_location
    Ledger.open(path).close()
    # Every process reports the very same 30 observations (same host name, same places).
    writers = [_spawn(path, "web1", 30, "intake", tmp_path / "go") for _ in range(4)]
    (tmp_path / "go").touch()
    for proc in writers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Ledger.open(path) as ledger:
        assert ledger.count() == 30


def test_writer_killed_mid_stream_loses_nothing_it_committed(tmp_path: Path,
                                                             ledger_location: str) -> None:
    path = ledger_location
    with Ledger.open(path) as ledger:
        ledger.append(accepted(at=T0))
    proc = _spawn(path, "victim", 100_000, "events", tmp_path / "go")
    (tmp_path / "go").touch()
    assert proc.stdout is not None
    committed = []
    for line in proc.stdout:
        committed.append(int(line))
        if len(committed) >= 25:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reap it and close its pipes
    assert proc.returncode == -signal.SIGKILL
    if not path.startswith("postgresql:"):
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    with Ledger.open(path) as ledger:
        services = {e.event.service for e in ledger.journal("c1")
                    if isinstance(e.event, ContractChanged)}
        assert {f"victim-{i}" for i in committed} <= services
        # …and the ledger still takes new events after the crash.
        ledger.append(ContractChanged(contract_id="c1", at_utc=T0, service="after-crash"))
