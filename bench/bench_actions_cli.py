"""`certescrow policy actions` over a large ledger, as a user runs it: text and --json.

Issue 13 measured 8.5 s (text) and 12.5 s / 1.09 GiB (--json) over 100,000 contracts, the JSON
cost being a whole-document string. The command now streams the JSON array element by element
and writes terminal lines in batches; this script keeps that honest. It builds (or reuses,
``--ledger PATH``) the ledger ``bench_policy.py`` builds, runs the real command in a child
process for each output form, and prints wall time, CPU time (user + system of the child: the
steadier number on a shared machine), peak resident memory (the child's ``ru_maxrss``) and the
output's size. Usage:

    .venv/bin/python bench/bench_actions_cli.py [--contracts 100000] [--ledger PATH] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_policy import AT, build  # noqa: E402

CERTESCROW = Path(sys.executable).with_name("certescrow")


def run(args: list[str], out: Path) -> tuple[float, float, float, int]:
    """Wall s, CPU s, peak RSS MiB and output bytes of one ``certescrow`` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with out.open("wb") as sink:
        done = subprocess.run([str(CERTESCROW), *args], stdout=sink, stderr=subprocess.PIPE,
                              check=False, env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"certescrow {' '.join(args)}: exit {done.returncode}: "
                 f"{done.stderr.decode(errors='replace')[:500]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the smaller form first.
    return wall, cpu, after.ru_maxrss / 1024, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=100_000)
    parser.add_argument("--ledger", type=Path, default=None,
                        help="reuse this ledger when it exists (else build it here)")
    parser.add_argument("--keep", action="store_true", help="keep the ledger and outputs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    ledger = args.ledger or workdir / "ledger.sqlite3"
    if not ledger.exists():
        print(f"building {args.contracts:,} contracts in {ledger} …", file=sys.stderr)
        build(ledger, args.contracts)
    at = AT.isoformat()
    base = ["policy", "actions", "--at", at, "--ledger", str(ledger)]
    print(f"certescrow policy actions over {ledger} ({ledger.stat().st_size / 2**20:.0f} MiB), "
          f"--at {at}, python {sys.version.split()[0]}")
    print("| output | wall s | CPU s | peak RSS MiB | output MiB |")
    print("|--------|--------|-------|--------------|------------|")
    for label, extra in (("text", []), ("--json", ["--json"])):
        wall, cpu, rss, size = run(base + extra, workdir / f"actions-{label.strip('-')}.out")
        print(f"| {label} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {size / 2**20:.0f} |")
    if args.keep:
        print(f"kept in {workdir}", file=sys.stderr)
    else:
        for path in workdir.iterdir():
            if path != args.ledger:
                path.unlink()
        if not any(workdir.iterdir()):
            workdir.rmdir()


if __name__ == "__main__":
    main()
