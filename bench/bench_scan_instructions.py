"""Benchmark: `certescrow scan` against the floor, counted in CPU instructions (callgrind).

Wall and CPU seconds on a shared 2-core virtual machine move by 20-40 % between runs, which
hides any change smaller than that. ``valgrind --tool=callgrind`` counts the instructions a
process executes: the same count for the same code and input whatever else the machine does.
This script counts, per certificate, in one run:

* floor         - read each file and ``x509.load_pem_x509_certificate`` it (the issue's floor);
* floor-fields  - the floor plus reading, with cryptography, every field a scan reports;
* DIY           - ``bench/diy_scan.py``, the scan a user would write (issue 12's baseline);
* scan --json   - the real ``certescrow scan --json --jobs 1`` process, output to /dev/null.

Each is run twice, on ``--files`` certificates and on ``--base`` of them; the difference divided
by the difference in files is the marginal cost of one certificate (interpreter start, imports
and the catalogue cancel out).

``--stages`` counts instead where a scan's instructions go: the scan's own pipeline, in one
process, in batches of 250 files as ``agent.scanpool`` runs it, stopped after each stage (walk;
read the bytes; parse and read the fields; classify; build the rows; render the JSON lines).

Instructions are not seconds (a syscall counts for little, a cache miss for nothing), so this
complements ``bench_scan.py``; it does not replace it.

Usage::

    .venv/bin/python bench/bench_scan_instructions.py [--files 2000] [--base 100] [--stages]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_scan import build_store, store_files  # noqa: E402

_FLOOR = """
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
fields = sys.argv[1] == "fields"
for path in open(sys.argv[2]).read().split("\\n"):
    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    if fields:
        _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
             cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number,
             [ext.value for ext in cert.extensions], cert.public_key().public_bytes(*spki),
             cert.fingerprint(hashes.SHA256()), cert.signature_algorithm_oid)
"""

_CLI = "import sys\nfrom agent.main import main\nmain(sys.argv[1:])\n"

_STAGE_NAMES = ("walk", "bytes", "parse", "classify", "rows", "render")
_STAGES = """
import gc, sys
from datetime import UTC, datetime
from pathlib import Path
from agent.records import ReadLimits
from agent.report import iter_report, render_line
from agent.safeio import read_bytes
from agent.scan import directory_batches, read_target
from agent.x509facts import recording_warnings
from policy.catalogue import load_catalogue
from policy.classification import classify_certificate
from policy.intake import Binding
from policy.settings import PolicySettings
gc.disable()  # as the scan does (agent.cli._gc_paused)
root, stage = Path(sys.argv[1]), sys.argv[2]
at = datetime(2026, 3, 1, tzinfo=UTC)
catalogue, binding = load_catalogue(None), Binding()
settings, limits = PolicySettings(), ReadLimits()
for batch in directory_batches([root], limits=limits, max_files=250):
    if stage == "walk":
        continue
    if stage == "bytes":
        for target in batch.targets:
            read_bytes(target, limits=limits)
        continue
    with recording_warnings():
        results = [read_target(t, limits=limits) for t in batch.targets]
    if stage == "classify":
        for result in results:
            for record in result.certificates:
                classify_certificate(record.facts, catalogue, binding=binding, at=at,
                                     settings=settings)
    elif stage in ("rows", "render"):
        items = iter_report(results, catalogue, binding=binding, at=at, settings=settings)
        if stage == "render":
            b",\\n".join(render_line(item, "json") for item in items)
        else:
            list(items)
"""


def _instructions(argv: list[str], env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        with open(os.devnull, "wb") as sink:
            done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                   *argv], stdout=sink, stderr=subprocess.PIPE, env=env,
                                  check=False)
        found = re.search(rb"Collected : (\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"callgrind failed ({done.returncode}): {done.stderr[-400:]!r}")
        return int(found.group(1))


def _subset(files: list[Path], count: int, where: Path) -> Path:
    """A store of the first ``count`` files, as symbolic links (the scan follows them)."""
    store = where / f"subset-{count}"
    store.mkdir()
    for n, path in enumerate(files[:count]):
        (store / f"{n:06}.pem").symlink_to(path)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--base", type=int, default=100)
    parser.add_argument("--stages", action="store_true",
                        help="where scan --json's instructions go, stage by stage, instead")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    files = store_files(build_store(20000))[: args.files]
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-03-01T00:00:00Z"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled bytecode
    subprocess.run([sys.executable, "-c", _CLI, "--help"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    if args.stages:
        _stages(files, args.files, args.base, env)
        return
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        lists = {}
        for count in (args.base, args.files):
            listing = where / f"files-{count}.txt"
            listing.write_text("\n".join(str(p) for p in files[:count]))
            lists[count] = listing
        for name, mode in (("floor (read + load_pem)", "bare"),
                           ("floor-fields (+ read the fields)", "fields")):
            small, large = (_instructions([sys.executable, "-c", _FLOOR, mode, str(lists[n])],
                                          env) for n in (args.base, args.files))
            rows.append((name, (large - small) / (args.files - args.base)))
        stores = {n: _subset(files, n, where) for n in (args.base, args.files)}
        small, large = (_instructions([sys.executable, str(ROOT / "bench" / "diy_scan.py"),
                                       str(stores[n])], env)
                        for n in (args.base, args.files))
        rows.append(("DIY script (bench/diy_scan.py)", (large - small) / (args.files - args.base)))
        small, large = (_instructions([sys.executable, "-c", _CLI, "scan", "--json", "--jobs",
                                       "1", str(stores[n])], env)
                        for n in (args.base, args.files))
        rows.append(("scan --json --jobs 1 (CLI)", (large - small) / (args.files - args.base)))
    floor, fields, diy = rows[0][1], rows[1][1], rows[2][1]
    print(f"# callgrind, marginal instructions per certificate ({args.files} - {args.base} "
          f"files), python {sys.version.split()[0]}")
    print(f"{'what':<34} {'instr/cert':>11} {'vs floor':>9} {'vs fields':>10} {'vs DIY':>8}")
    for name, per in rows:
        print(f"{name:<34} {per:>11,.0f} {per / floor:>8.2f}x {per / fields:>9.2f}x "
              f"{per / diy:>7.2f}x")


def _stages(files: list[Path], count: int, base: int, env: dict[str, str]) -> None:
    env = {**env, "PYTHONPATH": str(ROOT)}
    print(f"# callgrind, marginal instructions per certificate ({count} - {base} files), "
          f"the scan's pipeline stopped after each stage, python {sys.version.split()[0]}")
    print(f"{'after':<10} {'instr/cert':>11} {'this stage':>11}")
    before = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        stores = {n: _subset(files, n, Path(tmp)) for n in (base, count)}
        for stage in _STAGE_NAMES:
            small, large = (_instructions([sys.executable, "-c", _STAGES, str(stores[n]), stage],
                                          env) for n in (base, count))
            per = (large - small) / (count - base)
            print(f"{stage:<10} {per:>11,.0f} {per - before:>11,.0f}")
            before = per


if __name__ == "__main__":
    main()
