"""The scan records library warnings once per batch of files (issue 12: a recording context per
certificate cost as much as reading a name); each warning must still become a finding on the
certificate that caused it, and on no other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from agent import x509facts
from agent.x509facts import capture_warnings, parse_der_certificate, recording_warnings
from tests.agent.scan_fixtures import nonpositive_serial_der, write
from tests.certfactory import make_cert

CERTESCROW = Path(sys.executable).with_name("certescrow")


def _codes(row: dict[str, object]) -> set[str]:
    findings = row["findings"]
    assert isinstance(findings, list)
    return {f["code"] for f in findings}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_warning_is_a_finding_on_its_certificate_only(tmp_path: Path, jobs: str) -> None:
    store = tmp_path / "store"
    good = make_cert(sans=("good.example",)).der
    for i in range(600):  # two workers with --jobs 2; the odd certificate in the middle
        name = f"{i:04}.der"
        write(store / name, nonpositive_serial_der(-1) if i in (3, 450) else good)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    env.update(HOME=str(tmp_path), CERTESCROW_TESTONLY_NOW="2026-02-01T00:00:00Z")
    done = subprocess.run([str(CERTESCROW), "scan", "--json", "--jobs", jobs, str(store)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(done.stdout)}
    assert len(rows) == 600
    flagged = {name for name, row in rows.items() if "non-positive-serial" in _codes(row)}
    assert flagged == {"0003.der", "0450.der"}
    assert "Warning" not in done.stderr


def test_inside_a_batch_each_capture_keeps_only_its_own_warnings() -> None:
    with recording_warnings():
        assert x509facts._RECORDING is not None  # a test process with one thread
        warnings.warn("outside any capture", UserWarning, stacklevel=1)
        neg = parse_der_certificate(nonpositive_serial_der(0))
        plain = parse_der_certificate(make_cert().der)
        _, caught = capture_warnings(lambda: warnings.warn("mine", UserWarning, stacklevel=1))
        with pytest.raises(ZeroDivisionError):
            capture_warnings(lambda: (warnings.warn("lost", UserWarning, stacklevel=1), 1 / 0))
        _, after = capture_warnings(lambda: None)
    assert [f.code for f in neg.findings] == ["non-positive-serial"]
    assert plain.findings == ()
    assert [str(w.message) for w in caught] == ["mine"]
    assert after == ()
    assert x509facts._RECORDING is None
