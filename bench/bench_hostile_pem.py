"""Hostile PEM files from 1 KiB to 10 MiB: reading time must grow linearly with size.

    .venv/bin/python bench/bench_hostile_pem.py [--max-mib 10] [--repeat 3]

The reader used to look for a block's END from every BEGIN (a lazy pattern) and re-parse what
followed a BEGIN whose END was missing by calling itself: a file of BEGIN lines took 10 s at
256 KiB and hours at 10 MiB, and ~1,000 of them raised RecursionError. Each shape below is
read at sizes growing by 4x (1 KiB ... the cap, 10 MiB); the table prints the best of
``--repeat`` runs in milliseconds and, per shape, the ratio of each time to the previous size's
(linear: ~4; quadratic: ~16), plus microseconds per KiB.

Shapes:

* ``begin-lines``: ``-----BEGIN CERTIFICATE-----`` lines, no END (the reported case);
* ``begin-then-base64``: one BEGIN, then base64 lines with no END (one long body);
* ``bad-blocks``: complete blocks whose body is not a certificate;
* ``dashes``: dashes with one BEGIN at the very end (marker search at every byte);
* ``long-label``: ``-----BEGIN`` then one label-looking run with no closing dashes;
* ``tiny-der``: ``30 00`` repeated (empty DER SEQUENCEs: one element every 2 bytes);
* ``certificates``: real certificates back to back (the honest baseline: all parsed).

Shapes with many faults stop after the reader's per-file problem limit (64): for them the
time levels off, which is the point; the others are read to the end.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.formats import parse_content  # noqa: E402
from tests.certfactory import make_cert  # noqa: E402

KIB = 1024


def _repeat(pattern: bytes, size: int) -> bytes:
    return (pattern * (size // len(pattern) + 1))[:size]


def _shapes() -> dict[str, Callable[[int], bytes]]:
    certificate = make_cert(sans=("bench.example",)).pem
    base64_line = base64.b64encode(bytes(range(48))) + b"\n"
    return {
        "begin-lines": lambda n: _repeat(b"-----BEGIN CERTIFICATE-----\n", n),
        "begin-then-base64": lambda n: b"-----BEGIN CERTIFICATE-----\n"
        + _repeat(base64_line, n - 28),
        "bad-blocks": lambda n: _repeat(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", n),
        "dashes": lambda n: _repeat(b"-", n - 11) + b"-----BEGIN ",
        "long-label": lambda n: b"-----BEGIN " + _repeat(b"A", n - 11),
        "tiny-der": lambda n: _repeat(b"\x30\x00", n),
        "certificates": lambda n: _repeat(certificate, max(n, len(certificate))),
    }


def _best(data: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        parse_content(data, path="hostile.pem")
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mib", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = []
    size = KIB
    while size <= args.max_mib * KIB * KIB:
        sizes.append(size)
        size *= 4
    if sizes[-1] < args.max_mib * KIB * KIB:
        sizes.append(int(args.max_mib * KIB * KIB))
    print(f"Python {sys.version.split()[0]}; best of {args.repeat}; "
          "ms (ratio to the previous size) [us/KiB]")
    header = f"{'shape':<18}" + "".join(f"{_size_name(s):>24}" for s in sizes)
    print(header)
    for name, make in _shapes().items():
        cells: list[str] = []
        previous: float | None = None
        for size in sizes:
            seconds = _best(make(size), args.repeat)
            ratio = f"({seconds / previous:4.1f}x)" if previous else "       "
            per_kib = seconds * 1e6 / (size / KIB)
            cells.append(f"{seconds * 1000:9.2f} {ratio} [{per_kib:5.1f}]")
            previous = max(seconds, 1e-6)
        print(f"{name:<18}" + "".join(f"{cell:>24}" for cell in cells))
    print(f"size ratio between columns: 4x (last column: {sizes[-1] / sizes[-2]:.1f}x)")


def _size_name(size: int) -> str:
    if size >= KIB * KIB:
        return f"{size / KIB / KIB:g} MiB"
    return f"{size // KIB} KiB"


if __name__ == "__main__":
    main()
