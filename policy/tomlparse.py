"""TOML parsed for every file certescrow reads: the configuration, the catalogue, the schedule.

A syntax error is said in our words: the line and column, and what is wrong when we recognise
it. :mod:`tomllib`'s own text is never shown: it is another library's wording, which may change
between Python versions, and it quotes what it parsed (a table name as a Python tuple,
``Cannot declare ('agent',) twice``; for a value, a character of it, and a configuration file
may hold passwords). The line and column are taken from the error's numbers (its attributes
where Python has them, else the ``(at line L, column C)`` that ends its message); the reason
from which of the parser's errors it was, matched by its opening words.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

__all__ = ["TomlSyntaxError", "parse_toml"]


class TomlSyntaxError(ValueError):
    """Text that is not TOML. The message is ours, ``not valid TOML at line L, column C:
    REASON`` (without a reason when the error is not one we know), and never quotes the text;
    each caller prefixes its file and raises its own error class."""

    def __init__(self, *, line: int | None, column: int | None, reason: str | None) -> None:
        where = (f" at line {line}, column {column}" if line is not None and column is not None
                 else " at the end of the file")
        super().__init__(f"not valid TOML{where}" + (f": {reason}" if reason else ""))
        self.line = line
        self.column = column
        self.reason = reason


_REASONS: tuple[tuple[str, str], ...] = (
    ("Cannot declare", "{name} is declared twice (merge the two into one)"),
    ("Cannot overwrite a value",
     "{name} is defined twice (or under a key that already holds a value)"),
    ("Duplicate inline table key", "a key is defined twice in an inline table"),
    ("Cannot mutate immutable namespace",
     "a table written inline (`{ … }`) or an array is extended later"),
    ("Cannot redefine namespace", "a key is defined both as a value and as a table"),
    ("Invalid value", "not a TOML value (text needs quotes: \"…\")"),
    ("Invalid date or datetime", "not a valid date or time"),
    ("Unterminated string", "a string is not closed"),
    ("Expected '\"", "a string is not closed"),
    ("Expected \"'", "a string is not closed"),
    ("Unclosed array", "an array is not closed (a missing `]` or `,`)"),
    ("Unclosed inline table", "an inline table is not closed (a missing `}` or `,`)"),
    ("Expected ']' at the end of a table declaration", "a table header is not closed by `]`"),
    ("Expected ']]' at the end of an array declaration",
     "an array-of-tables header is not closed by `]]`"),
    ("Expected '=' after a key", "a key without `= value`"),
    ("Invalid initial character for a key part",
     "a key starts with a character a bare key cannot have (quote the key)"),
    ("Expected newline or end of document after a statement",
     "something follows a value on the same line"),
    ("Invalid statement", "a line that is neither `[table]` nor `key = value`"),
    ("Unescaped '\\'", "a backslash that is not an escape (use single quotes for a path)"),
    ("Invalid hex value", "an invalid \\u or \\U escape"),
    ("Escaped character is not a Unicode scalar value", "an invalid \\u or \\U escape"),
    ("Illegal character", "a control character TOML does not allow there"),
    ("Found invalid character", "a control character TOML does not allow there"),
)
"""The reasons we give, by the opening words of :mod:`tomllib`'s messages (CPython's
``Lib/tomllib/_parser.py``). One not listed is said without a reason, never in its words."""

_AT = re.compile(r"\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"\s*(\[\[?[^\]\n]*\]?\]?)")
_KEY = re.compile(r"\s*([^=\[\n]+?)\s*=")
_NAME_SHOWN = 60
"""The longest table or key name a reason repeats (from the line it is on)."""


def _where(exc: tomllib.TOMLDecodeError) -> tuple[int | None, int | None]:
    """The line and column of ``exc`` (both ``None``: at the end of the document)."""
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)  # Python 3.14
    doc, pos = getattr(exc, "doc", None), getattr(exc, "pos", None)
    if (isinstance(line, int) and isinstance(column, int) and isinstance(doc, str)
            and isinstance(pos, int)):
        return (None, None) if pos >= len(doc) else (line, column)
    found = _AT.search(str(exc))
    if found is None:
        return None, None
    return int(found.group(1)), int(found.group(2))


def _name_on(line_text: str) -> str:
    """The table header or key the line declares, as written (table and key names are not
    secrets; values are never quoted), or words for it when the line shows neither."""
    found = _HEADER.match(line_text) or _KEY.match(line_text)
    if found is None:
        return "a key or table"
    name = found.group(1).strip()
    if len(name) > _NAME_SHOWN:
        name = name[:_NAME_SHOWN] + "…"
    return f"the table {name}" if name.startswith("[") else f"the key {name}"


def _reason(exc: tomllib.TOMLDecodeError, text: str, line: int | None,
            column: int | None) -> str | None:
    message = getattr(exc, "msg", None)
    message = message if isinstance(message, str) else str(exc)
    lines = text.split("\n")
    line_text = lines[line - 1] if line is not None and 0 < line <= len(lines) else ""
    for opening, reason in _REASONS:
        if not message.startswith(opening):
            continue
        if (column is not None and column > len(line_text.rstrip("\r"))
                and "control character" in reason):  # the line's end, inside a string
            return "a string is not closed before the end of its line"
        return reason.replace("{name}", _name_on(line_text)) if "{name}" in reason else reason
    return None


def parse_toml(text: str) -> dict[str, Any]:
    """The TOML document ``text``; :class:`TomlSyntaxError` (our words) if it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, column = _where(exc)
        raise TomlSyntaxError(line=line, column=column,
                              reason=_reason(exc, text, line, column)) from None
