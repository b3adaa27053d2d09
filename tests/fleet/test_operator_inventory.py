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
from policy.ledger import Ledger
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


def _store_with_host_findings(root: Path, now: datetime) -> Path:
    """A store of what the row model says and the reader does not: a key that does not match
    its certificate, no subjectAltName, a bring-your-own certificate past the CA/B Forum
    maximum, an expired one, one inside the critical window, and two healthy ones."""
    from tests.certfactory import fresh_key

    def write(relative: str, data: bytes) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if "privkey" in relative:
            path.chmod(0o600)

    began = now - timedelta(days=30)
    write("mismatch/cert.pem", make_cert(not_before=began, sans=("a.example.jp",),
                                         key=fresh_key()).pem)
    write("mismatch/privkey.pem", make_cert(key=fresh_key()).key_pem())
    paired = make_cert(not_before=began, sans=("b.example.jp",), key=fresh_key())
    write("paired/cert.pem", paired.pem)
    write("paired/privkey.pem", paired.key_pem())
    write("flat/no-san.pem", make_cert(not_before=began, sans=()).pem)
    write("flat/byo.pem", make_cert(
        not_before=began, lifetime=timedelta(days=400), issuer_org="DigiCert Inc",
        issuer_cn="DigiCert Global G2 TLS RSA SHA256 2020 CA1").pem)
    write("flat/expired.pem", make_cert(not_before=now - timedelta(days=100)).pem)
    write("flat/soon.pem", make_cert(not_before=now - timedelta(days=80)).pem)
    write("flat/fine.pem", make_cert(not_before=began).pem)
    return root


def _scan_says(store: Path, at: datetime, home: Path) -> Counter[str]:
    scanned = certescrow("scan", "--json", "--at", at.isoformat(), str(store), home=home)
    rows = [r for r in json.loads(scanned.stdout) if r["kind"] == "certificate"]
    return Counter(r["host_severity"] for r in rows)


def test_the_inventory_counts_the_rows_host_findings_as_scan_does(tmp_path: Path) -> None:
    """``fleet hosts`` counted only the reader's findings and expiry: two certificates added
    with a key that does not match left a host at 'critical 3, ok 9' while its own
    ``scan --exit-status`` said critical, and a bring-your-own certificate past the public
    maximum was OK at the desk and a warning on the host (review of b9f2d26). The daemon's
    inventory now counts each certificate at the severity of its row, as ``scan --json``
    gives it for the same store at the same clock: when the daemon has just read it, as time
    passes, and after a restart that reads nothing again."""
    from agent.certset import MAX_SET_ATTEMPTS
    from agent.daemon import Daemon
    from agent.readindex import READ_INDEX_NAME
    from tests.agent.daemon_helpers import RecordingIntake, SteppingClock, store_config

    store = _store_with_host_findings(tmp_path / "store", NOW)
    config = store_config([{"path": str(store)}])
    state = tmp_path / "state"

    clock = SteppingClock()

    def daemon() -> tuple[Daemon, RecordingIntake]:
        intake = RecordingIntake(Ledger.open(state / "ledger.sqlite3"))
        return Daemon(config, intake=intake, clock=lambda: NOW, monotonic=clock,
                      sleep=lambda s: None, read_index_path=state / READ_INDEX_NAME), intake

    first, _ = daemon()
    first.full_scan()
    for _ in range(MAX_SET_ATTEMPTS + 1):  # the key that does not match: a set that settles
        clock.advance(0.31)
        first.process_due()
    assert len(first.queue) == 0
    windows = config.agent.windows
    now = _scan_says(store, NOW, tmp_path)
    assert now == Counter({"critical": 3, "warning": 2, "ok": 2})  # the store is what it says
    assert Counter(inventory_of(first.index, at=NOW, windows=windows)["by_severity"]) == now
    later = NOW + timedelta(days=70)  # fine.pem and paired/cert.pem now inside the windows
    assert _scan_says(store, later, tmp_path) != now
    assert Counter(inventory_of(first.index, at=later, windows=windows)["by_severity"]) == \
        _scan_says(store, later, tmp_path)
    first.shutdown()

    second, _ = daemon()  # a restart: nothing changed, nothing is read again
    second.full_scan()
    assert second.sync.files_read == 0
    assert Counter(inventory_of(second.index, at=NOW, windows=windows)["by_severity"]) == now
    second.shutdown()
