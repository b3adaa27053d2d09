"""``policy serve`` logs as the agent does (one configuration, agent/logs.py): under journald
each line starts with its priority (``<4>`` for a refused client certificate), and the line reads
``level event: message key=value``, or one JSON object with ``--log-format json``. A reviewer
found ``WARNING certescrow.service: refused a client certificate …`` with no prefix, so
``journalctl -p warning`` could not filter the service's log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fleet.fleetkit import Fleet, make_fleet, observation, report

REPO = Path(__file__).resolve().parents[2]


def _serve_into(fleet: Fleet, journal: Path, *args: str) -> list[str]:
    """Run ``policy serve`` with its stderr on ``journal`` (which ``$JOURNAL_STREAM`` names,
    as systemd does), have a host it never enrolled ask it something, stop it: its lines."""
    config = fleet.config()
    with journal.open("wb") as stderr:
        st = os.fstat(stderr.fileno())
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        process = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "policy", "serve", "--config", str(config),
             *args], stderr=stderr, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on https://127\.0\.0\.1:(\d+)",
                                      journal.read_text(errors="replace"))):
            assert process.poll() is None, journal.read_text(errors="replace")
            assert time.monotonic() < deadline, journal.read_text(errors="replace")
            time.sleep(0.05)
        fleet.port = int(found.group(1))
        stranger = fleet.client("stranger-host", register=False)
        assert fleet.connect(stranger).request("GET", "/v1/bindings").status == 403
    finally:
        fleet.close_clients()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    return journal.read_text(errors="replace").splitlines()


def test_a_refused_client_certificate_is_a_warning_the_journal_can_filter(
        tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "desk")
    lines = _serve_into(fleet, tmp_path / "journal")
    (refused,) = [line for line in lines if "refused a client certificate" in line]
    assert refused.startswith("<4>warning client-refused: refused a client certificate of "
                              "'stranger-host': "), lines
    assert refused.endswith(" host=stranger-host")
    (listening,) = [line for line in lines if "listening on" in line]
    assert listening.startswith("<6>info    listening: listening on https://127.0.0.1:")
    assert [line for line in lines if line.startswith("<6>info    stopping: ")]
    assert all(re.match(r"<[0-7]>[a-z]+ +[a-z-]+: ", line) for line in lines), lines


def test_json_lines_name_the_event_and_its_fields(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path / "desk")
    lines = _serve_into(fleet, tmp_path / "journal", "--log-format", "json")
    events = [json.loads(line) for line in lines]
    (refused,) = [e for e in events if e["event"] == "client-refused"]
    assert (refused["level"], refused["host"]) == ("warning", "stranger-host")
    assert refused["message"].startswith("refused a client certificate of 'stranger-host': ")


def test_a_binding_with_no_contract_recorded_unbound_is_said_so_not_contract_none(
        tmp_path: Path) -> None:
    """A store bound by tier or ``match_by_san`` only claims no contract: the service's
    ``report-unassigned`` line said ``contract None``."""
    fleet = make_fleet(tmp_path / "desk")
    fleet.start()
    try:
        claimed = [observation(f"/etc/ssl/local/{n}.pem", str(n) * 64) for n in (1, 2)]
        claimed[0]["binding"] = {"match_by_san": True}
        claimed[1]["binding"] = {"contract_id": "C-LOCAL"}
        answer = fleet.connect(fleet.client("nocontract-web01"), timeout_s=60).request(
            "POST", "/v1/report", report("nocontract-web01", 1, claimed))
        assert answer.status == 200, answer.body
        assert [u["contract_id"] for u in answer.body["unassigned"]] == [None, "C-LOCAL"]
    finally:
        fleet.close_clients()
        fleet.stop()
    (line,) = [line for line in fleet.stderr if "report-unassigned" in line]
    assert "None" not in line
    assert ("recorded unbound 2 observation(s) of 'nocontract-web01' claiming a binding the "
            "desk did not assign to its store (the first: no contract at "
            "'/etc/ssl/local/1.pem')") in line, line
