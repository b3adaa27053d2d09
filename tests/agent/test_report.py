"""Report rows: the policy's classification per certificate, keys paired, sorted by urgency."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from agent.monitoring import ExitMode
from agent.records import ReadLimits
from agent.report import (
    EXIT_STATUS,
    CertificateRow,
    ScanReport,
    build_report,
    iter_report,
    render_csv,
    render_streaming,
    render_table,
)
from agent.scan import iter_scan, scan_paths
from policy.catalogue import Catalogue, load_catalogue
from policy.category import Category
from policy.intake import Binding
from policy.tiers import Tier
from tests.agent.scan_fixtures import malformed_san_der, write
from tests.certfactory import make_ca, make_cert, shared_key

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
AT = datetime(2026, 2, 1, 3, 0, 0, tzinfo=UTC)
BYO = Binding(category=Category.III)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def _report(paths: list[Path], catalogue: Catalogue, binding: Binding = BYO,
            at: datetime = AT) -> ScanReport:
    results = scan_paths(paths, limits=ReadLimits())
    return build_report(results, catalogue, binding=binding, at=at)


def test_json_row_carries_every_field_the_issue_names(tmp_path: Path, catalogue: Catalogue) -> None:
    issued = make_cert(not_before=NB, sans=("le.example", "192.0.2.1"))  # Let's Encrypt shape
    path = write(tmp_path / "cert.pem", issued.pem)
    (row,) = _report([path], catalogue).to_json()
    assert row["kind"] == "certificate"
    assert (row["path"], row["index"], row["sha256"]) == (str(path), 0, issued.sha256)
    assert row["subject"] == "CN=le.example"
    assert row["issuer"] == "CN=Test Issuing CA,O=Test CA Org"
    assert row["sans"] == ["le.example", "192.0.2.1"]
    assert row["not_before"] == "2026-01-15T03:00:00Z"
    assert row["not_after"] == "2026-04-15T02:59:59Z"
    assert row["validity_seconds"] == 90 * 86_400
    assert row["tier"] == "6m"
    assert row["renewable"] is False  # Art.6(3) proviso: exactly 90 days cannot renew
    assert row["days_left"] == (date(2026, 4, 15) - date(2026, 2, 1)).days
    assert (row["item"], row["category"]) == ("byo", "III")
    codes = {f["code"]: f for f in row["findings"]}
    assert codes["renewal-blocked"]["clause"] == "Art.6(3) proviso"
    assert set(codes["renewal-blocked"]) >= {"code", "clause", "message"}
    assert any(a["action"] == "renewal-blocked" and a["clause"] == "Art.6(3) proviso"
               and a["due"] == "2026-04-15" for a in row["actions"])
    assert all(set(a) >= {"action", "clause", "due"} for a in row["actions"])


def test_art6_3_byo_ninety_one_days_is_renewable(tmp_path: Path, catalogue: Catalogue) -> None:
    # (The exact boundary, counted by the Civil Code, is policy/rules/art6's test.)
    issued = make_cert(not_before=NB, lifetime=timedelta(days=91))
    (row,) = _report([write(tmp_path / "c.pem", issued.pem)], catalogue).to_json()
    assert row["validity_seconds"] == 91 * 86_400
    assert row["renewable"] is True


def test_binding_from_options_reaches_the_policy(tmp_path: Path, catalogue: Catalogue) -> None:
    issued = make_cert(not_before=NB, lifetime=timedelta(days=199))
    path = write(tmp_path / "c.pem", issued.pem)
    (row,) = _report([path], catalogue, Binding(category=Category.III,
                                                 tier=Tier.SIX_MONTHS)).to_json()
    assert (row["tier"], row["contracted_tier"], row["compliant"]) == ("1y", "6m", False)


TRUNCATED = b"-----BEGIN CERTIFICATE-----\nMIIB\n"
"""Looks like a certificate and cannot be read: an error, never a skip."""


def test_failed_file_is_one_error_object(tmp_path: Path, catalogue: Catalogue) -> None:
    path = write(tmp_path / "cut.pem", TRUNCATED)
    (obj,) = _report([path], catalogue).to_json()
    assert (obj["kind"], obj["path"], obj["error"]["code"]) == ("error", str(path), "truncated")
    assert "index" not in obj


def test_a_readme_beside_the_certificates_is_skipped_as_info_and_never_unknown(
        tmp_path: Path, catalogue: Catalogue) -> None:
    write(tmp_path / "cert.pem", make_cert(not_before=NB, lifetime=timedelta(days=300)).pem)
    write(tmp_path / "README", b"This directory contains your keys and certificates.\n")
    report = _report([tmp_path], catalogue)
    kinds = {o["kind"]: o for o in report.to_json()}
    assert set(kinds) == {"certificate", "skipped"}
    assert kinds["skipped"]["severity"] == "info"
    assert kinds["skipped"]["skipped"]["code"] == "not-certificate-material"
    assert report.exit_status() == EXIT_STATUS["ok"]


def test_malformed_certificate_among_good_ones_is_an_error_with_its_index(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    import base64

    bad = (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(malformed_san_der())
           + b"-----END CERTIFICATE-----\n")
    path = write(tmp_path / "mixed.pem", make_cert(not_before=NB).pem + bad)
    report = _report([path], catalogue)
    out = report.to_json()
    assert [o["kind"] for o in out] == ["certificate", "error"]
    assert out[1]["index"] == 1
    assert out[1]["error"]["code"] == "malformed-certificate"
    # the certificate row does not repeat the neighbour's failure as its own finding
    assert "malformed-certificate" not in {f["code"] for f in out[0]["findings"]}
    assert report.exit_status() == EXIT_STATUS["unknown"]


def test_key_file_without_certificates_is_reported_with_its_findings(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    path = write(tmp_path / "privkey.pem", make_cert().key_pem(), 0o604)
    (obj,) = _report([path], catalogue).to_json()
    assert obj["kind"] == "file"
    assert obj["keys"][0]["mode"] == "0604"
    assert obj["severity"] == "critical"
    assert {f["code"] for f in obj["findings"]} == {"private-key-unencrypted",
                                                    "private-key-world-readable"}


def test_rows_are_sorted_by_urgency(tmp_path: Path, catalogue: Catalogue) -> None:
    fine = make_cert(not_before=NB, lifetime=timedelta(days=300), sans=("fine.example",))
    blocked = make_cert(not_before=NB, sans=("blocked.example",))
    expired = make_cert(not_before=NB - timedelta(days=200), sans=("expired.example",))
    soon = make_cert(not_before=NB - timedelta(days=120), lifetime=timedelta(days=200),
                     sans=("soon.example",))
    for name, issued in (("a", fine), ("b", blocked), ("c", expired), ("d", soon)):
        write(tmp_path / f"{name}.pem", issued.pem)
    report = _report([tmp_path], catalogue)
    assert [r.record.facts.sans[0] for r in report.rows] == [
        "expired.example", "soon.example", "blocked.example", "fine.example"]
    assert report.rows[0].severity.name == "CRITICAL"
    rows = _main_lines(render_table(report, width=120))
    assert [n for line in rows for n in ("expired", "soon", "blocked", "fine")
            if f"{n}.example" in line] == ["expired", "soon", "blocked", "fine"]


def _main_lines(table: str) -> list[str]:
    """The table's row lines (not the header, detail lines or the sections below)."""
    lines = table.splitlines()
    assert lines[0].startswith("SEVERITY")
    out = []
    for line in lines[1:]:
        if not line:
            break
        if not line.startswith(" "):
            out.append(line)
    return out


