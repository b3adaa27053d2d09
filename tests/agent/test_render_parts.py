"""A certificate's JSON row written in parts (agent.render._certificate_line) is, byte for
byte, the reference ``dumps(item_json(row))``: over varied certificates (shapes met again and
again, chains, key pairing, expired and not-yet-valid ones, contracted tiers) and hostile text
in every field a certificate or a file name supplies. And the parts' guards: each part that
carries a certificate's own text is escaped, a remembered part is only ever its own object's,
and the tables of remembered parts are bounded."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import agent.render as render
from agent.monitoring import ExpiryWindows
from agent.records import CertificateRecord, FileResult, KeyRecord
from agent.render import dumps, item_json, json_line
from agent.report import ReportItem, classify_directory
from agent.rows import CertificateRow
from policy.catalogue import Catalogue, load_catalogue
from policy.category import Category
from policy.classification import classify_certificate
from policy.cliutil import to_jsonable
from policy.decisions import Finding, Severity
from policy.facts import CertificateFacts
from policy.intake import Binding
from policy.settings import PolicySettings
from policy.tiers import Tier

orjson = pytest.importorskip("orjson")  # the parts are orjson's; else json_line is the reference

CATALOGUE: Catalogue = load_catalogue()
START = datetime(2026, 1, 1, tzinfo=UTC)
AT = datetime(2026, 3, 1, tzinfo=UTC)
ISSUERS = ["CN=Issuer,O=Org", "CN=Root"]
TOKYO = timezone(timedelta(hours=9))


class _Instant(datetime):
    """A datetime subclass: orjson does not write it, to_jsonable's format_instant does."""

# Text a certificate's maker chooses: controls (C0, DEL, C1), bidirectional and invisible
# format characters, a Hangul filler, a tag character, runs of marks past the limit, lone
# surrogates (a file name that is not UTF-8: orjson refuses them, the row falls back), quotes
# and backslashes, Japanese, an emoji.
HOSTILE = ["\x00", "\x1b]0;x\x07", "\n", "\x7f", "\x85", "\u202e", "\u200b", "\u061c",
           "\u2028", "\u3164", "\U000e0041", "\u0301" * 5, "\u0301" * 4, '"', "\\",
           "日本語", "😀", "\ufeff", "\u2800"]
text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6)), max_size=4).map(
    "".join)
# one in twenty with a lone surrogate (orjson refuses the row: the reference falls back)
plain_or_hostile = st.integers(0, 19).flatmap(
    lambda k: text.map(lambda t: t + "\udcff") if k == 19
    else st.just("host.example.jp") if k < 5 else text)


@st.composite
def certificate(draw: st.DrawFn, n: int) -> CertificateFacts:
    """Few lengths and start days, so that shapes repeat within and across examples."""
    not_before = START + timedelta(days=draw(st.sampled_from([0, 1, 40, 70])),
                                   minutes=draw(st.integers(0, 3)),
                                   microseconds=draw(st.sampled_from([0, 0, 0, 1, 999_999])))
    length = draw(st.sampled_from([timedelta(days=d) for d in (30, 90, 199, 365, 800)]))
    not_after = not_before + length - timedelta(seconds=1)
    # the same instants in Tokyo's offset, or as a datetime subclass (a test clock's): written
    # by format_instant rather than by orjson, in both paths
    zone = draw(st.sampled_from(["utc", "utc", "utc", "tokyo", "subclass"]))
    if zone == "tokyo":
        not_before, not_after = (t.astimezone(TOKYO) for t in (not_before, not_after))
    elif zone == "subclass":
        not_before, not_after = (_Instant.fromtimestamp(t.timestamp(), UTC)
                                 for t in (not_before, not_after))
    is_ca = draw(st.booleans()) and draw(st.booleans())
    return CertificateFacts(
        sha256=hashlib.sha256(f"{n}".encode()).hexdigest(),
        not_before_utc=not_before, not_after_utc=not_after,
        # a CA certificate names the issuer of the others (a chain), or not
        subject=draw(st.sampled_from(ISSUERS)) if is_ca and draw(st.booleans())
        else f"CN={draw(plain_or_hostile)}",
        subject_cn=draw(st.none() | plain_or_hostile), issuer=draw(st.sampled_from(ISSUERS)),
        issuer_org=draw(st.sampled_from([None, "Org", "Let's Encrypt", "DigiCert Inc",
                                         "日本\u202eOrg"])),
        issuer_cn=draw(st.none() | plain_or_hostile),
        serial=draw(st.sampled_from(["1", "ff" * 20, "\x1b[2J"])),
        sans=tuple(draw(st.lists(plain_or_hostile, max_size=3))),
        policy_oids=draw(st.sampled_from([(), ("2.23.140.1.2.1",), ("2.23.140.1.1",)])),
        is_ca=is_ca, self_signed=is_ca and draw(st.booleans()),
        # 2**70: beyond 64 bits, orjson refuses the row
        key_type="ec", key_size=draw(st.sampled_from([256, None, *[256] * 8, 2**70])),
        signature_algorithm=draw(st.sampled_from(["ecdsa-with-SHA256", "1.2.3\u200b"])))


