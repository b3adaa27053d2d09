"""Benchmark: `certescrow scan` against a bare cryptography loop, on stores of 20k and 100k.

Prints, in one run, per store size:

* floor      - a bare loop: read each file, ``x509.load_pem_x509_certificate`` (the least any
               scanner must do);
* read+facts - ``scan_paths`` alone (safe I/O, format recognition, every field read);
* scan       - ``scan_paths`` + ``build_report`` (policy classification of every certificate):
               what ``certescrow scan`` does, as a library call; ratio to the floor (target
               <= 1.5x);
* cli --json - the real ``certescrow scan --json DIR > /dev/null`` process, with its peak RSS;
* openssl    - ``openssl x509 -noout -enddate`` run once per file on a sample, extrapolated
               (what shell scripts do today).

Stores are generated once (one key, many certificates; ~1,000 files a directory) and cached
under ``bench/out/`` (gitignored). Usage::

    .venv/bin/python bench/bench_scan.py [--sizes 20000,100000] [--no-cli]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time
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


def floor(files: list[Path]) -> float:
    started = time.perf_counter()
    for path in files:
        with open(path, "rb") as fh:
            x509.load_pem_x509_certificate(fh.read())
    return time.perf_counter() - started


def floor_fields(files: list[Path]) -> float:
    """The floor for the *information* a scan reports: read, load, and read with cryptography
    the fields the issue lists (names, dates, SANs, policies, CA flag, key, fingerprint).
    cryptography parses names and extensions lazily, so ``floor`` alone reads none of them."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    started = time.perf_counter()
    for path in files:
        with open(path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
             cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number,
             [ext.value for ext in cert.extensions], cert.public_key().public_bytes(*spki),
             cert.fingerprint(hashes.SHA256()), cert.signature_algorithm_oid)
    return time.perf_counter() - started


def scan_only(store: Path) -> tuple[float, int]:
    from agent.records import ReadLimits
    from agent.scan import scan_paths

    started = time.perf_counter()
    results = scan_paths([store], limits=ReadLimits())
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(r.certificates) for r in results)


def scan_and_classify(store: Path) -> tuple[float, int]:
    from agent.records import ReadLimits
    from agent.report import build_report
    from agent.scan import scan_paths
    from policy.catalogue import load_catalogue
    from policy.category import Category
    from policy.intake import Binding

    catalogue = load_catalogue()
    started = time.perf_counter()
    results = scan_paths([store], limits=ReadLimits())
    report = build_report(results, catalogue, binding=Binding(category=Category.III), at=AT)
    elapsed = time.perf_counter() - started
    return elapsed, len(report.rows)


def cli_run(store: Path) -> tuple[float, int]:
    """The real command, output to /dev/null; returns (seconds, peak RSS in KiB)."""
    env = {**os.environ, "CERTESCROW_NOW": "2026-03-01T00:00:00Z"}
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "certescrow"), "scan", "--json",
                                 str(store)], stdout=sink, stderr=subprocess.PIPE, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"certescrow scan failed with wait status {status}")
    return elapsed, usage.ru_maxrss


def openssl_sample(files: list[Path], sample: int) -> float:
    """Seconds per file for one `openssl x509` process per file."""
    step = max(1, len(files) // sample)
    chosen = files[::step][:sample]
    started = time.perf_counter()
    for path in chosen:
        subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)],
                       check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - started) / len(chosen)


def best_of(runs: int, func, *args):  # type: ignore[no-untyped-def]
    best = None
    for _ in range(runs):
        gc.collect()
        result = func(*args)
        value = result[0] if isinstance(result, tuple) else result
        if best is None or value < (best[0] if isinstance(best, tuple) else best):
            best = result
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--runs", type=int, default=2, help="best of N for the timed loops")
    parser.add_argument("--openssl-sample", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# cpus={os.cpu_count()} python={sys.version.split()[0]}")
    header = (f"{'store':>8} {'what':<30} {'seconds':>9} {'us/cert':>9} {'vs floor':>9} "
              f"{'vs fields':>9} {'peak RSS':>10}")
    print(header)
    print("-" * len(header))
    for size in sizes:
        t0 = time.perf_counter()
        store = build_store(size)
        built = time.perf_counter() - t0
        files = store_files(store)
        assert len(files) == size, (len(files), size)
        if built > 1:
            print(f"# built store-{size} in {built:.1f} s")
        t_floor = best_of(args.runs, floor, files)
        t_fields = best_of(args.runs, floor_fields, files)
        t_read, n_read = best_of(args.runs, scan_only, store)
        t_scan, n_scan = best_of(args.runs, scan_and_classify, store)
        assert n_read == n_scan == size, (n_read, n_scan, size)
        rows = [("floor (read + load_pem)", t_floor, None),
                ("floor-fields (+ read fields)", t_fields, None),
                ("scan_paths (read + all facts)", t_read, None),
                ("scan + classify (library)", t_scan, None)]
        if not args.no_cli:
            t_cli, rss = cli_run(store)
            rows.append(("certescrow scan --json (CLI)", t_cli, rss))
        per_openssl = openssl_sample(files, args.openssl_sample)
        rows.append((f"openssl x509 per file (x{size})", per_openssl * size, None))
        for name, seconds, rss in rows:
            rss_text = f"{rss / 1024:.0f} MiB" if rss else ""
            print(f"{size:>8} {name:<30} {seconds:>9.2f} {seconds / size * 1e6:>9.1f} "
                  f"{seconds / t_floor:>8.2f}x {seconds / t_fields:>8.2f}x {rss_text:>10}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"# this process peak RSS: {usage.ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
