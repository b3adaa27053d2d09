"""A critical condition is told apart in the daemon's log: its finding or action line is an
error (``<3>`` under journald, so ``journalctl -p err`` shows it) and says ``severity=critical``;
a warning stays a warning (``<4>``, ``severity=warning``). A reviewer found a 0644 private key,
an expired certificate and a key mismatch all logged as ``<4>warning`` with no severity.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest

from agent.certset import MAX_SET_ATTEMPTS
from agent.logs import EventLog, configure_logging
from tests.agent.daemon_helpers import Certbot, SteppingClock, make_daemon, store_config
from tests.certfactory import make_cert

pytestmark = pytest.mark.usefixtures("restored_logger")


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[IO[str]]:
    """A stream the daemon takes for the journal (``$JOURNAL_STREAM`` names it)."""
    with (tmp_path / "journal").open("w+", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        yield stream


def _lines(stream: IO[str]) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def _site(store: Path) -> tuple[Path, Path]:
    """A 90-day certificate (a warning: renewal-blocked, Art.6(3) proviso) and its 0600 key."""
    issued = make_cert(not_before=datetime(2026, 1, 15, tzinfo=UTC), sans=("site.example.jp",))
    store.mkdir(parents=True)
    cert, key = store / "site.pem", store / "site.key"
    cert.write_bytes(issued.pem)
    key.write_bytes(issued.key_pem())
    key.chmod(0o600)
    return cert, key


def test_a_key_turned_world_readable_is_an_error_line_with_its_severity(
        tmp_path: Path, journal: IO[str]) -> None:
    _, key = _site(tmp_path / "certs")
    clock = SteppingClock()
    daemon, _ = make_daemon(store_config([{"path": str(tmp_path / "certs")}]), tmp_path,
                            clock=clock, log=EventLog(configure_logging("text", stream=journal)))
    daemon.full_scan()
    key.chmod(0o644)
    daemon.enqueue(str(key))
    clock.advance(0.31)
    daemon.process_due()
    (line,) = [line for line in _lines(journal) if "code=private-key-world-readable" in line]
    assert line.startswith(f"<3>error   finding: {key}: private key")
    assert " severity=critical" in line
    # the certificate's warning beside it stays a warning, and says so
    (blocked,) = [line for line in _lines(journal) if "code=renewal-blocked" in line]
    assert blocked.startswith("<4>warning finding: initial scan: 1 certificate(s)")
    assert " severity=warning" in blocked


def test_the_first_scan_counts_an_expired_certificate_on_an_error_line(
        tmp_path: Path, journal: IO[str]) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    (store / "old.pem").write_bytes(
        make_cert(not_before=datetime(2025, 1, 1, tzinfo=UTC), lifetime=timedelta(days=90),
                  sans=("old.example.jp",)).pem)
    for n in range(2):
        (store / f"new{n}.pem").write_bytes(
            make_cert(not_before=datetime(2026, 1, 15, tzinfo=UTC),
                      sans=(f"new{n}.example.jp",)).pem)
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path,
                            log=EventLog(configure_logging("text", stream=journal)))
    daemon.full_scan()
    lines = _lines(journal)
    (expired,) = [line for line in lines if "code=expired" in line]
    assert expired.startswith("<3>error   finding: initial scan: 1 certificate(s) with expired")
    assert " severity=critical critical=1 " in expired
    assert f"e.g. {store / 'old.pem'};" in expired
    (blocked,) = [line for line in lines if "code=renewal-blocked" in line]
    assert blocked.startswith("<4>warning finding: initial scan: 3 certificate(s)")
    assert " severity=warning critical=0 " in blocked


def test_a_kind_with_one_critical_certificate_is_an_error_naming_it(tmp_path: Path) -> None:
    """One line per kind, at the worst severity of its certificates: the count of critical
    ones in words, and an example that is one of them."""
    from agent.findinglog import FindingLog

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("certescrow.test-severity")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    findings = FindingLog(EventLog(logger))
    findings.start_counting()
    for n, severity in enumerate(("warning", "critical", "warning")):
        findings.warnings(f"/s/c{n}.pem", f"{n + 1:016x}" + "0" * 48,
                          [(("action", "notify", "Art.6(1)", severity), "", {})])
    findings.flush()
    (record,) = records
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(
        "initial scan: 3 certificate(s) with notify [Art.6(1)] (1 critical) in 3 file(s), "
        "e.g. /s/c1.pem;")
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["severity"], fields["critical"], fields["count"]) == ("critical", 1, 3)


def test_json_lines_carry_the_severity_and_the_error_level(tmp_path: Path) -> None:
    stream_path = tmp_path / "log.json"
    _, key = _site(tmp_path / "certs")
    key.chmod(0o644)
    with stream_path.open("w+", encoding="utf-8") as stream:
        daemon, _ = make_daemon(store_config([{"path": str(tmp_path / "certs")}]), tmp_path,
                                log=EventLog(configure_logging("json", stream=stream)))
        daemon.full_scan()
        events = [json.loads(line) for line in _lines(stream)]
    (world,) = [e for e in events if e.get("code") == "private-key-world-readable"]
    assert (world["level"], world["severity"]) == ("error", "critical")
    (blocked,) = [e for e in events if e.get("code") == "renewal-blocked"]
    assert (blocked["level"], blocked["severity"]) == ("warning", "warning")


def test_a_real_key_mismatch_is_an_error(tmp_path: Path, journal: IO[str]) -> None:
    certbot = Certbot(tmp_path / "le")
    certbot.install()
    clock = SteppingClock()
    daemon, _ = make_daemon(store_config([{"path": str(tmp_path / "le" / "live")}]), tmp_path,
                            clock=clock, log=EventLog(configure_logging("text", stream=journal)))
    daemon.full_scan()
    certbot.write_generation()
    daemon.enqueue(str(certbot.link("cert")))  # and certbot dies before the other links
    for _ in range(MAX_SET_ATTEMPTS + 1):
        clock.advance(0.31)
        daemon.process_due()
    lines = _lines(journal)
    (mismatch,) = [line for line in lines if " key-mismatch: " in line]
    assert mismatch.startswith("<3>error   key-mismatch: ")
    assert " severity=critical" in mismatch
    # and the certificate's own finding says it too
    (finding,) = [line for line in lines if "finding: " in line and "code=key-mismatch" in line]
    assert finding.startswith("<3>error   finding: ")