@st.composite
def directory(draw: st.DrawFn) -> list[FileResult]:
    """A directory's files: certificates alone or with their CA in one file, reader
    findings, a key that matches one certificate or none."""
    results = []
    spkis = []
    for n in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(["cert.pem", "fullchain.pem", f"c{n}\u202e.pem",
                                     *["cert.pem"] * 6, f"c{n}\udcfe.pem"]))
        path = f"/store/{name}{n}"
        records = []
        for index in range(draw(st.integers(1, 2))):
            facts = draw(certificate(draw(st.integers(0, 10**6))))
            spki = f"{n}-{index}"
            spkis.append(spki)
            findings = tuple(
                Finding(code="parser-warning", clause="", severity=Severity.WARNING,
                        message=f"odd: {draw(text)}") for _ in range(draw(st.integers(0, 1))))
            records.append(CertificateRecord(path=path, index=index, fmt="pem", facts=facts,
                                             findings=findings, spki_sha256=spki))
        results.append(FileResult(path=path, certificates=tuple(records)))
    if draw(st.booleans()):
        spki = draw(st.sampled_from([*spkis, "none-matches"]))
        results.append(FileResult(path="/store/privkey.pem", keys=(KeyRecord(
            path="/store/privkey.pem", index=0, key_type="ec", key_size=256, encrypted=False,
            spki_sha256=spki, mode=0o600, owner_uid=0),)))
    return results


BINDINGS = [Binding(), Binding(category=Category.III), Binding(category=Category.III,
            tier=Tier.ONE_YEAR, contract_id="C-1\u202e"), Binding(tier=Tier.SIX_MONTHS)]


def _rows(results: list[FileResult], binding: Binding, at: datetime,
          store: str | None) -> Iterator[ReportItem]:
    return classify_directory(
        results, at=at, windows=ExpiryWindows(), store=store,
        classify=lambda record: classify_certificate(
            record.facts, CATALOGUE, binding=binding, at=at, settings=PolicySettings(),
            first_observed=None))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results=directory(), binding=st.sampled_from(BINDINGS),
       at=st.sampled_from([AT, START - timedelta(days=3), AT + timedelta(days=330)]),
       store=st.sampled_from([None, "/etc/ssl", "/st\u200bore"]))
def test_a_row_written_in_parts_is_the_reference_row(
        results: list[FileResult], binding: Binding, at: datetime, store: str | None) -> None:
    seen = 0
    for item in _rows(results, binding, at, store):
        if not isinstance(item, CertificateRow):
            continue
        reference = dumps(item_json(item))
        assert json_line(item) == reference
        assert json_line(item) == reference  # every part remembered now
        # the parts themselves, unless orjson refuses the row (the reference's fallback)
        try:
            orjson.dumps(item_json(item), default=to_jsonable)
        except orjson.JSONEncodeError:
            event("orjson refuses the row")
            assert render._certificate_line(item) is None
        else:
            event("written in parts")
            assert render._certificate_line(item) == reference
        event(f"role {item.role.value}, contract view {item.contract_view}")
        for finding in item.findings:
            event(f"finding {finding.code}")
        event(f"{len(item.actions)} action(s)")
        seen += 1
    assert seen


