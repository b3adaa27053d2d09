"""Attacker-controlled text (names, subjects, file names) through each output's escape."""

from __future__ import annotations

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

from agent.logs import EventLog, configure_logging
from agent.main import certescrow
from tests.certfactory import shared_key
from untrusted.text import for_csv, for_log, for_terminal, json_text, json_utf8, unescape

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
    for code in [*range(0x80, 0x3100), *range(0xFE00, 0x10000), *range(0x110B0, 0x110D0),
                 *range(0x13420, 0x13450), *range(0x1BC90, 0x1BCB0), *range(0x1D170, 0x1D180),
                 *range(0xE0000, 0xE0090)]:
        if 0xD800 <= code <= 0xDFFF:
            continue
        value = {"san": f"a{chr(code)}b", "ja": "日本（時間）"}
        expected = json_text(json.dumps(value, ensure_ascii=False,
                                        separators=(",", ":"))).encode("utf-8")
        if dumps(value) != expected:
            differ.append(f"U+{code:04X}")
    assert differ == []


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
