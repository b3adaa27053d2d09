"""Real ``certescrow agent run`` daemons reporting to a real ``policy serve`` over real mutual
TLS, through their outbox: the service killed mid-stream and restarted, or down when the agent
starts, and afterwards every observation is in the ledger exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.outbox import Outbox
from tests.certfactory import make_cert
from tests.fleet.fleetkit import Fleet, make_fleet
from tests.pgdb import postgres_schema
from vault import KeyFileSource, open_vault

REPO = Path(__file__).resolve().parents[2]


def eventually(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


class Agent:
    def __init__(self, root: Path, fleet: Fleet, host: str, *, port: int) -> None:
        root.mkdir(mode=0o700, parents=True)
        self.root = root
        self.host = host
        self.store = root / "store"
        self.store.mkdir()
        client = fleet.client(host)
        with open_vault(root / "vault.sqlite3", KeyFileSource(root / "vault.key"),
                        create=True) as vault:
            key_id = vault.put("private-key", client.key_pem).entry_id
        (root / "client.pem").write_bytes(client.cert_pem)
        self.outbox = root / "state" / "outbox.sqlite3"
        self.config = root / "config.toml"
        self.config.write_text(
            f'[policy]\nledger = "{root / "state" / "ledger.sqlite3"}"\n'
            f'[vault]\npath = "{root / "vault.sqlite3"}"\nkey_source = "key-file"\n'
            f'key_file = "{root / "vault.key"}"\n'
            f'[agent]\nhost = "{host}"\nquiet_period_ms = 100\nresync_interval_s = 3600\n'
            f'[[agent.stores]]\npath = "{self.store}"\n'
            f'[report]\nserver = "https://127.0.0.1:{port}"\n'
            f'client_certificate = "{root / "client.pem"}"\nclient_key = "{key_id}"\n'
            f'ca_bundle = "{fleet.root / "ca.pem"}"\nheartbeat_s = 1\nbatch = 20\n'
            f"timeout_s = 5\n")
        os.chmod(self.config, 0o600)
        self.process: subprocess.Popen[bytes] | None = None
        self.shas: dict[str, str] = {}

    def add_certificates(self, count: int, prefix: str) -> None:
        for i in range(count):
            issued = make_cert(sans=(f"{prefix}{i}.example.jp",))
            path = self.store / f"{prefix}{i}.pem"
            path.write_bytes(issued.pem)
            self.shas[str(path)] = issued.sha256

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CERTESCROW_", "NOTIFY_", "WATCHDOG_"))}
        env["PYTHONPATH"] = str(REPO)
        self.log = (self.root / "agent.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "agent", "run", "--config", str(self.config)],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log, cwd=REPO)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
            self.process = None
            self.log.close()



def _ledger_counts(fleet: Fleet, host: str) -> Counter[tuple[str, str]]:
    return Counter((o.location, o.facts.sha256) for o in fleet.observations() if o.host == host)


def _all_once(fleet: Fleet, agent: Agent) -> bool:
    counts = _ledger_counts(fleet, agent.host)
    return set(counts) == set(agent.shas.items())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_service_killed_mid_stream_and_restarted_every_observation_once(
        tmp_path: Path, backend: str) -> None:
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(postgres_schema()) if backend == "postgresql" else None
        fleet = make_fleet(tmp_path / "desk", ledger=dsn)
        stack.callback(fleet.stop, signal.SIGKILL)
        _killed_mid_stream(fleet, tmp_path)


def _killed_mid_stream(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start()
    port = fleet.port
    agent = Agent(tmp_path / "web1", fleet, "web1", port=port)
    agent.add_certificates(120, "a")
    agent.start()
    try:
        eventually(lambda: len(_ledger_counts(fleet, "web1")) > 0, timeout=60)
        fleet.stop(signal.SIGKILL)  # mid-stream: 120 observations go as 6 batches of 20
        agent.add_certificates(10, "b")  # seen while the service is down: wait in the outbox
        time.sleep(1.5)
        fleet.start(port=port)
        eventually(lambda: _all_once(fleet, agent), timeout=90)
        counts = _ledger_counts(fleet, "web1")
        assert all(n == 1 for n in counts.values()), "an observation was recorded twice"
        assert len(counts) == 130
        with Outbox.open(agent.outbox) as outbox:
            eventually(lambda: outbox.status().pending_batches == 0, timeout=30)
        # The heartbeat carries the inventory.
        with __import__("policy.fleet_registry").fleet_registry.FleetRegistry.open(
                fleet.ledger) as registry:
            from datetime import UTC, datetime, timedelta

            def inventory_complete() -> bool:
                [web1] = [h for h in registry.hosts(
                    at=datetime.now(UTC), silent_after=timedelta(minutes=5))  # noqa: TID251
                    if h.host == "web1"]
                return web1.inventory.get("certificates") == 130

            eventually(inventory_complete, timeout=30)
    finally:
        agent.stop()


@pytest.mark.slow
def test_service_down_when_the_agent_starts_then_back(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start()
    port = fleet.port
    fleet.stop()
    agent = Agent(tmp_path / "web2", fleet, "web2", port=port)
    agent.add_certificates(30, "c")
    agent.start()
    try:
        eventually(lambda: agent.outbox.exists(), timeout=30)
        time.sleep(2)
        assert _ledger_counts(fleet, "web2") == Counter()
        fleet.start(port=port)
        eventually(lambda: _all_once(fleet, agent), timeout=90)
        assert all(n == 1 for n in _ledger_counts(fleet, "web2").values())
        # the operator reads why it waited, and that it is over (issue 13)
        log = agent.root / "agent.log"
        eventually(lambda: "report-recovered" in log.read_text(), timeout=30)
        assert "connection refused by 127.0.0.1" in log.read_text()
    finally:
        agent.stop()


@pytest.mark.slow
def test_agent_killed_with_a_full_outbox_delivers_after_restart(fleet: Fleet,
                                                                tmp_path: Path) -> None:
    fleet.start()
    port = fleet.port
    fleet.stop()
    agent = Agent(tmp_path / "web3", fleet, "web3", port=port)
    agent.add_certificates(40, "d")
    agent.start()

    def queued() -> bool:
        if not agent.outbox.exists():
            return False
        with Outbox.open(agent.outbox) as outbox:
            return outbox.status().pending_observations >= 40

    eventually(queued, timeout=60)
    agent.stop(signal.SIGKILL)  # the outbox holds everything; nothing was acknowledged
    fleet.start(port=port)
    agent.start()
    try:
        eventually(lambda: _all_once(fleet, agent), timeout=90)
        assert all(n == 1 for n in _ledger_counts(fleet, "web3").values())
        with Outbox.open(agent.outbox) as outbox:
            eventually(lambda: outbox.status().pending_batches == 0, timeout=30)
    finally:
        agent.stop()


@pytest.mark.slow
def test_agent_run_once_delivers_before_it_exits(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start()
    agent = Agent(tmp_path / "web4", fleet, "web4", port=fleet.port)
    agent.add_certificates(5, "e")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CERTESCROW_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "agent", "run", "--once", "--config",
         str(agent.config)], env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr
    assert _all_once(fleet, agent)
    with Outbox.open(agent.outbox) as outbox:
        assert outbox.status().pending_batches == 0
