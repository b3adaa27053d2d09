"""``certescrow inspect FILE|HOST:PORT``: everything about one file or a live chain."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from agent.main import certescrow
from tests.agent.scan_fixtures import serve_tls, write
from tests.certfactory import OV_OID, make_ca, make_cert
from tests.clockhook import without_clock_warning

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
CERTESCROW = Path(sys.executable).with_name("certescrow")


def _inspect(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(certescrow, ["inspect", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_inspect_file_shows_every_field(tmp_path: Path) -> None:
    issued = make_cert(not_before=NB, lifetime=timedelta(days=199), policy_oids=(OV_OID,),
                       sans=("shop.example.jp", "192.0.2.10"))
    path = write(tmp_path / "combined.pem", issued.pem + issued.key_pem(), 0o600)
    code, out, _ = _inspect(str(path), "--at", "2026-02-01")
    assert code == 0
    for expected in (issued.sha256, "CN=shop.example.jp", "shop.example.jp, 192.0.2.10",
                     "2026-01-15T03:00:00Z", "-> tier 1y", "ec 256", OV_OID,
                     "key matches:    yes", "Private keys:", "unencrypted, mode 0600",
                     "notify due"):
        assert expected in out, expected


def test_inspect_file_json(tmp_path: Path) -> None:
    a = make_cert(not_before=NB, sans=("a.example",))
    b = make_cert(not_before=NB - timedelta(days=200), sans=("b.example",))
    path = write(tmp_path / "bundle.pem", a.pem + b.pem)
    code, out, _ = _inspect(str(path), "--json", "--at", "2026-02-01", "--category", "III")
    assert code == 0
    doc = json.loads(out)
    assert [c["index"] for c in doc["certificates"]] == [0, 1]  # file order, not urgency
    assert [c["sha256"] for c in doc["certificates"]] == [a.sha256, b.sha256]
    assert doc["certificates"][1]["severity"] == "critical"  # expired
    assert doc["severity"] == "critical"
    assert doc["errors"] == []


def test_inspect_unreadable_file_exits_1_with_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "keystore.jks", b"\xfe\xed\xfe\xed" + b"\x00" * 32)
    code, out, _ = _inspect(str(path))
    assert code == 1
    assert "unsupported-format" in out
    assert "Java KeyStore" in out


def test_inspect_live_server_whole_chain_verified_with_its_root(tmp_path: Path) -> None:
    with serve_tls(tmp_path) as server:
        code, out, err = _inspect(f"127.0.0.1:{server.port}", "--servername", "www.example.jp",
                                  "--ca-file", str(server.root_pem), "--json",
                                  "--at", "2026-02-01", "--timeout", "5")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["target"] == f"127.0.0.1:{server.port}"
    assert (doc["presented"], doc["verified"], doc["verify_error"]) == (2, True, None)
    assert [c["index"] for c in doc["certificates"]] == [0, 1]
    assert doc["certificates"][0]["sans"] == ["www.example.jp"]
    assert doc["certificates"][1]["is_ca"] is True
    assert doc["certificates"][0]["path"] == f"127.0.0.1:{server.port}"
    assert doc["certificates"][0]["format"] == "tls"
    assert doc["servername"] == "www.example.jp"


def test_inspect_live_server_says_when_the_chain_does_not_verify(tmp_path: Path) -> None:
    with serve_tls(tmp_path) as server:
        code, out, _ = _inspect(f"127.0.0.1:{server.port}", "--servername", "www.example.jp",
                                "--at", "2026-02-01", "--timeout", "5")
    assert code == 0
    assert "chain does NOT verify" in out
    assert "Certificate #0 (tls)" in out
    assert "Certificate #1 (tls)" in out


def test_inspect_refused_connection_is_an_agent_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([str(CERTESCROW), "inspect", f"127.0.0.1:{port}", "--timeout", "2"],
                          capture_output=True, text=True, timeout=60, check=False,
                          cwd=tmp_path)
    assert done.returncode == 35
    assert done.stderr.strip() == f"Error: 127.0.0.1:{port}: connection refused (nothing " \
                                  "listens there)"


def test_real_subprocess_inspect_live_chain(tmp_path: Path) -> None:
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-02-01T00:00:00Z"}
    with serve_tls(tmp_path) as server:
        done = subprocess.run(
            [str(CERTESCROW), "inspect", f"127.0.0.1:{server.port}", "--servername",
             "www.example.jp", "--ca-file", str(server.root_pem), "--json"],
            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verified"] is True
    assert without_clock_warning(done.stderr) == ""


def test_inspect_live_server_with_a_certfactory_chain(tmp_path: Path) -> None:
    ca = make_ca("Factory Org", "Factory Issuing CA", slot=5)
    leaf = make_cert(not_before=NB, issuer=ca, sans=("factory.example.jp",))
    with serve_tls(tmp_path, chain=((leaf.cert, ca.cert), leaf.key, ca.cert)) as server:
        code, out, err = _inspect(f"127.0.0.1:{server.port}", "--servername",
                                  "factory.example.jp", "--ca-file", str(server.root_pem),
                                  "--json", "--at", "2026-02-01", "--category", "III")
    assert code == 0, err
    doc = json.loads(out)
    ca_sha256 = hashlib.sha256(ca.cert.public_bytes(Encoding.DER)).hexdigest()
    assert [c["sha256"] for c in doc["certificates"]] == [leaf.sha256, ca_sha256]
    assert doc["certificates"][0]["renewable"] is False  # 90 days, Art.6(3) proviso
    assert doc["certificates"][1]["self_signed"] is True
    # certfactory certificates carry no key identifiers, which a WebPKI verifier requires:
    # the chain is read and classified all the same, and the report says it does not verify
    assert doc["verified"] is False
    assert doc["verify_problem"] == "invalid-chain"
    assert "2.5.29" not in doc["verify_error"]  # words, never the verifier's internals
    assert "chain-unverified" in {f["code"] for f in doc["certificates"][0]["findings"]}
