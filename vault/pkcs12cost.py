"""What opening a PKCS#12 file would cost, read before anything tries to open it.

A PKCS#12 names its own key-derivation work: the MAC's iteration count (RFC 7292 MacData), and
the iteration count (or scrypt's cost) of each encrypted part. OpenSSL runs them as written, for
every password tried, without a limit: a 563-byte file asking for 200,000,000 MAC rounds held a
scan (and the daemon, and ``vault import``) for 47 seconds, 2**31 - 1 rounds for a quarter of an
hour (review 12). OpenSSL writes 2,048, Java's keytool 10,000, OWASP asks up to 600,000 of a
password store; :data:`MAX_ROUNDS` is well above every honest file and costs a fraction of a
second.

The walk reads every DER element of the file that is not encrypted (a loop with an explicit
stack: no recursion on the input's nesting, each header read once), descending into OCTET
STRINGs that hold DER (where PKCS#12 wraps its contents), and adds up the work every
password-based algorithm it finds asks for. What lies inside an encrypted part cannot be read
before it is decrypted: a key bag hidden there may name a count of its own, which only the
library sees (SECURITY.md says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_ROUNDS", "key_derivation_rounds", "looks_like_pfx"]

MAX_ROUNDS = 1_000_000
"""The most key-derivation rounds (all the file's counts together) a PKCS#12 may ask for to be
opened."""

_MAX_ELEMENTS = 200_000
"""Elements walked at most (a PKCS#12 of a few certificates has a few hundred)."""

# RFC 7292 Appendix C (pkcs-12PbeIds), PKCS#5 PBES1 and PBKDF2, RFC 7914 scrypt: DER of the OIDs.
_PKCS12_PBE_PREFIX = bytes.fromhex("2a864886f70d010c01")  # 1.2.840.113549.1.12.1.x
_PBES1 = {bytes.fromhex("2a864886f70d0105") + bytes([n]) for n in (1, 3, 4, 6, 10, 11)}
_PBKDF2 = bytes.fromhex("2a864886f70d01050c")  # 1.2.840.113549.1.5.12
_SCRYPT = bytes.fromhex("2b06010401da470b")  # 1.3.6.1.4.1.11591.4.11
_PKCS7_DATA = bytes.fromhex("2a864886f70d010701")
_PKCS7_SIGNED = bytes.fromhex("2a864886f70d010702")

_SEQUENCE, _INTEGER, _OCTET_STRING, _OID = 0x30, 0x02, 0x04, 0x06
_CONSTRUCTED_OCTET_STRING = 0x24
_MAX_COPIED = 4
"""Bytes copied out of BER's segmented OCTET STRINGs, at most, in multiples of the file."""


class _NotBerError(Exception):
    pass


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int | None]:
    """(tag, content start, content end; ``None``: BER's indefinite length) at ``pos``."""
    if pos + 2 > end:
        raise _NotBerError
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:  # a high tag number: nothing PKCS#12 uses
        raise _NotBerError
    if first == 0x80:
        if not tag & 0x20:  # only a constructed element may have an indefinite length
            raise _NotBerError
        return tag, pos + 2, None
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if count > 4 or pos + 2 + count > end:
            raise _NotBerError
        start = pos + 2 + count
        length = int.from_bytes(data[pos + 2:start], "big")
    if start + length > end:
        raise _NotBerError
    return tag, start, start + length


def _count(data: bytes, start: int, end: int) -> int:
    """An INTEGER's value, saturated at 2**63 (no count worth running is near it)."""
    if end == start or end - start > 8:
        return 0 if end == start else 1 << 63
    return max(int.from_bytes(data[start:end], "big", signed=True), 0)


@dataclass(slots=True)
class _Open:
    """An element being walked: its children stream past as the walk meets them."""

    tag: int
    end: int | None
    role: str = ""
    """``pfx``, ``mac`` (MacData), ``params`` (of :attr:`oid`) or ``""``."""
    oid: bytes = b""
    children: int = 0
    last_oid: bytes = b""
    last_oid_at: int = -1
    counts: list[int] = field(default_factory=list)
    """``params`` and ``mac``: its direct children's values by position (-1: not an
    INTEGER)."""
    segments: list[bytes] | None = None
    """A segmented OCTET STRING's parts (BER)."""


def _params_rounds(oid: bytes, counts: list[int]) -> int:
    """The rounds an AlgorithmIdentifier asks for, from the INTEGERs of its parameters (by
    position; -1 where a field is not an INTEGER). 0: not password-based."""
    def at(i: int) -> int:
        return counts[i] if i < len(counts) and counts[i] >= 0 else 0

    if oid.startswith(_PKCS12_PBE_PREFIX) or oid in _PBES1 or oid == _PBKDF2:
        return at(1)  # { salt, iterations, ... }
    if oid == _SCRYPT:
        return at(1) * at(2) * at(3)  # { salt, N, r, p, ... }
    return 0


def _walk(data: bytes, *, outer: bool, regions: list[bytes], budget: list[int]) -> int:
    """The rounds named in one region (the file, or DER an OCTET STRING holds), adding the
    regions found wrapped in it to ``regions``. A single pass over the headers, a stack of the
    elements open around the position: BER's indefinite lengths close on their end-of-contents
    octets. Raises :class:`_NotBerError` where the region is not BER."""
    rounds = 0
    stack: list[_Open] = []
    pos, size = 0, len(data)
    walked = 0
    while True:
        while stack and stack[-1].end == pos:  # definite elements ending here
            rounds += _close(stack.pop(), stack, regions, budget)
        if pos >= size:
            if stack:
                raise _NotBerError  # an element left open: truncated
            return rounds
        if not outer and not stack and pos > 0:
            return rounds  # the wrapped DER is one element; what follows is not ours
        parent = stack[-1] if stack else None
        limit = size if parent is None or parent.end is None else parent.end
        if data[pos] == 0 and pos + 1 < size and data[pos + 1] == 0:
            if parent is None or parent.end is not None:
                raise _NotBerError
            pos += 2  # end-of-contents: the indefinite parent closes
            rounds += _close(stack.pop(), stack, regions, budget)
            continue
        tag, start, end = _header(data, pos, limit)
        walked += 1
        if walked > _MAX_ELEMENTS:
            raise _TooCostlyError
        index = -1
        if parent is not None:
            index = parent.children
            parent.children += 1
        role, of = "", b""
        if parent is not None and tag == _SEQUENCE:
            if parent.role == "pfx" and index == 2:
                role = "mac"
            elif parent.last_oid and parent.last_oid_at == index - 1:
                role, of = "params", parent.last_oid
        if parent is None and outer and tag == _SEQUENCE:
            role = "pfx"
        if tag & 0x20:
            if parent is not None and parent.role in ("params", "mac"):
                parent.counts.append(-1)
            opened = _Open(tag=tag, end=end, role=role, oid=of)
            if tag == _CONSTRUCTED_OCTET_STRING:
                opened.segments = []
            stack.append(opened)
            pos = start
            continue
        if end is None:  # (primitive elements always have a definite length)
            raise _NotBerError
        if parent is not None:
            if tag == _OID:
                parent.last_oid, parent.last_oid_at = data[start:end], index
            if parent.role in ("params", "mac"):
                parent.counts.append(_count(data, start, end) if tag == _INTEGER else -1)
            if parent.segments is not None and tag == _OCTET_STRING:
                _take(budget, end - start)
                parent.segments.append(data[start:end])
        if tag == _OCTET_STRING and (parent is None or parent.segments is None) \
                and end - start >= 2 and data[start] in (0x30, 0x31):
            regions.append(data[start:end])
        pos = end


class _TooCostlyError(Exception):
    pass


def _take(budget: list[int], amount: int) -> None:
    budget[0] -= amount
    if budget[0] < 0:
        raise _TooCostlyError


def _close(element: _Open, stack: list[_Open], regions: list[bytes],
           budget: list[int]) -> int:
    """What ``element`` adds once all of it was walked."""
    if element.segments is not None:
        joined = b"".join(element.segments)
        if stack and stack[-1].segments is not None:  # a segment of a segmented string
            _take(budget, len(joined))
            stack[-1].segments.append(joined)
        elif len(joined) >= 2 and joined[0] in (0x30, 0x31):
            regions.append(joined)
    if element.role == "params":
        return _params_rounds(element.oid, element.counts)
    if element.role == "mac":  # MacData ::= SEQUENCE { mac, macSalt, iterations DEFAULT 1 }
        counts = element.counts
        return counts[2] if len(counts) >= 3 and counts[2] >= 0 else 1
    return 0


def key_derivation_rounds(data: bytes) -> int:
    """The key-derivation rounds opening ``data`` asks for per password, over every part not
    encrypted: the MAC's iterations (default 1) and each password-based algorithm's count
    (scrypt: N x r x p). 0 for what is not BER at all (the library says what it is). More than
    :data:`MAX_ROUNDS` for a file whose outline no honest file has (hundreds of thousands of
    elements, segmented strings copied over and over)."""
    regions: list[bytes] = []
    budget = [_MAX_COPIED * len(data) + 1024]
    try:
        total = _walk(data, outer=True, regions=regions, budget=budget)
    except _TooCostlyError:
        return MAX_ROUNDS + 1
    except _NotBerError:
        return 0  # damaged, or no PKCS#12: the library refuses it without deriving a key
    while regions and total <= MAX_ROUNDS:
        region = regions.pop()
        try:
            total += _walk(region, outer=False, regions=regions, budget=budget)
        except _NotBerError:
            continue  # bytes that only looked like DER (a salt, a digest, ciphertext)
        except _TooCostlyError:
            return MAX_ROUNDS + 1
    return total


def looks_like_pfx(data: bytes) -> bool:
    """Whether ``data`` begins as a PKCS#12 PFX does (SEQUENCE { INTEGER 3, ContentInfo of
    data or signedData ...}), whole or not: what tells a truncated PKCS#12 from a document."""
    try:
        tag, start, _end = _header(data, 0, len(data) + (1 << 32))
        if tag != _SEQUENCE or data[start:start + 3] != b"\x02\x01\x03":
            return False
        tag, info, _end = _header(data, start + 3, len(data) + (1 << 32))
        if tag != _SEQUENCE or data[info] != _OID:
            return False
        return data[info + 2:info + 2 + data[info + 1]] in (_PKCS7_DATA, _PKCS7_SIGNED)
    except (_NotBerError, IndexError):
        return False
