"""``scan``'s human table keeps only what it prints (issue 12): a small record per row
(:class:`agent.render.TableEntry`), gathered from the workers like ``--json``'s lines, instead of
every classified row until it sorts. The table must read exactly as before."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from agent import scanpool
from agent.records import ReadLimits
from agent.render import TableEntry, TableFile, render_table
from agent.report import build_report
from agent.scan import scan_paths
from policy.catalogue import load_catalogue
from policy.intake import Binding
from policy.settings import PolicySettings
from tests.cli.mixed_store import AT, AT_TEXT, mixed_store

CERTESCROW = Path(sys.executable).with_name("certescrow")

# What `certescrow scan store` printed for this store (COLUMNS=100) before the table kept
# records instead of rows (commit 423bad7): expired, category III (renewal-blocked), a chain
# that expired, a certificate in two files, key files, trust anchors, errors, skipped files.
# Since session 13 a 90-day certificate's notice is due on the day the scan first observes it
# (Art.6(1)), 2026-02-01 here, not on the day it was issued: four notify@ dates changed.
# Since session 17 a certificate whose last day of validity is over has no notice to send
# (the ledger refuses one): old.example.jp's notify@2025-04-07 is notice-missed@2025-07-06.
BEFORE = """SEVERITY  DAYS NOT AFTER  TIER      CAT ITEM             NAME
critical  -210 2025-07-06 6m        III byo              old.example.jp
    findings/actions: expired, renewal-blocked, key-mismatch, notice-missed@2025-07-06,
      renewal-blocked@2025-07-06
    what to do: renew the certificate now and deploy it (certbot: `certbot renew`, then reload the
      server); pair the certificate with its own private key (restore the key it was issued for, or
      reissue) before the server reloads
    in: store/expired/cert.pem#0
