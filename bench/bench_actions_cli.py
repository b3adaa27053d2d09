"""`certescrow policy actions` over a large ledger, as a user runs it: the projection against the
fold, text and --json, on SQLite and on PostgreSQL, in one run.

Issue 13 measured 8.5 s (text) and 12.5 s / 1.09 GiB (--json) over 100,000 contracts by
refolding every journal; the target is under 1 s on both backends with memory flat in the
number of contracts. This script builds the ledger ``bench_policy.py`` builds, as it stood at
its ``AT`` (the events dated by then, recorded then: the projection's cached actions are those
of the day asked about, as for a ledger written up to that day), in an SQLite file and in a
PostgreSQL schema of its own, then runs the real command in a child process for each backend,
path and output form:

* projection: ``policy actions --at AT`` (current knowledge: the projection answers);
* fold:       ``policy actions --at AT --as-recorded AT`` (``--as-recorded`` always folds
              the journal; every event was recorded by ``AT``, so it asks the same question);
* ``contract list --at AT`` (text and ``--json``) and ``policy forecast --json`` through the
  projection (no target; their memory must stay flat too).

It prints wall time, CPU time (user + system of the child: the steadier number on a shared
machine; the projection and ``contract list`` rows are the faster of two runs, the ledger's
pages then in the page cache, as for a desk that asks again and again), the child's own
peak resident memory (``wait4`` in a runner started before any ledger is built), the output's
size, the ratio of the fold's wall time to the projection's, and whether both paths printed
the same bytes; and, as the floor under every row, the same command on an empty ledger (the
interpreter and the ``certescrow`` imports).
Usage:

    .venv/bin/python bench/bench_actions_cli.py [--contracts 100000] [--ledger PATH]
        [--postgres DSN | --no-postgres] [--keep]

PostgreSQL: ``--postgres DSN`` (default ``$CERTESCROW_TEST_POSTGRES``, else the local test
server); a schema is created for the run and dropped afterwards. Its journal is the SQLite
ledger's, copied (``COPY``), and its projection is rebuilt by the ledger itself
(``rebuild_projection``, as ``policy verify --repair`` does).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_policy import AT, build  # noqa: E402

CERTESCROW = Path(sys.executable).with_name("certescrow")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


_RUNNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv, out = json.loads(line)
    start = time.perf_counter()
    with open(out, "wb") as sink:
        child = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE,
                                 env={**os.environ, "COLUMNS": "200"})
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
    print(json.dumps([time.perf_counter() - start, os.waitstatus_to_exitcode(status),
                      usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                      err.decode(errors="replace")[:500]]), flush=True)
"""
"""Runs each measured command. Started while this script is small: a child's ``ru_maxrss``
counts the image it was forked from, so children forked from this process after it built a
ledger would report its size, not theirs."""
_runner: subprocess.Popen[str] | None = None


