"""The enrolment as docs/fleet.md writes it, run as a new operator runs it: real commands, a real
``policy serve``, a real agent with a key from ``agent enroll`` and a certificate from ``fleet
sign``; then what the desk's commands refuse (issue 13)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.certfactory import make_cert
from tests.clirun import CERTESCROW, certescrow, clean_env

NOW = datetime.now(UTC)  # noqa: TID251 - OpenSSL and the service read the real clock


class Desk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        root.chmod(0o700)
        self.home.mkdir(parents=True)
        self.vault = ["--vault", str(root / "desk-vault.sqlite3"),
                      "--key-file", str(root / "desk-vault.key")]
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def run(self, *args: str, at: str | None = None) -> subprocess.CompletedProcess[str]:
        return certescrow(*args, home=self.home, at=at)

    def start(self, serve: Path) -> None:
        self.process = subprocess.Popen(
            [str(CERTESCROW), "policy", "serve", "--config", str(serve)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env=clean_env(self.home))
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                return
            if not line:
                break
        raise AssertionError("policy serve did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            if self.process.stderr is not None:
                self.process.stderr.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = Desk(tmp_path)
    yield made
    made.stop()


def _entry(text: str, key: str) -> str:
    found = re.search(rf'{key} = "([^"]+)"', text)
    assert found is not None, text
    return found.group(1)


def _enrolled_host(desk: Desk, name: str, *sign_with: str) -> tuple[Path, subprocess.
                                                                     CompletedProcess[str]]:
    """A host enrolled as the docs say; returns its config and the sign command's result."""
    host = desk.root / name
    host.mkdir(mode=0o700)
    store = host / "store"
    store.mkdir()
    (store / "cert.pem").write_bytes(make_cert(
        not_before=NOW - timedelta(days=10), lifetime=timedelta(days=200)).pem)
    config = host / "config.toml"
    config.write_text(
        f'[policy]\nledger = "{host}/state/ledger.sqlite3"\n'
        f'[vault]\npath = "{host}/vault.sqlite3"\nkey_source = "key-file"\n'
        f'key_file = "{host}/vault.key"\n'
        f'[agent]\nhost = "{name}"\nquiet_period_ms = 1\n[[agent.stores]]\npath = "{store}"\n')
    enrolled = certescrow("--config", str(config), "agent", "enroll", "--csr-out",
                          str(host / "host.csr"), home=host)
    assert enrolled.returncode == 0, enrolled.stderr
    signed = desk.run("fleet", "sign", str(host / "host.csr"), "--host", name, "--out",
                      str(host / "client.pem"), *desk.vault, *sign_with)
    config.write_text(config.read_text() + (
        f'[report]\nserver = "https://127.0.0.1:{desk.port}"\n'
        f'client_certificate = "{host}/client.pem"\n'
        f'client_key = "{_entry(enrolled.stdout + enrolled.stderr, "client_key")}"\n'
        f'ca_bundle = "{desk.root}/fleet-ca.pem"\n'))
    return config, signed


def _once(config: Path) -> subprocess.CompletedProcess[str]:
    return certescrow("--config", str(config), "agent", "run", "--once", "--exit-status",
                      "--json", home=config.parent)


