"""A command whose standard output cannot be written (a full disk) says so in one line and
exits 36, whichever command it is: ``scan --json > /dev/full`` printed a 30-line Python
traceback and exited 1, the code of "a file could not be read" (the attacker review of
session 14)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert
from tests.clirun import CERTESCROW, clean_env

FULL = "/dev/full"


@pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full on this system")
@pytest.mark.parametrize("args", [["scan", "--json"], ["scan", "--csv"], ["scan"],
                                  ["policy", "catalogue"]])
def test_a_full_disk_under_standard_output_is_one_error_line_and_exit_36(
        tmp_path: Path, args: list[str]) -> None:
    store = tmp_path / "store"
    for n in range(300):  # more than one buffer of output
        write(store / f"{n:03}.pem", make_cert(sans=(f"host{n}.example",)).pem)
    argv = [*args, str(store)] if args[0] == "scan" else args
    with open(FULL, "wb") as full:
        done = subprocess.run([str(CERTESCROW), *argv], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=clean_env(tmp_path), timeout=120, check=False)
    assert done.returncode == 36, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: cannot write to standard output (ENOSPC: No space left on device); what was "
        "written is incomplete"]


@pytest.mark.parametrize("args", [["--version"], ["scan"], ["policy", "catalogue"]])
def test_a_command_started_with_standard_output_closed_runs_and_says_its_status(
        tmp_path: Path, args: list[str]) -> None:
    """``certescrow scan DIR >&-`` ended in ``AttributeError: 'NoneType' object has no
    attribute 'flush'`` for every command (the re-review of session 14): the output is lost,
    as asked, and the exit status is the command's."""
    store = tmp_path / "store"
    write(store / "a.pem", make_cert(sans=("a.example",)).pem)
    argv = [*args, str(store)] if args[0] == "scan" else args
    done = subprocess.run(["sh", "-c", '"$@" >&-', "sh", str(CERTESCROW), *argv],
                          stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path),
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
