"""Attacker-controlled text (names, subjects, file names) through each output's escape."""

from __future__ import annotations

import json
import os

import pytest

from agent.untrusted import for_csv, for_log, for_terminal, json_utf8, unescape

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
    "back\\slash \\x41 \\u0041 \\\\",
    os.fsdecode(b"bad-\xff\xfe-utf8.pem"),
    "",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_control_character_or_surrogate_reaches_any_output(text: str) -> None:
    for rendered in (for_terminal(text), for_csv(text), for_log(text)):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in rendered)
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in rendered)
        assert "\u202e" not in rendered
        assert "\u2028" not in rendered
        rendered.encode("utf-8")  # never raises


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_and_log_escapes_round_trip(text: str) -> None:
    assert unescape(for_csv(text)) == text
    assert unescape(for_log(text)) == text


def test_undecodable_file_name_bytes_come_back_exactly() -> None:
    raw = b"dir/\x80\xff name\n.pem"
    text = os.fsdecode(raw)
    assert for_csv(text) == "dir/\\x80\\xff name\\u000a.pem"
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
