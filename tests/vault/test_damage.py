"""A vault file damaged by a flipped bit or an edit: every value read back from the database is
hostile input. Each command that meets damage exits 23 (docs/vault.md) with the vault's own
message, which names the table and row but never quotes stored content; ``verify`` reports the
damage instead of stopping at it. The files are real SQLite files, damaged by writing bytes or
SQL as a failing disk or an attacker with file access would."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes

from agent.main import main
from tests.vault.conftest import StepClock
from tests.vault.helpers import sql
from vault import KeyFileSource, open_vault

INTEGRITY = 23
# docs/vault.md, "Exit status": 0, or one of the vault's own 20-29.
KNOWN_EXITS = frozenset({0, *range(20, 30)})
SECRET = "SECRETMARK"  # stored where it does not belong; no message may repeat it


def run(vault_path: Path, key_file: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """``certescrow vault ARGS`` as the installed command runs it (``main``: an error is its
    ``Error:`` line and exit status); an exception that escapes ``main`` is a traceback and
    fails the test where it is raised. Returns the exit status and stdout + stderr."""
    with CliRunner().isolation(input=stdin) as (out, err, _):
        with pytest.raises(SystemExit) as exited:
            main(["vault", *args, "--vault", str(vault_path), "--key-file", str(key_file)])
        output = out.getvalue().decode(errors="replace") + err.getvalue().decode(
            errors="replace")
    code = exited.value.code
    return (code if isinstance(code, int) else (0 if code is None else 1)), output


@pytest.fixture
def filled(vault_path: Path, source: KeyFileSource, clock: StepClock) -> Path:
    """A closed vault with a key, its CSR and a document: what the damage is done to."""
    with open_vault(vault_path, source, create=True, clock=clock, actor="tester@host") as v:
        v.gen_csr(common_name="a.example")
        v.put("document", b"some document", label="doc")
    return vault_path


def entry_ids(vault_path: Path) -> list[str]:
    return [str(r[0]) for r in sql(vault_path, "SELECT id FROM entries ORDER BY rowid")]


def assert_refused_cleanly(code: int, output: str) -> None:
    assert code == INTEGRITY, output
    assert "Traceback" not in output
    assert SECRET not in output
    assert "vault verify" in output  # the advice


# ------------------------------------------------------------------ the reviewer's repro

def test_a_one_bit_flip_in_the_audit_schema_is_reported_by_verify_and_refused_by_the_rest(
        filled: Path, key_file: Path) -> None:
    # 'R' (0x52) -> 'B' (0x42): seq is no longer the rowid, and reads NULL in every record.
    data = filled.read_bytes()
    original = b"seq       INTEGER PRIMARY KEY"
    assert data.count(original) == 1
    filled.write_bytes(data.replace(original, b"seq       INTEGER PBIMARY KEY"))

    code, output = run(filled, key_file, "verify")
    assert code == INTEGRITY, output
    assert "Traceback" not in output
    assert "SQLite schema: the definition of audit differs" in output
    assert "audit row 1: column seq holds NULL where an integer belongs" in output

    for args, stdin in ((("audit",), b""), (("put", "--kind", "document"), b"x")):
        code, output = run(filled, key_file, *args, stdin=stdin)
        assert_refused_cleanly(code, output)
        assert "audit row 1" in output


def test_a_header_naming_an_unknown_key_derivation_is_not_quoted(
        filled: Path, key_file: Path) -> None:
    """The header's ``kdf`` name went into the error as stored (review 12's follow-up)."""
    sql(filled, "INSERT OR REPLACE INTO meta (name, value) VALUES ('kdf', ?)",
        (('{"kdf": "' + SECRET + '"}').encode(),))
    code, output = run(filled, key_file, "list")
    assert code in KNOWN_EXITS - {0}, output
    assert "Traceback" not in output
    assert SECRET not in output


# ------------------------------------------------------------------ a value of the wrong type

def test_text_where_the_size_belongs_makes_list_exit_23_without_quoting_it(
        filled: Path, key_file: Path) -> None:
    # INTEGER affinity keeps text that is not a number as text: a hex digest in `size`.
    sql(filled, "UPDATE entries SET size = ? WHERE rowid = 2", (SECRET + "a4781c46b351c568",))
    for args in (("list",), ("show", entry_ids(filled)[1]), ("verify",)):
        code, output = run(filled, key_file, *args)
        assert code == INTEGRITY, output
        assert "Traceback" not in output
        assert SECRET not in output
        assert "entries row 2: column size holds text where an integer belongs" in output


def test_a_null_ciphertext_is_a_verify_problem_and_an_export_error(
        filled: Path, key_file: Path) -> None:
    # NOT NULL keeps SQL from writing the NULL a damaged record header reads as: lift it in
    # the stored schema, write the NULL, and put the schema back as it was.
    entry = entry_ids(filled)[2]
    with closing(sqlite3.connect(filled)) as conn:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = replace(sql, 'ciphertext  BLOB NOT NULL', "
                     "'ciphertext  BLOB') WHERE name = 'entries'")
        conn.commit()
    sql(filled, "UPDATE entries SET ciphertext = NULL WHERE id = ?", (entry,))
    with closing(sqlite3.connect(filled)) as conn:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = replace(sql, 'ciphertext  BLOB\n', "
                     "'ciphertext  BLOB NOT NULL\n') WHERE name = 'entries'")
        conn.commit()

    code, output = run(filled, key_file, "verify")
    assert code == INTEGRITY, output
    assert "Traceback" not in output
    assert "entries row 3: column ciphertext holds NULL where a blob belongs" in output
    assert "SQLite schema" not in output  # only the value is damaged
    code, output = run(filled, key_file, "export", entry)
    assert_refused_cleanly(code, output)


def test_text_where_an_audit_version_belongs_is_reported_not_quoted(
        filled: Path, key_file: Path) -> None:
    entry = entry_ids(filled)[2]
    sql(filled, "DROP TRIGGER audit_no_update")
    sql(filled, "UPDATE audit SET version = ? WHERE entry_id = ?", (SECRET, entry))
    code, output = run(filled, key_file, "verify")
    assert code == INTEGRITY, output
    assert "Traceback" not in output
    assert SECRET not in output
    assert "column version holds text where an integer or NULL belongs" in output
    code, output = run(filled, key_file, "export", entry)
    assert_refused_cleanly(code, output)


# ------------------------------------------------------------------ random bit flips

COMMANDS: tuple[tuple[tuple[str, ...], bytes], ...] = (
    (("status",), b""), (("list",), b""), (("audit",), b""), (("match",), b""),
    (("verify",), b""), (("export", "{entry}"), b""),
    (("put", "--kind", "document"), b"new document"),  # last: it writes
)


def test_single_bit_flips_end_every_command_with_a_known_exit_and_no_traceback(
        filled: Path, key_file: Path) -> None:
    """Flip one bit at each of a deterministic sample of the file's non-zero bytes (where the
    schema, records and headers are) and run every command on the damaged copy."""
    entry = entry_ids(filled)[2]
    data = filled.read_bytes()
    rng = random.Random(20261129)  # a reproducible sample
    offsets = rng.sample([i for i, b in enumerate(data) if b], 120)
    codes: set[int] = set()
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 1 << rng.randrange(8)
        trial = filled.with_name(f"flip{offset}.sqlite3")  # a new file: no -wal/-shm of another
        trial.write_bytes(bytes(damaged))
        trial.chmod(0o600)
        for args, stdin in COMMANDS:
            argv = tuple(a.replace("{entry}", entry) for a in args)
            code, output = run(trial, key_file, *argv, stdin=stdin)
            assert code in KNOWN_EXITS, (offset, argv, output)
            assert "Traceback" not in output, (offset, argv)
            codes.add(code)
    assert INTEGRITY in codes  # the sample does reach damage that matters


def test_a_subject_of_any_length_keeps_list_and_show_to_a_screen(
        vault_path: Path, key_file: Path, source: KeyFileSource, clock: StepClock) -> None:
    """A certificate whose subject is 500 OUs of 100 characters made `vault list` print a
    60,000-column row and `vault show` as long a line (review 12). The table cuts the summary,
    `show` cuts each value and says how long it is; `--json` keeps everything."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from tests.certfactory import make_cert

    issued = make_cert()
    huge = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{i:03}" + "u" * 97)
                      for i in range(500)])
    cert = (x509.CertificateBuilder().subject_name(huge).issuer_name(issued.cert.issuer)
            .public_key(issued.key.public_key()).serial_number(9)
            .not_valid_before(issued.cert.not_valid_before_utc)
            .not_valid_after(issued.cert.not_valid_after_utc)
            .sign(issued.key, hashes.SHA256()))
    with open_vault(vault_path, source, create=True, clock=clock, actor="t@h") as vault:
        entry = vault.put("certificate", cert.public_bytes(serialization.Encoding.PEM))
    code, listing = run(vault_path, key_file, "list")
    assert code == 0, listing
    assert max(len(line) for line in listing.splitlines()) < 200
    code, shown = run(vault_path, key_file, "show", str(entry.entry_id))
    assert code == 0, shown
    assert max(len(line) for line in shown.splitlines()) < 700
    assert "characters; --json shows them all" in shown
    code, document = run(vault_path, key_file, "list", "--json")
    assert "499" + "u" * 97 in document
