"""Shared pieces for the daemon's tests: a certbot-shaped store, a recording intake over the
real ledger, a stepping clock."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.config import Config, config_from_raw
from agent.daemon import Daemon
from agent.reader import read_file
from agent.records import FileResult
from policy.intake import IntakeReceipt, Observation
from policy.ledger import Ledger
from tests.certfactory import Issued, fresh_key, make_cert

AT = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)


class SteppingClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingIntake:
    """The real ledger, with every call also kept in order for assertions."""

    ledger: Ledger
    reported: list[Observation] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        self.reported.extend(observations)
        return self.ledger.report(observations, at=at)

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        self.gone.append(location)
        return self.ledger.report_gone(host, location, at=at)

    def open_sightings(self, host: str) -> list[tuple[str, int, str]]:
        return list(self.ledger.open_sightings(host))

    def close(self) -> None:
        self.ledger.close()

    def locations(self) -> list[str]:
        return [o.location for o in self.reported]

    def clear(self) -> None:
        self.reported.clear()
        self.gone.clear()


class CountingReader:
    """The real reader, counting the files it was asked to read."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, path: Path, **kwargs: Any) -> FileResult:
        self.calls.append(str(path))
        return read_file(path, **kwargs)


def store_config(stores: list[dict[str, Any]], **agent: Any) -> Config:
    return config_from_raw({"agent": {"host": "web1", "quiet_period_ms": 300, **agent,
                                      "stores": stores}})


def make_daemon(config: Config, tmp_path: Path, *, clock: SteppingClock | None = None,
                reader: Any = None, **kwargs: Any) -> tuple[Daemon, RecordingIntake]:
    intake = RecordingIntake(Ledger.open(tmp_path / "state" / "ledger.sqlite3"))
    daemon = Daemon(config, intake=intake, clock=lambda: AT,
                    monotonic=clock if clock is not None else SteppingClock(),
                    reader=reader, sleep=lambda s: None, **kwargs)
    return daemon, intake


@dataclass
class Certbot:
    """``live/<name>/{cert,chain,fullchain,privkey}.pem`` -> ``../../archive/<name>/*N.pem``,
    renewed the way certbot does it: new archive files, then the links one at a time."""

    root: Path
    name: str = "example.jp"
    generation: int = 0
    issued: Issued | None = None

    @property
    def live(self) -> Path:
        return self.root / "live" / self.name

    @property
    def archive(self) -> Path:
        return self.root / "archive" / self.name

    def write_generation(self) -> Issued:
        self.generation += 1
        n = self.generation
        issued = make_cert(not_before=AT - timedelta(days=10 * n), sans=(self.name,),
                           key=fresh_key("ec"))
        self.archive.mkdir(parents=True, exist_ok=True)
        chain = make_cert(sans=(), is_ca=True).pem  # stands in for the intermediate
        (self.archive / f"cert{n}.pem").write_bytes(issued.pem)
        (self.archive / f"chain{n}.pem").write_bytes(chain)
        (self.archive / f"fullchain{n}.pem").write_bytes(issued.pem + chain)
        key = self.archive / f"privkey{n}.pem"
        key.write_bytes(issued.key_pem())
        key.chmod(0o600)
        self.issued = issued
        return issued

    def link(self, kind: str) -> Path:
        """certbot's update: unlink, then symlink to the newest generation."""
        self.live.mkdir(parents=True, exist_ok=True)
        link = self.live / f"{kind}.pem"
        if os.path.lexists(link):
            link.unlink()
        os.symlink(f"../../archive/{self.name}/{kind}{self.generation}.pem", link)
        return link

    def install(self) -> Issued:
        issued = self.write_generation()
        for kind in ("cert", "chain", "fullchain", "privkey"):
            self.link(kind)
        return issued


@dataclass(frozen=True)
class DebianSsl:
    """Debian's layout, ``ssl/certs/site.pem`` with its key in ``ssl/private/site.key``
    (``certs`` is walked first), and a directory for the vault's key file beside it."""

    store: Path
    issued: Issued
    certificate: Path
    key: Path
    vault_key_file: Path


def debian_ssl(base: Path) -> DebianSsl:
    store = base / "ssl"
    (store / "certs").mkdir(parents=True)
    (store / "private").mkdir(mode=0o700)
    issued = make_cert(sans=("site.example.jp",))
    certificate = store / "certs" / "site.pem"
    certificate.write_bytes(issued.pem)
    key = store / "private" / "site.key"
    key.write_bytes(issued.key_pem())
    key.chmod(0o600)
    return DebianSsl(store=store, issued=issued, certificate=certificate, key=key,
                     vault_key_file=base / "keys" / "vault.key")


class OpeningVault:
    """A daemon's ``vault_factory``: the real vault at ``path`` (created around the key file),
    every one it opened kept in :attr:`opened` for the test to read back."""

    def __init__(self, path: Path, key_file: Path) -> None:
        self.path = path
        self.key_file = key_file
        self.opened: list[Any] = []

    def __call__(self) -> Any:
        from vault import KeyFileSource, open_vault

        vault = open_vault(self.path, KeyFileSource(self.key_file), create=True)
        self.opened.append(vault)
        return vault