def test_table_sorts_key_problems_among_certificates_by_severity(
        tmp_path: Path, catalogue: Catalogue) -> None:
    write(tmp_path / "a" / "fine.pem",
          make_cert(not_before=NB, lifetime=timedelta(days=300), sans=("fine.example",)).pem)
    write(tmp_path / "b" / "open.key", make_cert().key_pem(), 0o644)  # world-readable: critical
    soon = make_cert(not_before=NB - timedelta(days=90), lifetime=timedelta(days=130),
                     sans=("soon.example",))
    write(tmp_path / "c" / "soon.pem", soon.pem)
    rows = _main_lines(render_table(_report([tmp_path], catalogue, Binding()), width=120))
    assert rows[0].startswith("critical")
    assert "private key file" in rows[0]
    assert rows[1].startswith("warning")
    assert "soon.example" in rows[1]
    assert rows[2].startswith(("ok", "info"))
    assert "fine.example" in rows[2]


def test_table_shows_one_row_per_certificate_listing_its_places_and_what_to_do(
        tmp_path: Path, catalogue: Catalogue) -> None:
    from tests.agent.certbot_store import AT as CERTBOT_AT
    from tests.agent.certbot_store import certbot_store, make_intermediate

    soon = make_cert(not_before=CERTBOT_AT - timedelta(days=80), lifetime=timedelta(days=90),
                     sans=("soon.example",), issuer=make_intermediate())
    store = certbot_store(tmp_path, "soon.example", leaf=soon)
    report = _report([store.live], catalogue, Binding(), at=CERTBOT_AT)
    table = render_table(report, width=100)
    (row,) = _main_lines(table)
    assert row.split()[:3] == ["critical", "10", "2026-02-11"]  # NOT AFTER = the day DAYS counts
    assert "cert.pem#0" in table
    assert "fullchain.pem#0" in table
    assert sum(1 for line in table.splitlines() if line.rstrip().endswith(" soon.example")) == 1
    assert "what to do: renew and deploy before it ends" in table
    assert "chain certificate(s) shown with their leaves" in table


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_table_fits_the_width_without_cutting_a_date_or_an_action(
        tmp_path: Path, catalogue: Catalogue, width: int) -> None:
    from agent.render import display_width

    issued = make_cert(not_before=NB, sans=("a-rather-long-server-name.example.co.jp",
                                            "xn--wgv71a.example.jp"), cn="証明書の名前")
    write(tmp_path / "certificates" / "le.pem", issued.pem)
    report = _report([tmp_path / "certificates"], catalogue)
    table = render_table(report, width=width, mode=ExitMode.ALL)
    for line in table.splitlines():
        if "/" not in line:  # a path longer than a line stands alone rather than being cut
            assert display_width(line) <= width, line
    flat = " ".join(table.split())
    assert "2026-04-15" in flat  # NOT AFTER, whole
    for action in report.rows[0].actions:
        if action.due is not None:
            assert f"{action.action.value}@{action.due.isoformat()}" in flat