def _ordinary_row(n: int = 0, *, at: datetime = AT, binding: Binding = BINDINGS[0],
                  **changes: Any) -> CertificateRow:
    facts = CertificateFacts(**{
        "sha256": hashlib.sha256(f"ordinary{n}".encode()).hexdigest(),
        "not_before_utc": START + timedelta(minutes=n),
        "not_after_utc": START + timedelta(days=90, minutes=n, seconds=-1),
        "subject": f"CN=host{n}.example.jp", "subject_cn": f"host{n}.example.jp",
        "sans": (f"host{n}.example.jp",), "issuer": "CN=Issuer", "issuer_org": "Org",
        "serial": "1", **changes})
    record = CertificateRecord(path=f"/s/{n}.pem", index=0, fmt="pem", facts=facts)
    [row] = _rows([FileResult(path=record.path, certificates=(record,))], binding, at, None)
    assert isinstance(row, CertificateRow)
    return row


def test_the_parts_are_what_a_scan_writes() -> None:
    """json_line takes the parts where orjson is installed (the equality above is not that
    of the reference with itself)."""
    row = _ordinary_row()
    assert row.actions  # the bench's shape: a notice and the blocked renewal
    line = render._certificate_line(row)
    assert line is not None
    assert json_line(row) == line == dumps(item_json(row))


def test_a_certificates_own_text_in_a_part_is_escaped() -> None:
    """The head (path, names), the actions' facts and the tail (serial...) carry the
    certificate's own text, checked part by part: a bidirectional control there is escaped."""
    row = _ordinary_row(1)
    facts = row.record.facts.__class__(**{
        **{k: getattr(row.record.facts, k) for k in row.record.facts.__dataclass_fields__},
        "subject_cn": "evil\u202egpj.exe", "serial": "\u200b1", "issuer_cn": "CA\u2066"})
    record = CertificateRecord(path="/s/\u061cx.pem", index=0, fmt="pem", facts=facts)
    [hostile] = _rows([FileResult(path=record.path, certificates=(record,))], BINDINGS[0], AT,
                      None)
    assert isinstance(hostile, CertificateRow)
    line = render._certificate_line(hostile)
    assert line is not None
    for raw, escaped in (("\u202e", b"\\u202e"), ("\u200b", b"\\u200b"), ("\u2066", b"\\u2066"),
                         ("\u061c", b"\\u061c")):
        assert raw.encode() not in line
        assert escaped in line
    assert line == dumps(item_json(hostile))


def test_a_shared_part_with_hostile_text_is_escaped_when_first_made() -> None:
    """A binding's contract id (configuration, but text all the same) is in the shared part
    of every action: escaped once, when the part is made, and served escaped after that."""
    binding = Binding(category=Category.III, contract_id="C-\u202e1")
    for n in range(3):
        row = _ordinary_row(10 + n, binding=binding)
        line = render._certificate_line(row)
        assert line is not None
        assert "\u202e".encode() not in line
        assert line.count(b"C-\\u202e1") == len(row.actions) > 0
        assert line == dumps(item_json(row))


def test_a_remembered_part_is_never_another_objects() -> None:
    """The parts are remembered by the id of the shared object they were made of; the entry
    keeps that object, and a lookup whose entry holds another object (an id reused) makes
    the part anew."""
    row = _ordinary_row(20)
    told = row.classification.shape_json()
    action = row.actions[0].shape_json()
    render._TOLD[id(told)] = (dict(told), b'"forged":1')
    render._ACTION_HEADS[id(action)] = (dict(action), b'{"forged":')
    finding = row.findings[0]
    render._FINDINGS[id(finding)] = (Finding(code="x", clause="", message=""), b'{"forged":2}')
    render._SHAPE_FINDINGS[id(row.findings)] = ((), b'{"forged":3}')
    line = render._certificate_line(row)
    assert line is not None
    assert b"forged" not in line
    assert line == dumps(item_json(row))


