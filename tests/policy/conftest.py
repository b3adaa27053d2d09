"""The ledger fixture every ledger test uses, once per backend: an SQLite file and a
PostgreSQL schema of its own (tests/pgdb.py; PostgreSQL tests fail instead of skipping when
``CERTESCROW_REQUIRE_POSTGRES=1``, as in CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.ledger import Ledger
from tests.pgdb import postgres_schema

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def ledger_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a fresh ledger lives: an SQLite path, or a ``postgresql://`` DSN."""
    if request.param == "sqlite":
        yield str(tmp_path / "state" / "ledger.sqlite3")
        return
    with postgres_schema() as dsn:
        yield dsn


@pytest.fixture
def ledger(ledger_location: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_location) as led:
        yield led
