"""Daemon latency: from a file change to the daemon's report, with N certificates watched.

    .venv/bin/python bench/bench_daemon.py [--certs 100000] [--changes 200] [--quiet-ms 100]

Builds (once, cached under bench/out/) a store of N certificate files in directories of 100,
then in one run measures:

* baseline: the raw inotify latency — a bare watchdog observer whose handler only records the
  time — for the same kind of change (a file replaced by rename, as deploy tools do);
* the daemon: the real ``Daemon`` (real reader, real SQLite ledger, real watchdog observers on
  every directory of the store) running its event loop; the time from the change to the moment
  the ledger has the new observation.

The daemon waits ``quiet_period_ms`` after the last event on a path before reading it (the
certbot trap), so its latency is that quiet period plus the processing; both are printed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from watchdog.events import FileSystemEvent, FileSystemEventHandler  # noqa: E402
from watchdog.observers.inotify import InotifyObserver  # noqa: E402

from agent.config import config_from_raw  # noqa: E402
from agent.daemon import Daemon  # noqa: E402
from agent.logs import EventLog, configure_logging  # noqa: E402
from agent.watch import inotify_limits  # noqa: E402
from policy.intake import IntakeReceipt, Observation  # noqa: E402
from policy.ledger import Ledger  # noqa: E402

OUT = REPO / "bench" / "out"
PER_DIR = 100
NOT_BEFORE = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def _cert_pem(key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
              ca_name: x509.Name, i: int, variant: int) -> bytes:
    name = f"host{i}.example.jp"
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(i * 4 + variant + 1)
        .not_valid_before(NOT_BEFORE + timedelta(days=variant))
        .not_valid_after(NOT_BEFORE + timedelta(days=variant + 90) - timedelta(seconds=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def build_store(count: int) -> Path:
    """N certificate files, PER_DIR per directory; cached (a marker file says it is complete)."""
    root = OUT / f"daemon-store-{count}"
    marker = OUT / f"daemon-store-{count}.complete"
    if marker.exists():
        return root
    print(f"building a store of {count} certificates under {root} (cached) ...", flush=True)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench CA"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    for i in range(count):
        directory = root / f"d{i // PER_DIR:05}"
        if i % PER_DIR == 0:
            directory.mkdir(parents=True, exist_ok=True)
        (directory / f"c{i:06}.pem").write_bytes(_cert_pem(key, ca_key, ca_name, i, 0))
    # Replacement contents for the changes (two variants per changed file, alternating).
    alt = OUT / f"daemon-alt-{count}"
    alt.mkdir(parents=True, exist_ok=True)
    for variant in (1, 2):
        (alt / f"v{variant}.pem").write_bytes(_cert_pem(key, ca_key, ca_name, count, variant))
    marker.write_text("ok\n")
    return root


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return q[49], q[94], q[98]


def replace_file(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


class _Stamp(FileSystemEventHandler):
    def __init__(self) -> None:
        self.want = ""
        self.hit = threading.Event()
        self.at = 0.0

    def dispatch(self, event: FileSystemEvent) -> None:
        dest = getattr(event, "dest_path", "")
        if self.want and (event.src_path == self.want or dest == self.want):
            self.at = time.perf_counter()
            self.hit.set()


def baseline(root: Path, files: list[Path], variants: list[bytes], changes: int) -> list[float]:
    handler = _Stamp()
    observer = InotifyObserver()
    observer.start()
    observer.schedule(handler, str(root), recursive=True)
    samples: list[float] = []
    try:
        for n in range(changes):
            target = random.choice(files)
            handler.hit.clear()
            handler.want = str(target)
            t0 = time.perf_counter()
            replace_file(target, variants[n % 2])
            if handler.hit.wait(5):
                samples.append(handler.at - t0)
            time.sleep(0.005)
    finally:
        observer.stop()
        observer.join()
    return samples


class TimedIntake:
    """The real ledger; notes when the location being waited for is reported."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.want = ""
        self.hit = threading.Event()
        self.at = 0.0

    def report(self, observations: Sequence[Observation], *, at: datetime) -> IntakeReceipt:
        receipt = self.ledger.report(observations, at=at)
        if self.want and any(o.location == self.want for o in observations):
            self.at = time.perf_counter()
            self.hit.set()
        return receipt

    def report_gone(self, host: str, location: str, *, at: datetime) -> int:
        return self.ledger.report_gone(host, location, at=at)

    def close(self) -> None:
        self.ledger.close()


