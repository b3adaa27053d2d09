"""A store with a bit of everything the human table prints, built at test time: expired and
expiring leaves, a leaf beside an expired chain, a certificate in two files (one table row), a
key that does not match, a world-readable key file, a quiet key file, trust anchors, a
not-yet-valid certificate, wide (Japanese) and long names, unreadable files and certbot's
README (skipped). Every name and date is fixed, so the table is the same text on every run
(serials and keys vary, and the table prints neither)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from tests.agent.certbot_store import AT, certbot_store, make_intermediate
from tests.agent.scan_fixtures import write
from tests.certfactory import OV_OID, make_ca, make_cert, shared_key

__all__ = ["AT", "AT_TEXT", "mixed_store"]

AT_TEXT = AT.isoformat().replace("+00:00", "Z")


def mixed_store(base: Path) -> Path:
    """``base/store``: see the module docstring."""
    store = base / "store"
    store.mkdir()
    # certbot: the leaf's intermediate expired before AT (chain-expired on the leaf's row)
    old_mid = make_intermediate(not_after=datetime(2026, 1, 20, tzinfo=UTC), slot=51)
    certbot_store(store, leaf=make_cert(not_before=AT - timedelta(days=30),
                                        lifetime=timedelta(days=90),
                                        sans=("example.jp", "www.example.jp"),
                                        issuer=old_mid),
                  intermediate=old_mid)
    # expired, with a key beside it that is not its own (key-mismatch)
    expired = make_cert(not_before=AT - timedelta(days=300), lifetime=timedelta(days=90),
                        sans=("old.example.jp",), key=shared_key("ec", 52))
    write(store / "expired" / "cert.pem", expired.pem)
    write(store / "expired" / "privkey.pem",
          make_cert(key=shared_key("ec", 53)).key_pem(), 0o600)
    # expiring in the warning and critical windows; one also in fullchain.pem (one row)
    soon = make_cert(not_before=AT - timedelta(days=70), lifetime=timedelta(days=90),
                     sans=("soon.example.jp", "a.example.jp", "b.example.jp"))
    write(store / "soon" / "cert.pem", soon.pem)
    write(store / "soon" / "fullchain.pem", soon.pem + make_ca().cert.public_bytes(Encoding.PEM))
    write(store / "critical" / "cert.pem",
          make_cert(not_before=AT - timedelta(days=80), lifetime=timedelta(days=90),
                    sans=("critical.example.jp",)).pem)
    # a one-year OV certificate, a 200-day one, a two-year one (tiers, items)
    write(store / "tiers" / "year.pem",
          make_cert(not_before=datetime(2026, 1, 5, tzinfo=UTC), lifetime=timedelta(days=365),
                    sans=("year.example.co.jp",), policy_oids=(OV_OID,),
                    issuer_org="GlobalSign nv-sa", issuer_cn="GlobalSign GCC R3 OV TLS CA 2024"
                    ).pem)
    write(store / "tiers" / "short.pem",
          make_cert(not_before=datetime(2026, 1, 10, tzinfo=UTC), lifetime=timedelta(days=199),
                    sans=(), cn="短い名前のサイト").pem)
    write(store / "tiers" / "long.pem",
          make_cert(not_before=datetime(2025, 6, 1, tzinfo=UTC), lifetime=timedelta(days=730),
                    cn="証明書の長い名前-" + "x" * 30, sans=()).pem)
    write(store / "tiers" / "future.pem",
          make_cert(not_before=AT + timedelta(days=10), sans=("future.example.jp",)).pem)
    # key files: world-readable (warning row), and a quiet one
    write(store / "keys" / "loose.key", make_cert(key=shared_key("ec", 54)).key_pem(), 0o644)
    write(store / "keys" / "tidy.key", make_cert(key=shared_key("ec", 55)).key_pem(), 0o600)
    # trust anchors only: not contract certificates
    anchors = store / "anchors"
    for slot, cn in ((56, "Anchor Root A"), (57, "Anchor Root B")):
        write(anchors / f"{cn.replace(' ', '_')}.pem",
              make_ca("Anchor Org", cn, slot=slot).cert.public_bytes(Encoding.PEM))
    # unreadable and odd files
    write(store / "broken" / "junk.pem", b"-----BEGIN CERTIFICATE-----\nnot base64!\n"
          b"-----END CERTIFICATE-----\n")
    write(store / "broken" / "empty.crt", b"")
    write(store / "broken" / "zz-\x1b[2Jname.pem", b"\x00\x01junk")
    return store
