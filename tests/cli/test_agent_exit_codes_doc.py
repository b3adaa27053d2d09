"""Every exit code the agent's commands (``scan``, ``inspect``, ``agent run``, ``agent
check-config``) can return is in docs/agent.md's exit table, with what it means.

``scan --password-file /nonexistent`` exited 30, and so did a 0644 password file, while the
table listed only 10, 11, 12 and 31 between 10 and 39: a monitoring script had no way to know
what 30 meant. The codes come from the error classes' ``exit_code`` (a new class with a new code
fails here until it is documented) and from the exits the commands make themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.errors import AgentError, ConfigError, LiveChainError, OutputError, OutputFileError
from agent.fleet_ca import FleetCAError
from agent.fleet_cli import ServeStartError, ServeWorkerError
from agent.main import main
from agent.outbox import OutboxError
from agent.statelock import StateBusyError
from policy.errors import CatalogueError, LedgerError, PolicyError, UnknownItemError
from vault.errors import VaultError, VaultPermissionError

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent.md"

AGENT_COMMAND_CODES = {
    0, 1, 2, 3,  # the Nagios convention (--exit-status), 1 a file not read, 2 click's usage
    PolicyError.exit_code, CatalogueError.exit_code, UnknownItemError.exit_code,
    LedgerError.exit_code,  # agent run opens the ledger
    *range(VaultError.exit_code, VaultPermissionError.exit_code + 5),  # the fleet's client key
    AgentError.exit_code, ConfigError.exit_code, LiveChainError.exit_code,
    StateBusyError.exit_code, OutputError.exit_code, OutputFileError.exit_code,
    FleetCAError.exit_code, OutboxError.exit_code, ServeStartError.exit_code,
    ServeWorkerError.exit_code,
    130,  # interrupted
}


def _exit_table() -> dict[int, str]:
    """docs/agent.md's "Exit status" table: code -> the row's text (a range row gives each
    code in it)."""
    section = DOC.read_text(encoding="utf-8").split("### Exit status", 1)[1]
    rows: dict[int, str] = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cell = line.split("|")[1].strip()
        found = re.fullmatch(r"(\d+)(?:-(\d+))?", cell)
        if found is None:
            continue
        first = int(found.group(1))
        for code in range(first, int(found.group(2) or first) + 1):
            rows[code] = line
    return rows


def test_every_code_the_agent_commands_return_is_in_the_exit_table() -> None:
    table = _exit_table()
    assert sorted(AGENT_COMMAND_CODES - set(table)) == []


def test_a_missing_password_file_exits_30_and_the_table_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nonexistent"
    with pytest.raises(SystemExit) as info:
        main(["scan", "--password-file", str(missing), str(tmp_path)])
    assert info.value.code == 30
    assert capsys.readouterr().err == f"Error: password file {missing} does not exist\n"
    assert "--password-file" in _exit_table()[30]


def test_a_password_file_others_can_read_exits_30(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passwords = tmp_path / "pw"
    passwords.write_text("secret\n")
    passwords.chmod(0o644)
    with pytest.raises(SystemExit) as info:
        main(["scan", "--password-file", str(passwords), str(tmp_path)])
    assert info.value.code == 30
    err = capsys.readouterr().err
    assert err.startswith(f"Error: password file {passwords} holds passwords but is readable "
                          "by others (mode 0644)")
    assert "readable by others" in _exit_table()[30]


def test_a_directory_as_the_password_file_is_the_same_error_30_not_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["inspect", "--password-file", str(tmp_path), str(tmp_path)])
    assert info.value.code == 30
    assert capsys.readouterr().err == (f"Error: password file {tmp_path} is a directory; it "
                                       "must be a regular file\n")


def test_an_out_into_a_missing_directory_exits_37_not_the_configurations_31(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It exited 31, which the table gives to the configuration file: the operator checked a
    configuration that was fine."""
    missing = tmp_path / "no-such-dir" / "web05.csr"
    with pytest.raises(SystemExit) as info:
        main(["agent", "enroll", "--host", "web05", "--vault", str(tmp_path / "h.sqlite3"),
              "--key-file", str(tmp_path / "h.key"), "--csr-out", str(missing)])
    assert info.value.code == 37
    assert capsys.readouterr().err == (f"Error: {missing}: cannot write: directory "
                                       f"{missing.parent} does not exist (nothing was stored "
                                       "or registered)\n")
    assert "--csr-out" in _exit_table()[37]
    assert "configuration" not in _exit_table()[37]
    assert not (tmp_path / "h.sqlite3").exists()
