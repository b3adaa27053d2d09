"""Hostile file content: bounded time, no recursion on its structure, accounted for.

Time bounds here are generous on purpose (a loaded CI machine must not flake): they catch a
quadratic reader (1 MiB of BEGIN lines took minutes), not a slow one. The linear growth itself
is measured by ``bench/bench_hostile_pem.py``.
"""

from __future__ import annotations

import time

import pytest

from agent.formats import parse_content
from tests.certfactory import make_cert

MIB = 1024 * 1024
_GENEROUS_SECONDS = 20.0


def _hostile(shape: str, size: int) -> bytes:
    pattern = {
        "begin-lines": b"-----BEGIN CERTIFICATE-----\n",
        "bad-blocks": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "tiny-der": b"\x30\x00",
        "dashes": b"-",
    }[shape]
    data = (pattern * (size // len(pattern) + 1))[:size]
    return data + b"-----BEGIN " if shape == "dashes" else data


@pytest.mark.parametrize("shape", ["begin-lines", "bad-blocks", "tiny-der", "dashes"])
def test_one_mib_of_hostile_content_is_read_in_bounded_time(shape: str) -> None:
    data = _hostile(shape, MIB)
    started = time.perf_counter()
    parsed = parse_content(data, path="hostile.pem")
    elapsed = time.perf_counter() - started
    assert parsed.error is not None
    assert elapsed < _GENEROUS_SECONDS


def test_a_thousand_nested_begin_lines_do_not_recurse() -> None:
    # The reader used to re-parse what followed each stray BEGIN by calling itself: ~1,000
    # of them raised RecursionError, which took the whole scan (and the daemon) down.
    issued = make_cert(sans=("after.example",))
    data = b"-----BEGIN CERTIFICATE-----\n" * 1000 + issued.pem
    parsed = parse_content(data, path="nested.pem")
    assert parsed.error is not None
    assert parsed.error.code == "truncated"
    assert "not read" in parsed.error.message


def test_a_few_stray_begin_lines_before_a_certificate_keep_it() -> None:
    issued = make_cert(sans=("after.example",))
    data = b"-----BEGIN CERTIFICATE-----\n" * 10 + issued.pem
    parsed = parse_content(data, path="nested.pem")
    assert [c.facts.sha256 for c in parsed.certificates] == [issued.sha256]
    assert [(p.code, p.index) for p in parsed.problems] == [("truncated", i) for i in range(10)]


@pytest.mark.parametrize("depth", [1000, 20000])
def test_deeply_nested_der_does_not_recurse(depth: int) -> None:
    # SEQUENCE { SEQUENCE { ... } } with lengths that fit: a DER walker that recursed on the
    # input's nesting would overflow the stack; each candidate shape is a fixed-depth loop.
    inner = b""
    for _ in range(depth):
        length = len(inner)
        header = (bytes([length]) if length < 0x80 else
                  b"\x84" + length.to_bytes(4, "big"))
        inner = b"\x30" + header + inner
    parsed = parse_content(inner, path="deep.der")
    assert parsed.error is not None


def test_deeply_nested_pkcs12_shape_does_not_recurse() -> None:
    inner = b""
    for _ in range(5000):
        inner = b"\x30\x84" + len(inner).to_bytes(4, "big") + inner
    data = b"\x30\x84" + (len(inner) + 3).to_bytes(4, "big") + b"\x02\x01\x03" + inner
    parsed = parse_content(data, path="deep.p12")
    assert parsed.error is not None
