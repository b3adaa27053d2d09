"""Benchmark: `certescrow scan` against a bare cryptography loop, on stores of 20k and 100k.

Prints, in one run, per store size:

* floor      - a bare loop: read each file, ``x509.load_pem_x509_certificate`` (the least any
               scanner must do);
* read+facts - ``scan_paths`` alone (safe I/O, format recognition, every field read);
* scan       - ``scan_paths`` + ``build_report`` (policy classification of every certificate):
               what ``certescrow scan`` does, as a library call; ratio to the floor (target
               <= 1.5x);
* cli --json - the real ``certescrow scan --json DIR > /dev/null`` process, with its peak RSS,
               on one core (``--jobs 1``) and with the default (one worker per CPU);
* openssl    - ``openssl x509 -noout -enddate`` run once per file on a sample, extrapolated
               (what shell scripts do today);
* daemon     - then ``bench_daemon.py`` on the largest size, in its own process: the latency
               from a file change to the daemon's report (skip with ``--daemon-changes 0``).

Stores are generated once (one key, many certificates; ~1,000 files a directory) and cached
under ``bench/out/`` (gitignored). Usage::

    .venv/bin/python bench/bench_scan.py [--sizes 20000,100000] [--no-cli] [--daemon-changes N]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

OUT = ROOT / "bench" / "out"
AT = datetime(2026, 3, 1, tzinfo=UTC)
PER_DIR = 1000


def build_store(count: int) -> Path:
    """A store of ``count`` single-certificate PEM files, cached by size."""
    store = OUT / f"store-{count}"
    marker = OUT / f"store-{count}.complete"  # outside the store: every file in it is scanned
    if marker.exists():
        return store
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench CA Org"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lifetimes = (90, 199, 365, 730)
    for i in range(count):
        directory = store / f"d{i // PER_DIR:04}"
        if i % PER_DIR == 0:
            directory.mkdir(parents=True, exist_ok=True)
        host = f"host{i}.example.jp"
        not_before = start + timedelta(minutes=i)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(i + 1)
            .not_valid_before(not_before)
            .not_valid_after(not_before + timedelta(days=lifetimes[i % 4], seconds=-1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        (directory / f"cert{i}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    marker.write_text(str(count))
    return store


def store_files(store: Path) -> list[Path]:
    return sorted(p for d in sorted(store.iterdir()) if d.is_dir() for p in d.iterdir())


@dataclass(frozen=True)
class Measure:
    wall: float
    cpu: float
    """user + system CPU seconds: the robust number on a shared, loaded machine."""
    count: int = 0
    rss_kib: int | None = None


def _timed(body: Callable[[], int]) -> Measure:
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    count = body()
    return Measure(wall=time.perf_counter() - wall0, cpu=time.process_time() - cpu0,
                   count=count)


def floor(files: list[Path]) -> Measure:
    def body() -> int:
        for path in files:
            with open(path, "rb") as fh:
                x509.load_pem_x509_certificate(fh.read())
        return len(files)

    return _timed(body)


def floor_fields(files: list[Path]) -> Measure:
    """The floor for the *information* a scan reports: read, load, and read with cryptography
    the fields the issue lists (names, dates, SANs, policies, CA flag, key, fingerprint).
    cryptography parses names and extensions lazily, so ``floor`` alone reads none of them."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def body() -> int:
        for path in files:
            with open(path, "rb") as fh:
                cert = x509.load_pem_x509_certificate(fh.read())
            _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                 cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number,
                 [ext.value for ext in cert.extensions], cert.public_key().public_bytes(*spki),
                 cert.fingerprint(hashes.SHA256()), cert.signature_algorithm_oid)
        return len(files)

    return _timed(body)


def scan_only(store: Path) -> Measure:
    from agent.records import ReadLimits
    from agent.scan import scan_paths

    return _timed(lambda: sum(len(r.certificates)
                              for r in scan_paths([store], limits=ReadLimits())))


def scan_and_classify(store: Path) -> Measure:
    from agent.records import ReadLimits
    from agent.report import build_report
    from agent.scan import scan_paths
    from policy.catalogue import load_catalogue
    from policy.category import Category
    from policy.intake import Binding

    catalogue = load_catalogue()

    def body() -> int:
        results = scan_paths([store], limits=ReadLimits())
        report = build_report(results, catalogue, binding=Binding(category=Category.III),
                              at=AT)
        return len(report.rows)

    return _timed(body)


def _child(argv: list[str], env: dict[str, str] | None = None) -> Measure:
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{argv[0]} failed with wait status {status}: {err[-500:]!r}")
    # ru_maxrss from wait4 is carried across execve from this (large) process, so a child
    # that can report its own peak (VmHWM) does.
    marker = err.rfind(b"MAXRSS ")
    rss = int(err[marker + 7:].split()[0]) if marker >= 0 else None
    return Measure(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_kib=rss)


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across execve, so a child forked
# from this (large) process would report this process's peak.
_CLI = (
    "import atexit, re, sys\n"
    "def hwm():\n"
    "    text = open('/proc/self/status').read()\n"
    "    sys.stderr.write('MAXRSS ' + re.search(r'VmHWM:\\s+(\\d+)', text).group(1) + '\\n')\n"
    "atexit.register(hwm)\n"
    "from agent.main import main\n"
    "main(sys.argv[1:])\n"
)


