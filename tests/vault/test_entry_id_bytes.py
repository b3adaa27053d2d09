"""An entry id that is not UTF-8 names no entry: exit 26 with the id escaped, no traceback.

The reviewer's reproduction: ``certescrow vault export $'\\xff\\xfe'`` (and ``show``, ``rm``)
ended in a ``UnicodeEncodeError`` traceback from SQLite's binding of the id, quoting it. The
command line reaches Python as ``os.fsdecode``d text, so ``\\udcff`` here is the byte 0xff in
the child's argv.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clirun import certescrow
from vault import KeyFileSource, open_vault
from vault.errors import VaultEntryNotFoundError

NOT_UTF8_ID = "\udcff\udcfe"  # argv b"\xff\xfe"


@pytest.mark.parametrize("command", [["export"], ["show"], ["rm", "--yes"]])
def test_an_entry_id_that_is_not_utf8_is_no_such_entry(tmp_path: Path,
                                                        command: list[str]) -> None:
    where = ["--vault", str(tmp_path / "v" / "vault.sqlite3"),
             "--key-file", str(tmp_path / "k" / "master.key")]
    assert certescrow("vault", "init", *where, home=tmp_path).returncode == 0
    done = certescrow("vault", command[0], NOT_UTF8_ID, *command[1:], *where, home=tmp_path)
    assert done.returncode == 26, done.stderr
    assert done.stderr.startswith("Error: no entry '\\xff\\xfe' in vault "), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_library_answers_no_entry_and_no_history(vault_path: Path,
                                                     source: KeyFileSource) -> None:
    with open_vault(vault_path, source, create=True) as vault:
        vault.put("document", b"something")
        with pytest.raises(VaultEntryNotFoundError, match=r"no entry '\\xff\\xfe'"):
            vault.get(NOT_UTF8_ID)
        assert vault.history(NOT_UTF8_ID) == []
