"""The agent applies the bindings the desk assigned (``certescrow fleet assign``): a real
``policy serve``, a real ``agent run`` daemon, real mutual TLS. The desk's assignment reaches
the ledger with the agent's next report, overrides the local configuration's binding (with a
log line), and a restart with the service down still reports under it (the saved set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import config_from_raw
from agent.fleet_bindings import AssignedBindings, apply_assigned
from agent.outbox import Outbox
from policy.category import Category
from policy.events import ApplicationAccepted, CertificateObserved
from policy.fleet_wire import WireError, read_bindings
from policy.intake import Binding
from policy.ledger import Ledger
from policy.tiers import Tier
from tests.fleet.fleetkit import Fleet
from tests.fleet.test_agent_process import REPO, Agent, eventually


def _observed(fleet: Fleet, contract: str) -> set[str]:
    with Ledger.open(fleet.ledger) as ledger:
        return {e.event.location for e in ledger.journal(contract)
                if isinstance(e.event, CertificateObserved)}


def _assign(fleet: Fleet, host: str, store: Path, contract: str) -> None:
    with Ledger.open(fleet.ledger) as ledger:  # the desk assigns only a contract it knows
        if contract not in ledger.contract_ids():
            ledger.append(ApplicationAccepted(
                contract_id=contract, at_utc=datetime(2026, 11, 1, tzinfo=UTC), item="byo",
                category=Category.III, tier=None))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "fleet", "assign", host, str(store),
         "--contract", contract, "--ledger", fleet.ledger],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr



@pytest.mark.slow
def test_desk_assignment_reaches_the_ledger_and_survives_a_restart_with_the_service_down(
        fleet: Fleet, tmp_path: Path) -> None:
    fleet.start()
    port = fleet.port
    agent = Agent(tmp_path / "web1", fleet, "web1", port=port)
    text = agent.config.read_text()
    agent.config.write_text(text.replace(f'path = "{agent.store}"\n',
                                         f'path = "{agent.store}"\ncontract = "C-LOCAL"\n'))
    agent.add_certificates(3, "a")
    agent.start()
    try:
        # A local binding the desk did not assign is recorded unbound (issue 13: the desk
        # owns the contracts; the acknowledgement lists it as unassigned).
        eventually(lambda: {o.location for o in fleet.observations() if o.host == "web1"}
                   >= set(agent.shas), timeout=60)
        assert _observed(fleet, "C-LOCAL") == set()
        _assign(fleet, "web1", agent.store, "C-DESK")
        # the next heartbeat (every second) fetches it, the daemon reloads, reports again
        eventually(lambda: _observed(fleet, "C-DESK") == set(agent.shas), timeout=60)
    finally:
        agent.stop()
    log = (agent.root / "agent.log").read_text()
    assert "binding-assigned" in log
    assert "binding-overridden" in log
    assert "C-LOCAL" in log
    saved = json.loads((agent.root / "state" / "fleet-bindings.json").read_text())
    assert saved["stores"][0]["binding"]["contract_id"] == "C-DESK"

    # The service is down when the agent starts again: the saved set is applied.
    fleet.stop()
    agent.add_certificates(1, "b")
    new = str(agent.store / "b0.pem")
    agent.start()
    try:
        def queued_under_the_desk_contract() -> bool:
            if not agent.outbox.exists():
                return False
            with Outbox.open(agent.outbox) as outbox:
                batch = outbox.oldest()
            return batch is not None and any(
                o["location"] == new and o["binding"]["contract_id"] == "C-DESK"
                for o in batch.body["observations"])

        eventually(queued_under_the_desk_contract, timeout=60)
        fleet.start(port=port)
        eventually(lambda: new in _observed(fleet, "C-DESK"), timeout=60)
        assert new not in _observed(fleet, "C-LOCAL")
    finally:
        agent.stop()


def test_the_desks_binding_wins_over_the_local_one_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_raw({"agent": {"host": "web1", "stores": [
        {"path": "/srv/a", "contract": "C-LOCAL", "escrow": True},
        {"path": "/srv/b", "tier": "1y"}]}})
    assigned = {"/srv/a/": Binding(contract_id="C-DESK"), "/srv/elsewhere": Binding(item="x")}
    with caplog.at_level("INFO", logger="certescrow"):
        applied = apply_assigned(config, assigned)
    a, b = applied.agent.stores
    assert a.binding == Binding(contract_id="C-DESK")
    assert a.escrow  # the store's other settings stay local
    assert b.binding == Binding(tier=Tier("1y"))
    events = [r.__dict__.get("event") for r in caplog.records]
    assert events.count("binding-overridden") == 1
    assert events.count("binding-unwatched") == 1
    assert apply_assigned(config, None) is config


def test_bindings_from_the_service_are_checked_like_any_input(tmp_path: Path) -> None:
    good = {"host": "web1", "stores": [{"store": "/srv/a", "binding": {"contract_id": "C"}}]}
    assert read_bindings(good, host="web1") == {"/srv/a": Binding(contract_id="C")}
    for bad in ({**good, "host": "web2"},
                {**good, "extra": 1},
                {"host": "web1", "stores": [{"store": "/srv/a", "binding": {"tier": "9y"}}]},
                {"host": "web1", "stores": [{"store": "/a\x00", "binding": {}}]},
                {"host": "web1", "stores": [{"store": "/a", "binding": {}}] * 2}):
        with pytest.raises(WireError):
            read_bindings(bad, host="web1")
    holder = AssignedBindings(tmp_path / "state" / "b.json", host="web1")
    assert holder.current() is None
    assert holder.update(good) is True
    assert holder.update(good) is False
    with pytest.raises(WireError):
        holder.update({**good, "host": "web2"})
    again = AssignedBindings(tmp_path / "state" / "b.json", host="web1")
    again.load()
    assert again.current() == {"/srv/a": Binding(contract_id="C")}
    (tmp_path / "state" / "b.json").write_text("{not json")
    broken = AssignedBindings(tmp_path / "state" / "b.json", host="web1")
    broken.load()
    assert broken.current() is None
