"""Attacker-controlled text (names, subjects, file names) through each output's escape."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from agent.logs import EventLog, configure_logging
from agent.main import certescrow
from tests.certfactory import shared_key
from tests.clirun import certescrow as run_certescrow
from untrusted.marks import MARKS_ASTRAL, MARKS_BMP
from untrusted.text import (
    MARK_RUN_LIMIT,
    SPACES,
    for_csv,
    for_log,
    for_terminal,
    json_text,
    json_utf8,
    unescape,
)

# Unicode's Default_Ignorable_Code_Point, DerivedCoreProperties.txt (Unicode 14.0 to 16.0),
# as Unicode lists it: copied here from the data file, not from untrusted/text.py.
DEFAULT_IGNORABLE = [
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
]
BLANK = [0x2800, 0x16FE4, 0x1D159]


def _ignorable_or_blank() -> set[int]:
    return {c for low, high in DEFAULT_IGNORABLE for c in range(low, high + 1)} | set(BLANK)


def _class_characters(char_class: str) -> list[str]:
    """The characters of one of untrusted/'s regex class bodies."""
    from untrusted.text import _characters

    return _characters(char_class)

HOSTILE = [
    "plain.example.jp",
    "日本語の名前.pem",
    "title\x1b]0;owned\x07",
    "clear\x1b[2J",
    "row\nforged,critical",
    "cr\rreturn",
    "tab\there",
    "del\x7f",
    "c1\x85\x9b31m",
    "bidi\u202eexe.pem",
    "sep\u2028line",
    "zero\u200bwidth.example",
    "arabic\u061cletter mark",
    "bom\ufeff word\u2060joiner soft\xadhyphen",
    "tag\U000e0041\U000e007f.example",
    "paypal.com" + "\u3164" * 20 + ".evil.example",
    "vs\ufe0f\U000e0100 cgj\u034f blank\u2800 filler\u115f\u1160\uffa0",
    "x" + "\u0338" * 50 + "y",
    "back\\slash \\x41 \\u0041 \\\\",
    os.fsdecode(b"bad-\xff\xfe-utf8.pem"),
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_control_character_or_surrogate_reaches_any_output(text: str) -> None:
    for rendered in (for_terminal(text), for_csv(text), for_log(text)):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in rendered)
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in rendered)
        assert not any(unicodedata.category(c) in ("Cf", "Zl", "Zp") for c in rendered)
        assert not any(ord(c) in _ignorable_or_blank() for c in rendered)
        rendered.encode("utf-8")  # never raises


def test_invisible_and_bidi_format_characters_are_escaped_not_shown() -> None:
    # "a\u200bb.com" printed raw reads "ab.com"; U+061C reorders like U+200F does.
    assert for_terminal("a\u200bb.com") == "a\\u200bb.com"
    assert for_terminal("x\u061cy") == "x\\u061cy"
    assert for_terminal("\ufeffbom") == "\\ufeffbom"
    assert for_terminal("tag\U000e0041") == "tag\\U000e0041"  # above the BMP: 8 digits
    assert for_log("a\u200bb.com") == "a\\u200bb.com"
    assert for_csv("\u2066=1+1") == "\\u2066=1+1"


def test_every_character_of_the_categories_cc_cf_zl_zp_is_escaped_in_every_output() -> None:
    """The escapes' table is a literal: this holds it to the running Python's Unicode
    database (a newer Unicode with new format characters fails here, not in a terminal)."""
    missed = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp"):
            continue
        text = f"a{char}b.example"  # plain around it: the fast path must not skip it
        if char in for_terminal(text) or char in for_csv(text) or char in for_log(text) \
                or unescape(for_log(text)) != text:
            missed.append(f"U+{code:04X}")
    assert missed == []


def test_json_text_escapes_format_characters_and_still_decodes_the_same() -> None:
    value = "a\u200bb \u061c \ufeff tag\U000e0041"
    document = json_text(json.dumps({"san": value}, ensure_ascii=False))
    assert all(ord(c) < 0x7F for c in document)
    assert "\\udb40\\udc41" in document  # a surrogate pair: JSON's \u takes four digits
    assert json.loads(document)["san"] == value


