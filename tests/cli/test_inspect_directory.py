"""``certescrow inspect DIR``: every file of a directory in detail, as ``scan`` reads it.

It worked but was documented nowhere, and its certificates came out by position across files
(the first certificate of every file, then the second of every file: ``a.pem#0``,
``b.pem#0``, ``a.pem#1``), and a key file's finding without the file's name. Now it is
documented (docs/agent.md) and shows file by file, in the order ``scan --json`` lists the files.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from agent.main import certescrow
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent.md"


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    write(store / "a.pem", make_cert(sans=("a0.example",)).pem
          + make_cert(sans=("a1.example",), lifetime=timedelta(days=30)).pem)
    write(store / "b.pem", make_cert(sans=("b0.example",)).pem
          + make_cert(sans=("b1.example",), lifetime=timedelta(days=30)).pem)
    lone = make_cert(sans=("c.example",))
    write(store / "c" / "cert.pem", lone.pem)
    write(store / "c" / "privkey.pem", lone.key_pem(), mode=0o644)
    return store


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(certescrow, ["inspect", "--at", "2026-02-01", *args])
    return result.exit_code, result.stdout


def test_inspect_dir_lists_file_by_file_in_scans_order(tmp_path: Path) -> None:
    store = _store(tmp_path)
    scan = json.loads(CliRunner().invoke(certescrow, ["scan", "--json", "--at", "2026-02-01",
                                                      str(store)]).stdout)
    scan_order = [(row["path"], row["index"]) for row in scan if row["kind"] == "certificate"]
    code, out = _invoke("--json", str(store))
    assert code == 0
    body = json.loads(out)
    shown = [(c["path"], c["index"]) for c in body["certificates"]]
    files = list(dict.fromkeys(path for path, _ in scan_order))  # scan's file order
    assert shown == sorted(scan_order, key=lambda row: (files.index(row[0]), row[1]))
    assert shown[:2] == [(shown[0][0], 0), (shown[0][0], 1)]  # one file's, then the next's


def test_inspect_dir_text_names_each_file_and_the_key_file_with_its_finding(
        tmp_path: Path) -> None:
    store = _store(tmp_path)
    code, out = _invoke(str(store))
    assert code == 0
    headings = [line for line in out.splitlines() if line.startswith("Certificate #")]
    assert [h.split()[-1] for h in headings][:4] in (
        [f"{store}/a.pem"] * 2 + [f"{store}/b.pem"] * 2,
        [f"{store}/b.pem"] * 2 + [f"{store}/a.pem"] * 2)
    assert [h.split()[1] for h in headings if "/a.pem" in h] == ["#0", "#1"]
    lines = out.splitlines()
    key_heading = lines.index(f"Key file {store}/c/privkey.pem:")
    under = []
    for line in lines[key_heading + 1:]:
        if not line.startswith("  ["):
            break
        under.append(line)
    assert any("private-key-world-readable" in line for line in under), under


def test_inspect_dir_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "## `certescrow inspect FILE|DIR|HOST:PORT`" in text
    assert "`inspect DIR` is `scan DIR` in detail" in text
    help_text = CliRunner().invoke(certescrow, ["inspect", "--help"]).stdout
    assert "a directory" in help_text