def cli_run(store: Path, jobs: int) -> Measure:
    """The real command (``agent.main:main``, what the ``certescrow`` script runs), output to
    /dev/null, with its own peak RSS (workers' CPU included, their memory not)."""
    return _child([sys.executable, "-c", _CLI, "scan", "--json", "--jobs", str(jobs),
                   str(store)], _cli_env())


def _cli_env() -> dict[str, str]:
    """The command as an installed copy runs: with its compiled bytecode (pip compiles it at
    install; a sandbox that sets PYTHONDONTWRITEBYTECODE would make every run recompile every
    module, ~0.3 s that no user pays)."""
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-03-01T00:00:00Z"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_bytecode() -> None:
    """Compile and cache the bytecode once, outside any measurement."""
    _child([sys.executable, "-c", _CLI, "--help"], _cli_env())


def openssl_sample(files: list[Path], sample: int) -> Measure:
    """One `openssl x509` process per file on a sample; per-file cost (wall, CPU)."""
    step = max(1, len(files) // sample)
    chosen = files[::step][:sample]
    wall = cpu = 0.0
    for path in chosen:
        m = _child(["openssl", "x509", "-noout", "-enddate", "-in", str(path)])
        wall += m.wall
        cpu += m.cpu
    return Measure(wall=wall / len(chosen), cpu=cpu / len(chosen))


def best_of(runs: int, func: Callable[..., Measure], *args: object) -> Measure:
    results = [func(*args) for _ in range(runs)]
    return min(results, key=lambda m: m.cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--runs", type=int, default=2, help="best of N (by CPU time)")
    parser.add_argument("--openssl-sample", type=int, default=200)
    parser.add_argument("--daemon-changes", type=int, default=200,
                        help="then measure the daemon's latency on the largest store with this "
                        "many changes (bench_daemon.py, in its own process); 0 to skip")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()[0]
    print(f"# cpus={os.cpu_count()} python={sys.version.split()[0]} loadavg={load:.1f} "
          f"runs={args.runs} (best by CPU)")
    header = (f"{'store':>7} {'what':<31} {'wall s':>7} {'cpu s':>7} {'cpu us/cert':>11} "
              f"{'cpu/floor':>9} {'cpu/fields':>10} {'wall/floor':>10} {'peak RSS':>9}")
    print(header)
    print("-" * len(header))
    if not args.no_cli:
        warm_bytecode()
    for size in sizes:
        t0 = time.perf_counter()
        store = build_store(size)
        built = time.perf_counter() - t0
        files = store_files(store)
        assert len(files) == size, (len(files), size)
        if built > 1:
            print(f"# built store-{size} in {built:.1f} s")
        m_floor = best_of(args.runs, floor, files)
        m_fields = best_of(args.runs, floor_fields, files)
        m_read = best_of(args.runs, scan_only, store)
        m_scan = best_of(args.runs, scan_and_classify, store)
        assert m_read.count == m_scan.count == size, (m_read.count, m_scan.count, size)
        rows = [("floor (read + load_pem)", m_floor),
                ("floor-fields (+ read the fields)", m_fields),
                ("scan_paths (read + all facts)", m_read),
                ("scan + classify (library)", m_scan)]
        if not args.no_cli:
            rows.append(("scan --json --jobs 1 (CLI)", cli_run(store, 1)))
            rows.append(("scan --json (CLI, default jobs)", cli_run(store, 0)))
        per = openssl_sample(files, args.openssl_sample)
        rows.append((f"openssl x509/file (x{size})",
                     Measure(wall=per.wall * size, cpu=per.cpu * size)))
        for name, m in rows:
            rss = f"{m.rss_kib / 1024:.0f} MiB" if m.rss_kib else ""
            print(f"{size:>7} {name:<31} {m.wall:>7.2f} {m.cpu:>7.2f} "
                  f"{m.cpu / size * 1e6:>11.1f} {m.cpu / m_floor.cpu:>8.2f}x "
                  f"{m.cpu / m_fields.cpu:>9.2f}x {m.wall / m_floor.wall:>9.2f}x {rss:>9}")
        if not args.no_cli:
            cli = rows[5][1]  # scan --json with the default workers: what a user runs
            ratio = cli.wall / m_floor.wall
            verdict = "met" if ratio <= 1.5 else "NOT met"
            print(f"# {size}: target scan <= 1.5x floor (wall): {ratio:.2f}x, {verdict}; "
                  f"against floor-fields: {cli.wall / m_fields.wall:.2f}x wall, "
                  f"{cli.cpu / m_fields.cpu:.2f}x CPU")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"# library runs (this process) peak RSS: {usage.ru_maxrss / 1024:.0f} MiB")
    if args.daemon_changes > 0:
        # Its own process, so that its peak memory is the daemon's, not this run's.
        print(f"\n# daemon latency, {max(sizes)} certificates watched (bench/bench_daemon.py)",
              flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "bench_daemon.py"), "--certs",
                        str(max(sizes)), "--changes", str(args.daemon_changes)], check=True)


if __name__ == "__main__":
    main()
