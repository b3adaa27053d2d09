"""A reader that may not write the ledger (an auditor; a ledger of another owner, mode 0644)
lists it: docs/ledger.md says the listing commands need only read access, and SQLite had
refused ("needs read and write access", then "attempt to write a readonly database": a WAL
database makes its index beside it). Real permissions: root without ``CAP_DAC_OVERRIDE``
(``setpriv``), as the review of session 13 found it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policy.ledger import Ledger
from tests.policy.ledger_fixtures import T0, accepted

CERTESCROW = Path(sys.executable).with_name("certescrow")
NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to drop CAP_DAC_OVERRIDE")


def _as_reader(*args: str) -> subprocess.CompletedProcess[str]:
    """``certescrow ARGS`` as root without the capabilities that ignore file permissions."""
    caps = "-dac_override,-dac_read_search"
    return subprocess.run(["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}",
                           str(CERTESCROW), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _owned_by_nobody(path: Path) -> None:
    for item in (path.parent, *path.parent.iterdir()):
        os.chown(item, NOBODY, -1)
        item.chmod(0o755 if item.is_dir() else 0o644)


def test_a_ledger_the_reader_may_not_write_is_refused_in_our_words_when_no_writer_has_it(
        tmp_path: Path) -> None:
    """With no writer open, SQLite makes the index it reads a WAL database through beside it:
    a reader that may write neither the file nor its directory cannot read it safely
    (``immutable=1`` skips locking: a writer starting meanwhile gave torn pages, the
    re-review of session 13). Refused, nothing written, SQLite's words never shown."""
    ledger = tmp_path / "desk" / "ledger.sqlite3"
    ledger.parent.mkdir()
    with Ledger.open(ledger) as led:
        led.append(accepted("C-1", at=T0))
    _owned_by_nobody(ledger)
    before = ledger.read_bytes()
    listed = _as_reader("contract", "list", "--ledger", str(ledger))
    assert listed.returncode == 13
    assert "no writer has it open" in listed.stderr
    assert "readonly database" not in listed.stderr
    refused = _as_reader("contract", "add", "C-2", "--item", "byo", "--tier", "1y",
                         "--ledger", str(ledger))
    assert refused.returncode == 13
    assert ledger.read_bytes() == before
    assert sorted(p.name for p in ledger.parent.iterdir()) == ["ledger.sqlite3"]


def test_a_reader_sees_what_a_writer_still_holds_in_its_wal(tmp_path: Path) -> None:
    """A daemon has the ledger open: its last events are in the ``-wal`` file, which an
    immutable open would not see."""
    ledger = tmp_path / "desk" / "ledger.sqlite3"
    ledger.parent.mkdir()
    writer = Ledger.open(ledger)
    try:
        writer.append(accepted("C-1", at=T0))
        _owned_by_nobody(ledger)
        writer.append(accepted("C-2", at=T0))  # in the WAL, not yet in the file
        assert (ledger.parent / "ledger.sqlite3-wal").exists()
        before = ledger.read_bytes()
        for given in (str(ledger), "/" + str(ledger)):  # "//tmp/...": a path, not a URI host
            listed = _as_reader("contract", "list", "--json", "--ledger", given)
            assert listed.returncode == 0, listed.stderr
            assert [c["contract"] for c in json.loads(listed.stdout)] == ["C-1", "C-2"]
        for command in (["policy", "actions", "--json"], ["contract", "unbound"]):
            done = _as_reader(*command, "--ledger", str(ledger))
            assert done.returncode == 0, done.stderr
        refused = _as_reader("contract", "add", "C-3", "--item", "byo", "--tier", "1y",
                             "--ledger", str(ledger))
        assert refused.returncode == 13
        assert "recording needs read and write access" in refused.stderr
        assert ledger.read_bytes() == before
    finally:
        writer.close()
