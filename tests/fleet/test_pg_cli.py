"""The contract desk's commands on a PostgreSQL ledger (``--ledger postgresql://…``), in a real
process; the DSN's password never appears in what they print."""

from __future__ import annotations

import json
import os
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
def test_contract_commands_on_a_postgres_ledger(tmp_path: Path) -> None:
    with postgres_schema() as dsn:
        # Trust authentication ignores the password: it is there to be kept out of output.
        secret = dsn.replace("postgres@", "postgres:pw-never-shown@")
        config = tmp_path / "desk.toml"
        config.write_text(f'[policy]\nledger = "{secret}"\n')
        config.chmod(0o600)
        desk = ("--config", str(config))
        empty = _run(*desk, "contract", "list")
        assert empty.returncode == 13
        assert "no ledger here" in empty.stderr
        assert "pw-never-shown" not in empty.stderr
        added = _run(*desk, "contract", "add", "C-1", "--item", "byo", "--tier", "1y",
                     "--at", "2026-04-01")
        assert added.returncode == 0, added.stderr
        listed = _run(*desk, "contract", "list", "--json", "--at", "2026-05-01")
        assert [c["contract"] for c in json.loads(listed.stdout)] == ["C-1"]
        forecast = _run(*desk, "policy", "forecast", "--json", "--at", "2026-05-01")
        assert forecast.returncode == 0, forecast.stderr
        assert "pw-never-shown" not in forecast.stdout + forecast.stderr
        assert json.loads(forecast.stdout)["ledger"].startswith("postgresql://postgres@")
        actions = _run(*desk, "policy", "actions", "--json", "--at", "2026-05-01")
        assert actions.returncode == 0, actions.stderr


@pytest.mark.parametrize("command", [("contract", "list"), ("policy", "actions"),
                                     ("fleet", "hosts")])
def test_a_password_on_the_command_line_is_refused_unrepeated(command: tuple[str, ...]) -> None:
    """A password in ``--ledger`` is in the process list for every user of the host (the
    attacker review of session 14): refused before anything connects, the URI not repeated."""
    refused = _run(*command, "--ledger", "postgresql://desk:pw-never-shown@127.0.0.1:1/ledger")
    assert refused.returncode == 2
    assert "holds a password" in refused.stderr
    assert "~/.pgpass" in refused.stderr
    assert "pw-never-shown" not in refused.stderr + refused.stdout


def _socket_dsn(dsn: str) -> str:
    """The same database through the server's local socket, written with an empty host
    (``postgresql:///db?host=…``): the form a ``click.Path`` option collapsed into host
    ``db`` and no database."""
    import urllib.parse

    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW unix_socket_directories").fetchone()
    assert row is not None
    socket_dir = str(row[0]).split(",")[0].strip()
    parts = urllib.parse.urlsplit(dsn)
    query = [*urllib.parse.parse_qsl(parts.query), ("host", socket_dir),
             ("user", parts.username or "postgres")]
    return f"postgresql://{parts.path}?{urllib.parse.urlencode(query)}"


@pytest.mark.slow
def test_a_socket_dsn_with_an_empty_host_reaches_its_database(tmp_path: Path) -> None:
    with postgres_schema() as dsn:
        socket = _socket_dsn(dsn)
        assert socket.startswith("postgresql:///")
        added = _run("contract", "add", "C-7", "--item", "byo", "--tier", "1y",
                     "--at", "2026-04-01", "--ledger", socket)
        assert added.returncode == 0, added.stderr
        # The same ledger through the TCP DSN: the socket one reached this schema.
        listed = _run("contract", "list", "--json", "--at", "2026-05-01", "--ledger", dsn)
        assert [c["contract"] for c in json.loads(listed.stdout)] == ["C-7"]
        # Each of the --ledger options (contract, policy, fleet commands) and [policy] ledger.
        forecast = _run("policy", "forecast", "--json", "--at", "2026-05-01", "--ledger", socket)
        assert forecast.returncode == 0, forecast.stderr
        assert [c["contract"] for c in json.loads(forecast.stdout)["contracts"]] == ["C-7"]
        hosts = _run("fleet", "hosts", "--json", "--ledger", socket)
        assert hosts.returncode == 0, hosts.stderr
        config = tmp_path / "config.toml"
        config.write_text(f'[policy]\nledger = "{socket}"\n', encoding="utf-8")
        configured = _run("--config", str(config), "contract", "list", "--json",
                          "--at", "2026-05-01")
        assert configured.returncode == 0, configured.stderr
        assert [c["contract"] for c in json.loads(configured.stdout)] == ["C-7"]


@pytest.mark.parametrize("mangled", [
    "postgresql:/test", "postgres:test?user=x&password=s3",
    "POSTGRESQL://postgres:s3@127.0.0.1:5432/test", " postgresql://postgres:s3@127.0.0.1/test",
    "postgresql+psycopg://postgres:s3@127.0.0.1/test", "pgsql://u:s3@db/ledger",
    "sslpassword=s3 host=db", ""])
@pytest.mark.parametrize("command", [("contract", "add", "C-1", "--item", "byo", "--tier", "1y",
                                      "--at", "2026-04-01"), ("contract", "list")])
def test_a_mangled_uri_is_refused_without_being_repeated(
        mangled: str, command: tuple[str, ...], tmp_path: Path) -> None:
    """Anything that looks like a connection string but is not a postgresql:// DSN (another
    case or scheme, a blank first, a / short, key=value) is a usage error that repeats none
    of it; nothing is made of it on disk (a contract was recorded in a directory named after
    the DSN, password and all)."""
    result = subprocess.run([sys.executable, "-m", "agent.main", *command, "--ledger", mangled],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--ledger'" in result.stderr
    assert "s3" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("location", ["a" * 5000, "postgresql://u:pw\udcffs3@127.0.0.1/db"])
def test_an_unusable_ledger_location_is_a_usage_error_without_traceback(
        location: str) -> None:
    """A name too long for the file system; bytes of the command line that are not UTF-8
    in a DSN (a traceback from the file system or psycopg before)."""
    import os as os_module

    result = subprocess.run([sys.executable, "-m", "agent.main", "contract", "list",
                             "--ledger", os_module.fsencode(location)], capture_output=True,
                            cwd=REPO, timeout=120, check=False)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert "s3" not in err


def test_a_file_named_like_a_scheme_is_reached_as_dot_slash_name(tmp_path: Path) -> None:
    """The way out the refusal names: ./postgresql:x is a file (it was refused again when
    the ledger opened it)."""
    result = subprocess.run([sys.executable, "-m", "agent.main", "contract", "add", "C-1",
                             "--item", "byo", "--tier", "1y", "--at", "2026-04-01",
                             "--ledger", "./postgresql:x"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "postgresql:x").is_file()
