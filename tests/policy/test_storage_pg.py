"""PostgreSQL errors in our words: the states a misconfiguration produces name the mistake,
keep their SQLSTATE in parentheses, and never repeat the driver's text."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from policy.storage_pg import _describe, describe_sqlstate
from tests.pgdb import base_dsn, postgres_schema, with_schema

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("state", "words"), [
    ("3F000", "the schema named in search_path does not exist"),
    ("3D000", "the database named in the DSN does not exist"),
    ("28000", "PostgreSQL refused the authentication"),
    ("28P01", "PostgreSQL refused the password"),
    ("42P01", "a table the ledger needs does not exist"),
    ("42501", "the DSN's user lacks a privilege"),
    ("53300", "PostgreSQL has too many connections"),
    ("57P01", "PostgreSQL is shutting down"),
    ("57P03", "PostgreSQL is starting up"),
    ("08006", "the connection to PostgreSQL failed or was lost"),
    ("08P01", "the connection to PostgreSQL failed or was lost"),
    ("22012", "PostgreSQL refused the statement"),
])
def test_a_sqlstate_is_described_in_our_words_with_the_state_after_them(
        state: str, words: str) -> None:
    described = describe_sqlstate(state)
    assert described.startswith(words)
    assert described.endswith(f"(SQLSTATE {state})")


def test_the_drivers_text_is_never_repeated() -> None:
    exc = psycopg.errors.lookup("42501")('permission denied for table "secret-value-x"')
    described = _describe(exc)
    assert described.startswith("the DSN's user lacks a privilege")
    assert "secret-value-x" not in described


@pytest.mark.slow
def test_a_search_path_naming_no_schema_is_said_so_by_the_command() -> None:
    with postgres_schema():  # only to skip (or fail when required) without a server
        absent = with_schema(base_dsn(), f"certescrow_absent_{secrets.token_hex(4)}")
        added = subprocess.run(
            [sys.executable, "-m", "agent.main", "contract", "add", "C-1", "--item", "byo",
             "--tier", "1y", "--at", "2026-04-01", "--ledger", absent],
            capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert added.returncode == 13, added.stderr
    assert "the schema named in search_path does not exist" in added.stderr
    assert "(SQLSTATE 3F000)" in added.stderr
