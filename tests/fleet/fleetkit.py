"""A real fleet for tests: a fleet CA, client certificates issued the way ``fleet sign`` issues
them (and registered), and a real ``certescrow policy serve`` process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.fleet_ca import (
    CA_LIFETIME,
    client_ssl_context,
    issue_ca,
    issue_client_certificate,
    issue_server_certificate,
    make_agent_csr,
)
from agent.fleet_client import FleetClient
from policy.events import instant_to_text
from policy.fleet_registry import FleetRegistry, IssuedRecord
from policy.ledger import Ledger
from tests.pgdb import postgres_schema
from vault import KeyFileSource, open_vault

NOW = datetime.now(UTC)  # noqa: TID251 - OpenSSL checks validity against the real clock


@dataclass
class Client:
    host: str
    key_pem: bytes
    cert_pem: bytes
    serial: str


@dataclass
class Fleet:
    root: Path
    ca_key: bytes
    ca_cert: bytes
    ledger: str
    server_cert: Path
    server_key_id: str
    ca_key_id: str
    vault_path: Path
    vault_key: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    stderr: list[str] = field(default_factory=list)
    clients: list[FleetClient] = field(default_factory=list)

    # ------------------------------------------------------------------ certificates
    def client(self, host: str, *, at: datetime | None = None,
               lifetime: timedelta = timedelta(days=30), register: bool = True) -> Client:
        key_pem, csr_pem = make_agent_csr(host=host)
        issued = issue_client_certificate(ca_key_pem=self.ca_key, ca_cert_pem=self.ca_cert,
                                          csr_pem=csr_pem, host=host,
                                          at=at or NOW - timedelta(minutes=5),
                                          lifetime=lifetime)
        if register:
            with FleetRegistry.open(self.ledger) as registry:
                registry.record_certificate(IssuedRecord(
                    host=host, serial=issued.serial, not_before_utc=issued.not_before_utc,
                    not_after_utc=issued.not_after_utc, key_sha256=issued.key_sha256), at=NOW)
        return Client(host=host, key_pem=key_pem, cert_pem=issued.pem, serial=issued.serial)

    def connect(self, client: Client | None, *, ca_cert: bytes | None = None,
                timeout_s: float = 10.0) -> FleetClient:
        import ssl

        if client is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_verify_locations(cadata=self.ca_cert.decode())
        else:
            context = client_ssl_context(cert_pem=client.cert_pem, key_pem=client.key_pem,
                                         ca_cert_pem=ca_cert or self.ca_cert)
        made = FleetClient(f"https://127.0.0.1:{self.port}", context, timeout_s=timeout_s)
        self.clients.append(made)
        return made

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    # ------------------------------------------------------------------ the service
    def config(self, *, port: int = 0, extra: str = "") -> Path:
        path = self.root / "serve.toml"
        path.write_text(
            f'[serve]\nlisten = "127.0.0.1"\nport = {port}\nledger = "{self.ledger}"\n'
            f'ca_certificate = "{self.root / "ca.pem"}"\ncertificate = "{self.server_cert}"\n'
            f'key = "{self.server_key_id}"\n{extra}\n'
            f'[vault]\npath = "{self.vault_path}"\nkey_source = "key-file"\n'
            f'key_file = "{self.vault_key}"\n')
        return path

    def start(self, *, port: int = 0, extra: str = "", cwd: Path | None = None) -> None:
        """``cwd``: run the installed ``certescrow`` from there (else ``-m`` from the
        repository)."""
        config = self.config(port=port, extra=extra)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
        command = ([str(Path(sys.executable).with_name("certescrow"))] if cwd is not None
                   else [sys.executable, "-m", "agent.main"])
        self.process = subprocess.Popen(
            [*command, "policy", "serve", "--config", str(config)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
            cwd=cwd if cwd is not None else Path(__file__).resolve().parents[2])
        assert self.process.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stderr.readline().decode(errors="replace")
            if not line:
                break
            self.stderr.append(line)
            found = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                return
        self.stop(signal.SIGKILL)
        raise AssertionError(f"policy serve did not start: {''.join(self.stderr)}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        finally:
            if self.process.stderr is not None:
                if self.process.returncode is not None:  # what it logged while serving
                    self.stderr += self.process.stderr.read().decode(
                        errors="replace").splitlines(keepends=True)
                self.process.stderr.close()
            self.process = None

    # ------------------------------------------------------------------ the ledger
    def journal_count(self) -> int:
        with Ledger.open(self.ledger) as ledger:
            return ledger.count()

    def observations(self) -> list[Any]:
        with Ledger.open(self.ledger) as ledger:
            return [e.event for e in ledger.unbound_observations()]


def make_fleet(root: Path, *, ledger: str | None = None,
               ca_lifetime: timedelta = CA_LIFETIME) -> Fleet:
    """A fleet whose ledger is ``ledger`` (a ``postgresql://`` DSN) or an SQLite file, and
    whose CA, made a year ago, lives ``ca_lifetime``."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    # A year old: the tests issue certificates dated weeks back (expired, due for renewal),
    # and a certificate starts no earlier than its CA.
    ca_key, ca_cert = issue_ca(name="test fleet CA", at=NOW - timedelta(days=365),
                               lifetime=ca_lifetime)
    (root / "ca.pem").write_bytes(ca_cert)
    server_key, server = issue_server_certificate(ca_key_pem=ca_key, ca_cert_pem=ca_cert,
                                                  names=["127.0.0.1", "localhost"],
                                                  at=NOW - timedelta(days=1))
    (root / "server.pem").write_bytes(server.pem)
    vault_path, vault_key = root / "vault.sqlite3", root / "vault.key"
    with open_vault(vault_path, KeyFileSource(vault_key), create=True) as vault:
        key_id = vault.put("private-key", server_key).entry_id
        ca_key_id = vault.put("private-key", ca_key).entry_id
    ledger = ledger or str(root / "ledger.sqlite3")
    Ledger.open(ledger).close()
    return Fleet(root=root, ca_key=ca_key, ca_cert=ca_cert, ledger=ledger,
                 server_cert=root / "server.pem", server_key_id=key_id, ca_key_id=ca_key_id,
                 vault_path=vault_path,
                 vault_key=vault_key)


@contextlib.contextmanager
def running_fleet(root: Path) -> Iterator[Fleet]:
    """A fleet made under ``root`` whose service runs until the block ends (a module's shared
    service: tests that each need only requests to it)."""
    made = make_fleet(root)
    made.start()
    try:
        yield made
    finally:
        made.stop()
        made.close_clients()


def facts_json(sha: str, *, subject: str = "CN=www.example.jp",
               sans: tuple[str, ...] = ("www.example.jp",)) -> dict[str, Any]:
    return {"sha256": sha, "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2027-01-01T00:00:00Z", "subject": subject, "sans": list(sans)}


def report(host: str, sequence: int, observations: list[dict[str, Any]], *,
           outbox: str = "test-outbox", gone: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    return {"host": host, "outbox": outbox, "sequence": sequence,
            "at": instant_to_text(NOW), "observations": observations, "gone": gone or []}


def observation(location: str, sha: str, *, index: int = 0, **facts: Any) -> dict[str, Any]:
    return {"location": location, "index": index, "observed_at": instant_to_text(NOW),
            "facts": facts_json(sha, **facts)}


@contextlib.contextmanager
def served_fleet(root: Path, *, backend: str,
                 extra: Callable[[Fleet], str] = lambda _: "") -> Iterator[Fleet]:
    """A fleet whose service runs for the block, its ledger an SQLite file or (``backend``
    ``"postgresql"``) a PostgreSQL schema of its own, dropped afterwards; ``extra`` gives the
    ``[serve]`` lines of the made fleet (its CA key's vault id, say)."""
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(postgres_schema()) if backend == "postgresql" else None
        made = make_fleet(root, ledger=dsn)
        made.start(extra=extra(made))
        try:
            yield made
        finally:
            made.stop()
            made.close_clients()


def run_desk(args: list[str], cwd: Path, *, stdout: Any = subprocess.PIPE
             ) -> subprocess.CompletedProcess[str]:
    """``certescrow ARGS`` in a real process at ``cwd`` (its home too), the vault key file
    ``cwd/vault.key``, no CERTESCROW_ or XDG_ setting of the test's environment. ``stdout``:
    where its standard output goes (captured by default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[2]), HOME=str(cwd),
               CERTESCROW_VAULT_KEY_FILE=str(cwd / "vault.key"))
    return subprocess.run([sys.executable, "-m", "agent.main", *args], env=env, cwd=cwd,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
                          check=False)
