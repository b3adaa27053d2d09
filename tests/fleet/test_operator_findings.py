"""What the operator of a host cut off from the fleet sees, on real parts (a real ``policy
serve``, a real ``agent run --once``, client certificates of the fleet CA): a revoked host is
critical, a wrong ``ca_bundle`` a warning with the reason in our words, and a batch the
service finds too large is split until it goes through (issue 13)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.fleet_ca import issue_ca
from agent.outbox import Outbox
from policy.fleet_registry import FleetRegistry
from tests.certfactory import make_cert
from tests.fleet.fleetkit import Fleet, make_fleet
from tests.fleet.test_agent_process import Agent, eventually
from tests.fleet.test_outbox_exit_status import _run_once

NOW = datetime.now(UTC)  # noqa: TID251 - the runs read the real clock


def _store(agent: Agent, count: int) -> None:
    for i in range(count):
        issued = make_cert(sans=(f"h{i}.example.jp",), not_before=NOW - timedelta(days=10),
                           lifetime=timedelta(days=200))
        path = agent.store / f"c{i}.pem"
        path.write_bytes(issued.pem)
        agent.shas[str(path)] = issued.sha256


def _findings(stdout: str) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in json.loads(stdout).get("agent_findings", [])}


def _started(tmp_path: Path, extra: str = "") -> Fleet:
    fleet = make_fleet(tmp_path / "desk")
    fleet.start(extra=extra)
    return fleet


def test_a_revoked_host_is_critical(tmp_path: Path) -> None:
    fleet = _started(tmp_path)
    try:
        agent = Agent(tmp_path / "web1", fleet, "web1", port=fleet.port)
        _store(agent, 1)
        with FleetRegistry.open(fleet.ledger) as registry:
            registry.revoke_host("web1", at=NOW)
        done = _run_once(agent, "--exit-status", "--json")
    finally:
        fleet.stop(signal.SIGKILL)
    assert done.returncode == 2, done.stdout + done.stderr
    found = _findings(done.stdout)
    assert found.get("report-refused") == "critical", done.stdout
    assert "revoked" in done.stdout
    assert "certescrow agent enroll" in done.stdout


def test_another_ca_bundle_is_a_warning_with_the_reason(tmp_path: Path) -> None:
    fleet = _started(tmp_path)
    try:
        agent = Agent(tmp_path / "web1", fleet, "web1", port=fleet.port)
        _store(agent, 1)
        other = tmp_path / "other-ca.pem"
        other.write_bytes(issue_ca(name="another CA", at=NOW - timedelta(days=1))[1])
        agent.config.write_text(agent.config.read_text().replace(
            str(fleet.root / "ca.pem"), str(other)))
        done = _run_once(agent, "--exit-status", "--json")
    finally:
        fleet.stop(signal.SIGKILL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert _findings(done.stdout).get("report-unreachable") == "warning", done.stdout
    assert "not signed by the configured ca_bundle" in done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" not in done.stderr + done.stdout  # not the library's text


def test_a_batch_past_the_services_cap_is_split_until_it_goes(tmp_path: Path) -> None:
    fleet = _started(tmp_path, extra="max_observations = 2")
    try:
        agent = Agent(tmp_path / "web1", fleet, "web1", port=fleet.port)
        _store(agent, 5)  # one batch of 5 (batch = 20): refused, split 2 + 3, then 1 + 2
        done = _run_once(agent, "--exit-status")
        counts = Counter((o.location, o.facts.sha256) for o in fleet.observations())
    finally:
        fleet.stop(signal.SIGKILL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "batch-split" in done.stderr
    assert counts == Counter(agent.shas.items())  # each once
    with Outbox.open(agent.outbox) as outbox:
        assert outbox.status().pending_batches == 0


def test_the_daemon_says_why_it_cannot_reach_the_service(tmp_path: Path) -> None:
    """heartbeat_s = 1 and another CA in ca_bundle: the daemon logged `ready` and nothing
    else; it says why now, once (not at every heartbeat)."""
    fleet = _started(tmp_path)
    agent = Agent(tmp_path / "web1", fleet, "web1", port=fleet.port)
    try:
        other = tmp_path / "other-ca.pem"
        other.write_bytes(issue_ca(name="another CA", at=NOW - timedelta(days=1))[1])
        agent.config.write_text(agent.config.read_text().replace(
            str(fleet.root / "ca.pem"), str(other)))
        agent.start()
        log = agent.root / "agent.log"
        eventually(lambda: "not signed by the configured ca_bundle" in log.read_text(),
                   timeout=60)
        time.sleep(3)  # three more heartbeats
    finally:
        agent.stop()
        fleet.stop(signal.SIGKILL)
    text = log.read_text()
    # said once by the start's bindings fetch; the heartbeats do not repeat the same reason
    assert text.count("heartbeat-unreachable") + text.count("bindings-unreachable") == 1, text


def test_every_command_a_refusal_names_exists_with_its_options() -> None:
    """The revoked host's fix said ``certescrow fleet sign --config SERVICE.toml``: the option
    is ``--serve-config``, and the operator following the hint got "No such option" (review
    12). Every command line a refusal suggests parses."""
    import re
    import shlex

    from click.testing import CliRunner

    from agent.fleet_client import SendResult, refusal_message
    from agent.main import certescrow as cli

    suggested = set()
    for reason in ("host revoked", "certificate not registered", "refused"):
        message = refusal_message("the report", SendResult(status=403, body={"error": reason}))
        suggested.update(re.findall(r"\((certescrow [^,)]*)", message))
    assert any("fleet sign" in s for s in suggested)
    for line in suggested:
        argv = shlex.split(line)[1:]
        options = [w for w in argv if w.startswith("--")]
        result = CliRunner().invoke(cli, [*argv[:2], "--help"])  # the group and command
        assert result.exit_code == 0, line
        for option in options:
            assert option in result.output, f"{line}: {option} is not an option"
