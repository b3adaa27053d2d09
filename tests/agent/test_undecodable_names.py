"""File names are bytes: ones that are not UTF-8, or hold control characters, go end to end.

The walk and the reader carry paths as ``os.fsdecode`` text (a byte that is not UTF-8 is a
lone surrogate); ``scan --json`` used to crash on it (orjson refuses lone surrogates: empty
output) and ``--csv`` likewise. Each output now escapes it in a way that round-trips: JSON's
``\\udcXX``, CSV's ``\\xXX`` (:func:`untrusted.text.unescape`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.records import ReadLimits
from agent.scan import scan_paths
from tests.certfactory import make_cert
from untrusted.text import unescape

CERTESCROW = Path(sys.executable).with_name("certescrow")
NAMES = [b"\xff\xfe-latin1.pem", b"clear\x1b[2J.pem", b"new\nline,critical.pem",
         "東京.pem".encode(), b"plain.pem"]
DIRECTORY = b"dir-\xe9t\xe9"  # Latin-1 "été": not UTF-8


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = os.fsencode(tmp_path / "store")
    os.makedirs(os.path.join(root, DIRECTORY))
    for i, name in enumerate(NAMES):
        pem = make_cert(sans=(f"n{i}.example",)).pem
        for where in (root, os.path.join(root, DIRECTORY)):
            with open(os.path.join(where, name), "wb") as handle:
                handle.write(pem)
    return tmp_path / "store"


def _expected(store: Path) -> set[bytes]:
    root = os.fsencode(store)
    return ({os.path.join(root, name) for name in NAMES}
            | {os.path.join(root, DIRECTORY, name) for name in NAMES})


def _run(*args: str | bytes, home: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env.update(HOME=str(home), CERTESCROW_TESTONLY_NOW="2026-03-01T00:00:00Z")
    return subprocess.run([os.fsencode(CERTESCROW), *(os.fsencode(a) for a in args)],
                          capture_output=True, env=env, timeout=120, check=False)


def test_the_walk_and_reader_carry_the_exact_bytes(store: Path) -> None:
    results = scan_paths([store], limits=ReadLimits())
    assert {os.fsencode(r.path) for r in results} == _expected(store)
    assert all(len(r.certificates) == 1 for r in results)


def test_scan_json_round_trips_every_name(store: Path, tmp_path: Path) -> None:
    done = _run("scan", "--json", store, home=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    done.stdout.decode("utf-8")  # valid UTF-8 throughout
    rows = [o for o in json.loads(done.stdout) if o["kind"] == "certificate"]
    assert {os.fsencode(o["path"]) for o in rows} == _expected(store)


def test_scan_csv_round_trips_every_name_one_line_per_row(store: Path, tmp_path: Path) -> None:
    done = _run("scan", "--csv", store, home=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    text = done.stdout.decode("utf-8")
    lines = text.splitlines()
    assert len(lines) == 1 + 2 * len(NAMES)  # no name splits a row, even for a naive reader
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {os.fsencode(unescape(r["path"])) for r in rows} == _expected(store)


def test_a_command_line_path_that_is_not_utf8_is_read(store: Path, tmp_path: Path) -> None:
    target = os.path.join(os.fsencode(store), NAMES[0])
    done = _run("scan", "--json", target, home=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    (row,) = [o for o in json.loads(done.stdout) if o["kind"] == "certificate"]
    assert os.fsencode(row["path"]) == target


def test_the_table_prints_no_control_character(store: Path, tmp_path: Path) -> None:
    done = _run("scan", store, home=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    text = done.stdout.decode("utf-8")
    assert "\x1b" not in text
    assert not any(0x80 <= ord(c) <= 0x9F for c in text)
