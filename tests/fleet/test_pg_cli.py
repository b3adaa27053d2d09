"""The contract desk's commands on a PostgreSQL ledger (``--ledger postgresql://…``), in a real
process; the DSN's password never appears in what they print."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pgdb import postgres_schema

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.main", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=False)


@pytest.mark.slow
def test_contract_commands_on_a_postgres_ledger() -> None:
    with postgres_schema() as dsn:
        # Trust authentication ignores the password: it is there to be kept out of output.
        secret = dsn.replace("postgres@", "postgres:pw-never-shown@")
        empty = _run("contract", "list", "--ledger", secret)
        assert empty.returncode == 13
        assert "no ledger here" in empty.stderr
        assert "pw-never-shown" not in empty.stderr
        added = _run("contract", "add", "C-1", "--item", "byo", "--tier", "1y",
                     "--at", "2026-04-01", "--ledger", secret)
        assert added.returncode == 0, added.stderr
        listed = _run("contract", "list", "--json", "--at", "2026-05-01", "--ledger", secret)
        assert [c["contract"] for c in json.loads(listed.stdout)] == ["C-1"]
        forecast = _run("policy", "forecast", "--json", "--at", "2026-05-01", "--ledger", secret)
        assert forecast.returncode == 0, forecast.stderr
        assert "pw-never-shown" not in forecast.stdout + forecast.stderr
        assert json.loads(forecast.stdout)["ledger"].startswith("postgresql://postgres@")
        actions = _run("policy", "actions", "--json", "--at", "2026-05-01", "--ledger", secret)
        assert actions.returncode == 0, actions.stderr
