"""Text written by whoever made a file, rendered safely for each output: one function each.

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
``\\u00NN`` (or ``\\uNNNN``, ``\\UNNNNNNNN`` above the BMP)
    any other control character, that is every character of the Unicode general categories
    Cc (C0 ``U+0000``..``U+001F``, DEL ``U+007F``, C1 ``U+0080``..``U+009F``), Zl and Zp (the
    line and paragraph separators ``U+2028``, ``U+2029``) and Cf, the *format* characters: the
    bidirectional controls (``U+200E``, ``U+200F``, ``U+061C``, ``U+202A``..``U+202E``,
    ``U+2066``..``U+2069``) that reorder what a reader sees, and the invisible ones
    (``U+200B`` zero width space, ``U+2060`` word joiner, ``U+FEFF``, ``U+00AD`` soft
    hyphen, the tag characters ``U+E0001``, ``U+E0020``..``U+E007F``...) that make
    ``a\\u200bb.com`` look like ``ab.com``.
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
``\\udcNN`` escape a JSON decoder turns back into the same string (and every other control
character above, which ``json.dumps(ensure_ascii=False)`` leaves raw, the ``\\uNNNN`` escape,
or its surrogate pair above the BMP).
"""

from __future__ import annotations

import re

__all__ = ["for_csv", "for_log", "for_terminal", "json_storable", "json_text", "json_utf8",
           "json_utf8_checked", "unescape"]