def test_the_tables_of_remembered_parts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store of many shapes (lengths that differ to the second) empties a table when it is
    full instead of growing it."""
    monkeypatch.setattr(render, "_REMEMBERED_MAX", 8)
    tables = (render._TOLD, render._ACTION_HEADS, render._FINDINGS, render._SHAPE_FINDINGS,
              render._ISSUED)
    for table in tables:
        table.clear()
    for n in range(40):
        row = _ordinary_row(1000 + n * 997, at=AT + timedelta(seconds=n),  # a shape each
                            issuer_cn=f"CA {n}")  # and an issuer
        assert json_line(row) == dumps(item_json(row))
        for table in tables:
            assert len(table) <= 8


def test_the_copies_of_a_shape_share_its_json_made_before_any_was_rendered() -> None:
    """classify_certificate makes a memoised shape's shared JSON before the first copy: rows
    built in a batch before one is rendered (the daemon) still share it, and so its parts."""
    def facts(n: int) -> CertificateFacts:
        return CertificateFacts(
            sha256=hashlib.sha256(f"shared{n}".encode()).hexdigest(),
            not_before_utc=datetime(2025, 5, 5, 1, n, tzinfo=UTC),
            not_after_utc=datetime(2025, 8, 3, 1, n, 59, tzinfo=UTC), sans=("a.example",),
            issuer="CN=Shared")

    at = datetime(2025, 6, 1, tzinfo=UTC)
    first, second, third = (classify_certificate(facts(n), CATALOGUE, binding=BINDINGS[1],
                                                  at=at, first_observed=date(2025, 5, 5))
                            for n in range(3))
    assert second.actions
    assert third.actions
    assert second.shape_json() is third.shape_json() is first.shape_json()
    assert all(a.shape_json() is b.shape_json()
               for a, b in zip(second.actions, third.actions, strict=True))


def test_a_row_lists_its_findings_in_order_and_shares_a_plain_shapes_tuple() -> None:
    """certificate_row: the reader's findings, the file's, the classification's, then the
    host's (expiry, key pairing); a row that adds none holds the classification's own tuple
    (what the renderer remembers a shape's findings by)."""
    plain = _ordinary_row(30)
    assert plain.findings is plain.classification.findings

    base = _ordinary_row(31)
    reader = Finding(code="parser-warning", clause="", severity=Severity.WARNING, message="r")
    trailing = Finding(code="trailing-data", clause="", severity=Severity.WARNING, message="t")
    record = CertificateRecord(path="/s/k/cert.pem", index=0, fmt="pem",
                               facts=base.record.facts, findings=(reader,), spki_sha256="a")
    key = KeyRecord(path="/s/k/privkey.pem", index=0, key_type="ec", key_size=256,
                    encrypted=False, spki_sha256="b", mode=0o600, owner_uid=0)
    at = base.record.facts.not_after_utc - timedelta(days=3)  # inside the critical window
    [row, _] = _rows([FileResult(path=record.path, certificates=(record,),
                                 findings=(trailing,)),
                      FileResult(path=key.path, keys=(key,))], BINDINGS[0], at, None)
    assert isinstance(row, CertificateRow)
    codes = [f.code for f in row.findings]
    shape = [f.code for f in row.classification.findings]
    assert codes == ["parser-warning", "trailing-data", *shape, "expires-soon", "key-mismatch"]
    assert json_line(row) == dumps(item_json(row))


def test_equal_values_of_two_types_are_not_one_remembered_part() -> None:
    """The issuer's part is remembered by its values: ``True == 1`` and ``256 == 256.0``, yet
    JSON writes them differently, so their types are part of what it is remembered by."""
    render._ISSUED.clear()
    for changes in ({"self_signed": True, "key_size": 256}, {"self_signed": 1, "key_size": 256},
                    {"self_signed": True, "key_size": 256.0}):
        row = _ordinary_row(40, **changes)
        line = render._certificate_line(row)
        assert line is not None
        assert line == dumps(item_json(row))