def daemon_latency(root: Path, files: list[Path], variants: list[bytes], changes: int,
                   quiet_ms: int, workdir: Path) -> tuple[list[float], float, int]:
    config = config_from_raw({"agent": {"host": "bench", "quiet_period_ms": quiet_ms,
                                        "resync_interval_s": 0, "observer": "inotify",
                                        "stores": [{"path": str(root)}]}})
    intake = TimedIntake(Ledger.open(workdir / f"ledger-{quiet_ms}.sqlite3"))
    configure_logging("text", level=40)  # errors only: the run is about latency
    daemon = Daemon(config, intake=intake, clock=lambda: NOT_BEFORE + timedelta(days=20),
                    log=EventLog())
    t0 = time.perf_counter()
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()
    while daemon.last_resync == 0 or len(daemon.index) < len(files):
        time.sleep(0.2)
        if not thread.is_alive():
            raise SystemExit("the daemon stopped during its initial scan")
    startup = time.perf_counter() - t0
    samples: list[float] = []
    try:
        for n in range(changes):
            target = random.choice(files)
            intake.hit.clear()
            intake.want = str(target)
            t1 = time.perf_counter()
            replace_file(target, variants[(n + 1) % 2])
            if intake.hit.wait(10):
                samples.append(intake.at - t1)
            else:
                print(f"  no report for {target} within 10 s", file=sys.stderr)
            time.sleep(0.005)
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
    return samples, startup, len(daemon.index)


def _peak_rss_kib() -> int:
    """This process's own peak (VmHWM). ``ru_maxrss`` is carried across execve, so run from a
    large parent (bench_scan.py) it would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover - not Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=200)
    default_quiet = config_from_raw({}).agent.quiet_period_ms
    parser.add_argument("--quiet-ms", type=int, default=default_quiet,
                        help="quiet_period_ms for the daemon run (default: the configuration "
                        "default, %(default)s)")
    args = parser.parse_args(argv)
    random.seed(3)
    root = build_store(args.certs)
    alt = OUT / f"daemon-alt-{args.certs}"
    variants = [(alt / "v1.pem").read_bytes(), (alt / "v2.pem").read_bytes()]
    files = sorted(root.glob("d*/c*.pem"))
    dirs = len({f.parent for f in files}) + 1
    limits = inotify_limits()
    print(f"store: {len(files)} certificates in {dirs} directories "
          f"(inotify watches needed: {dirs}; fs.inotify.max_user_watches = "
          f"{limits['max_user_watches']}, max_user_instances = "
          f"{limits['max_user_instances']})")

    base = baseline(root, files, variants, args.changes)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        lat, startup, indexed = daemon_latency(root, files, variants, args.changes,
                                               args.quiet_ms, Path(tmp))
    peak_mib = _peak_rss_kib() / 1024
    b50, b95, b99 = percentiles(base)
    d50, d95, d99 = percentiles(lat)
    quiet = args.quiet_ms / 1000
    ms = 1000.0
    print()
    print(f"{'measure':<44} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    print(f"{'baseline: raw inotify event (watchdog)':<44} {len(base):>5} "
          f"{b50 * ms:>8.1f} {b95 * ms:>8.1f} {b99 * ms:>8.1f}")
    print(f"{'daemon: change -> reported (quiet ' + str(args.quiet_ms) + ' ms)':<44} "
          f"{len(lat):>5} {d50 * ms:>8.1f} {d95 * ms:>8.1f} {d99 * ms:>8.1f}")
    print(f"{'daemon minus quiet period (processing)':<44} {len(lat):>5} "
          f"{(d50 - quiet) * ms:>8.1f} {(d95 - quiet) * ms:>8.1f} {(d99 - quiet) * ms:>8.1f}")
    print()
    print(f"daemon p95 / baseline p95: {d95 / b95:.1f}x; target p95 < 200 ms: "
          f"{'met' if d95 < 0.2 else 'NOT met'}")
    print(f"initial scan of {indexed} files (read, classify, report to the ledger): "
          f"{startup:.1f} s; peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
