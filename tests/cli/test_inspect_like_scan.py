"""``inspect FILE`` says what ``scan`` says of the same file (issue 11, one row model): the
file's certificates are placed among its directory (certbot's ``chain.pem`` beside
``cert.pem`` is the leaf's chain, its expiry a finding on the leaf), and an unreadable file is
an ``error`` object and never ``"severity": "ok"``. Real certbot-style store, real processes."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agent.certbot_store import AT, certbot_store, make_intermediate
from tests.certfactory import make_cert
from tests.clirun import certescrow as run_certescrow

AT_TEXT = AT.isoformat().replace("+00:00", "Z")


def certescrow(*args: str, home: Path, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
    return run_certescrow(*args, home=home, at=AT_TEXT, cwd=cwd)


def _codes(obj: dict[str, Any]) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in obj["findings"]}


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "in-its-directory"])
def test_inspect_cert_pem_beside_an_expired_chain_is_critical_as_in_scan(
        tmp_path: Path, relative: bool) -> None:
    intermediate = make_intermediate(not_after=datetime(2026, 1, 20, tzinfo=UTC), slot=43)
    leaf = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                     sans=("example.jp",), issuer=intermediate)
    store = certbot_store(tmp_path, leaf=leaf, intermediate=intermediate)
    site = store.live / "example.jp"
    scanned = json.loads(certescrow("scan", "--json", str(site), home=tmp_path).stdout)
    (in_scan,) = [o for o in scanned if o["kind"] == "certificate"
                  and o["path"] == str(site / "cert.pem")]
    assert _codes(in_scan)["chain-expired"] == "critical"
    target = "cert.pem" if relative else str(site / "cert.pem")
    cwd = site if relative else None
    done = certescrow("inspect", "--json", target, home=tmp_path, cwd=cwd)
    assert done.returncode == 0, done.stderr
    inspected = json.loads(done.stdout)
    (row,) = inspected["certificates"]  # the neighbours' certificates are not shown
    assert row["path"] == target
    assert row["role"] == in_scan["role"] == "leaf"
    assert _codes(row) == _codes(in_scan)
    assert row["key_matches"] is True  # privkey.pem beside it, as before
    assert inspected["severity"] == "critical"
    assert inspected["files"] == []
    assert inspected["errors"] == []
    text = certescrow("inspect", target, home=tmp_path, cwd=cwd).stdout
    assert "[critical] chain-expired" in text
    assert "severity:       critical (host critical" in text


def test_inspect_cert_pem_beside_a_valid_chain_has_no_chain_finding(tmp_path: Path) -> None:
    store = certbot_store(tmp_path)
    done = certescrow("inspect", "--json", str(store.live / "example.jp" / "cert.pem"),
                      home=tmp_path)
    (row,) = json.loads(done.stdout)["certificates"]
    assert not {"chain-expired", "chain-expires-first"} & set(_codes(row))
    assert json.loads(done.stdout)["severity"] == "warning"  # the 90-day proviso only


def test_inspect_json_on_an_unreadable_file_is_an_error_object_not_ok(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    done = certescrow("inspect", "--json", str(bad), home=tmp_path)
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["severity"] == "unknown"
    (error,) = out["errors"]
    assert error["kind"] == "error"
    assert error["path"] == str(bad)
    assert error["error"]["code"] == "malformed-certificate"
    scanned = json.loads(certescrow("scan", "--json", str(bad), home=tmp_path).stdout)
    assert scanned == [error]  # the very object scan prints


def test_inspect_json_critical_beats_unknown(tmp_path: Path) -> None:
    """A file with a readable expired certificate and an unreadable one: critical, as
    ``--exit-status`` would answer."""
    expired = make_cert(not_before=AT - timedelta(days=100), lifetime=timedelta(days=90))
    mixed = tmp_path / "bundle.pem"
    mixed.write_bytes(expired.pem + b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                    b"-----END CERTIFICATE-----\n")
    done = certescrow("inspect", "--json", str(mixed), home=tmp_path)
    out = json.loads(done.stdout)
    assert out["errors"]
    assert out["errors"][0]["kind"] == "error"
    assert out["severity"] == "critical"
