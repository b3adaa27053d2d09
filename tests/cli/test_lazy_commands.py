"""A command imports what it needs, not every command of the CLI: ``policy actions`` started
by importing the X.509 reader, the live-chain client, the daemon and aiohttp, which doubled
its start (0.7 -> 1.5 CPU s) for a sweep the projection answers in about a second."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from policy.ledger import Ledger
from tests.clirun import clean_env

_PROBE = """
import json, sys
from agent.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
HEAVY = ("agent.reader", "agent.livechain", "agent.daemon", "agent.fleet_cli", "aiohttp",
         "cryptography.x509", "OpenSSL")


def _modules(tmp_path: Path, *args: str) -> tuple[int, set[str], str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          text=True, env=clean_env(tmp_path), timeout=120, check=False)
    last = json.loads(done.stdout.splitlines()[-1])
    return last["code"], set(last["modules"]), done.stdout


def test_policy_actions_imports_no_reader_daemon_or_fleet(tmp_path: Path) -> None:
    Ledger.open(tmp_path / "ledger.sqlite3").close()
    code, modules, out = _modules(tmp_path, "policy", "actions", "--ledger",
                                  str(tmp_path / "ledger.sqlite3"), "--at", "2026-03-01")
    assert code in (0, None), out
    assert "policy.ledger" in modules  # it did the work
    assert not [m for m in HEAVY if m in modules]


def test_help_lists_every_command_and_the_fleet_subcommands_run(tmp_path: Path) -> None:
    code, modules, out = _modules(tmp_path, "--help")
    assert code in (0, None)
    for name in ("agent", "contract", "fleet", "inspect", "policy", "scan", "vault"):
        assert f"  {name} " in out
    _, _, policy_help = _modules(tmp_path, "policy", "--help")
    assert "  serve " in policy_help
    assert "  verify " in policy_help
    code, modules, serve_help = _modules(tmp_path, "policy", "serve", "--help")
    assert code in (0, None)
    assert "--config" in serve_help
    assert "agent.fleet_cli" in modules
    _, _, agent_help = _modules(tmp_path, "agent", "--help")
    assert "  enroll " in agent_help
    assert "  run " in agent_help


def test_scan_json_imports_no_daemon_ledger_live_client_or_table(tmp_path: Path) -> None:
    """``scan --json`` of a small store paid for the daemon's modules (the ``agent`` group was
    built with ``scan``'s), the ledger and the forecast (``policy``'s package re-exported every
    module), the live-chain client (ssl) and the table's ``wcwidth``: about 85 of its 255 ms
    of start."""
    store = tmp_path / "store"
    store.mkdir()
    code, modules, out = _modules(tmp_path, "scan", "--json", "--jobs", "1", str(store))
    assert code in (0, 3, None), out
    assert "agent.reader" in modules  # it did the work
    unneeded = ("agent.daemon", "agent.daemon_cli", "agent.livechain", "ssl", "wcwidth",
                "policy.ledger", "policy.state", "policy.events", "policy.evaluate",
                "cryptography.hazmat.primitives.serialization.pkcs7")
    assert [m for m in unneeded if m in modules] == []


def test_agent_group_still_has_run_and_check_config(tmp_path: Path) -> None:
    code, modules, out = _modules(tmp_path, "agent", "check-config", "--help")
    assert code in (0, None), out
    assert "--json" in out
    assert "agent.daemon_cli" in modules
