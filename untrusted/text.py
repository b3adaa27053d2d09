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
    (``U+200B`` zero width space, ``U+200D`` zero width joiner, ``U+2060`` word joiner,
    ``U+FEFF``, ``U+00AD`` soft hyphen, the tag characters ``U+E0001``,
    ``U+E0020``..``U+E007F``...) that make ``a\\u200bb.com`` look like ``ab.com``;
    every other *default ignorable* code point (Unicode's ``Default_Ignorable_Code_Point``),
    drawn as nothing or as a blank although :meth:`str.isprintable` calls several printable:
    the Hangul fillers ``U+115F``, ``U+1160``, ``U+3164``, ``U+FFA0`` (``paypal.com`` and
    twenty ``U+3164`` read as ``paypal.com`` and blanks, the ``.evil.example`` after them
    pushed off a narrow table), the variation selectors ``U+FE00``..``U+FE0F`` and
    ``U+E0100``..``U+E01EF``, ``U+034F`` combining grapheme joiner, ``U+17B4``, ``U+17B5``,
    ``U+180B``..``U+180F`` and the code points Unicode reserves for more of them;
    three characters drawn blank that are no space: ``U+2800`` braille pattern blank,
    ``U+16FE4`` Khitan small script filler, ``U+1D159`` musical symbol null notehead;
    and a nonspacing or enclosing mark (categories Mn, Me) past the fourth in a row: marks
    stack on the character before them, and fifty ``U+0338`` draw over the neighbours, or
    above and below the line. Four is what real text needs (Vietnamese two on one vowel,
    ``ệ`` decomposed; Thai, Devanagari, Arabic and Hebrew points two or three; a Tibetan
    stack such as ``ཧྲཱུྃ`` four); a spacing mark (Mc) takes a cell of its own and ends a
    run, as does an escaped character.
``\\\\``
    a backslash, in the outputs that must round-trip (CSV, log lines). The terminal rendering
    leaves backslashes alone: it is for eyes, and RFC 4514 names (``CN=a\\,b``) are full of them.
``'`` (a leading single quote, CSV only)
    a cell whose text would start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    is prefixed with ``'`` (OWASP's CSV injection defence): a spreadsheet opening the file
    would otherwise run a SAN ``=1+1`` (or ``=HYPERLINK(...)``) as a formula. So that
    :func:`unescape` can drop that quote, a single quote that truly starts a CSV cell or a log
    value is written ``\\u0027``.

Everything else, East Asian text included, passes through unchanged; spaces too (``U+3000``
belongs in Japanese names, and a run of spaces shows as a gap, ASCII or not), but for the
spaces that begin or end a field at the end of a line or in a table's cell, where a gap shows
as nothing: :func:`edge_spaces_escaped` writes those as ``\\u0020``. JSON is
different: its escapes are the format's own, and :func:`json_text` only has to give lone
surrogates the ``\\udcNN`` escape a JSON decoder turns back into the same string (and every
other character escaped above, marks past the fourth in a row included, which
``json.dumps(ensure_ascii=False)`` leaves raw, the ``\\uNNNN`` escape, or its surrogate pair
above the BMP): the decoded value is exact, the document read on a terminal shows what the
table shows.
"""

from __future__ import annotations

import functools
import re

from .marks import MARKS_ASTRAL, MARKS_BMP

__all__ = ["MARK_RUN_LIMIT", "SPACES", "edge_spaces_escaped", "for_csv", "for_log", "for_terminal",
           "json_storable", "json_text", "json_utf8", "json_utf8_checked", "unescape"]

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
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): what a renderer that
# does not support a character draws as nothing, or a font as a blank. The same 4,174 code
# points in these 17 ranges from Unicode 14.0 (which added U+180F) to 16.0; Python 3.11's
# unicodedata (Unicode 14.0.0) has no such property, so they are written out here (those of
# category Cf are in the table above as well). Split at the BMP for _Patterns.suspect.
_DEFAULT_IGNORABLE_BMP = (
    "\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
)
_DEFAULT_IGNORABLE_ASTRAL = "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
# Drawn blank, yet neither default ignorable nor a space: what a search of unicodedata's
# character names for BLANK, FILLER and NULL finds that has no visible glyph (the gap fillers,
# EMPTY SET, SYMBOL FOR NULL... are visible and stay). Spaces (Zs) are no such trap: a run of
# them shows as a gap, as ASCII spaces do, and U+3000 belongs in Japanese names.
_BLANK_BMP = "\u2800"  # BRAILLE PATTERN BLANK
_BLANK_ASTRAL = (
    "\U00016fe4"  # KHITAN SMALL SCRIPT FILLER (Mn)
    "\U0001d159"  # MUSICAL SYMBOL NULL NOTEHEAD
)
_INVISIBLE_BMP = f"{_DEFAULT_IGNORABLE_BMP}{_BLANK_BMP}"
_NON_ASCII_ESCAPED = (f"{_NON_ASCII_CONTROLS}{_INVISIBLE_BMP}{_DEFAULT_IGNORABLE_ASTRAL}"
                      f"{_BLANK_ASTRAL}")
"""Every character above U+007F escaped whatever its neighbours (surrogates aside)."""
_SURROGATES = "\ud800-\udfff"
_ASTRAL = "\U00010000-\U0010ffff"
MARK_RUN_LIMIT = 4
"""How many nonspacing or enclosing marks (Mn, Me) may follow one another unescaped; the
module's docstring says why four."""
# A mark whose run, counting itself, is longer than the limit. The class that starts it holds
# the BMP's marks and one range for the rest (CPython's re tests a class's ranges above the
# BMP one by one, on every character it tries); the whole table only in the look-behind.
_MARK_PAST_LIMIT = (f"[{MARKS_BMP}{_ASTRAL}]"
                    f"(?<=[{MARKS_BMP}{MARKS_ASTRAL}]{{{MARK_RUN_LIMIT + 1}}})")
