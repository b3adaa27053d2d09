"""A real certbot-style store, built at test time.

certbot keeps every generation under ``archive/NAME/`` (``cert1.pem``, ``chain1.pem``,
``fullchain1.pem``, ``privkey1.pem``) and points ``live/NAME/{cert,chain,fullchain,privkey}.pem``
at the newest with relative symbolic links; ``live/`` also holds certbot's ``README`` (plain
text) and so does each ``live/NAME/``. The private key is 0600. This module builds exactly that,
with a real intermediate (CA:TRUE, not self-signed) under a real root.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.certfactory import CA, Issued, make_ca, make_cert, shared_key

__all__ = [
    "AT",
    "CERTBOT_LIVE_README",
    "CertbotStore",
    "certbot_store",
    "commercial_store",
    "leaf_beside_expired_chain",
    "make_intermediate",
]

AT = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
"""The time the healthy stores are looked at: a 90-day leaf issued 30 days before has 60 left."""

CERTBOT_LIVE_README = """This directory contains your keys and certificates.

`[cert name]/privkey.pem`  : the private key for your certificate.
`[cert name]/fullchain.pem`: the certificate file used in most server software.
`[cert name]/chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.
`[cert name]/cert.pem`     : will break many server configurations, and should not be used
                             without reading further documentation (see link below).

WARNING: DO NOT MOVE OR RENAME THESE FILES!
         Certbot expects these files to remain in this location in order
         to function properly!

We recommend not moving these files. For more information, see the Certbot
User Guide at https://certbot.eff.org/docs/using.html#where-are-my-certificates.
"""


@dataclass(frozen=True)
class CertbotStore:
    root: Path
    """``/etc/letsencrypt`` of the test."""
    live: Path
    leaf: Issued
    intermediate: CA


def make_intermediate(root: CA | None = None, *, cn: str = "Test R11",
                      org: str = "Test Encrypt", not_after: datetime | None = None,
                      slot: int = 7) -> CA:
    """An intermediate CA certificate (CA:TRUE, issued by ``root``, not self-signed)."""
    root = root if root is not None else make_ca("Test Root Org", "Test Root X1", slot=3)
    key = shared_key("ec", 2000 + slot)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.name)
        .public_key(key.public_key())
        .serial_number(0x1234 + slot)
        .not_valid_before(datetime(2024, 3, 13, tzinfo=UTC))
        .not_valid_after(not_after or datetime(2027, 3, 12, 23, 59, 59, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    return CA(name=name, key=key, cert=cert)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certbot_store(base: Path, name: str = "example.jp", *, leaf: Issued | None = None,
                  intermediate: CA | None = None, key_pem: bytes | None = None,
                  generations: int = 2) -> CertbotStore:
    """``base/letsencrypt/{live,archive}/NAME`` as certbot leaves them, the newest generation
    holding ``leaf`` (default: a 90-day certificate issued 30 days before :data:`AT`, so 60
    days are left) issued by ``intermediate``; older generations hold older certificates."""
    intermediate = intermediate if intermediate is not None else make_intermediate()
    if leaf is None:
        leaf = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                         sans=(name, f"www.{name}"), issuer=intermediate)
    root = base / "letsencrypt"
    archive = root / "archive" / name
    live = root / "live"
    (live / name).mkdir(parents=True, exist_ok=True)
    archive.mkdir(parents=True, exist_ok=True)
    (live / "README").write_text(CERTBOT_LIVE_README)
    for n in range(1, generations + 1):
        if n == generations:
            issued, key = leaf, key_pem if key_pem is not None else leaf.key_pem()
        else:
            issued = make_cert(not_before=AT - timedelta(days=30 + 60 * (generations - n)),
                               lifetime=timedelta(days=90), sans=(name,), issuer=intermediate)
            key = issued.key_pem()
        files = {"cert": issued.pem, "chain": _pem(intermediate.cert),
                 "fullchain": issued.pem + _pem(intermediate.cert), "privkey": key}
        for kind, data in files.items():
            path = archive / f"{kind}{n}.pem"
            path.write_bytes(data)
            path.chmod(0o600 if kind == "privkey" else 0o644)
    for kind in ("cert", "chain", "fullchain", "privkey"):
        link = live / name / f"{kind}.pem"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(Path("..", "..", "archive", name, f"{kind}{generations}.pem"))
    (live / name / "README").write_text(
        "This directory contains your keys and certificates.\n\n"
        "`privkey.pem`  : the private key for your certificate.\n"
        "`fullchain.pem`: the certificate file used in most server software.\n")
    return CertbotStore(root=root, live=live, leaf=leaf, intermediate=intermediate)


def commercial_store(base: Path) -> Path:
    """A directory holding a 1-year commercial certificate (issued 2026-01-05, before the CA/B
    Forum's 200-day limit of 2026-03-15), its CA bundle and its 0600 key, as an nginx host
    keeps them."""
    root = make_ca("GlobalSign nv-sa", "GlobalSign Root R3 (test)", slot=4)
    issuing = make_intermediate(root, cn="GlobalSign GCC R3 OV TLS CA 2024 (test)",
                                org="GlobalSign nv-sa", slot=8)
    leaf = make_cert(not_before=datetime(2026, 1, 5, tzinfo=UTC), lifetime=timedelta(days=365),
                     sans=("shop.example.co.jp",), issuer=issuing,
                     key=shared_key("ec", 9))
    ssl = base / "nginx" / "ssl"
    ssl.mkdir(parents=True)
    (ssl / "shop.example.co.jp.crt").write_bytes(leaf.pem)
    (ssl / "shop.example.co.jp.ca-bundle").write_bytes(_pem(issuing.cert))
    key = ssl / "shop.example.co.jp.key"
    key.write_bytes(leaf.key_pem())
    key.chmod(0o600)
    return ssl


def leaf_beside_expired_chain(base: Path, *, slot: int) -> Path:
    """``site/cert.pem`` beside ``site/chain.pem`` and no key, the intermediate expired before
    ``AT``: not a certbot set, so the daemon reads the files one by one while scan reads the
    directory; the expired chain is the leaf's all the same. ``slot`` picks the intermediate's
    key, so that stores of one test run do not share it."""
    intermediate = make_intermediate(not_after=datetime(2026, 1, 20, tzinfo=UTC), slot=slot)
    leaf = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                     sans=("example.jp",), issuer=intermediate)
    site = base / "site"
    site.mkdir()
    (site / "cert.pem").write_bytes(leaf.pem)
    (site / "chain.pem").write_bytes(_pem(intermediate.cert))
    return site
