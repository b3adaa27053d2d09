"""The agent watches its own fleet client certificate: ``agent run --once --exit-status`` counts
an overdue renewal as the host's problem (warning past a third of its lifetime, critical past a
sixth or expired), on the certificate's own clock rather than the stores' 28-day windows (a
30-day certificate would be flagged for its whole life)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.fleet_client import client_certificate_finding
from policy.decisions import Severity
from tests.certfactory import make_cert
from tests.fleet.fleetkit import make_fleet
from tests.fleet.test_agent_process import Agent
from tests.fleet.test_outbox_exit_status import _run_once
from vault import KeyFileSource, open_vault

START = datetime(2026, 11, 1, tzinfo=UTC)
LIFE = timedelta(days=30)


@pytest.mark.parametrize(("left", "expected"), [
    (LIFE / 3, None),                                         # renewal not yet due
    (LIFE / 3 - timedelta(seconds=1), Severity.WARNING),      # due and not done
    (LIFE / 6, Severity.WARNING),
    (LIFE / 6 - timedelta(seconds=1), Severity.CRITICAL),
    (timedelta(0), Severity.CRITICAL),                        # expired
])
def test_client_certificate_finding_bounds(left: timedelta, expected: Severity | None) -> None:
    found = client_certificate_finding(not_before_utc=START, not_after_utc=START + LIFE,
                                       at=START + LIFE - left, where="/etc/c.pem")
    assert (found.severity if found else None) == expected
    if left == timedelta(0):
        assert found is not None
        assert found.code == "client-certificate-expired"


@pytest.mark.parametrize(("issued_days_ago", "status"), [(15, 0), (22, 1), (27, 2)])
def test_agent_run_once_counts_its_own_client_certificate(
        tmp_path: Path, issued_days_ago: int, status: int) -> None:
    fleet = make_fleet(tmp_path / "desk")
    fleet.start()  # no [serve] ca_key: no renewal (an unreachable service is its own warning)
    agent = Agent(tmp_path / "web1", fleet, "web1", port=fleet.port)
    now = datetime.now(UTC)  # noqa: TID251 - the run and OpenSSL read the real clock
    client = fleet.client("web1", at=now - timedelta(days=issued_days_ago), lifetime=LIFE)
    with open_vault(agent.root / "vault.sqlite3", KeyFileSource(agent.root / "vault.key")) \
            as vault:
        key_id = vault.put("private-key", client.key_pem).entry_id
    (agent.root / "client.pem").write_bytes(client.cert_pem)
    agent.config.write_text(re.sub(r'client_key = "[^"]*"', f'client_key = "{key_id}"',
                                   agent.config.read_text()))
    healthy = make_cert(not_before=now - timedelta(days=10), lifetime=timedelta(days=200))
    (agent.store / "cert.pem").write_bytes(healthy.pem)

    try:
        done = _run_once(agent, "--exit-status")
    finally:
        fleet.stop()
    assert done.returncode == status, done.stdout + done.stderr
    assert ("client-certificate-expires-soon" in done.stdout) is (status != 0)