# ASCII text (most text, and what a fast path can tell at once) needs only these two.
_ASCII_UNSAFE_TERMINAL = re.compile("[\x00-\x1f\x7f]")
_ASCII_UNSAFE_ROUND_TRIP = re.compile("[\x00-\x1f\x7f\\\\]")
_LONE_SURROGATE = re.compile(f"[{_SURROGATES}]")
_FORMULA_START = frozenset("=+-@\t\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, CSV injection). A tab or CR
is already escaped by then; listed so the rule stands on its own."""
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|([nrt\\]))")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_SHORT_BACK = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


class _Patterns:
    """The escapes of text that is not ASCII, compiled when such text first comes: the
    marks' table makes each pattern cost milliseconds to compile, which a command that
    prints only ASCII should not pay at import."""

    @functools.cached_property
    def suspect(self) -> re.Pattern[str]:
        """In text :meth:`str.isprintable` passes, a character that may have to be escaped:
        a printable one escaped whatever its neighbours (a Hangul filler, a variation
        selector, U+2800), any character above the BMP (the escape itself looks closer), or
        a run of more marks of the BMP than the limit. One class first, so that ``search``
        skips to a candidate in C."""
        return re.compile(f"[{_INVISIBLE_BMP}{MARKS_BMP}{_ASTRAL}]"
                          f"(?:(?<=[{_INVISIBLE_BMP}{_ASTRAL}])|[{MARKS_BMP}]{{{MARK_RUN_LIMIT}}})")

    @functools.cached_property
    def terminal(self) -> re.Pattern[str]:
        return re.compile(f"[\x00-\x1f\x7f{_NON_ASCII_ESCAPED}{_SURROGATES}]|{_MARK_PAST_LIMIT}")

    @functools.cached_property
    def round_trip(self) -> re.Pattern[str]:
        return re.compile(
            f"[\x00-\x1f\x7f{_NON_ASCII_ESCAPED}{_SURROGATES}\\\\]|{_MARK_PAST_LIMIT}")

    @functools.cached_property
    def json(self) -> re.Pattern[str]:
        # json.dumps escapes C0 itself, and the document's own layout is C0 (newlines,
        # indentation).
        return re.compile(f"[\x7f{_NON_ASCII_ESCAPED}{_SURROGATES}]|{_MARK_PAST_LIMIT}")

    @functools.cached_property
    def utf8_leads(self) -> tuple[tuple[int, re.Pattern[bytes]], ...]:
        """See :func:`_utf8_suspect`."""
        chars = {*_characters(_NON_ASCII_ESCAPED), *_characters(MARKS_BMP),
                 *_characters(MARKS_ASTRAL)}
        return _utf8_leads(chars)


_PATTERNS = _Patterns()


def _plain(text: str) -> bool:
    """Whether ``text`` holds no character escaped here (backslashes aside, which only the
    round-trip escapes double): the fast path for every field of every certificate of a
    scan. :meth:`str.isprintable` scans in C and is false for every character of the Unicode
    categories Cc, Cf, Cs (surrogates), Cn (unassigned), Zl and Zp, and Zs but the space
    (tests/agent/test_untrusted.py checks that), which is all ASCII text needs. It is true for
    a Hangul filler, a variation selector and marks, so text that is not ASCII is searched for
    those too (``isascii`` costs nothing: CPython knows it of every string)."""
    if text.isascii():
        return text.isprintable()
    return text.isprintable() and _PATTERNS.suspect.search(text) is None


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


SPACES = (" \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
          "\u202f\u205f\u3000")
"""Unicode's category Zs: drawn as a gap, which shows between two words but not at the end of
a cell or a line (tests/agent/test_untrusted.py checks the list)."""


def _escaped_spaces(spaces: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in spaces)


def edge_spaces_escaped(text: str) -> str:
    """``text`` (already :func:`for_terminal`) with the spaces that begin or end it escaped
    (``\\u0020``, ``\\u3000``), for a field that ends a line or stands in a cell: there a gap
    is drawn as nothing, so ``www.example.jp`` and three spaces read as ``www.example.jp``, and
    a run of spaces before a name pushes it out of a narrow column. Spaces between words stay
    a gap. Linear: ``str.strip``, no pattern that backtracks over a run of spaces."""
    inner = text.strip(SPACES)
    if len(inner) == len(text):
        return text
    lead = len(text) - len(text.lstrip(SPACES))
    return (_escaped_spaces(text[:lead]) + inner
            + _escaped_spaces(text[lead + len(inner):]))


def for_terminal(text: str) -> str:
    """``text`` safe to print on a terminal (table, ``inspect``): no control character reaches
    it, no invisible character, no stack of marks past the limit, no byte that is not UTF-8.
    Backslashes stay as they are (display only)."""
    if _plain(text):
        return text
    if text.isascii():
        return _ASCII_UNSAFE_TERMINAL.sub(_escape_one, text)
    return _PATTERNS.terminal.sub(_escape_one, text)


def _round_trip(text: str) -> str:
    if not _plain(text) or "\\" in text:
        unsafe = _ASCII_UNSAFE_ROUND_TRIP if text.isascii() else _PATTERNS.round_trip
        text = unsafe.sub(_escape_one, text)
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
    C1 control, DEL, line/paragraph separator, format character (bidirectional controls,
    invisible characters), other default ignorable or blank character and mark past the
    limit of a run written as the ``\\uNNNN`` escape that decodes back to it: what
    :func:`for_terminal` escapes but C0, which ``json.dumps`` escapes itself. Such characters
    can only stand inside a JSON string, where that escape is exactly what they mean; a lone
    surrogate otherwise makes the UTF-8 encode fail (and orjson refuses such strings
    outright)."""
    if document.isascii():  # all a report's text usually is: DEL is the one to look for
        if "\x7f" not in document:
            return document
    elif _plain(document.replace("\n", "")):
        return document
    return _PATTERNS.json.sub(_json_escape_one, document)


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


def _byte_class(values: list[int]) -> bytes:
    """A regex class of these byte values (``\\xNN`` and ``\\xNN-\\xNN`` ranges)."""
    ranges: list[list[int]] = []
    for value in sorted(values):
        if ranges and ranges[-1][1] + 1 == value:
            ranges[-1][1] = value
        else:
            ranges.append([value, value])
    body = b"".join(b"\\x%02x" % low if low == high else b"\\x%02x-\\x%02x" % (low, high)
                    for low, high in ranges)
    return body if len(ranges) == 1 and ranges[0][0] == ranges[0][1] else b"[" + body + b"]"


def _byte_sequences(encoded: list[bytes]) -> bytes:
    """A regex matching exactly these byte strings, all of one length: by first byte, those
    whose rests match alike share a class (U+E0000..U+E0FFF is ``\\xf3\\xa0[...][...]``).
    Recursive in the length of a UTF-8 sequence, four at most, and over a table of our own."""
    if len(encoded[0]) == 1:
        return _byte_class([e[0] for e in encoded])
    rests: dict[int, list[bytes]] = {}
    for e in encoded:
        rests.setdefault(e[0], []).append(e[1:])
    by_rest: dict[bytes, list[int]] = {}
    for first, rest in rests.items():
        by_rest.setdefault(_byte_sequences(rest), []).append(first)
    parts = [_byte_class(firsts) + rest for rest, firsts in by_rest.items()]
    return parts[0] if len(parts) == 1 else b"(?:" + b"|".join(parts) + b")"


def _utf8_leads(chars: set[str]) -> tuple[tuple[int, re.Pattern[bytes]], ...]:
    """Patterns for the UTF-8 encodings of ``chars`` (none of them ASCII), one per lead byte
    and starting with it. A lead byte never occurs inside another character, so a lead found
    in valid UTF-8 starts a character. A character of the BMP is matched exactly (Japanese
    text is full of the lead bytes ``E2``, ``E3`` and ``EF``). Above it, only the first two
    bytes of four, which name the 4,096 code points a character is among: a character among
    the same as one of ``chars`` is a candidate, and the escape decides (the emoji's
    U+1F000.. and CJK extension B's U+20000.. are among none). Exact patterns for the 6,000
    characters there would cost tens of milliseconds to build."""
    leads: dict[int, set[bytes]] = {}
    for char in chars:
        code = ord(char)
        encoded = (char.encode("utf-8") if code <= 0xFFFF
                   else bytes((0xF0 | code >> 18, 0x80 | (code >> 12) & 0x3F)))
        leads.setdefault(encoded[0], set()).add(encoded)
    return tuple((lead, re.compile(_byte_sequences(sorted(encoded))))
                 for lead, encoded in sorted(leads.items()))


def _utf8_suspect(document: bytes) -> bool:
    """Whether the UTF-8 ``document`` may hold a character :func:`json_text` escapes (lone
    surrogates aside, which valid UTF-8 cannot hold): one escaped whatever its neighbours, a
    mark, which :func:`json_text` then counts, or a character above the BMP near one of
    those (:func:`_utf8_leads`). A report row is 2-3 KB of mostly Japanese, in which
    Python's regex tries every byte (8-18 us a row) and a loop over each kana's lead byte
    ``E3`` costs more: here each lead byte is looked for with ``memchr`` (an int needle), and
    where one occurs a pattern that starts with it (the regex engine skips to that byte in C)
    tells whether one of the characters follows."""
    if 0x7F in document:  # an int: memchr, several times faster than a bytes needle
        return True
    if document.isascii():  # in C, a word at a time; and the patterns are not needed yet
        return False
    # Every pattern matches the bytes of one character that is not ASCII, so the verdict is
    # the same on those bytes alone (valid UTF-8 keeps each character's bytes together). A
    # scan's rows differ in their ASCII (names, dates, digits) and share their Japanese
    # (the explanations): the verdict is remembered by the rest, a third of the row.
    rest = document.translate(None, _ASCII_BYTES)
    verdict = _SUSPECT_BY_REST.get(rest)
    if verdict is None:
        verdict = any(lead in rest and pattern.search(rest) is not None
                      for lead, pattern in _PATTERNS.utf8_leads)
        if len(_SUSPECT_BY_REST) >= _SUSPECT_BY_REST_MAX:
            _SUSPECT_BY_REST.clear()
        _SUSPECT_BY_REST[rest] = verdict
    return verdict


_ASCII_BYTES = bytes(range(0x80))
_SUSPECT_BY_REST: dict[bytes, bool] = {}
_SUSPECT_BY_REST_MAX = 4096


def json_utf8_checked(document: bytes) -> bytes:
    """A UTF-8 JSON document another encoder wrote (orjson, which refuses lone surrogates and
    leaves every other character raw) as :func:`json_utf8` would write it: unchanged, without
    decoding it, when it holds nothing :func:`json_text` may escape (the common case a scan
    checks on every row)."""
    if document.isascii() and 0x7F not in document:  # _utf8_suspect's first answer, no call
        return document
    return json_utf8(document.decode("utf-8")) if _utf8_suspect(document) else document
