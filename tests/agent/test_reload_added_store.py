"""A store added to a running daemon by SIGHUP (or added back after a reload removed it) is
first scanned as a start scans it: its findings are counted, one line per kind, said for that
store; later changes in it are logged a certificate at a time. A real ``certescrow agent run``
process, real inotify and signals: 40 expired certificates added by a reload were 40 error
lines (`journalctl -p err` filled up with 1,200 of them in the operator's report)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.agent.agentprocess import NOW, running_agent
from tests.agent.test_daemon_process import Manager, config_text, eventually, manager
from tests.certfactory import make_cert
from tests.clirun import certescrow

__all__ = ["manager"]  # the fixture: systemd's notification socket

EXPIRED = 40


def _expired(serial: int) -> bytes:
    return make_cert(not_before=datetime(2025, 1, 1, tzinfo=UTC), lifetime=timedelta(days=90),
                     sans=(f"old{serial}.example.jp",), serial=9000 + serial).pem


def _expired_lines(lines: list[str]) -> list[str]:
    """The lines about the expired finding, per certificate (no ``count=``) or counted."""
    return [line for line in lines if " code=expired " in line]


@pytest.mark.slow
def test_a_store_added_by_reload_is_counted_as_a_first_start_counts_it(
        tmp_path: Path, manager: Manager) -> None:
    first = tmp_path / "first"
    first.mkdir()
    (first / "a.pem").write_bytes(make_cert(sans=("a.example.jp",)).pem)
    added = tmp_path / "added"
    added.mkdir()
    for n in range(EXPIRED):
        (added / f"old{n:02}.pem").write_bytes(_expired(n))
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(config_text(ledger, first))
    with running_agent(config, manager) as agent:
        for again in (False, True):  # added; then removed by a reload and added back
            if again:
                agent.reload(config_text(ledger, first))
            lines = agent.reload(config_text(ledger, first, added))
            said = _expired_lines(lines)
            assert len(said) == 1, said  # one line for the 40, no line per certificate
            assert f"initial scan of {added}: {EXPIRED} certificate(s) with expired " \
                   f"in {EXPIRED} file(s)" in said[0]
            assert " scan=initial " in said[0]
            assert f" store={added}" in said[0]
            assert len(lines) < 20, lines

        # From now on a change in the store is said on its own, as after a start.
        start = len(agent.text())
        (added / "old00.pem").write_bytes(_expired(EXPIRED))
        eventually(lambda: _expired_lines(agent.text()[start:].splitlines()) != [])
        (line,) = _expired_lines(agent.text()[start:].splitlines())
        assert f"{added / 'old00.pem'}" in line
        assert " count=" not in line
    assert "Traceback" not in agent.text()


def _unbound(ledger: Path, home: Path) -> list[str]:
    """The places `certescrow contract unbound` lists, as the operator asks it."""
    done = certescrow("contract", "unbound", "--json", "--ledger", str(ledger), home=home,
                      at=NOW)
    assert done.returncode == 0, done.stderr
    return sorted(row["location"] for row in json.loads(done.stdout))


@pytest.mark.slow
def test_a_store_added_then_removed_by_reload_inside_another_binds_and_unbinds_its_files(
        tmp_path: Path, manager: Manager) -> None:
    """`certs` watched, unbound; SIGHUP adds `certs/shop`, bound to contract S-1, then removes
    it. The files under `shop`, read as `certs`' at the start, were neither read again nor
    reported: `contract unbound` kept listing them after the first reload (S-1 never saw them),
    and once bound they would have stayed S-1's after the second. Each reload now reports them
    once under their new store, their findings counted for that store, one line per kind."""
    certs = tmp_path / "certs"
    shop = certs / "shop"
    shop.mkdir(parents=True)
    (certs / "a.pem").write_bytes(make_cert(sans=("a.example.jp",)).pem)
    for n in range(EXPIRED):
        (shop / f"old{n:02}.pem").write_bytes(_expired(n))
    ledger = tmp_path / "state" / "ledger.sqlite3"
    ledger.parent.mkdir()
    added = certescrow("contract", "add", "S-1", "--item", "globalsign-ov", "--tier", "1y",
                       "--at", "2026-01-05", "--ledger", str(ledger), home=tmp_path, at=NOW)
    assert added.returncode == 0, added.stderr
    config = tmp_path / "config.toml"
    bound = f'[[agent.stores]]\npath = "{shop}"\ncontract = "S-1"\n'
    config.write_text(config_text(ledger, certs))
    in_shop = [str(shop / f"old{n:02}.pem") for n in range(EXPIRED)]
    with running_agent(config, manager) as agent:
        assert _unbound(ledger, tmp_path) == sorted([str(certs / "a.pem"), *in_shop])

        lines = agent.reload(config_text(ledger, certs) + bound, reported=True)
        assert _unbound(ledger, tmp_path) == [str(certs / "a.pem")]
        (said,) = _expired_lines(lines)  # one line for the 40, said for the added store
        assert f"initial scan of {shop}: {EXPIRED} certificate(s) with expired" in said
        assert f"{EXPIRED} observation(s) reported" in "\n".join(lines)

        # removed: back to the outer store's
        lines = agent.reload(config_text(ledger, certs), reported=True)
        assert _unbound(ledger, tmp_path) == sorted([str(certs / "a.pem"), *in_shop])
        (said,) = _expired_lines(lines)
        assert f"scan after reload of {certs}: {EXPIRED} certificate(s) with expired" in said
        assert f"{EXPIRED} observation(s) reported" in "\n".join(lines)
    assert "Traceback" not in agent.text()