critical     0 2026-02-01 6m        III byo              example.jp
    findings/actions: expired, renewal-blocked, chain-expired, notify@2026-02-01,
      renewal-blocked@2026-02-01
    what to do: renew the certificate now and deploy it (certbot: `certbot renew`, then reload the
      server); install the CA's current intermediate certificate with this one (certbot: `certbot
      renew --force-renewal` fetches it)
    in: store/letsencrypt/archive/example.jp/cert1.pem#0,
      store/letsencrypt/archive/example.jp/fullchain1.pem#0
critical    10 2026-02-11 6m        III byo              critical.example.jp
    findings/actions: renewal-blocked, expires-soon, notify@2026-02-01, renewal-blocked@2026-02-11
    what to do: renew and deploy before it ends; if certbot manages it, check that its timer runs
      (`systemctl list-timers 'certbot*'`); contract desk: a category III contract cannot be renewed
      with a certificate of 90 days or less (Art.6(3) proviso)
    in: store/critical/cert.pem#0
critical    60 2026-04-02 6m        III byo              example.jp +1
    findings/actions: renewal-blocked, chain-expired, notify@2026-02-01, renewal-blocked@2026-04-02
    what to do: install the CA's current intermediate certificate with this one (certbot: `certbot
      renew --force-renewal` fetches it); contract desk: a category III contract cannot be renewed
      with a certificate of 90 days or less (Art.6(3) proviso)
    in: store/letsencrypt/archive/example.jp/cert2.pem#0,
      store/letsencrypt/archive/example.jp/fullchain2.pem#0,
      store/letsencrypt/live/example.jp/cert.pem#0,
      store/letsencrypt/live/example.jp/fullchain.pem#0
critical     - -          key       -   -                private key file (1 key(s))
    findings/actions: private-key-world-readable
    what to do: make the key file readable by its owner only (chmod 600) and treat the key as
      exposed: reissue with a new key
    in: store/keys/loose.key
warning     20 2026-02-21 6m        III byo              soon.example.jp +2
    findings/actions: renewal-blocked, expires-soon, notify@2026-02-01, renewal-blocked@2026-02-21
    what to do: contract desk: a category III contract cannot be renewed with a certificate of 90
      days or less (Art.6(3) proviso); renew and deploy before it ends; if certbot manages it, check
      that its timer runs (`systemctl list-timers 'certbot*'`)
    in: store/soon/cert.pem#0, store/soon/fullchain.pem#0
warning    100 2026-05-12 6m        III byo              future.example.jp
    findings/actions: not-yet-valid, renewal-blocked, notify@2026-02-11, renewal-blocked@2026-05-12
    what to do: check the host's clock, or keep serving the previous certificate until this one is
      valid; contract desk: a category III contract cannot be renewed with a certificate of 90 days
      or less (Art.6(3) proviso)
    in: store/tiers/future.pem#0
warning    177 2026-07-28 1y        III byo              短い名前のサイト
    findings/actions: no-san, notify@2026-04-29
    what to do: reissue with a subjectAltName naming the server
    in: store/tiers/short.pem#0
warning    485 2027-06-01 2y        III byo              証明書の長い名前-xxxxxxxxxxxxxxxxxxxxxxxxx…
    findings/actions: no-san, notify@2027-03-03
    what to do: reissue with a subjectAltName naming the server
    in: store/tiers/long.pem#0
info       338 2027-01-05 1y        I   globalsign-ov    year.example.co.jp
    findings/actions: notify@2026-10-07
    in: store/tiers/year.pem#0
ok       26996 2099-12-31 trust-an… -   -                Anchor Root A
    in: store/anchors/Anchor_Root_A.pem#0
ok       26996 2099-12-31 trust-an… -   -                Anchor Root B
    in: store/anchors/Anchor_Root_B.pem#0

Errors (could not be read):
  store/broken/empty.crt: empty: the file is empty
  store/broken/junk.pem: malformed-certificate: PEM block 'CERTIFICATE' is not valid base64
  store/broken/zz-\\u001b[2Jname.pem: garbage: named like a certificate or key but holds binary data
    that is neither PEM nor DER

Skipped (not certificate store entries, info):
  store/letsencrypt/live/README: not-certificate-material: not a certificate store entry: text
    without any PEM block
  store/letsencrypt/live/example.jp/README: not-certificate-material: not a certificate store entry:
    text without any PEM block

23 certificate(s), 3 error(s), 2 skipped; host status CRITICAL (as of 2026-02-01 12:00 JST)
(7 chain certificate(s) shown with their leaves, 5 key file(s) without a problem; --json lists them)
"""


def _scan(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env.update(HOME=str(cwd), CERTESCROW_TESTONLY_NOW=AT_TEXT, COLUMNS="100")
    return subprocess.run([str(CERTESCROW), "scan", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, check=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_store(tmp_path_factory.mktemp("mixed"))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_table_of_a_mixed_store_reads_as_before(store: Path, jobs: str) -> None:
    done = _scan(store.parent, "--jobs", jobs, "store")
    assert done.returncode == 1, done.stderr  # files could not be read
    assert done.stdout == BEFORE


def _is_plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, str | int | bytes)


def test_the_table_is_built_from_records_of_plain_values_in_workers_as_in_process(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers send the table's records, not rows: every record is plain strings,
    numbers and bytes (nothing that holds a reading, a classification or an explanation), and
    the table they make is the one made from the classified rows."""
    monkeypatch.setattr(scanpool, "MIN_FILES_PER_JOB", 1)  # workers even for a small store
    monkeypatch.setattr(scanpool, "BATCH_FILES", 4)  # and many batches, split directories
    catalogue = load_catalogue()
    outcome = scanpool.stream_scan([store], catalogue, binding=Binding(), at=AT,
                                   settings=PolicySettings(), limits=ReadLimits(),
                                   fmt="table", jobs=2, out=io.BytesIO())
    table = outcome.table
    assert table is not None
    assert table.entries
    assert table.files
    assert all(type(e) is TableEntry and _is_plain(tuple(e)) for e in table.entries)
    assert all(type(f) is TableFile and _is_plain(tuple(f)) for f in table.files)
    report = build_report(scan_paths([store], limits=ReadLimits()), catalogue,
                          binding=Binding(), at=AT)
    assert render_table(table, width=100) == render_table(report, width=100)
    assert len(table.entries) == len(report.rows) == 23
    # the record's day is the row's Asia/Tokyo last day
    by_place = {(e.path, e.position): e for e in table.entries}
    for row in report.rows:
        entry = by_place[(row.record.path, row.record.index)]
        assert date.fromordinal(entry.not_after) == row.not_after_day
        assert entry.severity == row.severity
