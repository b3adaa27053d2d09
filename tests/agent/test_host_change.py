"""``[agent] host`` changed (web1 -> web2): every sighting is recorded under the host that
reported it, and reconciliation asks the ledger only for this host's, so the sightings of web1
stayed open for good (`contract unbound` listed ``web1:…/b.pem[0]`` of a file long deleted, the
reconciliation said ``0 gone``). A running daemon refuses the change (a restart applies it); a
start whose read index was written for web1 says so in one line and, with a SQLite ledger,
closes web1's sightings under its stores; with PostgreSQL, which other machines may write,
``agent run --former-host web1`` does. Real ``certescrow agent run`` processes throughout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from policy.ledger import Ledger
from tests.agent.agentprocess import agent_env, running_agent
from tests.agent.test_daemon_process import CERTESCROW, Manager, eventually, manager
from tests.certfactory import make_cert
from tests.pgdb import postgres_schema

__all__ = ["manager"]  # the fixture: systemd's notification socket


def _config(ledger: str, store: Path, host: str) -> str:
    return (f'[policy]\nledger = "{ledger}"\n[agent]\nhost = "{host}"\nquiet_period_ms = 100\n'
            f'resync_interval_s = 3600\n[[agent.stores]]\npath = "{store}"\n')


def _store(root: Path) -> Path:
    store = root / "certs"
    store.mkdir()
    for name in ("a", "b"):
        (store / f"{name}.pem").write_bytes(make_cert(sans=(f"{name}.example.jp",)).pem)
    return store


def _once(config: Path, *extra: str) -> list[str]:
    """``agent run --once``; its log lines."""
    done = subprocess.run([str(CERTESCROW), "agent", "run", "--once", "--config", str(config),
                           *extra], env=agent_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.splitlines()


def _open(ledger: str, host: str) -> list[str]:
    with Ledger.open(ledger, create=False) as opened:
        return sorted(location for location, _, _ in opened.open_sightings(host))


def _host_changed(lines: list[str]) -> list[str]:
    return [line for line in lines if "host-changed: " in line]


@pytest.mark.slow
def test_a_reload_that_changes_the_host_is_refused_and_the_daemon_reports_as_before(
        tmp_path: Path, manager: Manager) -> None:
    store = tmp_path / "certs"
    store.mkdir()
    ledger = str(tmp_path / "state" / "ledger.sqlite3")
    config = tmp_path / "config.toml"
    config.write_text(_config(ledger, store, "web1"))
    with running_agent(config, manager) as agent:
        lines = agent.reload(_config(ledger, store, "web2"), until="reload-refused")
        (refused,) = [line for line in lines if "reload-refused" in line]
        assert "[agent] host changed from web1 to web2" in refused
        assert "restart" in refused
        assert "configuration reloaded" not in agent.text()
        # Still web1: a new file is a sighting of web1's.
        (store / "new.pem").write_bytes(make_cert(sans=("new.example.jp",)).pem)
        eventually(lambda: _open(ledger, "web1") == [str(store / "new.pem")])
        assert _open(ledger, "web2") == []


@pytest.mark.slow
def test_a_start_as_another_host_closes_the_former_hosts_sightings_in_its_own_ledger(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    ledger = str(tmp_path / "state" / "ledger.sqlite3")
    config = tmp_path / "config.toml"
    config.write_text(_config(ledger, store, "web1"))
    assert not _host_changed(_once(config))
    assert _open(ledger, "web1") == [str(store / "a.pem"), str(store / "b.pem")]
    # Stopped: a file deleted, the host renamed; then started again.
    (store / "b.pem").unlink()
    config.write_text(_config(ledger, store, "web2"))
    (line,) = _host_changed(_once(config))
    assert "ran as host web1 and now runs as web2" in line
    assert "its 2 open sighting(s) under the configured stores were closed as gone" in line
    assert _open(ledger, "web1") == []
    assert _open(ledger, "web2") == [str(store / "a.pem")]
    unbound = subprocess.run([str(CERTESCROW), "contract", "unbound", "--ledger", ledger],
                             env=agent_env(), capture_output=True, text=True, timeout=60,
                             check=True).stdout
    assert "web1:" not in unbound
    assert f"web2:{store / 'a.pem'}[0]" in unbound
    # Said once: the read index is web2's now.
    assert not _host_changed(_once(config))


@pytest.mark.slow
def test_with_a_postgresql_ledger_the_former_hosts_sightings_wait_for_former_host(
        tmp_path: Path) -> None:
    """Another machine named web1 may write the same PostgreSQL ledger: the start only says so,
    and ``--former-host web1`` closes them when the operator knows none does."""
    store = _store(tmp_path)
    with postgres_schema() as dsn:
        config = tmp_path / "config.toml"
        config.write_text(_config(dsn, store, "web1"))
        _once(config)
        config.write_text(_config(dsn, store, "web2"))
        (line,) = _host_changed(_once(config))
        assert "its 2 open sighting(s) under the configured stores are left open" in line
        assert "`certescrow agent run --once --former-host web1`" in line
        assert _open(dsn, "web1") == [str(store / "a.pem"), str(store / "b.pem")]
        (line,) = _host_changed(_once(config, "--former-host", "web1"))
        assert "were closed as gone" in line
        assert _open(dsn, "web1") == []
        assert _open(dsn, "web2") == [str(store / "a.pem"), str(store / "b.pem")]


@pytest.mark.slow
def test_a_former_host_with_no_open_sighting_is_said_so_not_closed_as_done(
        tmp_path: Path) -> None:
    """``--former-host nosuch`` (a typo of web1) said "this daemon ran as host nosuch … its 0
    open sighting(s) … were closed as gone", read as done while web1's stayed open. It now says
    nothing was found under that name, and to check it; the exit status stays 0 (as for a store
    that does not exist: a second run after one that closed them finds none either)."""
    store = _store(tmp_path)
    ledger = str(tmp_path / "state" / "ledger.sqlite3")
    config = tmp_path / "config.toml"
    config.write_text(_config(ledger, store, "web1"))
    _once(config)
    config.write_text(_config(ledger, store, "web2"))
    lines = _host_changed(_once(config, "--former-host", "nosuch"))
    (line,) = [line for line in lines if "nosuch" in line]  # (the other: the read index's web1)
    assert line.startswith("warning host-changed: --former-host: no open sighting recorded "
                           "under host 'nosuch' under the configured stores: nothing closed; "
                           "check the name (`certescrow contract unbound` lists hosts)"), line
    assert "closed as gone" not in line
    assert "sightings=0 closed=0" in line
    assert _open(ledger, "nosuch") == []
