"""The table's first and last lines (issue 11 polish): output never starts with a blank line
(a host with nothing to list prints the verdict first), and the note under the summary wraps
at the terminal width like the table, never cutting a word. Real stores, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.render import display_width
from tests.agent.certbot_store import AT, certbot_store

CERTESCROW = Path(sys.executable).with_name("certescrow")
AT_TEXT = AT.isoformat().replace("+00:00", "Z")


def certescrow(*args: str, home: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env.update(HOME=str(home), CERTESCROW_TESTONLY_NOW=AT_TEXT, COLUMNS=str(columns))
    return subprocess.run([str(CERTESCROW), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_once_on_a_host_without_the_store_starts_with_the_verdict(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/ledger.sqlite3"\n'
                      f'[[agent.stores]]\npath = "{tmp_path}/letsencrypt/live"\n')
    done = certescrow("--config", str(config), "agent", "run", "--once", "--exit-status",
                      home=tmp_path)
    assert done.returncode == 3
    first = done.stdout.splitlines()[0]
    assert first.startswith("0 certificate(s), 0 error(s), 0 skipped; host status UNKNOWN")


def test_scan_of_an_empty_directory_starts_with_the_verdict(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = certescrow("scan", "--exit-status", str(empty), home=tmp_path)
    assert done.returncode == 3
    assert done.stdout.splitlines()[0].startswith("0 certificate(s)")


@pytest.mark.parametrize("columns", [60, 80])
def test_the_note_under_the_summary_wraps_at_the_terminal_width(tmp_path: Path,
                                                                columns: int) -> None:
    store = certbot_store(tmp_path)
    done = certescrow("scan", str(store.live), home=tmp_path, columns=columns)
    lines = done.stdout.splitlines()
    note = next(n for n, line in enumerate(lines) if line.startswith("(2 chain certificate(s)"))
    # (a path longer than the terminal stands alone on its line; the note has none)
    assert all(display_width(line) <= columns for line in lines[note:]), done.stdout
    assert len(lines[note:]) >= 2
    assert " ".join(part.strip() for part in lines[note:]) == (
        "(2 chain certificate(s) shown with their leaves, 1 key file(s) without a problem; "
        "--json lists them)")