def test_table_aligns_east_asian_wide_names_by_display_width(
        tmp_path: Path, catalogue: Catalogue) -> None:
    from agent.render import display_width

    write(tmp_path / "a.pem", make_cert(not_before=NB, lifetime=timedelta(days=300),
                                        sans=(), cn="日本語の長いサーバ名です.example").pem)
    write(tmp_path / "b.pem", make_cert(not_before=NB, lifetime=timedelta(days=300),
                                        sans=("ascii.example",)).pem)
    rows = _main_lines(render_table(_report([tmp_path], catalogue), width=70))
    assert len(rows) == 2
    assert all(display_width(r) <= 70 for r in rows)
    # the NAME column starts at the same display column on every row
    header = render_table(_report([tmp_path], catalogue), width=70).splitlines()[0]
    start = display_width(header[:header.index("NAME")])
    for r in rows:
        text = r[:]
        cut = 0
        while display_width(text[:cut]) < start:
            cut += 1
        assert display_width(text[:cut]) == start
        assert text[cut - 1] == " "


def test_control_characters_in_names_cannot_reach_the_terminal_or_forge_csv_rows(
        tmp_path: Path, catalogue: Catalogue) -> None:
    from agent.render import render_detail

    evil = "x\x1b]0;owned\x07\x1b[2J\nok      999 2099-01-01 forged\x9b31m\x7f"
    issued = make_cert(not_before=NB, lifetime=timedelta(days=300), sans=(), cn=evil)
    write(tmp_path / "evil\x1b[2J\n.pem", issued.pem)
    report = _report([tmp_path], catalogue)
    controls = {chr(c) for c in [*range(0x20), *range(0x7f, 0xa0)]} - {"\n"}
    for text in (render_table(report, width=200), render_detail(report, None)):
        assert not controls & set(text)
        assert "forged" not in [line.split()[-1] for line in text.splitlines() if line]
        assert not any(line.startswith("ok      999") for line in text.splitlines())
    csv_text = render_csv(report)
    assert not (controls | {"\r"}) & set(csv_text)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == 1  # no forged record
    assert "\\u001b" in rows[0]["subject"]


