""":func:`agent.rows.clock_severity` is what the row says of the clock: at every instant, the
worst of a row's clock findings (expired, not yet valid, expiring, its chain's) is the severity
it gives without classifying again (the heartbeat's inventory relies on it every minute)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.monitoring import ExpiryWindows
from agent.reader import read_file
from agent.records import ReadLimits
from agent.rows import (
    CLOCK_FINDINGS,
    certificate_row,
    clock_severity,
    pair_key,
    place_certificates,
)
from policy.catalogue import load_catalogue
from policy.classification import classify_certificate
from policy.decisions import Severity
from policy.intake import Binding
from tests.certfactory import CA, fresh_key, make_cert

T0 = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
WINDOWS = ExpiryWindows(warning_days=28, critical_days=14)


@pytest.mark.parametrize("offset_days", [-40, -1, 0, 14, 15, 28, 29, 60, 89, 90, 91, 400])
def test_clock_severity_is_the_rows_clock_findings_at_every_instant(
        tmp_path: Path, offset_days: int) -> None:
    leaf_alone = tmp_path / "alone"
    leaf_alone.mkdir()
    (leaf_alone / "site.pem").write_bytes(make_cert(not_before=T0).pem)
    chained = tmp_path / "chained"
    chained.mkdir()
    ca = make_cert(not_before=T0 - timedelta(days=300), lifetime=timedelta(days=330),
                   is_ca=True, sans=(), cn="Chain Intermediate", key=fresh_key())
    # the intermediate that comes with it ends on day 30: expires first, then expired
    leaf = make_cert(not_before=T0, issuer=CA(name=ca.cert.subject, key=ca.key, cert=ca.cert))
    (chained / "fullchain.pem").write_bytes(leaf.pem + ca.pem)
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "anchor.pem").write_bytes(make_cert(not_before=T0, is_ca=True, sans=()).pem)
    at = T0 + timedelta(days=offset_days, hours=5)
    catalogue = load_catalogue(None)
    for directory in (leaf_alone, chained, trust):
        results = [read_file(p, limits=ReadLimits()) for p in sorted(directory.iterdir())]
        placements = place_certificates(results)
        for result in results:
            for record in result.certificates:
                placement = placements[(record.path, record.index)]
                row = certificate_row(
                    record, classify_certificate(record.facts, catalogue, binding=Binding(),
                                                 at=at),
                    placement=placement, at=at, windows=WINDOWS,
                    pairing=pair_key(record, role=placement.role, file_keys=(), dir_keys=()))
                expected = max((f.severity for f in row.findings if f.code in CLOCK_FINDINGS),
                               default=Severity.OK)
                assert clock_severity(record, placement, at=at, windows=WINDOWS) == expected, \
                    (record.path, record.index, [f.code for f in row.findings])
