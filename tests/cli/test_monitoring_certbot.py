"""Monitoring is right on a healthy host (issue 11), with a real certbot-style store and real
processes: ``live/NAME/{cert,chain,fullchain,privkey}.pem`` as links into ``archive/``, certbot's
``live/README``, a matching key 0600."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.agent.certbot_store import (
    AT,
    certbot_store,
    commercial_store,
    make_intermediate,
)
from tests.certfactory import make_cert, shared_key
from tests.clirun import certescrow as run_certescrow
from tests.clockhook import without_clock_warning

AT_TEXT = AT.isoformat().replace("+00:00", "Z")


def certescrow(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return run_certescrow(*args, home=home, at=AT_TEXT)


@pytest.mark.parametrize("tier", [None, "1y"])
def test_scan_exit_status_on_a_healthy_certbot_store_is_ok(tmp_path: Path,
                                                           tier: str | None) -> None:
    store = certbot_store(tmp_path)
    args = ["scan", "--exit-status", str(store.live)] + (["--tier", tier] if tier else [])
    done = certescrow(*args, home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert without_clock_warning(done.stderr) == ""
    assert "host status OK" in done.stdout
    # the contract desk's findings are still shown: the 90-day proviso blocks a renewal
    assert "renewal-blocked" in done.stdout
    done = certescrow(*args, "--exit-status=contract", home=tmp_path)
    assert done.returncode == 1  # ... and count with --exit-status=contract


def test_scan_json_gives_roles_and_no_ca_certificate_warning_for_the_chain(
        tmp_path: Path) -> None:
    store = certbot_store(tmp_path)
    done = certescrow("scan", "--json", "--exit-status", str(store.live), home=tmp_path)
    assert done.returncode == 0, done.stderr
    objects = json.loads(done.stdout)
    roles = {(Path(o["path"]).name, o["index"]): o["role"]
             for o in objects if o["kind"] == "certificate"}
    assert roles == {("cert.pem", 0): "leaf", ("fullchain.pem", 0): "leaf",
                     ("fullchain.pem", 1): "intermediate", ("chain.pem", 0): "intermediate"}
    for obj in objects:
        if obj["kind"] == "certificate" and obj["role"] == "intermediate":
            assert obj["findings"] == []
            assert obj["actions"] == []
            assert obj["compliant"] is None
            assert obj["item"] is None
        if obj["kind"] == "certificate" and obj["role"] == "leaf":
            assert obj["key_matches"] is True
    skipped = [o for o in objects if o["kind"] == "skipped"]
    assert {Path(o["path"]).name for o in skipped} == {"README"}
    assert all(o["severity"] == "info" for o in skipped)


def test_scan_exit_status_on_a_healthy_commercial_store_is_ok(tmp_path: Path) -> None:
    ssl = commercial_store(tmp_path)
    for extra in ([], ["--tier", "1y"]):
        done = certescrow("scan", "--exit-status", str(ssl), *extra, home=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def test_agent_run_once_exit_status_on_a_healthy_certbot_store_is_ok(tmp_path: Path) -> None:
    store = certbot_store(tmp_path)
    for tier in ("", 'tier = "1y"\n'):
        config = tmp_path / "config.toml"
        config.write_text(f'[policy]\nledger = "{tmp_path}/ledger.sqlite3"\n'
                          f'[[agent.stores]]\npath = "{store.live}"\n{tier}')
        done = certescrow("--config", str(config), "agent", "run", "--once", "--exit-status",
                          home=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "host status OK" in done.stdout
        assert "example.jp" in done.stdout


def test_a_key_that_does_not_match_is_critical_with_the_file_names_everywhere(
        tmp_path: Path) -> None:
    other_key = make_cert(key=shared_key("ec", 12)).key_pem()
    store = certbot_store(tmp_path, key_pem=other_key)
    leaf_dir = store.live / "example.jp"
    done = certescrow("scan", "--json", "--exit-status", str(store.live), home=tmp_path)
    assert done.returncode == 2
    leaves = [o for o in json.loads(done.stdout)
              if o["kind"] == "certificate" and o["role"] == "leaf"]
    for leaf in leaves:
        (mismatch,) = [f for f in leaf["findings"] if f["code"] == "key-mismatch"]
        assert mismatch["severity"] == "critical"
        assert "privkey.pem" in mismatch["message"]
        assert Path(leaf["path"]).name in mismatch["message"]
    for name in ("cert.pem", "fullchain.pem"):
        done = certescrow("inspect", str(leaf_dir / name), home=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "[critical] key-mismatch" in done.stdout
        assert f"the certificate in {name}#0 does not match the private key in privkey.pem" \
            in done.stdout
        assert "key matches:    no" in done.stdout
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/ledger.sqlite3"\n'
                      f'[[agent.stores]]\npath = "{store.live}"\n')
    done = certescrow("--config", str(config), "agent", "run", "--once", "--exit-status",
                      "--json", home=tmp_path)
    assert done.returncode == 2, done.stderr
    rows = json.loads(done.stdout)["certificates"]
    messages = [f["message"] for r in rows for f in r["findings"] if f["code"] == "key-mismatch"]
    assert messages
    assert all("privkey.pem" in m for m in messages)


def test_a_key_mismatch_in_one_file_is_critical_in_inspect(tmp_path: Path) -> None:
    issued = make_cert(not_before=AT - timedelta(days=30))
    combined = tmp_path / "site.pem"
    combined.write_bytes(issued.pem + make_cert(key=shared_key("ec", 13)).key_pem())
    combined.chmod(0o600)
    done = certescrow("inspect", str(combined), home=tmp_path)
    assert "[critical] key-mismatch" in done.stdout
    assert "site.pem" in done.stdout


@pytest.mark.parametrize(("intermediate_end", "code", "severity"), [
    (datetime(2026, 3, 1, tzinfo=UTC), "chain-expires-first", "warning"),
    (datetime(2026, 1, 20, tzinfo=UTC), "chain-expired", "critical"),
])
def test_an_intermediate_that_ends_first_is_a_finding_on_the_leaf_s_row(
        tmp_path: Path, intermediate_end: datetime, code: str, severity: str) -> None:
    intermediate = make_intermediate(not_after=intermediate_end, slot=20 + intermediate_end.day)
    leaf = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                     sans=("example.jp",), issuer=intermediate)
    store = certbot_store(tmp_path, leaf=leaf, intermediate=intermediate)
    done = certescrow("scan", "--json", "--exit-status", str(store.live), home=tmp_path)
    assert done.returncode == {"warning": 1, "critical": 2}[severity]
    for obj in json.loads(done.stdout):
        if obj["kind"] != "certificate":
            continue
        codes = {f["code"]: f["severity"] for f in obj["findings"]}
        if obj["role"] == "leaf":
            assert codes[code] == severity
        else:
            assert codes == {}  # the chain certificate itself says nothing


def test_a_lone_ca_certificate_among_server_certificates_keeps_its_warning(
        tmp_path: Path) -> None:
    ssl = commercial_store(tmp_path)
    stray = make_intermediate(cn="Some Other CA", org="Elsewhere", slot=30)
    from cryptography.hazmat.primitives.serialization import Encoding

    (ssl / "old-ca.crt").write_bytes(stray.cert.public_bytes(Encoding.PEM))
    done = certescrow("scan", "--json", str(ssl), home=tmp_path)
    roles = {Path(o["path"]).name: (o["role"], {f["code"] for f in o["findings"]})
             for o in json.loads(done.stdout) if o["kind"] == "certificate"}
    assert roles["old-ca.crt"][0] == "ca"
    assert "ca-certificate" in roles["old-ca.crt"][1]
    assert roles["shop.example.co.jp.ca-bundle"] == ("intermediate", set())


def test_a_trust_store_is_trust_anchors_without_warnings(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.certfactory import make_ca

    certs = tmp_path / "certs"
    certs.mkdir()
    for n in range(3):
        ca = make_ca(f"Root Org {n}", f"Root {n}", slot=40 + n)
        (certs / f"root{n}.pem").write_bytes(ca.cert.public_bytes(Encoding.PEM))
    done = certescrow("scan", "--json", "--exit-status", str(certs), home=tmp_path)
    assert done.returncode == 0, done.stderr
    objects = json.loads(done.stdout)
    assert {o["role"] for o in objects} == {"trust-anchor"}
    assert all(o["findings"] == [] for o in objects)