def test_key_in_the_same_file_decides_key_matches(tmp_path: Path, catalogue: Catalogue) -> None:
    issued = make_cert(not_before=NB)
    other_key = make_cert(key=shared_key("ec", 9)).key_pem()
    write(tmp_path / "good" / "combined.pem", issued.pem + issued.key_pem(), 0o600)
    write(tmp_path / "bad" / "combined.pem", issued.pem + other_key, 0o600)
    rows = {Path(r.record.path).parent.name: r.key_matches
            for r in _report([tmp_path], catalogue).rows}
    assert rows == {"good": True, "bad": False}


def test_certbot_directory_pairs_cert_with_privkey_and_leaves_the_chain_alone(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    issued = make_cert(not_before=NB)
    live = tmp_path / "live" / "x"
    write(live / "cert.pem", issued.pem)
    write(live / "chain.pem", make_ca().cert.public_bytes(Encoding.PEM))
    write(live / "privkey.pem", issued.key_pem(), 0o600)
    rows = {Path(r.record.path).name: r.key_matches
            for r in _report([tmp_path / "live"], catalogue).rows}
    assert rows == {"cert.pem": True, "chain.pem": None}


def test_certbot_directory_with_a_mismatched_key_says_so(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    issued = make_cert(not_before=NB)
    write(tmp_path / "cert.pem", issued.pem)
    write(tmp_path / "privkey.pem", make_cert(key=shared_key("ec", 11)).key_pem(), 0o600)
    (row,) = _report([tmp_path], catalogue).rows
    assert row.key_matches is False


def test_no_key_anywhere_is_none(tmp_path: Path, catalogue: Catalogue) -> None:
    (row,) = _report([write(tmp_path / "c.pem", make_cert(not_before=NB).pem)], catalogue).rows
    assert row.key_matches is None


@pytest.mark.parametrize(
    ("files", "host", "contract", "both"),
    [
        ({"ok.pem": "ok"}, "ok", "ok", "ok"),
        # renewal blocked by the 90-day proviso, a notice due: the contract desk's, not the host's
        ({"ok.pem": "ok", "le.pem": "blocked"}, "ok", "warning", "warning"),
        ({"ok.pem": "ok", "old.pem": "expired"}, "critical", "critical", "critical"),
        ({"ok.pem": "ok", "soon.pem": "soon"}, "warning", "warning", "warning"),
        ({"ok.pem": "ok", "cut.pem": "unreadable"}, "unknown", "unknown", "unknown"),
        ({"le.pem": "blocked", "cut.pem": "unreadable"}, "unknown", "unknown", "unknown"),
        ({"old.pem": "expired", "cut.pem": "unreadable"}, "critical", "critical", "critical"),
        ({}, "unknown", "unknown", "unknown"),  # nothing monitored is never OK
    ],
)
def test_exit_status_follows_the_nagios_mapping_per_mode(
        tmp_path: Path, catalogue: Catalogue, files: dict[str, str], host: str,
        contract: str, both: str) -> None:
    contents = {
        "ok": make_cert(not_before=NB, lifetime=timedelta(days=300)).pem,
        "blocked": make_cert(not_before=NB).pem,
        "expired": make_cert(not_before=NB - timedelta(days=200)).pem,
        "soon": make_cert(not_before=NB - timedelta(days=90), lifetime=timedelta(days=130)).pem,
        "unreadable": TRUNCATED,
    }
    (tmp_path / "store").mkdir()
    for name, kind in files.items():
        write(tmp_path / "store" / name, contents[kind])
    report = _report([tmp_path / "store"], catalogue, Binding())
    assert report.exit_status() == EXIT_STATUS[host]
    assert report.exit_status(ExitMode.CONTRACT) == EXIT_STATUS[contract]
    assert report.exit_status(ExitMode.ALL) == EXIT_STATUS[both]


@pytest.mark.parametrize(("days_left", "severity"),
                         [(29, None), (28, "warning"), (15, "warning"), (14, "critical"),
                          (0, "critical")])
def test_expiry_windows_are_inclusive_on_both_edges(tmp_path: Path, catalogue: Catalogue,
                                                    days_left: int, severity: str | None) -> None:
    # notAfter at 12:00 JST on the day `days_left` Tokyo days after AT's Tokyo date
    not_after = datetime(2026, 2, 1, 3, 0, tzinfo=UTC) + timedelta(days=days_left)
    issued = make_cert(not_before=datetime(2025, 12, 1, tzinfo=UTC), not_after=not_after)
    (row,) = _report([write(tmp_path / "c.pem", issued.pem)], catalogue).rows
    assert row.classification.days_left == days_left
    found = {f.code: f.severity.name.lower() for f in row.findings}
    assert found.get("expires-soon") == severity


def test_expiry_windows_come_from_the_configuration(tmp_path: Path, catalogue: Catalogue) -> None:
    from agent.monitoring import ExpiryWindows

    not_after = AT + timedelta(days=40)
    issued = make_cert(not_before=datetime(2025, 12, 1, tzinfo=UTC), not_after=not_after)
    path = write(tmp_path / "c.pem", issued.pem)
    report = build_report(scan_paths([path], limits=ReadLimits()), catalogue, binding=BYO,
                          at=AT, windows=ExpiryWindows(warning_days=45, critical_days=7))
    assert {f.code: f.severity.name for f in report.rows[0].findings}["expires-soon"] == \
        "WARNING"


def test_csv_has_one_line_per_certificate_and_error(tmp_path: Path, catalogue: Catalogue) -> None:
    issued = make_cert(not_before=NB, sans=("a.example", "b.example"))
    write(tmp_path / "c.pem", issued.pem)
    write(tmp_path / "junk", TRUNCATED)
    lines = list(csv.DictReader(io.StringIO(render_csv(_report([tmp_path], catalogue)))))
    assert [line["kind"] for line in lines] == ["certificate", "error"]
    cert = lines[0]
    assert cert["sha256"] == issued.sha256
    assert cert["sans"] == "a.example;b.example"
    assert (cert["tier"], cert["renewable"], cert["category"]) == ("6m", "false", "III")
    assert "renewal-blocked@2026-04-15" in cert["actions"].split(";")
    assert (lines[1]["error_code"], lines[1]["path"]) == ("truncated", str(tmp_path / "junk"))


def test_same_certificate_two_paths_two_rows_same_sha256(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    issued = make_cert(not_before=NB)
    write(tmp_path / "a" / "cert.pem", issued.pem)
    os.symlink(tmp_path / "a" / "cert.pem", tmp_path / "link.pem")
    rows = _report([tmp_path], catalogue).to_json()
    assert sorted(r["path"] for r in rows) == sorted(
        [str(tmp_path / "a" / "cert.pem"), str(tmp_path / "link.pem")])
    assert {r["sha256"] for r in rows} == {issued.sha256}


def _mixed_store(tmp_path: Path) -> Path:
    issued = make_cert(not_before=NB, sans=("paired.example",))
    write(tmp_path / "s" / "live" / "cert.pem", issued.pem)
    write(tmp_path / "s" / "live" / "privkey.pem", issued.key_pem(), 0o640)
    write(tmp_path / "s" / "old.pem", make_cert(not_before=NB - timedelta(days=200)).pem)
    write(tmp_path / "s" / "long.pem",
          make_cert(not_before=NB, lifetime=timedelta(days=300)).pem)
    write(tmp_path / "s" / "junk", b"\x00junk")
    write(tmp_path / "s" / "empty.pem", b"")
    return tmp_path / "s"


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_streamed_rendering_matches_the_report(tmp_path: Path, catalogue: Catalogue,
                                               fmt: str) -> None:
    store = _mixed_store(tmp_path)
    report = _report([store], catalogue)
    streamed = render_streaming(
        iter_report(iter_scan([store], limits=ReadLimits(), group_directories=True),
                    catalogue, binding=BYO, at=AT), fmt)
    out = io.BytesIO()
    streamed.write(out)
    text = out.getvalue().decode("utf-8")
    if fmt == "json":
        assert json.loads(text) == json.loads(json.dumps(report.to_json()))
    else:
        assert text == render_csv(report)
    assert streamed.exit_status() == report.exit_status()
    assert (streamed.errors, streamed.certificates) == (len(report.errors), len(report.rows))


def test_keys_pair_with_certificates_given_as_separate_arguments(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    issued = make_cert(not_before=NB)
    cert = write(tmp_path / "a" / "cert.pem", issued.pem)
    other = write(tmp_path / "b" / "other.pem", make_cert(not_before=NB).pem)
    key = write(tmp_path / "a" / "privkey.pem", issued.key_pem(), 0o600)
    results = iter_scan([cert, other, key], limits=ReadLimits(), group_directories=True)
    rows = [i for i in iter_report(results, catalogue, binding=BYO, at=AT)
            if isinstance(i, CertificateRow)]
    assert {Path(r.record.path).name: r.key_matches for r in rows} == {
        "cert.pem": True, "other.pem": None}


def test_json_rows_beyond_64_bit_integers_fall_back_to_the_json_module() -> None:
    from agent.render import dumps

    obj = {"serial_int": 2**70, "name": "証明書", "nested": {"n": -(2**65)}}
    line = dumps(obj)
    assert json.loads(line) == obj
    assert b"\n" not in line  # one line
    assert "証明書".encode() in line  # UTF-8, not \\u-escaped


def test_without_orjson_the_json_module_writes_the_same_bytes(
        tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch) -> None:
    # Where orjson has no wheel it is not installed (pyproject); the output must not change.
    import agent.render as render_module

    issued = make_cert(not_before=NB, sans=("xn--wgv71a.example", "192.0.2.1"))
    write(tmp_path / "cert.pem", issued.pem)
    write(tmp_path / 'junk "\\ \u2028\t.pem', TRUNCATED)  # escapes in paths
    items = list(iter_report(iter_scan([tmp_path], limits=ReadLimits(), group_directories=True),
                             catalogue, binding=BYO, at=AT))
    with_orjson = render_streaming(items, "json")
    monkeypatch.setattr(render_module, "orjson", None)
    without = render_streaming(items, "json")
    assert without.lines == with_orjson.lines
    assert [o["kind"] for o in json.loads(b"[" + b",".join(without.lines) + b"]")] == [
        "certificate", "error"]


def test_a_hostile_chain_of_ca_certificates_is_followed_at_most_max_chain_steps() -> None:
    import hashlib

    from agent.records import CertificateRecord, FileResult
    from agent.rows import MAX_CHAIN, Role, place_certificates
    from policy.facts import CertificateFacts

    def facts(n: int, subject: str, issuer: str, *, ca: bool) -> CertificateFacts:
        return CertificateFacts(sha256=hashlib.sha256(str(n).encode()).hexdigest(),
                                not_before_utc=NB, not_after_utc=NB + timedelta(days=90),
                                subject=subject, issuer=issuer, is_ca=ca)

    # CA n is issued by CA n+1, 2,000 deep, and 2,000 leaves issued by CA 0 (no recursion,
    # nothing quadratic: each leaf's chain is shared and cut at MAX_CHAIN)
    cas = [CertificateRecord(path="/d/cas.pem", index=n, fmt="pem",
                             facts=facts(n, f"CN=ca{n}", f"CN=ca{n + 1}", ca=True))
           for n in range(2000)]
    leaves = [CertificateRecord(path=f"/d/leaf{n}.pem", index=0, fmt="pem",
                                facts=facts(10_000 + n, f"CN=leaf{n}", "CN=ca0", ca=False))
              for n in range(2000)]
    results = [FileResult(path="/d/cas.pem", certificates=tuple(cas)),
               *(FileResult(path=leaf.path, certificates=(leaf,)) for leaf in leaves)]
    placed = place_certificates(results)
    chain = placed[("/d/leaf0.pem", 0)].chain
    assert [c.index for c in chain] == list(range(MAX_CHAIN))
    assert placed[("/d/cas.pem", 0)].role is Role.INTERMEDIATE
    assert placed[("/d/cas.pem", 1999)].role is Role.CA  # no leaf reaches it: lone
