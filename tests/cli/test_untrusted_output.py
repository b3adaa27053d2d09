"""Text a certificate's maker wrote (CN, SANs, file names) reaches the vault's and
``policy classify``'s text output escaped: no C0/C1 control, DEL, lone surrogate or bidi control
gets to the terminal, so none can clear it, retitle it, ring it or forge a line. JSON output
stays exact. Through the real ``certescrow`` process, as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.certfactory import make_cert

# What a hostile maker puts in a CN: clear screen, an OSC title ending in BEL, a forged line,
# DEL, a C1 CSI (U+009B), a bidi override.
HOSTILE_CN = "a\x1b[2J\x1b]0;pwned\x07\nFORGED\r\x7f\x9b31m\u202ez"
# The same in a file name (no '/' and no NUL in a name).
HOSTILE_NAME = "s\x1b[2J\x1b]0;t\x07\nFORGED\x7f\u202e.pem"
# Everything but the line feed that ends a line of output.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")


def certescrow(*args: str) -> subprocess.CompletedProcess[bytes]:
    exe = Path(sys.executable).parent / "certescrow"
    return subprocess.run([str(exe), *args], capture_output=True, timeout=60, check=False,
                          env=os.environ.copy())


def assert_safe(done: subprocess.CompletedProcess[bytes]) -> str:
    text = (done.stdout + done.stderr).decode("utf-8")  # valid UTF-8 too
    found = sorted({f"U+{ord(c):04X}" for c in _UNSAFE.findall(text)})
    assert found == [], (found, text)
    assert "Traceback" not in text
    return text


@pytest.fixture
def vault_opts(tmp_path: Path) -> list[str]:
    opts = ["--vault", str(tmp_path / "v" / "vault.sqlite3"), "--key-file",
            str(tmp_path / "master.key")]
    assert certescrow("vault", "init", *opts).returncode == 0
    return opts


def test_vault_import_list_show_escape_a_hostile_cn_and_file_name(
        tmp_path: Path, vault_opts: list[str]) -> None:
    issued = make_cert(cn=HOSTILE_CN, sans=("www.example.jp",))
    path = tmp_path / HOSTILE_NAME
    path.write_bytes(issued.pem)
    imported = certescrow("vault", "import", *vault_opts, str(path))
    assert imported.returncode == 0, imported.stderr
    text = assert_safe(imported)
    assert "\\u001b[2J" in text  # shown, escaped, not obeyed
    listed = certescrow("vault", "list", *vault_opts[:2])
    assert listed.returncode == 0
    text = assert_safe(listed)
    assert len(text.splitlines()) == 2  # header and one row: no forged line
    entries = json.loads(certescrow("vault", "list", "--json", *vault_opts[:2]).stdout)
    assert entries[0]["label"] == HOSTILE_NAME  # JSON stays exact
    assert "pwned\x07\nFORGED\r\x7f\x9b31m\u202ez" in entries[0]["meta"]["subject"]
    shown = certescrow("vault", "show", *vault_opts[:2], entries[0]["id"])
    assert shown.returncode == 0
    assert_safe(shown)
    as_json = json.loads(certescrow("vault", "show", "--json", *vault_opts[:2],
                                    entries[0]["id"]).stdout)
    assert as_json["label"] == HOSTILE_NAME
    matched = certescrow("vault", "match", *vault_opts)
    assert_safe(matched)


def test_vault_label_and_rm_escape_a_hostile_label(vault_opts: list[str]) -> None:
    exe = Path(sys.executable).parent / "certescrow"
    put = subprocess.run([str(exe), "vault", "put", *vault_opts, "--kind", "document",
                          "--label", HOSTILE_CN], input=b"doc", capture_output=True,
                         timeout=60, check=False)
    assert put.returncode == 0, put.stderr
    entry = put.stdout.decode().strip()
    relabelled = certescrow("vault", "label", *vault_opts, entry, "--label", HOSTILE_NAME)
    assert relabelled.returncode == 0
    assert_safe(relabelled)
    removed = certescrow("vault", "rm", *vault_opts, entry, "--yes")
    assert removed.returncode == 0
    assert_safe(removed)


def test_policy_classify_escapes_a_hostile_cn_and_file_name(tmp_path: Path) -> None:
    # 398 days: a finding is printed under the certificate, with its CN
    from datetime import timedelta

    issued = make_cert(cn=HOSTILE_CN, lifetime=timedelta(days=398))
    path = tmp_path / HOSTILE_NAME
    path.write_bytes(issued.pem)
    done = certescrow("policy", "classify", str(path), "--at", "2026-02-01")
    text = assert_safe(done)
    assert "\\u001b[2J" in text
    as_json = certescrow("policy", "classify", "--json", str(path), "--at", "2026-02-01")
    assert json.loads(as_json.stdout)[0]["path"] == str(path)
