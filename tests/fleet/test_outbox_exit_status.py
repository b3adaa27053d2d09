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


@pytest.mark.parametrize("service_up", [False, True])
def test_once_says_whether_its_report_was_queued_or_delivered(tmp_path: Path,
                                                              service_up: bool) -> None:
    # "reported: 3 observation(s) reported … recorded=3" was logged with the service down and
    # nothing delivered; and a report-unreachable line came after "stopping".
    fleet = make_fleet(tmp_path / "desk")
    if service_up:
        fleet.start()
    try:
        agent = Agent(tmp_path / "web1", fleet, "web1",
                      port=fleet.port if service_up else _closed_port())
        now = datetime.now(UTC)  # noqa: TID251 - the run reads the real clock
        for i in range(3):
            issued = make_cert(sans=(f"h{i}.example.jp",), not_before=now - timedelta(days=10),
                               lifetime=timedelta(days=200))
            (agent.store / f"c{i}.pem").write_bytes(issued.pem)
        done = _run_once(agent)
    finally:
        fleet.stop()
    lines = done.stderr.splitlines()
    assert done.returncode == 0, done.stderr
    assert "observation(s) reported" not in done.stderr
    [reported] = [line for line in lines if " reported: " in line]
    assert "3 observation(s) queued in the outbox for the policy service" in reported
    assert "recorded=" not in reported
    delivered = [line for line in lines if " delivered: " in line]
    if service_up:
        assert len(delivered) == 1, done.stderr
        assert "3 observation(s) in 1 batch(es) delivered to the policy service" in delivered[0]
        assert "report-unreachable" not in done.stderr
    else:
        assert delivered == []
        assert len([line for line in lines if "report-unreachable:" in line]) == 1
    assert lines[-1].startswith("info    stopping:"), done.stderr  # said last
