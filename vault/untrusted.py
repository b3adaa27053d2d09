"""Text written by whoever made a file, rendered safely for each output: one function each.

It lives in the vault package because every layer that prints needs it and the vault is the
lowest layer the agent and the vault's own CLI may both import (``agent.untrusted`` re-exports
it; ``policy`` may import neither, and keeps its terminal escape in ``policy.cliutil``).

Certificate subjects, SANs, issuer names and file names are attacker-controlled. A CN holding
``ESC ] 0 ;`` retitles a terminal, one holding ``ESC [ 2 J`` clears it, a newline in a file
name forges a row of a table, a log line or a naive CSV reader's record. And a file name is
bytes, not text: the agent carries paths as :func:`os.fsdecode` text, in which a byte that is
not UTF-8 is a lone surrogate (``U+DC80``..``U+DCFF``, PEP 383 *surrogateescape*). Such a
string cannot be encoded as UTF-8 at all, so every output must escape it too.

The escapes, shared by every function here:

``\\xNN``
    a byte of a file name that is not UTF-8 (surrogate ``U+DCNN``); :func:`os.fsencode` of the
    unescaped text gives the original bytes back.
``\\n``, ``\\r``, ``\\t``
    a line feed, carriage return or tab;
``\\u00NN`` (or ``\\uNNNN``)
    any other control character: C0 (``U+0000``..``U+001F``), DEL (``U+007F``), C1 (``U+0080``..
    ``U+009F``), the line and paragraph separators (``U+2028``, ``U+2029``) and the
    bidirectional controls (``U+200E``, ``U+200F``, ``U+202A``..``U+202E``,
    ``U+2066``..``U+2069``) that reorder what a reader sees.
``\\\\``
    a backslash, in the outputs that must round-trip (CSV, log lines). The terminal rendering
    leaves backslashes alone: it is for eyes, and RFC 4514 names (``CN=a\\,b``) are full of them.
``'`` (a leading single quote, CSV only)
    a cell whose text would start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    is prefixed with ``'`` (OWASP's CSV injection defence): a spreadsheet opening the file
    would otherwise run a SAN ``=1+1`` (or ``=HYPERLINK(...)``) as a formula. So that
    :func:`unescape` can drop that quote, a single quote that truly starts a CSV cell or a log
    value is written ``\\u0027``.

Everything else, East Asian text included, passes through unchanged. JSON is different: its
escapes are the format's own, and :func:`json_text` only has to give lone surrogates the
``\\udcNN`` escape a JSON decoder turns back into the same string (and C1, DEL and the
separators the ``\\uNNNN`` escape that ``json.dumps(ensure_ascii=False)`` leaves out).
"""

from __future__ import annotations

import re

__all__ = ["for_csv", "for_log", "for_terminal", "json_storable", "json_text", "json_utf8",
           "unescape"]

_CONTROLS = (
    "\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
)
_SURROGATES = "\ud800-\udfff"
_UNSAFE_TERMINAL = re.compile(f"[{_CONTROLS}{_SURROGATES}]")
_UNSAFE_ROUND_TRIP = re.compile(f"[{_CONTROLS}{_SURROGATES}\\\\]")
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
                          f"{_SURROGATES}]")
_LONE_SURROGATE = re.compile(f"[{_SURROGATES}]")
_FORMULA_START = frozenset("=+-@\t\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, CSV injection). A tab or CR
is already escaped by then; listed so the rule stands on its own."""
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|([nrt\\]))")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_SHORT_BACK = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """``text`` safe to print on a terminal (table, ``inspect``): no control character reaches
    it, no byte that is not UTF-8. Backslashes stay as they are (display only)."""
    if not _UNSAFE_TERMINAL.search(text):
        return text
    return _UNSAFE_TERMINAL.sub(_escape_one, text)


def _round_trip(text: str) -> str:
    if _UNSAFE_ROUND_TRIP.search(text):
        text = _UNSAFE_ROUND_TRIP.sub(_escape_one, text)
    if text.startswith("'"):  # a leading quote of :func:`for_csv` is the neutraliser
        return "\\u0027" + text[1:]
    return text


def for_csv(text: str) -> str:
    """``text`` as one CSV cell's content: one physical line, valid UTF-8, never a formula to
    a spreadsheet (a leading ``=``, ``+``, ``-``, ``@``, tab or CR gets a ``'`` before it), and
    reversible with :func:`unescape` (a backslash is doubled). The ``csv`` module still does
    the quoting. For text only: a number of the agent's own (``days_left`` ``-3``) is no
    formula and must stay a number."""
    escaped = _round_trip(text)
    if escaped[:1] in _FORMULA_START:
        return "'" + escaped
    return escaped


def for_log(text: str) -> str:
    """``text`` inside a log line (message or field): the same reversible escape as CSV
    (without the formula neutraliser), so a line never splits, never carries a terminal
    control, and names a file exactly."""
    return _round_trip(text)


def unescape(text: str) -> str:
    """The inverse of :func:`for_csv` and :func:`for_log` (``os.fsencode`` of the result is a
    path's original bytes). A leading ``'`` is :func:`for_csv`'s formula neutraliser, dropped
    (a quote that was the text's own is ``\\u0027``)."""
    if text.startswith("'"):
        text = text[1:]

    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return chr(0xDC00 + int(match.group(1), 16))
        if match.group(2) is not None:
            return chr(int(match.group(2), 16))
        return _SHORT_BACK[match.group(3)]

    return _ESCAPE.sub(one, text)


def json_text(document: str) -> str:
    """A JSON document (``json.dumps(..., ensure_ascii=False)``) with every lone surrogate,
    C1 control, DEL, line/paragraph separator and bidirectional control written as the
    ``\\uNNNN`` escape that decodes back to it. Such characters can only stand inside a JSON
    string, where that escape is exactly what they mean; a lone surrogate otherwise makes the
    UTF-8 encode fail (and orjson refuses such strings outright)."""
    if not _JSON_UNSAFE.search(document):
        return document
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


def json_storable(document: str) -> str:
    """A JSON document (``json.dumps(..., ensure_ascii=False)``) with only its lone surrogates
    written as ``\\udcNN`` escapes: what the vault stores as canonical JSON (entry metadata,
    audit details). Any other text stays exactly as ``json.dumps`` wrote it, so the canonical
    form of text that is valid UTF-8 does not change."""
    if not _LONE_SURROGATE.search(document):
        return document
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


def json_utf8(document: str) -> bytes:
    """:func:`json_text` encoded as UTF-8 (what a report writes)."""
    return json_text(document).encode("utf-8")