def start_runner() -> None:
    global _runner
    _runner = subprocess.Popen([sys.executable, "-c", _RUNNER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)


def run(args: list[str], out: Path) -> tuple[float, float, float, int]:
    """Wall s, CPU s, the child's own peak RSS MiB and output bytes of one ``certescrow`` run."""
    assert _runner is not None
    assert _runner.stdin is not None
    assert _runner.stdout is not None
    _runner.stdin.write(json.dumps([[str(CERTESCROW), *args], str(out)]) + "\n")
    _runner.stdin.flush()
    wall, code, cpu, maxrss, err = json.loads(_runner.stdout.readline())
    if code != 0:
        sys.exit(f"certescrow {' '.join(args)}: exit {code}: {err}")
    return wall, cpu, maxrss / 1024, out.stat().st_size


@contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    import psycopg

    schema = f"certescrow_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(dsn, autocommit=True)
    try:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        parts = urllib.parse.urlsplit(dsn)
        query = [*urllib.parse.parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
        yield urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def copy_to_postgres(source: Path, dsn: str) -> None:
    """The SQLite ledger's journal into a new PostgreSQL ledger (COPY: building is not what is
    measured), then its projection rebuilt by the ledger (``rebuild_projection``, what
    ``policy verify --repair`` runs: one ordered pass over the journal)."""
    import sqlite3

    import psycopg

    from policy.ledger import Ledger

    Ledger.open(dsn).close()  # the schema, at the current version
    lite = sqlite3.connect(source)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(
            "COPY journal (contract_id, kind, at_utc, payload, dedup_key, recorded_utc) "
            "FROM STDIN") as copy:
        for row in lite.execute("SELECT contract_id, kind, at_utc, payload, dedup_key, "
                                "recorded_utc FROM journal ORDER BY seq"):
            copy.write_row(row)
    lite.close()
    with Ledger.open(dsn) as ledger:
        ledger.rebuild_projection(at=AT)


def _warm(args: list[str], out: Path, twice: bool) -> tuple[float, float, float, int]:
    """A run with the ledger's pages in the page cache: the faster of two (a desk asks again
    and again; the first run after the ledger was built, or after other work evicted its
    gigabyte, reads it from disk). The slow fold runs once."""
    first = run(args, out)
    if not twice:
        return first
    second = run(args, out)
    return min(first, second)


def measure(label: str, ledger: str, workdir: Path) -> None:
    at = AT.isoformat()
    base = ["policy", "actions", "--at", at, "--ledger", ledger]
    for form, extra in (("text", []), ("--json", ["--json"])):
        results = {}
        for path, more in (("projection", []), ("fold", ["--as-recorded", at])):
            out = workdir / f"{label}-{path}-{form.strip('-')}.out"
            results[path] = (_warm(base + extra + more, out, path == "projection"), out)
        same = filecmp.cmp(results["projection"][1], results["fold"][1], shallow=False)
        ratio = results["fold"][0][0] / results["projection"][0][0]
        for path in ("projection", "fold"):
            (wall, cpu, rss, size), out = results[path]
            print(f"| {label} | {path} | {form} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | "
                  f"{size / 2**20:.1f} | "
                  + (f"{ratio:.1f}x | {'yes' if same else 'NO'} |" if path == "projection"
                     else "1.0x | |"))
            if path == "fold":
                out.unlink()
        results["projection"][1].unlink()


def measure_list(label: str, ledger: str, workdir: Path) -> None:
    """``contract list`` (text and ``--json``) and ``policy forecast --json`` through the
    projection: no target of their own in issue 13, but memory must stay flat as well (they
    stream their rows)."""
    at = AT.isoformat()
    for command, form, extra in (("contract list", "text", []),
                                 ("contract list", "--json", ["--json"]),
                                 ("policy forecast", "--json", ["--json"])):
        out = workdir / f"{label}-{command.split()[1]}-{form.strip('-')}.out"
        wall, cpu, rss, size = _warm([*command.split(), "--at", at, "--ledger", ledger,
                                      *extra], out, command == "contract list")
        print(f"| {label} | {command} | {form} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | "
              f"{size / 2**20:.1f} | | |")
        out.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=100_000)
    parser.add_argument("--ledger", type=Path, default=None,
                        help="reuse this SQLite ledger when it exists (else build it here)")
    parser.add_argument("--postgres", default=os.environ.get("CERTESCROW_TEST_POSTGRES")
                        or DEFAULT_DSN, help="PostgreSQL server for the second backend")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite ledger")
    args = parser.parse_args()
    start_runner()
    workdir = Path(tempfile.mkdtemp(prefix="bench-actions-"))
    ledger = args.ledger or workdir / "ledger.sqlite3"
    builds: list[str] = []
    if not ledger.exists():
        print(f"building {args.contracts:,} contracts in {ledger} …", file=sys.stderr)
        start = time.perf_counter()
        build(ledger, args.contracts, recorded=AT)
        builds.append(f"SQLite {time.perf_counter() - start:.0f} s")
    print(f"certescrow policy actions, {args.contracts:,} contracts, --at {AT.isoformat()}, "
          f"python {sys.version.split()[0]}, cpus {os.cpu_count()}, "
          f"loadavg {os.getloadavg()[0]:.1f}")
    print("| backend | path | output | wall s | CPU s | peak RSS MiB | output MiB "
          "| fold/projection wall | same bytes |")
    print("|---------|------|--------|--------|-------|--------------|------------"
          "|---------------------|------------|")
    empty = workdir / "empty.sqlite3"
    build(empty, 0)
    wall, cpu, rss, _ = run(["policy", "actions", "--at", AT.isoformat(), "--ledger",
                             str(empty)], workdir / "empty.out")
    print(f"| (startup: an empty ledger) | - | text | {wall:.2f} | {cpu:.2f} | {rss:.0f} | 0.0 "
          "| | |")
    (workdir / "empty.out").unlink()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{empty}{suffix}").unlink(missing_ok=True)
    measure("SQLite", str(ledger), workdir)
    measure_list("SQLite", str(ledger), workdir)
    if not args.no_postgres:
        with postgres_schema(args.postgres) as dsn:
            print("copying the journal to PostgreSQL, rebuilding its projection …",
                  file=sys.stderr)
            start = time.perf_counter()
            copy_to_postgres(ledger, dsn)
            builds.append(f"PostgreSQL: journal copied and projection rebuilt "
                          f"(policy verify --repair's path) {time.perf_counter() - start:.0f} s")
            measure("PostgreSQL", dsn, workdir)
            measure_list("PostgreSQL", dsn, workdir)
    if builds:
        print(f"(ledger builds, projection included: {', '.join(builds)})")
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
