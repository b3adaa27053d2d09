"""Labels, contract ids and file names that are not UTF-8 round-trip through the vault.

A file name is bytes; ``os.fsdecode`` (and so click, for arguments) carries a byte that is not
UTF-8 as a lone surrogate ``U+DCNN``, which neither SQLite's TEXT nor a UTF-8 encode accepts.
The vault stores such a label or contract id as a BLOB of the name's bytes, binds the bytes
themselves in the metadata digest, and writes lone surrogates in its canonical JSON as ``\\udcNN``
escapes: everything reads back as the very same text (``os.fsencode`` gives the bytes back).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.certfactory import make_cert
from tests.vault.helpers import sql
from vault import Vault, VaultInputError, VaultIntegrityError, envelope

NAME_BYTES = b"bad\xff\xfename.pem"
NAME = os.fsdecode(NAME_BYTES)  # "bad\udcff\udcfename.pem"


def test_a_file_name_label_and_contract_round_trip_exactly(vault: Vault,
                                                           vault_path: Path) -> None:
    put = vault.put("document", b"doc", label=NAME, contract_id="C\udcfe",
                    meta={"imported_from": NAME})
    info = vault.info(put.entry_id)
    assert info.label == NAME
    assert os.fsencode(info.label) == NAME_BYTES
    assert info.contract_id == "C\udcfe"
    assert info.meta["imported_from"] == NAME
    assert vault.get(put.entry_id) == b"doc"  # the digest binds the label: it still opens
    assert [e.entry_id for e in vault.entries(contract_id="C\udcfe")] == [put.entry_id]
    updated = vault.update(put.entry_id, label="y\udcff", contract_id=None)
    assert (updated.label, updated.contract_id, updated.version) == ("y\udcff", None, 2)
    assert vault.get(put.entry_id) == b"doc"
    details = [r.detail for r in vault.history(put.entry_id)]
    assert details[0]["label"] == NAME
    assert details[1]["label"] == "y\udcff"
    assert vault.verify().ok
    # stored as the name's bytes, not as some escaped text that could collide with a real one
    vault.update(put.entry_id, label=NAME, contract_id="C\udcfe")
    assert sql(vault_path, "SELECT typeof(label), label, typeof(contract_id) FROM entries") \
        == [("blob", NAME_BYTES, "blob")]
    assert vault.verify().ok


def test_a_text_label_is_still_stored_as_text(vault: Vault, vault_path: Path) -> None:
    vault.put("document", b"doc", label="証明書 a\\xff.pem")
    assert sql(vault_path, "SELECT typeof(label), label FROM entries") == [
        ("text", "証明書 a\\xff.pem")]


def test_an_altered_byte_label_fails_authentication(vault: Vault, vault_path: Path) -> None:
    entry = vault.put("document", b"doc", label=NAME).entry_id
    sql(vault_path, "UPDATE entries SET label = ?", (b"bad\xff\xfdname.pem",))
    assert not vault.verify().ok
    with pytest.raises(VaultIntegrityError):
        vault.get(entry)


def test_a_surrogate_that_is_no_file_name_byte_is_refused(vault: Vault) -> None:
    with pytest.raises(VaultInputError, match="the label is not text"):
        vault.put("document", b"doc", label="x\ud800")
    entry = vault.put("document", b"doc").entry_id
    with pytest.raises(VaultInputError, match="the contract id is not text"):
        vault.update(entry, label=None, contract_id="\udc00")


def test_the_metadata_digest_binds_the_bytes_of_the_name_as_documented() -> None:
    # docs/vault-format.md: value = JSON of the column, encoded UTF-8 with the name's bytes
    value = json.dumps(NAME, ensure_ascii=False)
    expected = hashlib.sha256(b"certescrow-vault meta v1\x00" + struct.pack(">H", 5) + b"label"
                              + struct.pack(">I", len(NAME_BYTES) + 2) + b'"' + NAME_BYTES
                              + b'"').digest()
    assert envelope.metadata_digest([("label", value)]) == expected
    # valid UTF-8 text is encoded exactly as before
    plain = hashlib.sha256(b"certescrow-vault meta v1\x00" + struct.pack(">H", 5) + b"label"
                           + struct.pack(">I", 4) + b'"\xc3\xa9"').digest()
    assert envelope.metadata_digest([("label", '"é"')]) == plain


def _certescrow(*args: str | bytes, stdin: bytes | None = None,
                ) -> subprocess.CompletedProcess[bytes]:
    exe = Path(sys.executable).parent / "certescrow"
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, timeout=60,
                          check=False)


def test_cli_import_put_and_label_with_names_that_are_not_utf8(tmp_path: Path) -> None:
    opts = ["--vault", str(tmp_path / "v" / "vault.sqlite3"), "--key-file",
            str(tmp_path / "master.key")]
    assert _certescrow("vault", "init", *opts).returncode == 0
    path = os.fsencode(tmp_path) + b"/" + NAME_BYTES
    with open(path, "wb") as fh:
        fh.write(make_cert().pem)
    imported = _certescrow("vault", "import", *opts, path)
    assert imported.returncode == 0, imported.stderr
    assert b"Traceback" not in imported.stderr
    assert b"bad\\xff\\xfename.pem" in imported.stdout  # the terminal sees the escape
    put = _certescrow("vault", "put", *opts, "--kind", "document", "--label", b"x\xff",
                      stdin=b"doc")
    assert put.returncode == 0, put.stderr
    entry = put.stdout.decode().strip()
    relabelled = _certescrow("vault", "label", *opts, entry, "--label", b"y\xff")
    assert relabelled.returncode == 0, relabelled.stderr
    assert b"(label 'y\\xff', contract none)" in relabelled.stdout
    listed = json.loads(_certescrow("vault", "list", "--json", *opts[:2]).stdout)
    assert [os.fsencode(e["label"]) for e in listed] == [NAME_BYTES, b"y\xff"]
    assert os.fsencode(listed[0]["meta"]["imported_from"]) == path
    table = _certescrow("vault", "list", *opts[:2])
    assert table.returncode == 0
    table.stdout.decode("utf-8")  # valid UTF-8 on the terminal
    assert _certescrow("vault", "verify", *opts).returncode == 0
