"""``certescrow scan``: one-shot, no configuration, JSON/CSV/table, monitoring exit status."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from agent.cli import PROGRESS_THRESHOLD, _Progress
from agent.main import certescrow
from agent.report import CSV_COLUMNS
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert
from tests.clockhook import without_clock_warning

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
AT = "2026-02-01T12:00:00"  # Asia/Tokyo
CERTESCROW = Path(sys.executable).with_name("certescrow")


def _scan(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(certescrow, ["scan", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def store(tmp_path: Path) -> Path:
    write(tmp_path / "store" / "ok.pem",
          make_cert(not_before=NB, lifetime=timedelta(days=300), sans=("ok.example",)).pem)
    write(tmp_path / "store" / "le.pem", make_cert(not_before=NB, sans=("le.example",)).pem)
    return tmp_path / "store"


def test_scan_json_prints_one_object_per_certificate(store: Path) -> None:
    code, out, err = _scan(str(store), "--json", "--at", AT, "--category", "III")
    assert code == 0, err
    rows = json.loads(out)
    lines = out.splitlines()  # one object per line, inside one JSON array
    assert (lines[0], lines[-1], len(lines)) == ("[", "]", len(rows) + 2)
    assert {r["sans"][0]: r["renewable"] for r in rows} == {"le.example": False,
                                                           "ok.example": True}
    for row in rows:
        assert {"path", "index", "sha256", "subject", "issuer", "sans", "not_before",
                "not_after", "validity_seconds", "tier", "renewable", "days_left", "item",
                "category", "findings", "actions"} <= set(row)
        assert row["not_after"].endswith("Z")


TRUNCATED = b"-----BEGIN CERTIFICATE-----\nMIIB\n"


def test_scan_without_exit_status_exits_1_when_a_file_failed(store: Path) -> None:
    write(store / "cut.pem", TRUNCATED)
    code, out, _ = _scan(str(store), "--json", "--at", AT)
    assert code == 1
    errors = [r for r in json.loads(out) if "error" in r]
    assert errors == [{"kind": "error", "path": str(store / "cut.pem"),
                       "error": {"code": "truncated", "message": errors[0]["error"]["message"]}}]


def test_scan_csv(store: Path) -> None:
    code, out, _ = _scan(str(store), "--csv", "--at", AT)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["sans"] for r in rows) == ["le.example", "ok.example"]


def test_scan_json_and_csv_exclude_each_other(store: Path) -> None:
    code, _, err = _scan(str(store), "--csv", "--json")
    assert code == 2
    assert "exclude each other" in err


def test_scan_human_table_is_sorted_by_urgency(store: Path) -> None:
    code, out, _ = _scan(str(store), "--at", AT)
    assert code == 0
    rows = [line for line in out.splitlines()[1:] if line and not line.startswith(" ")]
    assert out.startswith("SEVERITY")
    assert "le.example" in rows[0]  # renewal blocked: more urgent than the 300-day one
    assert "ok.example" in rows[1]
    assert "2 certificate(s), 0 error(s)" in out
    assert "(as of 2026-02-01 12:00 JST)" in out


def test_the_as_of_line_of_a_year_two_scan_says_local_mean_time(store: Path) -> None:
    # was "(as of 2-01-01 09:18 JST)": strftime's year, and a label Tokyo did not keep then
    _code, out, _ = _scan(str(store), "--at", "0002-01-01T00:00:00Z")
    assert "(as of 0002-01-01 09:18 LMT)" in out, out


@pytest.mark.parametrize(
    ("extra", "option", "status"),
    [({}, "--exit-status", 0),
     ({"le.pem": "blocked"}, "--exit-status", 0),  # the contract desk's, not the host's
     ({"le.pem": "blocked"}, "--exit-status=host", 0),
     ({"le.pem": "blocked"}, "--exit-status=contract", 1),
     ({"le.pem": "blocked"}, "--exit-status=all", 1),
     ({"old.pem": "expired"}, "--exit-status", 2),
     ({"junk": "junk"}, "--exit-status", 3),
     ({"junk": "junk"}, "--exit-status=contract", 3),
     ({"old.pem": "expired", "junk": "junk"}, "--exit-status", 2),
     ({"README": "readme"}, "--exit-status", 0)],  # skipped, info: never UNKNOWN
)
@pytest.mark.parametrize("fmt", ["--json", "--csv", "--table"])
def test_scan_exit_status_for_monitoring(tmp_path: Path, extra: dict[str, str], option: str,
                                         status: int, fmt: str) -> None:
    write(tmp_path / "ok.pem", make_cert(not_before=NB, lifetime=timedelta(days=300)).pem)
    contents = {"blocked": make_cert(not_before=NB).pem,
                "expired": make_cert(not_before=NB - timedelta(days=200)).pem,
                "junk": TRUNCATED, "readme": b"This directory contains your keys.\n"}
    for name, kind in extra.items():
        write(tmp_path / name, contents[kind])
    args = [str(tmp_path), option, "--at", AT] + ([] if fmt == "--table" else [fmt])
    code, _, err = _scan(*args)
    assert code == status
    assert ("UNKNOWN: 1 file(s) or certificate(s) could not be read" in err) == (status == 3)


@pytest.mark.parametrize("fmt", ["--json", "--table"])
def test_one_file_of_keys_too_costly_to_try_counts_as_one_file_not_fifty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """A certificate and 50 encrypted keys in one PEM: past the file's budget for password
    trials each key left untried is an error at its position, and the summary said "50
    error(s)", the UNKNOWN line "50 file(s) or certificate(s) could not be read": one file read
    like fifty broken ones. The same file without its certificate was already one error (its
    problems folded into one message). The budget is the reader's (3 s of CPU, which a truly
    costly key takes: tests/vault/test_pkcs12_cost.py); here the first trial spends it."""
    from agent import formats

    monkeypatch.setattr(formats, "KEY_TRIALS_SECONDS", 0.0)
    leaf = make_cert(not_before=NB, lifetime=timedelta(days=300))
    key = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.BestAvailableEncryption(b"not the password"))
    write(tmp_path / "store" / "bundle.pem", leaf.pem + key * 50)
    passwords = write(tmp_path / "passwords", b"s3cret\n", 0o600)
    args = [str(tmp_path / "store"), "--exit-status", "--at", AT, "--password-file",
            str(passwords)]
    code, out, err = _scan(*args, *([fmt] if fmt == "--json" else []))
    assert code == 3
    assert "UNKNOWN: 1 file(s) could not be read in full (49 error(s))" in err
    if fmt == "--json":  # every untried key is still listed, at its position
        errors = [r for r in json.loads(out) if r["kind"] == "error"]
        assert [e["key_index"] for e in errors] == list(range(1, 50))
        assert {e["error"]["code"] for e in errors} == {"too-costly"}
    else:
        assert out.count("too-costly") == 49
        assert "1 certificate(s), 49 error(s) in 1 file(s), 0 skipped; host status UNKNOWN" in (
            " ".join(out.split()))


def test_exit_status_before_a_path_is_the_flag_not_a_mode(tmp_path: Path) -> None:
    write(tmp_path / "ok.pem", make_cert(not_before=NB, lifetime=timedelta(days=300)).pem)
    code, out, err = _scan("--exit-status", str(tmp_path), "--at", AT)
    assert (code, err) == (0, "")
    assert "host status OK" in out
    code, _, err = _scan("--exit-status=sometimes", str(tmp_path))
    assert code == 2
    assert "sometimes" in err


def test_scan_tier_option_checks_compliance(tmp_path: Path) -> None:
    write(tmp_path / "c.pem", make_cert(not_before=NB, lifetime=timedelta(days=199)).pem)
    _, out, _ = _scan(str(tmp_path), "--json", "--at", AT, "--category", "III", "--tier", "6m")
    (row,) = json.loads(out)
    assert (row["tier"], row["compliant"]) == ("1y", False)
    assert "non-compliant" in {a["action"] for a in row["actions"]} or any(
        f["clause"].startswith("Art.3") for f in row["findings"])


def test_scan_at_decides_days_left(store: Path) -> None:
    _, early, _ = _scan(str(store / "le.pem"), "--json", "--at", "2026-02-01")
    _, late, _ = _scan(str(store / "le.pem"), "--json", "--at", "2026-02-11")
    assert json.loads(early)[0]["days_left"] - json.loads(late)[0]["days_left"] == 10


def test_scan_reads_pkcs12_with_a_password_file(tmp_path: Path) -> None:
    leaf = make_cert(not_before=NB)
    data = pkcs12.serialize_key_and_certificates(
        b"x", leaf.key, leaf.cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"open sesame"))
    write(tmp_path / "bundle.p12", data, 0o600)
    passwords = write(tmp_path / "passwords", b"first\nopen sesame\n", 0o600)
    code, out, _ = _scan(str(tmp_path / "bundle.p12"), "--json", "--at", AT)
    assert code == 1
    assert json.loads(out)[0]["error"]["code"] == "pkcs12-password"
    code, out, _ = _scan(str(tmp_path / "bundle.p12"), "--json", "--at", AT,
                         "--password-file", str(passwords))
    assert code == 0
    assert json.loads(out)[0]["sha256"] == leaf.sha256


def test_scan_honours_the_configured_size_cap(tmp_path: Path) -> None:
    write(tmp_path / "c.pem", make_cert(not_before=NB).pem)
    config = write(tmp_path / "config.toml", b"[agent]\nmax_file_size = 100\n")
    result = CliRunner().invoke(certescrow, ["--config", str(config), "scan", "--json",
                                             str(tmp_path / "c.pem")])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)[0]["error"]["code"] == "too-large"


def test_scan_needs_a_path() -> None:
    code, _, err = _scan()
    assert code == 2
    assert "PATH" in err


def test_no_progress_bar_when_stderr_is_piped(tmp_path: Path) -> None:
    pem = make_cert(not_before=NB).pem
    for i in range(PROGRESS_THRESHOLD):
        write(tmp_path / f"{i:04}.pem", pem)
    code, out, err = _scan(str(tmp_path), "--json", "--at", AT)
    assert code == 0
    assert len(json.loads(out)) == PROGRESS_THRESHOLD
    assert err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_for_long_scans_only() -> None:
    terminal = _Terminal()
    progress = _Progress(terminal)  # type: ignore[arg-type]
    for done in range(1, PROGRESS_THRESHOLD + 1):
        progress(done, PROGRESS_THRESHOLD)
    progress.close()
    assert "Scanning" in terminal.getvalue()
    short = _Terminal()
    quiet = _Progress(short)  # type: ignore[arg-type]
    quiet(1, 3)
    quiet.close()
    assert short.getvalue() == ""


def test_real_subprocess_scan_json_and_unknown_item(store: Path) -> None:
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-02-01T00:00:00Z"}
    done = subprocess.run([str(CERTESCROW), "scan", "--json", str(store)], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 2
    assert without_clock_warning(done.stderr) == ""
    bad = subprocess.run([str(CERTESCROW), "scan", "--item", "no-such-item", str(store)],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 12
    assert without_clock_warning(bad.stderr).startswith("Error: ")
    assert "byo" in bad.stderr  # the message lists the valid handles


def test_scan_leaves_the_garbage_collector_as_it_found_it(store: Path) -> None:
    import gc

    assert gc.isenabled()
    code, _, _ = _scan(str(store), "--json", "--at", AT)
    assert code == 0
    assert gc.isenabled()


def test_scan_of_an_empty_directory_is_an_empty_json_array_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, out, _ = _scan(str(tmp_path / "empty"), "--json")
    assert (code, out) == (0, "[]\n")
    code, out, err = _scan(str(tmp_path / "empty"), "--json", "--exit-status")
    assert (code, out) == (3, "[]\n")  # nothing monitored is never OK
    assert "UNKNOWN: no certificate was read: nothing is monitored" in err
    code, out, _ = _scan(str(tmp_path / "empty"), "--csv")
    assert code == 0
    assert out.splitlines() == [",".join(CSV_COLUMNS)]


def test_scan_of_a_path_that_does_not_exist_is_unknown_with_the_reason(tmp_path: Path) -> None:
    code, out, err = _scan(str(tmp_path / "nowhere"), "--exit-status")
    assert code == 3
    assert "not-found" in out
    assert "UNKNOWN" in err


def test_library_warnings_become_findings_not_stderr_in_a_real_process(tmp_path: Path) -> None:
    import base64

    from tests.agent.scan_fixtures import nonpositive_serial_der

    pem = (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(nonpositive_serial_der(0))
           + b"-----END CERTIFICATE-----\n")
    path = write(tmp_path / "zero-serial.pem", pem)
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-02-01T00:00:00Z",
           "PYTHONWARNINGS": "default"}
    done = subprocess.run([str(CERTESCROW), "scan", "--json", str(path)], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0
    # Python would print CryptographyDeprecationWarning here
    assert without_clock_warning(done.stderr) == ""
    (row,) = json.loads(done.stdout)
    assert "non-positive-serial" in {f["code"] for f in row["findings"]}
