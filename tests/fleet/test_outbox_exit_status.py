"""``agent run --once --exit-status``: an outbox filled past its warning level (the policy
service has not acknowledged reports for a while) is the host operator's warning, as the daemon
logs it; below the level the same run is OK. A real agent process, a real client certificate of
the fleet CA, a service that does not answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.outbox import Outbox
from tests.certfactory import make_cert
from tests.fleet.fleetkit import make_fleet
from tests.fleet.test_agent_process import REPO, Agent

CAPACITY = 100  # warning level: 80 observations


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_once(agent: Agent, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CERTESCROW_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "agent", "run", "--once", "--config",
         str(agent.config), *extra], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=120, check=False)


@pytest.mark.parametrize(("waiting", "filling"), [(70, False), (80, True)])
def test_outbox_past_its_warning_level_is_a_host_warning(tmp_path: Path, waiting: int,
                                                         filling: bool) -> None:
    fleet = make_fleet(tmp_path / "desk")
    agent = Agent(tmp_path / "web1", fleet, "web1", port=_closed_port())
    agent.config.write_text(agent.config.read_text() + f"outbox_capacity = {CAPACITY}\n")
    now = datetime.now(UTC)  # noqa: TID251 - the run reads the real clock
    issued = make_cert(not_before=now - timedelta(days=10), lifetime=timedelta(days=200))
    (agent.store / "cert.pem").write_bytes(issued.pem)
    with Outbox.open(agent.outbox, capacity=CAPACITY) as outbox:
        outbox.add({"at": "2026-11-27T00:00:00Z", "observations": [], "gone": []},
                   size=waiting)

    done = _run_once(agent, "--exit-status")
    # the run's one observation joins the queue: 71 (below 80) or 81 (past it)
    with Outbox.open(agent.outbox, capacity=CAPACITY) as outbox:
        assert outbox.status().pending_observations == waiting + 1
    # a run that could not deliver is a warning in any case (report-unreachable); the outbox's
    # own finding only past its level
    assert done.returncode == 1, done.stdout + done.stderr
    assert "report-unreachable" in done.stdout
    assert ("outbox-filling" in done.stdout) is filling

    as_json = _run_once(agent, "--json")
    assert ('"outbox-filling"' in as_json.stdout) is filling
