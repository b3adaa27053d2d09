"""Attacker-controlled text (names, subjects, file names) through each output's escape."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from agent.logs import LOGGER_NAME, EventLog, configure_logging
from agent.untrusted import for_csv, for_log, for_terminal, json_text, json_utf8, unescape

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
    value = "c1\x9b31m del\x7f sep\u2028 bidi\u202e " + os.fsdecode(b"\xfe")
    document = json_text(json.dumps({"cn": value}, ensure_ascii=False))
    assert all(ord(c) < 0x7F for c in document)
    assert json.loads(document)["cn"] == value


@pytest.fixture
def restored_logger() -> Iterator[None]:
    yield
    for name in (LOGGER_NAME, "watchdog"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


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
