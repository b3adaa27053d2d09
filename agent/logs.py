"""The daemon's log (and ``policy serve``'s): one event a line on stderr, in a form journald
(or a machine) reads.

Under systemd, stderr is connected to the journal and ``$JOURNAL_STREAM`` is set; a ``<N>``
prefix (sd-daemon(3)) then gives each line its syslog priority, so ``journalctl -p warning``
works. ``json`` prints one JSON object a line for log shippers. Whatever the format, a line never
spans two lines (a traceback is folded into one field), carries no terminal control character
and no byte that is not UTF-8 (file names and subjects are attacker-controlled: text lines use
:func:`untrusted.text.for_log`, which round-trips, JSON lines :func:`untrusted.text.json_text`),
and a PEM private key that somehow reaches a message is replaced, never printed.

``policy`` may not import this module (tests/test_architecture.py): its service logs through
the standard library, the event name and fields in a record's ``extra`` (``{"event": …,
"fields": {…}}``, what :class:`EventLog` puts there), and the command that runs it
(``agent/fleet_cli.py``, the shell) routes its logger here with :func:`configure_logging`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

from untrusted.text import for_log, json_text

__all__ = ["LOGGER_NAME", "SERVICE_LIBRARIES", "SERVICE_LOGGER_NAME", "EventLog",
           "configure_logging", "journal_attached"]

LOGGER_NAME = "certescrow.agent"
SERVICE_LOGGER_NAME = "certescrow.service"
"""The policy service's logger (``policy/service.py``): ``policy serve`` routes it here too, so
both services' lines have one form (the ``<N>`` prefix, ``level event: message key=value``)."""
SERVICE_LIBRARIES = ("aiohttp", "asyncio", "certescrow.vault")
"""Whose warnings ``policy serve`` logs through its handler too: its web server's, its event
loop's, and the vault's it opens for its TLS key (a plaintext keyring)."""

# sd-daemon(3): <3> err, <4> warning, <5> notice, <6> info, <7> debug.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|$)", re.DOTALL
)


def redact(text: str) -> str:
    """Private key material never reaches a log line, whatever put it in the message."""
    return _PRIVATE_KEY.sub("[private key redacted]", text)


def journal_attached(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (stderr) is the journal stream systemd set up (``$JOURNAL_STREAM`` is
    ``<device>:<inode>`` of that stream; a redirected stderr no longer matches it)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    stream = stream if stream is not None else sys.stderr
    try:
        dev, ino = (int(part) for part in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str, *, journal: bool) -> None:
        super().__init__()
        self.kind = fmt
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        event = str(getattr(record, "event", "log"))
        fields: dict[str, Any] = dict(getattr(record, "fields", {}) or {})
        message = redact(record.getMessage())
        if record.exc_info:
            fields["exception"] = redact(self.formatException(record.exc_info))
        if self.kind == "json":
            payload: dict[str, Any] = {
                "time": datetime.fromtimestamp(record.created, UTC)
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(),
                "event": event,
                "message": message,
            }
            for key, value in fields.items():
                payload.setdefault(key, value if isinstance(value, (int, float, bool)) or
                                   value is None else redact(str(value)))
            return json_text(json.dumps(payload, ensure_ascii=False, sort_keys=False))
        parts = [f"{record.levelname.lower():<7} {for_log(event)}: {for_log(message)}"]
        parts.extend(f"{for_log(str(key))}={_quote(for_log(redact(str(value))))}"
                     for key, value in fields.items())
        line = " ".join(parts)
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def _quote(value: str) -> str:
    """A field value, quoted when it holds a space or a quote. ``value`` is already escaped by
    :func:`for_log`, so a quote inside becomes ``\\u0022``: :func:`untrusted.text.unescape`
    of what is between the quotes is the original value."""
    if value and " " not in value and '"' not in value:
        return value
    return '"' + value.replace('"', "\\u0022") + '"'



def configure_logging(fmt: str = "text", *, stream: IO[str] | None = None,
                      level: int = logging.INFO, name: str = LOGGER_NAME,
                      libraries: tuple[str, ...] = ("watchdog",)) -> logging.Logger:
    """Route the logger ``name`` (the agent's; ``policy serve`` gives
    :data:`SERVICE_LOGGER_NAME`) to ``stream`` (stderr) in ``fmt`` (``text`` or ``json``), and
    the warnings of the ``libraries`` it runs on through the same handler; idempotent, so
    SIGHUP may call it again with a new format."""
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}: expected text or json")
    stream = stream if stream is not None else sys.stderr
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(fmt, journal=fmt == "text" and journal_attached(stream)))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # The libraries' own warnings (watchdog's "Inotify queue overflowed", aiohttp's and
    # asyncio's errors, the vault's) go through the same handler: one format on stderr, never
    # Python's bare last-resort output.
    for library_name in libraries:
        library = logging.getLogger(library_name)
        for old in list(library.handlers):
            if isinstance(old, logging.StreamHandler):
                library.removeHandler(old)
        library.addHandler(handler)
        library.setLevel(logging.WARNING)
        library.propagate = False
    return logger


class EventLog:
    """``log.info("reported", "3 certificates", path=...)``: an event name machines filter on,
    a sentence for people, and fields. Pass paths and counts; never pass key material."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)

    def _log(self, level: int, event: str, message: str, exc_info: bool,
             fields: dict[str, Any]) -> None:
        self.logger.log(level, "%s", message, exc_info=exc_info,
                        extra={"event": event, "fields": fields})

    def log(self, level: int, event: str, message: str, **fields: Any) -> None:
        """At ``level``: for a line whose level depends on what it says (a finding is an
        error when critical, a warning otherwise: agent/findinglog.py)."""
        self._log(level, event, message, False, fields)

    def debug(self, event: str, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, message, False, fields)

    def info(self, event: str, message: str, **fields: Any) -> None:
        self._log(logging.INFO, event, message, False, fields)

    def warning(self, event: str, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, message, False, fields)

    def error(self, event: str, message: str, *, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, message, exc_info, fields)