def _zero_width_san_cert(path: Path) -> Path:
    """A certificate whose SAN is ``a<U+200B>b.com``: cryptography builds it only without
    its own validation, as a hostile CA would."""
    key = shared_key("ec", 0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a\u200bb.com")])
    not_before = datetime(2026, 1, 15, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(77)
            .not_valid_before(not_before).not_valid_after(not_before + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName._init_without_validation("a\u200bb.com")]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("command", ["inspect", "scan"])
def test_a_zero_width_space_in_a_san_is_visible_in_inspect_and_the_scan_table(
        tmp_path: Path, command: str) -> None:
    path = _zero_width_san_cert(tmp_path / "zw.pem")
    result = CliRunner().invoke(certescrow, [command, str(path), "--at", "2026-02-01"],
                                catch_exceptions=False)
    assert "\u200b" not in result.output
    assert "a\\u200bb.com" in result.output


def test_a_zero_width_space_in_a_san_is_escaped_in_scan_json(tmp_path: Path) -> None:
    """`scan --json` wrote U+200B, U+061C and tag characters raw when orjson (installed: the
    fast path) wrote the row: its check knew only the bidirectional controls (review 11)."""
    path = _zero_width_san_cert(tmp_path / "zw.pem")
    result = CliRunner().invoke(certescrow, ["scan", "--json", str(path), "--at",
                                             "2026-02-01"], catch_exceptions=False)
    assert "\u200b" not in result.output
    assert "a\\u200bb.com" in result.output
    [row] = [r for r in json.loads(result.output) if r["kind"] == "certificate"]
    assert row["subject_cn"] == "a\u200bb.com"


def test_every_escaped_character_is_escaped_on_the_fast_json_path() -> None:
    """agent.render.dumps (orjson, checked on the bytes) against the standard library's path
    (json_text) for every character of the categories and a few that must stay raw."""
    from agent.render import dumps

    differ = []
    for code in [*range(0x80, 0x3200), *range(0xFE00, 0x10000), *range(0x110B0, 0x110D0),
                 *range(0x13420, 0x13450), *range(0x16FE0, 0x16FF0), *range(0x1BC90, 0x1BCB0),
                 *range(0x1D150, 0x1D180), *range(0xE0000, 0xE1010)]:
        if 0xD800 <= code <= 0xDFFF:
            continue
        value = {"san": f"a{chr(code)}b", "ja": "日本（時間）"}
        expected = json_text(json.dumps(value, ensure_ascii=False,
                                        separators=(",", ":"))).encode("utf-8")
        if dumps(value) != expected:
            differ.append(f"U+{code:04X}")
    assert differ == []


def test_every_mark_past_the_limit_is_escaped_on_the_fast_json_path() -> None:
    """The check on orjson's bytes finds marks by their lead bytes (the kana's ``E3`` among
    them: U+3099, U+309A) and leaves counting the run to json_text."""
    from agent.render import dumps

    differ = []
    for char in _class_characters(MARKS_BMP + MARKS_ASTRAL):
        for value in ({"san": "a" + char * 5, "ja": "日本（時間）"}, {"san": "a" + char * 4}):
            expected = json_text(json.dumps(value, ensure_ascii=False,
                                            separators=(",", ":"))).encode("utf-8")
            if dumps(value) != expected:
                differ.append(f"U+{ord(char):04X}")
    assert differ == []


def test_a_japanese_row_without_escapes_is_written_as_orjson_wrote_it() -> None:
    """The common case: kana (lead byte ``E3``, as U+3164 and the kana's combining marks),
    full-width forms (``EF``, as U+FEFF and the variation selectors) are told apart on the
    bytes, nothing decoded and nothing copied."""
    from untrusted.text import json_utf8_checked

    row = json.dumps({"ja": "2026-02-01 までに更新に係る通知を行ってください（有効期間）。",
                      "issuer": "CN=Test CA,O=日本認証局株式会社"},
                     ensure_ascii=False).encode("utf-8")
    assert json_utf8_checked(row) is row


def test_a_remembered_verdict_is_never_another_rows() -> None:
    """The check remembers its verdict by a row's characters that are not ASCII: rows that
    differ only in ASCII share it, and a row that adds one escaped character is judged anew,
    before and after the clean row was seen."""
    from untrusted.text import json_utf8, json_utf8_checked

    def row(host: str, extra: str = "") -> bytes:
        return json.dumps({"san": host + extra, "ja": "までに更新に係る通知を行ってください"},
                          ensure_ascii=False).encode("utf-8")

    hidden = row("b.example.jp", "\u200b")
    expected = json_utf8(hidden.decode("utf-8"))
    assert expected != hidden
    assert json_utf8_checked(hidden) == expected
    for n in range(3):
        clean = row(f"host{n}.example.jp")
        assert json_utf8_checked(clean) is clean
        assert json_utf8_checked(hidden) == expected
        assert json_utf8_checked(row(f"c{n}.example.jp", "\u200b")) != row(
            f"c{n}.example.jp", "\u200b")


def test_the_desks_json_escapes_format_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """`contract show --json` (policy.cliutil.echo_json) escaped lone surrogates only: a SAN
    with U+202E or U+200B came out raw (review 11)."""
    from policy.cliutil import echo_json

    for value in ("a\u200bb.com", "\u202egnp.exe", "tag\U000e0041", "x\x7f", "\udcff"):
        echo_json({"san": value})
        document = capsys.readouterr().out
        assert document.isascii() or document.replace("\n", "").isprintable()
        assert json.loads(document)["san"] == value
    echo_json({"ja": "日本（時間）"})
    assert capsys.readouterr().out == '{\n  "ja": "日本（時間）"\n}\n'


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_and_log_escapes_round_trip(text: str) -> None:
    assert unescape(for_csv(text)) == text
    assert unescape(for_log(text)) == text


def test_undecodable_file_name_bytes_come_back_exactly() -> None:
    raw = b"dir/\x80\xff name\n.pem"
    text = os.fsdecode(raw)
    assert for_csv(text) == "dir/\\x80\\xff name\\n.pem"
    assert os.fsencode(unescape(for_csv(text))) == raw


def test_terminal_leaves_backslashes_and_wide_text_alone() -> None:
    assert for_terminal("CN=a\\,b") == "CN=a\\,b"
    assert for_terminal("証明書") == "証明書"
    assert for_terminal("x\x1by") == "x\\u001by"


def test_json_utf8_escapes_lone_surrogates_so_json_decodes_them_back() -> None:
    name = os.fsdecode(b"\xffkey.pem")
    document = json.dumps({"path": name, "cn": "日本"}, ensure_ascii=False)
    encoded = json_utf8(document)
    encoded.decode("utf-8")  # valid UTF-8
    assert json.loads(encoded)["path"] == name
    assert "日本".encode() in encoded  # the rest stays as it was


def test_json_text_escapes_what_json_dumps_leaves_raw_and_still_decodes_the_same() -> None:
    value = "c1\x9b31m del\x7f sep\u2028 bidi\u202e zw\u200b " + os.fsdecode(b"\xfe")
    document = json_text(json.dumps({"cn": value}, ensure_ascii=False))
    assert all(ord(c) < 0x7F for c in document)
    assert json.loads(document)["cn"] == value


@pytest.mark.usefixtures("restored_logger")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_hostile_file_name_in_a_log_line_is_escaped_and_exact(fmt: str) -> None:
    name = os.fsdecode(b"/s/\x1b]0;owned\x07 \"q\"\n\xff.pem")
    stream = io.StringIO()
    log = EventLog(configure_logging(fmt, stream=stream))
    log.warning("file-error", f"{name}: garbage", path=name)
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line.rstrip("\n"))
    line.encode("utf-8")
    if fmt == "json":
        assert json.loads(line)["path"] == name
    else:
        quoted = line.rstrip("\n").split(" path=", 1)[1]
        assert unescape(quoted[1:-1]) == name


REVIEWERS_CN = "paypal.com" + "\u3164" * 20 + ".evil.example"
"""Twenty HANGUL FILLERs (category Lo, which str.isprintable calls printable) read as blanks:
"paypal.com" and a gap, ".evil.example" pushed off a narrow table (attacker review)."""


def test_the_hangul_filler_cn_shows_its_escapes_in_every_output() -> None:
    shown = "paypal.com" + "\\u3164" * 20 + ".evil.example"
    assert for_terminal(REVIEWERS_CN) == shown
    assert for_log(REVIEWERS_CN) == shown
    assert for_csv(REVIEWERS_CN) == shown
    assert unescape(for_csv(REVIEWERS_CN)) == REVIEWERS_CN
    document = json_text(json.dumps({"cn": REVIEWERS_CN}, ensure_ascii=False))
    assert "\u3164" not in document
    assert json.loads(document)["cn"] == REVIEWERS_CN


def test_the_default_ignorable_table_is_unicodes() -> None:
    """The list above is Unicode's: 4,174 code points ("Total code points" under the
    property in DerivedCoreProperties.txt), and what can be told from Python's own database
    holds: every variation selector and every Hangul filler is in it."""
    ignorable = _ignorable_or_blank() - set(BLANK)
    assert len(ignorable) == 4174
    named = {c for c in range(sys.maxunicode + 1)
             if "VARIATION SELECTOR" in unicodedata.name(chr(c), "")
             or unicodedata.name(chr(c), "").startswith(("HANGUL FILLER", "HALFWIDTH HANGUL FILLER",
                                                          "HANGUL CHOSEONG FILLER",
                                                          "HANGUL JUNGSEONG FILLER"))}
    assert len(named) == 16 + 240 + 4 + 4
    assert named <= ignorable


def test_every_default_ignorable_or_blank_character_is_escaped_in_every_output() -> None:
    """Category Lo (Hangul fillers), Mn (variation selectors, U+034F), So (U+2800) and the
    reserved code points alike, on the fast path (plain text around it) and off it."""
    missed = []
    for code in sorted(_ignorable_or_blank()):
        char = chr(code)
        for text in (f"a{char}b.example", f"日本{char}語", f"a{char}\x1b"):
            outputs = (for_terminal(text), for_csv(text), for_log(text),
                       json_text(json.dumps(text, ensure_ascii=False)))
            if any(char in out for out in outputs) or unescape(for_log(text)) != text:
                missed.append(f"U+{code:04X}")
                break
    assert missed == []


def test_a_run_of_marks_is_escaped_past_the_fourth() -> None:
    """Fifty U+0338 COMBINING LONG SOLIDUS OVERLAY on one letter draw over its neighbours
    (and str.isprintable calls every one printable); four stay, the rest are escaped."""
    assert MARK_RUN_LIMIT == 4
    text = "x" + "\u0338" * 50 + "y"
    shown = "x" + "\u0338" * 4 + "\\u0338" * 46 + "y"
    assert for_terminal(text) == shown
    assert for_log(text) == shown
    assert unescape(for_csv(text)) == text
    document = json_text(json.dumps([text], ensure_ascii=False))
    assert document == f'["{shown}"]'  # JSON's escape is the same text
    assert json.loads(document) == [text]
    # Mixed marks count alike; one above the BMP too; a base letter starts a new run.
    assert for_terminal("e\u0301\u0302\u0323\u0308\u0303") == "e\u0301\u0302\u0323\u0308\\u0303"
    assert for_terminal("a" + "\U0001d167" * 5) == "a" + "\U0001d167" * 4 + "\\U0001d167"
    assert for_terminal(("e" + "\u0301" * 4) * 3) == ("e" + "\u0301" * 4) * 3
    # An escaped character shows as text and ends the run: only the selector is escaped.
    assert for_terminal("a" + "\u0301" * 4 + "\ufe0f" + "\u0301" * 4) \
        == "a" + "\u0301" * 4 + "\\ufe0f" + "\u0301" * 4
    # A spacing mark (Mc, Devanagari U+093E) takes a cell and ends a run too.
    assert for_terminal("क" + "\u0941" * 4 + "\u093e" + "\u0941" * 4) \
        == "क" + "\u0941" * 4 + "\u093e" + "\u0941" * 4


LEGITIMATE = [
    "漢字かな交じり文（全角括弧）、「鉤括弧」。！？・ー〜",
    "株式会社　日本認証局",  # U+3000 IDEOGRAPHIC SPACE: a space, not escaped
    "ﾊﾝｶｸｶﾀｶﾅ ＡＢＣ１２３",
    "Việt Nam",
    unicodedata.normalize("NFD", "Việt Nam ệ ỗ ữ"),  # two marks on one vowel
    "हिन्दी क्षत्रिय कैं",
    "ภาษาไทย ปิ่น กี่",
    "مُحَمَّد العربية",
    "שָׁלוֹם",
    "ཧྲཱུྃ བསྒྲུབས",  # Tibetan: four marks under one letter
    "한국어 서울",
    unicodedata.normalize("NFD", "プログラム ガ"),  # kana with U+309A/U+3099 decomposed
    "Ελληνικά Русский",
    "lock \U0001f512 party \U0001f389",
]


_MARKY_TEXT = st.text(st.one_of(st.characters(), st.sampled_from(
    "e\u0301\u0338\u3099\u0e34\u0e48\u093e\ufe0f\u3164\\ \U0001d167")), max_size=40)


@given(_MARKY_TEXT)
def test_any_text_round_trips_and_no_output_stacks_more_marks_than_the_limit(text: str) -> None:
    assert unescape(for_log(text)) == text
    assert unescape(for_csv(text)) == text
    assert json.loads(json_text(json.dumps(text, ensure_ascii=False))) == text
    marks = set(_class_characters(MARKS_BMP + MARKS_ASTRAL))
    for rendered in (for_terminal(text), for_log(text),
                     json_text(json.dumps(text, ensure_ascii=False))):
        run = longest = 0
        for char in rendered:
            run = run + 1 if char in marks else 0
            longest = max(longest, run)
        assert longest <= MARK_RUN_LIMIT
        assert not any(ord(c) in _ignorable_or_blank() for c in rendered)


@pytest.mark.parametrize("text", LEGITIMATE)
def test_legitimate_scripts_pass_unescaped(text: str) -> None:
    from agent.render import dumps

    assert for_terminal(text) == text
    assert for_log(text) == text
    assert for_csv(text) == text
    document = json.dumps({"cn": text}, ensure_ascii=False, separators=(",", ":"))
    assert json_text(document) == document
    assert dumps({"cn": text}) == document.encode("utf-8")


def test_emoji_joiners_and_selectors_are_escaped_as_format_and_ignorable_characters() -> None:
    """U+200D ZERO WIDTH JOINER is Cf and was escaped before the default ignorable code
    points were: a family emoji shows its joiners. U+FE0F VARIATION SELECTOR-16 is default
    ignorable: a red heart shows it. Their pictures stay."""
    assert for_terminal("\U0001f468\u200d\U0001f469\u200d\U0001f467") \
        == "\U0001f468\\u200d\U0001f469\\u200d\U0001f467"
    assert for_terminal("\u2764\ufe0f") == "\u2764\\ufe0f"


def test_the_marks_table_is_every_nonspacing_and_enclosing_mark() -> None:
    """untrusted/marks.py is a literal: this holds it to the running Python's Unicode
    database (every Mn and Me in it, escaped one by one or counted in a run) and back (every
    character in it a mark, or unassigned in an older Unicode)."""
    table = {ord(c) for c in _class_characters(MARKS_BMP + MARKS_ASTRAL)}
    escaped = _ignorable_or_blank()
    missing, wrong = [], []
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category in ("Mn", "Me") and code not in table and code not in escaped:
            missing.append(f"U+{code:04X}")
        if code in table and (category not in ("Mn", "Me", "Cn") or code in escaped):
            wrong.append(f"U+{code:04X}")
    assert (missing, wrong) == ([], [])
    assert all(ord(c) <= 0xFFFF for c in _class_characters(MARKS_BMP))
    assert all(ord(c) > 0xFFFF for c in _class_characters(MARKS_ASTRAL))


def _make_leaf(path: Path, cn: str) -> Path:
    """A certificate whose CN and SAN are ``cn``, built without cryptography's checks (the
    CN is 83 bytes of UTF-8, over X.520's 64), as a hostile CA would."""
    key = shared_key("ec", 0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
    not_before = datetime(2026, 1, 15, tzinfo=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(78)
            .not_valid_before(not_before).not_valid_after(not_before + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName._init_without_validation(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
@pytest.mark.parametrize(("command", "columns"), [("inspect", "100"), ("scan", "200"),
                                                  ("scan", "80")])
def test_the_hangul_filler_cn_shows_its_escapes_in_inspect_and_the_scan_table(
        tmp_path: Path, command: str, columns: str) -> None:
    path = _make_leaf(tmp_path / "filler.pem", REVIEWERS_CN)
    result = CliRunner().invoke(certescrow, [command, str(path), "--at", "2026-02-01"],
                                env={"COLUMNS": columns}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "\u3164" not in result.output
    assert "paypal.com\\u3164\\u3164" in result.output  # even a narrow table's cut name
    if columns != "80":
        assert "paypal.com" + "\\u3164" * 20 + ".evil.example" in result.output


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_the_hangul_filler_cn_and_a_stack_of_marks_are_escaped_in_scan_json(
        tmp_path: Path) -> None:
    """orjson writes the row; its check on the bytes must send it to the escapes."""
    _make_leaf(tmp_path / "filler.pem", REVIEWERS_CN)
    _make_leaf(tmp_path / "marks.pem", "x" + "\u0338" * 50 + ".example")
    result = CliRunner().invoke(certescrow, ["scan", "--json", str(tmp_path), "--at",
                                             "2026-02-01"], catch_exceptions=False)
    assert "\u3164" not in result.output
    assert "\u0338" * 5 not in result.output
    assert "\u0338" * 4 + "\\u0338" in result.output
    names = sorted(r["subject_cn"] for r in json.loads(result.output)
                   if r["kind"] == "certificate")
    assert names == sorted([REVIEWERS_CN, "x" + "\u0338" * 50 + ".example"])  # exact


def test_the_spaces_are_unicodes_category_zs() -> None:
    zs = {chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Zs"}
    assert set(SPACES) == zs


PADDED = {
    "genuine.pem": "www.example.jp",
    "trailing.pem": "www.example.jp   ",
    "hidden.pem": "host.example.jp" + " " * 30 + ".evil.example",
    "leading.pem": " " * 30 + "host.example.jp",
    "ideographic.pem": "日本認証局\u3000\u3000",
}
"""Names padded with spaces, which a table shows as nothing at the end of a line, and a narrow
table cut inside the run: ``hidden`` read ``host.example.jp    …`` (its ``.evil.example`` cut
off), ``leading`` a blank cell and ``…``, ``trailing`` exactly as ``genuine``."""


def _padded_store(directory: Path) -> Path:
    directory.mkdir()
    for name, cn in PADDED.items():
        _make_leaf(directory / name, cn)
    return directory


def _name_cells(table: str) -> dict[str, str]:
    """Each row's NAME cell, by the file of its ``in:`` line."""
    lines = table.splitlines()
    column = lines[0].index("NAME")
    cells: dict[str, str] = {}
    row = ""
    for line in lines[1:]:
        if line and not line.startswith(" "):
            row = line
        elif line.startswith("    in: "):
            cells[Path(line.removeprefix("    in: ").split("#")[0]).name] = row[column:]
    return cells


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_a_space_padded_name_is_never_shown_as_if_it_were_whole_in_a_narrow_table(
        tmp_path: Path) -> None:
    from agent.render import display_width

    store = _padded_store(tmp_path / "store")
    done = run_certescrow("scan", str(store), home=tmp_path, at="2026-02-01T12:00:00",
                          COLUMNS="60")
    assert done.returncode == 0, done.stderr
    cells = _name_cells(done.stdout)
    assert cells["genuine.pem"] == "www.example.jp"
    # the spaces the cut or the line's end would hide are shown escaped
    assert cells["trailing.pem"].startswith("www.example.jp\\u0")
    assert cells["hidden.pem"].startswith("host.example.jp\\u0")
    assert cells["hidden.pem"].endswith("…")
    assert cells["leading.pem"].startswith("\\u0020\\u0020")
    assert cells["ideographic.pem"].startswith("日本認証局\\u3000")
    assert all(display_width(line) <= 60 for line in done.stdout.splitlines()
               if not line.startswith("    in: "))  # (a path is never cut)
    wide = run_certescrow("scan", str(store), home=tmp_path, at="2026-02-01T12:00:00",
                          COLUMNS="300")
    cells = _name_cells(wide.stdout)
    assert cells["trailing.pem"] == "www.example.jp" + "\\u0020" * 3
    assert cells["hidden.pem"] == PADDED["hidden.pem"]  # spaces between words: a gap
    assert cells["leading.pem"] == "\\u0020" * 30 + "host.example.jp"
    assert cells["ideographic.pem"] == "日本認証局\\u3000\\u3000"


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_inspect_shows_a_sans_trailing_spaces(tmp_path: Path) -> None:
    path = _make_leaf(tmp_path / "trailing.pem", PADDED["trailing.pem"])
    result = CliRunner().invoke(certescrow, ["inspect", str(path), "--at", "2026-02-01"],
                                catch_exceptions=False)
    assert "  SANs:           www.example.jp\\u0020\\u0020\\u0020\n" in result.output


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_json_and_csv_carry_a_space_padded_name_exactly(tmp_path: Path) -> None:
    store = _padded_store(tmp_path / "store")
    as_json = CliRunner().invoke(certescrow, ["scan", "--json", str(store), "--at",
                                              "2026-02-01"], catch_exceptions=False)
    rows = {Path(r["path"]).name: r for r in json.loads(as_json.output)}
    assert {name: (r["subject_cn"], r["sans"]) for name, r in rows.items()} == {
        name: (cn, [cn]) for name, cn in PADDED.items()}
    as_csv = CliRunner().invoke(certescrow, ["scan", "--csv", str(store), "--at",
                                             "2026-02-01"], catch_exceptions=False)
    cells = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(as_csv.output))}
    for name, cn in PADDED.items():
        assert unescape(cells[name]["sans"]) == cn
        assert unescape(cells[name]["subject"]) == rows[name]["subject"]


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_inspect_shows_a_subjects_trailing_no_break_spaces(tmp_path: Path) -> None:
    """RFC 4514 escapes a trailing ASCII space (``\\ ``) but not U+00A0: `inspect`'s subject
    and issuer lines showed ``CN=host.example.jp`` and three no-break spaces as the bare name
    (the re-review of session 15)."""
    path = _make_leaf(tmp_path / "nbsp.pem", "host.example.jp\u00a0\u00a0\u00a0")
    result = CliRunner().invoke(certescrow, ["inspect", str(path), "--at", "2026-02-01"],
                                catch_exceptions=False)
    assert "  subject:        CN=host.example.jp\\u00a0\\u00a0\\u00a0\n" in result.output
    assert "  issuer:         CN=host.example.jp\\u00a0\\u00a0\\u00a0\n" in result.output
