"""PostgreSQL restarted (crashed: ``pg_ctl stop -m immediate``, then started) while two real
agents report to a real ``policy serve`` over real mutual TLS. The service keeps running and
answers 503 while its ledger is down; the agents keep their batches in their outboxes and
resend them; afterwards every observation is in the ledger exactly once. The database is a
private cluster (tests/pgcluster.py): the machine's shared server is never restarted."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.outbox import Outbox
from policy.errors import LedgerError
from tests.fleet.fleetkit import Fleet, make_fleet
from tests.fleet.test_agent_process import Agent, eventually
from tests.pgcluster import private_cluster


def _counts(fleet: Fleet, host: str) -> Counter[tuple[str, str]]:
    try:
        return Counter((o.location, o.facts.sha256) for o in fleet.observations()
                       if o.host == host)
    except LedgerError:  # the database is down for a moment: not yet
        return Counter()


def _all_once(fleet: Fleet, agent: Agent) -> bool:
    return set(_counts(fleet, agent.host)) == set(agent.shas.items())


@pytest.mark.slow
def test_postgresql_restarted_while_agents_report_every_observation_once(
        tmp_path: Path) -> None:
    with private_cluster() as cluster:
        fleet = make_fleet(tmp_path / "desk", ledger=cluster.dsn)
        fleet.start()
        service = fleet.process
        agents = [Agent(tmp_path / name, fleet, name, port=fleet.port)
                  for name in ("web1", "web2")]
        try:
            for i, agent in enumerate(agents):
                agent.add_certificates(150, f"p{i}-")
                agent.start()
            # mid-reporting: both have delivered something, neither everything
            eventually(lambda: all(_counts(fleet, a.host) for a in agents), timeout=90)
            cluster.stop("immediate")
            agents[0].add_certificates(10, "outage-")  # seen while the ledger is down
            time.sleep(3)  # heartbeats (every second) and resends meet the outage
            cluster.start()
            for agent in agents:
                eventually(lambda agent=agent: _all_once(fleet, agent), timeout=120)
                counts = _counts(fleet, agent.host)
                assert all(n == 1 for n in counts.values()), "an observation recorded twice"
                assert len(counts) == len(agent.shas)
                with Outbox.open(agent.outbox) as outbox:
                    eventually(lambda outbox=outbox: outbox.status().pending_batches == 0,
                               timeout=30)
            assert fleet.process is service
            assert service is not None
            assert service.poll() is None, "the service died with its database"
        finally:
            for agent in agents:
                agent.stop()
            fleet.stop(signal.SIGKILL)
    logs = "".join((tmp_path / name / "agent.log").read_text() for name in ("web1", "web2"))
    assert "status=503" in logs, "no request met the outage"
