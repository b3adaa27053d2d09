"""The fleet registry's tests run on both backends: an SQLite ledger file and a PostgreSQL
schema of their own (tests/pgdb.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.ledger import Ledger
from tests.fleet.fleetkit import Fleet, make_fleet
from tests.pgdb import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        Ledger.open(path).close()
        yield str(path)
        return
    with postgres_schema() as dsn:
        yield dsn


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A desk (fleet CA, service configuration) whose service a test starts, if at all; killed
    at the end. Modules that serve one service to all their tests define their own."""
    made = make_fleet(tmp_path / "desk")
    try:
        yield made
    finally:
        made.stop(signal.SIGKILL)
