"""``fleet hosts`` counts a host's certificates by the severity the host's own check gives them:
the heartbeat's inventory and a real ``certescrow scan --json`` of the same store agree (a
self-signed 20-day CA certificate was WARN at the desk and OK on the host; issue 13)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.fleet_client import inventory_of
from agent.logs import EventLog
from agent.reader import read_file
from agent.readindex import PersistentIndex, ReadIndexFile
from agent.records import ReadLimits
from tests.certfactory import make_cert
from tests.clirun import certescrow

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)


def _self_signed_ca(days: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed.example.jp")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_inventory_counts_what_the_hosts_scan_counts(tmp_path: Path) -> None:
    alone = tmp_path / "self-signed"
    alone.mkdir()
    (alone / "ca.pem").write_bytes(_self_signed_ca(20))
    live = tmp_path / "live"
    live.mkdir()
    for n, left in enumerate((200, 20, 10)):
        (live / f"{n}.pem").write_bytes(make_cert(
            not_before=NOW - timedelta(days=30), not_after=NOW + timedelta(days=left)).pem)

    index = PersistentIndex(ReadIndexFile(tmp_path / "ri.sqlite3", host="h", log=EventLog()))
    index.load()
    for n, path in enumerate(sorted([*alone.iterdir(), *live.iterdir()])):
        result = read_file(path, limits=ReadLimits())
        index.put(result.path, (1, n, 3, 4, 5), result)
    sent = inventory_of(index, at=NOW, windows=None)

    scanned = certescrow("scan", "--json", "--at", "2026-06-01T12:00:00+09:00", str(alone),
                         str(live), home=tmp_path)
    rows = [r for r in json.loads(scanned.stdout) if r["kind"] == "certificate"]
    assert Counter(r["host_severity"] for r in rows) == Counter(sent["by_severity"])
    assert sent["by_severity"] == {"ok": 2, "warning": 1, "critical": 1}
