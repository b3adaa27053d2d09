"""The daemon's log lines: one event a line, journald priorities, JSON, no key material."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from agent.logs import EventLog, configure_logging, journal_attached
from tests.certfactory import make_cert

pytestmark = pytest.mark.usefixtures("restored_logger")


def test_text_is_one_line_per_event_with_fields() -> None:
    stream = io.StringIO()
    log = EventLog(configure_logging("text", stream=stream))
    log.warning("file-error", "bad\nfile", path="/s/a b.pem", code="garbage")
    assert stream.getvalue() == 'warning file-error: bad\\nfile path="/s/a b.pem" code=garbage\n'


def test_json_lines_for_machines() -> None:
    stream = io.StringIO()
    log = EventLog(configure_logging("json", stream=stream))
    log.info("reported", "2 observation(s) reported", observations=2)
    try:
        raise ValueError("boom")
    except ValueError:
        log.error("process-failed", "unexpected", exc_info=True, path="/s/x")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "reported"
    assert first["level"] == "info"
    assert first["observations"] == 2
    assert first["time"].endswith("Z")
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exception"]


def test_journal_priority_prefix_when_stderr_is_the_journal_stream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert journal_attached(stream)
        log = EventLog(configure_logging("text", stream=stream))
        log.warning("key-mismatch", "still disagree")
        log.info("ready", "watching")
        log.error("reload-refused", "bad")
        stream.seek(0)
        lines = stream.read().splitlines()
    assert [line[:3] for line in lines] == ["<4>", "<6>", "<3>"]


def test_no_prefix_when_stderr_was_redirected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    stream = io.StringIO()
    assert not journal_attached(sys.stderr)
    configure_logging("text", stream=stream).info("x")
    assert not stream.getvalue().startswith("<")


def test_private_key_material_never_reaches_the_log() -> None:
    pem = make_cert().key_pem().decode()
    for fmt in ("text", "json"):
        stream = io.StringIO()
        log = EventLog(configure_logging(fmt, stream=stream))
        log.error("oops", f"a bug put {pem} into a message", detail=pem)
        out = stream.getvalue()
        assert "PRIVATE KEY" not in out
        assert pem.splitlines()[1] not in out
        assert "[private key redacted]" in out


def test_watchdog_library_warnings_use_the_same_format() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "Inotify queue overflowed"


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("xml")