_NON_ASCII_CONTROLS = (
    # C1 controls (Cc), then Unicode's categories Cf (format), Zl and Zp (separators) as of
    # Unicode 15 (U+2065 is unassigned, and U+13439..U+1343F in Python 3.11's Unicode 14:
    # escaped all the same). A literal, not computed: reading unicodedata's 1.1 million code
    # points at import would cost every command 0.17 s. tests/agent/test_untrusted.py checks
    # that it covers these categories in the running Python's Unicode database.
    "\x80-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
_CONTROLS = f"\x00-\x1f\x7f{_NON_ASCII_CONTROLS}"
_SURROGATES = "\ud800-\udfff"
_UNSAFE_TERMINAL = re.compile(f"[{_CONTROLS}{_SURROGATES}]")
_UNSAFE_ROUND_TRIP = re.compile(f"[{_CONTROLS}{_SURROGATES}\\\\]")
# json.dumps escapes C0 itself, and the document's own layout is C0 (newlines, indentation).
_JSON_UNSAFE = re.compile(f"[\x7f{_NON_ASCII_CONTROLS}{_SURROGATES}]")
_LONE_SURROGATE = re.compile(f"[{_SURROGATES}]")
_FORMULA_START = frozenset("=+-@\t\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, CSV injection). A tab or CR
is already escaped by then; listed so the rule stands on its own."""
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|([nrt\\]))")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_SHORT_BACK = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _plain(text: str) -> bool:
    """Whether ``text`` holds no character escaped here (backslashes aside, which only the
    round-trip escapes double): the fast path for every field of every certificate of a
    scan. :meth:`str.isprintable` scans in C and is false for every character of the Unicode
    categories Cc, Cf, Cs (surrogates), Cn (unassigned), Zl, Zp and Zs but the space, a
    superset of what is escaped here (tests/agent/test_untrusted.py checks that); a search
    with the escapes' own character class costs 4 to 5 times more, as the class holds
    characters above the BMP."""
    return text.isprintable()


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:  # above the BMP (tag characters): four hex digits would read back wrong
        return f"\\U{code:08x}"
    return f"\\u{code:04x}"


def for_terminal(text: str) -> str:
    """``text`` safe to print on a terminal (table, ``inspect``): no control character reaches
    it, no invisible character, no byte that is not UTF-8. Backslashes stay as they are
    (display only)."""
    if _plain(text):
        return text
    return _UNSAFE_TERMINAL.sub(_escape_one, text)


def _round_trip(text: str) -> str:
    if not _plain(text) or "\\" in text:
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
        hex_digits = match.group(2) or match.group(3)
        if hex_digits is not None:
            return chr(int(hex_digits, 16))
        return _SHORT_BACK[match.group(4)]

    return _ESCAPE.sub(one, text)


def json_text(document: str) -> str:
    """A JSON document (``json.dumps(..., ensure_ascii=False)``) with every lone surrogate,
    C1 control, DEL, line/paragraph separator and format character (bidirectional controls,
    invisible characters) written as the ``\\uNNNN`` escape that decodes back to it. Such
    characters can only stand inside a JSON string, where that escape is exactly what they
    mean; a lone surrogate otherwise makes the UTF-8 encode fail (and orjson refuses such
    strings outright)."""
    if document.isascii():  # all a report's text usually is: DEL is the one to look for
        if "\x7f" not in document:
            return document
    elif document.replace("\n", "").isprintable():  # the fast path of :func:`_plain`
        return document
    return _JSON_UNSAFE.sub(_json_escape_one, document)


def _json_escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # JSON's \\u takes four digits: a surrogate pair (RFC 8259, section 7)
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


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


def _characters(char_class: str) -> list[str]:
    """The characters of a regex class body written as literals and ``a-b`` ranges."""
    out: list[str] = []
    i = 0
    while i < len(char_class):
        if i + 2 < len(char_class) and char_class[i + 1] == "-":
            out.extend(chr(c) for c in range(ord(char_class[i]), ord(char_class[i + 2]) + 1))
            i += 3
        else:
            out.append(char_class[i])
            i += 1
    return out


_Tails = dict[int, tuple[bytes, ...]]
"""By the byte after a lead byte: the rest of each sequence that continues so (an empty
``bytes`` when those two bytes are the whole character)."""


def _utf8_leads(chars: list[str]) -> tuple[tuple[int, _Tails], ...]:
    """The UTF-8 encodings of ``chars`` (none of them ASCII) by lead byte, then by the byte
    after it. A lead byte never occurs inside another character, so a lead found in valid
    UTF-8 starts a character."""
    leads: dict[int, dict[int, list[bytes]]] = {}
    for char in chars:
        encoded = char.encode("utf-8")
        leads.setdefault(encoded[0], {}).setdefault(encoded[1], []).append(encoded[2:])
    return tuple((lead, {second: tuple(rests) for second, rests in seconds.items()})
                 for lead, seconds in sorted(leads.items()))


_UNSAFE_UTF8_LEADS = _utf8_leads(_characters(_NON_ASCII_CONTROLS))


def _has_unsafe_utf8(document: bytes) -> bool:
    """Whether the UTF-8 ``document`` holds a character :func:`json_text` escapes (lone
    surrogates aside, which valid UTF-8 cannot hold). A report row is 2-3 KB of mostly
    Japanese, where Python's regex tries every byte (8-18 us a row) and ``find`` of a two-byte
    needle takes 4 us: here each lead byte is looked for with ``memchr`` (an int needle), and
    where one occurs the byte after it rules out nearly everything (full-width forms begin
    ``EF BC``, the escaped ``EF BB``/``EF BF``)."""
    if 0x7F in document:  # an int: memchr, several times faster than a bytes needle
        return True
    for lead, tails in _UNSAFE_UTF8_LEADS:
        if lead not in document:
            continue
        at = document.find(lead)
        while at != -1:
            rests = tails.get(document[at + 1]) if at + 1 < len(document) else None
            if rests is not None and any(document.startswith(rest, at + 2) for rest in rests):
                return True
            at = document.find(lead, at + 1)
    return False


def json_utf8_checked(document: bytes) -> bytes:
    """A UTF-8 JSON document another encoder wrote (orjson, which refuses lone surrogates and
    leaves every other character raw) as :func:`json_utf8` would write it: unchanged, without
    decoding it, when it holds nothing :func:`json_text` escapes (the common case a scan
    checks on every row)."""
    return json_utf8(document.decode("utf-8")) if _has_unsafe_utf8(document) else document
