"""A host the desk revoked and then re-signed is let back in by a reload, not only by a restart
(review of session 16: the daemon's SIGHUP never read its client certificate again, and the
host stayed refused with `heartbeat-refused … revoked` until restarted). On real parts: a real
``policy serve`` with the fleet CA on 127.0.0.1, real ``agent run`` daemons, the desk's and the
host's real commands (``agent enroll``, ``fleet sign --force``), real mutual TLS."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.fleet_cli import CA_LABEL
from agent.fleet_client import CLIENT_LABEL, ClientCredentials, FleetClient, OutboxIntake
from agent.outbox import Outbox
from policy.fleet_registry import FleetRegistry
from tests.fleet.fleetkit import Fleet, run_desk
from tests.fleet.test_agent_process import Agent, _all_once, eventually
from vault import KeyFileSource, PutRequest, open_vault


def _now() -> datetime:
    return datetime.now(UTC)  # noqa: TID251 - the service checks revocation on the real clock


def _revoke(fleet: Fleet, host: str) -> None:
    with FleetRegistry.open(fleet.ledger) as registry:
        assert registry.revoke_host(host, at=_now()) >= 1


def _log(agent: Agent) -> str:
    return (agent.root / "agent.log").read_text()


@pytest.fixture
def served(fleet: Fleet) -> Fleet:
    fleet.start()  # (the fleet fixture stops it)
    return fleet


def _desk(fleet: Fleet, root: Path) -> Path:
    """A desk vault holding the fleet's CA as `fleet ca init` keeps it, so that the desk's
    `fleet sign` signs with the CA the service trusts (`root/vault.key` is its key)."""
    root.mkdir(mode=0o700)
    with open_vault(root / "vault.sqlite3", KeyFileSource(root / "vault.key"),
                    create=True) as vault:
        vault.put_many([PutRequest(kind="private-key", data=fleet.ca_key, label=CA_LABEL),
                        PutRequest(kind="certificate", data=fleet.ca_cert, label=CA_LABEL)])
    return root


@pytest.mark.slow
def test_a_host_re_signed_after_revocation_reports_again_after_sighup(served: Fleet,
                                                                       tmp_path: Path) -> None:
    """The reviewer's steps: revoke, `agent enroll` on the host, `fleet sign … --force` over
    the host's certificate file, `kill -HUP`: the next heartbeat and report are accepted by
    the same process."""
    agent = Agent(tmp_path / "web1", served, "web1", port=served.port)
    agent.add_certificates(1, "a")
    agent.start()
    try:
        eventually(lambda: _all_once(served, agent))
        _revoke(served, "web1")
        eventually(lambda: "heartbeat-refused" in _log(agent))
        assert "revoked" in _log(agent)

        csr = agent.root / "web1.csr"
        enrolled = run_desk(["--config", str(agent.config), "agent", "enroll", "--host",
                             "web1", "--csr-out", str(csr)], agent.root)
        assert enrolled.returncode == 0, enrolled.stderr
        desk = _desk(served, tmp_path / "desk-vault")
        signed = run_desk(["fleet", "sign", str(csr), "--host", "web1", "--out",
                           str(agent.root / "client.pem"), "--force", "--ledger",
                           served.ledger, "--vault", str(desk / "vault.sqlite3")], desk)
        assert signed.returncode == 0, signed.stderr
        assert agent.process is not None
        agent.process.send_signal(signal.SIGHUP)
        eventually(lambda: "heartbeat-accepted" in _log(agent))
        agent.add_certificates(1, "b")  # seen after the reload: reaches the desk
        eventually(lambda: _all_once(served, agent))
        assert agent.process.poll() is None  # the same process: no restart
    finally:
        agent.stop()
    text = _log(agent)
    assert "reloaded" in text
    assert "client-certificate-reloaded" in text


@pytest.mark.slow
def test_a_reload_with_a_certificate_no_vault_key_matches_keeps_the_working_one(
        served: Fleet, tmp_path: Path) -> None:
    """A new certificate whose key is not in the daemon's vault (the wrong file copied, or
    `agent enroll` run into another vault): the reload is refused, said in the log, and the
    certificate in use goes on delivering."""
    agent = Agent(tmp_path / "web2", served, "web2", port=served.port)
    agent.add_certificates(1, "a")
    agent.start()
    try:
        eventually(lambda: _all_once(served, agent))
        stranger = served.client("web2", register=False)  # its key is nowhere on this host
        (agent.root / "client.pem").write_bytes(stranger.cert_pem)
        assert agent.process is not None
        agent.process.send_signal(signal.SIGHUP)
        eventually(lambda: "reload-refused" in _log(agent))
        agent.add_certificates(1, "b")
        eventually(lambda: _all_once(served, agent))
    finally:
        agent.stop()
    text = _log(agent)
    refused = next(line for line in text.splitlines() if "reload-refused" in line)
    assert "no key in the vault" in refused, refused
    assert "client.pem" in refused, refused
    assert "keeps those it has" in refused, refused


# ---------------------------------------------------------------------- the sender, in-process

def _credentials(fleet: Fleet, root: Path, host: str) -> tuple[ClientCredentials, Path]:
    root.mkdir(mode=0o700)
    vault_path, key = root / "vault.sqlite3", root / "vault.key"
    client = fleet.client(host)
    with open_vault(vault_path, KeyFileSource(key), create=True) as vault:
        [put] = vault.put_many([PutRequest(kind="private-key", data=client.key_pem,
                                           label=CLIENT_LABEL)])
    (root / "client.pem").write_bytes(client.cert_pem)
    credentials = ClientCredentials(
        certificate=root / "client.pem", ca_pem=fleet.ca_cert, host=host,
        client_key=put.entry_id, open_vault=lambda: open_vault(vault_path, KeyFileSource(key)))
    return credentials, vault_path


def _re_signed(fleet: Fleet, vault_path: Path, host: str) -> bytes:
    """`agent enroll` (a new key into the host's vault) and `fleet sign`: the new certificate."""
    client = fleet.client(host)
    with open_vault(vault_path, KeyFileSource(vault_path.with_name("vault.key"))) as vault:
        vault.put_many([PutRequest(kind="private-key", data=client.key_pem,
                                   label=CLIENT_LABEL)])
    return client.cert_pem


def _intake(fleet: Fleet, credentials: ClientCredentials, root: Path, host: str
            ) -> OutboxIntake:
    client = FleetClient(f"https://127.0.0.1:{fleet.port}", credentials.context(),
                         timeout_s=10)
    fleet.clients.append(client)
    return OutboxIntake(outbox=Outbox.open(root / "outbox.sqlite3"), client=client, host=host,
                        clock=_now, credentials=credentials)


def test_a_reload_reads_the_certificate_the_configuration_names_now(served: Fleet,
                                                                     tmp_path: Path) -> None:
    """The daemon's reload hook with a `[report]` naming another certificate file: the next
    heartbeat presents it (the refusal's own pick-up watches only the file in use)."""
    root = tmp_path / "web3"
    credentials, vault_path = _credentials(served, root, "web3")
    intake = _intake(served, credentials, root, "web3")
    try:
        assert intake.heartbeat() is True
        _revoke(served, "web3")
        assert intake.heartbeat() is False
        assert "install the new certificate" in str(intake.refused_finding())
        (root / "client-2.pem").write_bytes(_re_signed(served, vault_path, "web3"))
        assert intake.heartbeat() is False  # not read until a reload
        intake.reload_credentials(
            {"server": f"https://127.0.0.1:{served.port}",
             "client_certificate": str(root / "client-2.pem"), "client_key": "stale-id",
             "ca_bundle": str(served.root / "ca.pem")}, source="config.toml",
            vault_settings={"path": str(vault_path), "key_source": "key-file",
                            "key_file": str(root / "vault.key")})
        assert intake.heartbeat() is True
        assert intake.refused_finding() is None
    finally:
        intake.close()


def test_a_refused_host_uses_its_certificate_file_replaced_since_it_was_read(
        served: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Re-signed and installed without a reload: the next refusal finds the file replaced and
    reads it; a file that cannot be used is said once, and the one in use stays."""
    root = tmp_path / "web4"
    credentials, vault_path = _credentials(served, root, "web4")
    intake = _intake(served, credentials, root, "web4")
    try:
        _revoke(served, "web4")
        assert intake.heartbeat() is False
        time.sleep(0.01)  # a new modification time, whatever the file system's granularity
        (root / "client.pem").write_bytes(b"half a certificate")
        assert intake.heartbeat() is False
        assert intake.heartbeat() is False
        unusable = [r for r in caplog.records
                    if getattr(r, "event", "") == "client-certificate-unusable"]
        assert len(unusable) == 1, unusable  # once for that version of the file
        new_pem = _re_signed(served, vault_path, "web4")
        (root / "client.pem").write_bytes(new_pem)
        assert intake.heartbeat() is False  # this refusal reads the new file ...
        assert intake.heartbeat() is True  # ... which the next request presents
        assert credentials.cert_pem == new_pem
    finally:
        intake.close()