def test_the_documented_enrolment_reports_and_the_desk_refuses_mistakes(desk: Desk) -> None:
    root = desk.root
    made = desk.run("fleet", "ca", "init", "--out", str(root / "fleet-ca.pem"), *desk.vault)
    assert made.returncode == 0, made.stderr
    ca_key = _entry(made.stdout, "ca_key")  # the CA key's vault entry, for [serve] ca_key
    server = desk.run("fleet", "server-cert", "127.0.0.1", "--out", str(root / "policy.pem"),
                      *desk.vault)
    assert server.returncode == 0, server.stderr
    ledger = root / "fleet-ledger.sqlite3"
    serve = root / "policy-serve.toml"
    serve.write_text(
        f'[serve]\nlisten = "127.0.0.1"\nport = 0\nledger = "{ledger}"\n'
        f'ca_certificate = "{root}/fleet-ca.pem"\ncertificate = "{root}/policy.pem"\n'
        f'key = "{_entry(server.stdout, "key")}"\nca_key = "{ca_key}"\n'
        f'[vault]\npath = "{root}/desk-vault.sqlite3"\nkey_source = "key-file"\n'
        f'key_file = "{root}/desk-vault.key"\n')
    desk.start(serve)

    # Signed into the service's ledger (--serve-config): the host reports, exit 0.
    config, signed = _enrolled_host(desk, "WEB01", "--serve-config", str(serve))
    assert signed.returncode == 0, signed.stderr
    assert str(ledger) in signed.stdout
    done = _once(config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agent_findings" not in json.loads(done.stdout)

    # Signed into the desk's per-user ledger: the service says why, the run is critical.
    stray, signed = _enrolled_host(desk, "web02")
    assert signed.returncode == 0, signed.stderr
    refused = _once(stray)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not registered in this service's ledger" in refused.stdout

    listing = desk.run("fleet", "hosts", "--json", "--serve-config", str(serve))
    hosts = {h["host"]: h for h in json.loads(listing.stdout)["hosts"]}
    assert set(hosts) == {"web01"}  # WEB01 and web01 are one host
    assert hosts["web01"]["state"] == "ok"
    later = (NOW + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = desk.run("fleet", "hosts", "--serve-config", str(serve), "--at", later)
    assert re.search(r"^web01 .* EXPIRED$", expired.stdout, re.M), expired.stdout
    before = desk.run("fleet", "hosts", "--json", "--serve-config", str(serve),
                      "--at", "2020-01-01")
    assert json.loads(before.stdout)["hosts"] == []  # enrolled after --at

    # What the desk's commands refuse.
    typo = root / "fleet-ledgr.sqlite3"
    missing = desk.run("fleet", "hosts", "--ledger", str(typo))
    assert missing.returncode == 13, missing.stdout + missing.stderr
    assert "no ledger here" in missing.stderr
    assert not typo.exists()
    stale = desk.run("fleet", "sign", str(root / "web02" / "host.csr"), "--host", "web02",
                     "--at", "2026-10-01", "--days", "1", "--serve-config", str(serve),
                     *desk.vault)
    assert stale.returncode == 41
    assert "already expired" in stale.stderr
    store = "/etc/letsencrypt/live"
    cases = [(("nohost", store, "--item", "byo"), 41, "no host"),
             (("web01", "relative/path", "--item", "byo"), 41, "absolute path"),
             (("web01", store), 41, "empty binding"),
             (("web01", store, "--contract", "C-NOPE"), 41, "no contract"),
             (("web01", store, "--item", "nonexistent-item"), 12, "unknown item"),
             (("web01", store, "--tier", "9y"), 12, "unknown tier")]
    for args, code, said in cases:
        result = desk.run("fleet", "assign", *args, "--serve-config", str(serve))
        assert (result.returncode, said in result.stderr) == (code, True), (args, result.stderr)
    assert desk.run("fleet", "assign", "WEB01", store, "--item", "byo",
                    "--serve-config", str(serve)).returncode == 0
    listed = desk.run("fleet", "assignments", "--json", "--serve-config", str(serve))
    assert json.loads(listed.stdout)["assignments"] == [
        {"host": "web01", "store": store, "binding": {
            "category": None, "contract_id": None, "item": "byo", "match_by_san": False,
            "tier": None}}]
    assert desk.run("fleet", "unassign", "web01", store, "--serve-config",
                    str(serve)).returncode == 0
    listed = desk.run("fleet", "assignments", "--json", "--serve-config", str(serve))
    assert json.loads(listed.stdout)["assignments"] == []


def test_enroll_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # no key file, no keyring: the vault cannot be opened
    failed = certescrow("agent", "enroll", "--host", "web01", "--csr-out",
                        str(tmp_path / "web01.csr"), home=home,
                        PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring")
    assert failed.returncode != 0
    assert list(home.rglob("*")) == []
