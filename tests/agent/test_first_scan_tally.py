"""The first scan's one-line-per-kind count is logged, and its tally let go, before the start's
reconciliation with the ledger (issue 12: at 100,000 certificates the tally is ~19 MiB and the
ledger's open sightings ~44 MiB while it builds them; both at once were the first start's
peak)."""

from __future__ import annotations

import io
from pathlib import Path

from agent.logs import EventLog, configure_logging
from agent.readindex import READ_INDEX_NAME
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def test_the_count_is_logged_before_what_reconciliation_finds(tmp_path: Path) -> None:
    store = tmp_path / "certs"
    for i in range(4):
        write(store / f"site{i}.pem", make_cert(sans=(f"s{i}.example.jp",)).pem)
    index = tmp_path / "state" / READ_INDEX_NAME
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock(), read_index_path=index)
    daemon.full_scan()
    daemon.shutdown()
    # Stopped; meanwhile a file goes and the read index is lost: the next start is a first
    # scan, and only the ledger still knows the file.
    (store / "site3.pem").unlink()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    stream = io.StringIO()
    log = EventLog(configure_logging("text", stream=stream))
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            clock=SteppingClock(), read_index_path=index, log=log)
    daemon.full_scan()
    daemon.shutdown()
    lines = stream.getvalue().splitlines()
    counted = [n for n, line in enumerate(lines) if "initial scan:" in line]
    gone = [n for n, line in enumerate(lines) if "found at reconciliation" in line]
    assert counted, stream.getvalue()
    assert gone, stream.getvalue()
    assert max(counted) < min(gone)
