"""An agent renews its own client certificate through the service, before it expires, with
the certificate it still has; a restarted agent finds the new key that goes with it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.fleet_ca import certificate_validity
from agent.fleet_client import (
    CLIENT_LABEL,
    ClientCredentials,
    FleetClient,
    OutboxIntake,
)
from agent.outbox import Outbox
from policy.fleet_registry import FleetRegistry
from tests.fleet.fleetkit import NOW, Fleet, make_fleet, observation, report
from vault import KeyFileSource, PutRequest, open_vault


@pytest.fixture
def renewing(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path / "desk")
    made.start(extra=f'ca_key = "{made.ca_key_id}"')
    try:
        yield made
    finally:
        made.stop()


def _agent(fleet: Fleet, root: Path, host: str, *, age: timedelta) -> ClientCredentials:
    root.mkdir(mode=0o700)
    client = fleet.client(host, at=NOW - age, lifetime=timedelta(days=30))
    vault_path, key = root / "vault.sqlite3", root / "vault.key"
    with open_vault(vault_path, KeyFileSource(key), create=True) as vault:
        [put] = vault.put_many([PutRequest(kind="private-key", data=client.key_pem,
                                           label=CLIENT_LABEL)])
    (root / "client.pem").write_bytes(client.cert_pem)
    return ClientCredentials(certificate=root / "client.pem", ca_pem=fleet.ca_cert, host=host,
                             client_key=put.entry_id,
                             open_vault=lambda: open_vault(vault_path, KeyFileSource(key)))


def test_a_certificate_with_a_third_of_its_life_left_is_renewed(renewing: Fleet,
                                                                 tmp_path: Path) -> None:
    credentials = _agent(renewing, tmp_path / "agent", "renew-host", age=timedelta(days=21))
    client = FleetClient(f"https://127.0.0.1:{renewing.port}", credentials.context())
    outbox = Outbox.open(tmp_path / "agent" / "outbox.sqlite3")
    intake = OutboxIntake(outbox=outbox, client=client, host="renew-host",
                          clock=lambda: NOW, credentials=credentials)
    try:
        old_pem = credentials.cert_pem
        assert intake.renew_if_due() is True
        new_pem = (tmp_path / "agent" / "client.pem").read_bytes()
        assert new_pem != old_pem
        assert certificate_validity(new_pem)[1] - NOW > timedelta(days=29)
        assert (tmp_path / "agent" / "client.pem").stat().st_mode & 0o777 == 0o644 & ~_umask()
        # The renewed certificate works, and the service knows it.
        assert client.request("POST", "/v1/report", report(
            "renew-host", 1, [observation("/a.pem", "a" * 64)])).status == 200
        with FleetRegistry.open(renewing.ledger) as registry:
            [host] = [h for h in registry.hosts(at=NOW, silent_after=timedelta(minutes=5))
                      if h.host == "renew-host"]
            assert host.client_not_after_utc == certificate_validity(new_pem)[1]
        assert intake.renew_if_due() is False  # a fresh certificate is not renewed again
    finally:
        intake.close()
    # A restarted agent (config still naming the old key) finds the key of the new file.
    restarted = ClientCredentials(certificate=credentials.certificate, ca_pem=renewing.ca_cert,
                                  host="renew-host", client_key=credentials.client_key,
                                  open_vault=credentials.open_vault)
    again = FleetClient(f"https://127.0.0.1:{renewing.port}", restarted.context())
    try:
        assert again.request("GET", "/v1/bindings").status == 200
    finally:
        again.close()


def test_a_young_certificate_is_not_renewed(renewing: Fleet, tmp_path: Path) -> None:
    credentials = _agent(renewing, tmp_path / "agent", "young-host", age=timedelta(days=5))
    credentials.context()
    assert credentials.renewal_due(NOW) is False


def test_renewal_for_another_host_or_without_a_ca_key_is_refused(renewing: Fleet,
                                                                   tmp_path: Path) -> None:
    credentials = _agent(renewing, tmp_path / "agent", "asker", age=timedelta(days=25))
    client = FleetClient(f"https://127.0.0.1:{renewing.port}", credentials.context())
    try:
        from agent.fleet_ca import make_agent_csr

        _, csr = make_agent_csr(host="victim")
        refused = client.request("POST", "/v1/renew", {"host": "victim", "csr": csr.decode()})
        assert refused.status == 403
        bad = client.request("POST", "/v1/renew", {"host": "asker", "csr": "not a csr"})
        assert bad.status == 400
    finally:
        client.close()


@pytest.mark.parametrize(("ca_left", "renewed"), [(timedelta(days=10), True),
                                                  (timedelta(hours=12), False)],
                         ids=["cut", "refused"])
def test_a_renewal_the_fleet_ca_cuts_short_or_refuses_is_in_the_services_log(
        tmp_path: Path, ca_left: timedelta, renewed: bool) -> None:
    """A CA near its end renews every host's certificate short, then refuses them all: the
    operator of the service must read that in its log, not in the agents' (review 10)."""
    fleet = make_fleet(tmp_path / "desk", ca_lifetime=timedelta(days=365) + ca_left)
    fleet.start(extra=f'ca_key = "{fleet.ca_key_id}"')
    try:
        credentials = _agent(fleet, tmp_path / "agent", "late-host", age=timedelta(days=25))
        client = FleetClient(f"https://127.0.0.1:{fleet.port}", credentials.context())
        try:
            from agent.fleet_ca import make_agent_csr

            _, csr = make_agent_csr(host="late-host")
            answer = client.request("POST", "/v1/renew",
                                    {"host": "late-host", "csr": csr.decode()})
        finally:
            client.close()
    finally:
        fleet.stop()
    log = "".join(fleet.stderr)
    if renewed:
        assert answer.status == 200, answer.body
        assert "renewed 'late-host' short: the certificate ends at " in log
        assert "with the fleet CA: valid for 9 days instead of 30 days (make a new CA" in log
    else:
        assert answer.status == 400, answer.body
        assert "make a new CA" in answer.body["error"]
        assert "refused a renewal of 'late-host': refused: the certificate ends at " in log
        assert "less than 24 hours; make a new CA" in log


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
