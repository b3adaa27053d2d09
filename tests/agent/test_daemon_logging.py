"""What the daemon says in the journal about contract findings.

A restart reads every certificate again (the index lives in memory): the first scan must not
log one warning per certificate, or a 100,000-certificate store floods the journal at every
start with what was already said. It logs one line per kind, with the count; changes seen after
the first scan are logged per certificate, because that is news.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.certfactory import make_cert

NB = datetime(2026, 1, 15, 3, tzinfo=UTC)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_first_scan_logs_one_line_per_kind_of_finding_with_its_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    for n in range(12):  # Let's Encrypt-shaped: 90 days, so Art.6(3) proviso blocks renewal
        (store / f"c{n}.pem").write_bytes(
            make_cert(not_before=NB, sans=(f"h{n}.example.jp",)).pem)
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path)
    with caplog.at_level(logging.DEBUG, logger="certescrow.agent"):
        daemon.full_scan()
    blocked = [r for r in _warnings(caplog)
               if getattr(r, "fields", {}).get("code") == "renewal-blocked"]
    assert len(blocked) == 1
    assert blocked[0].fields["count"] == 12  # type: ignore[attr-defined]
    assert "initial scan: 12 certificate(s) with renewal-blocked" in blocked[0].getMessage()
    per_certificate = [r for r in caplog.records if r.levelno == logging.DEBUG
                       and getattr(r, "fields", {}).get("code") == "renewal-blocked"]
    assert len(per_certificate) == 12  # still there for whoever turns debug on


def test_after_the_first_scan_a_changed_certificate_is_logged_on_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    site = store / "site.pem"
    site.write_bytes(make_cert(not_before=NB, lifetime=timedelta(days=199)).pem)
    clock = SteppingClock()
    daemon, _ = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock)
    daemon.full_scan()
    site.write_bytes(make_cert(not_before=NB, sans=("site.example.jp",)).pem)  # now 90 days
    daemon.enqueue(str(site))
    clock.advance(0.31)
    with caplog.at_level(logging.WARNING, logger="certescrow.agent"):
        daemon.process_due()
    (record,) = [r for r in _warnings(caplog)
                 if getattr(r, "fields", {}).get("code") == "renewal-blocked"]
    assert record.fields["path"] == str(site)  # type: ignore[attr-defined]
    assert "initial scan" not in record.getMessage()
