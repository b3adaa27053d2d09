"""Daemon benchmark: first start, restart, change -> report latency, peak memory (issue 12).

    .venv/bin/python bench/bench_daemon.py [--certs 100000] [--changes 200] [--quiet-ms 100]

Builds (once, cached under ``$CERTESCROW_BENCH_DIR``, default /tmp/certescrow-bench) a store of
N certificate files in directories of 100, then measures, each daemon phase in its own process
(so that its peak memory is its own):

* first start: the real ``Daemon`` (real reader, SQLite ledger, read index, inotify observers)
  with an empty state directory, from construction to READY; then the latency of ``--changes``
  files replaced by rename (as deploy tools do), from the rename to the moment the ledger has
  the new observation (the quiet period included);
* restart: a new ``Daemon`` on the same state directory and the unchanged store: time to READY
  and the number of files it read (parsed);
* baselines in the same run: ``certescrow scan --json`` of the same store (default jobs), and a
  bare watchdog inotify observer whose handler only records the time of the event.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
from agent.readindex import READ_INDEX_NAME  # noqa: E402
from agent.sdnotify import Notifier  # noqa: E402
from agent.watch import inotify_limits  # noqa: E402
from policy.intake import IntakeReceipt, Observation  # noqa: E402
from policy.ledger import Ledger  # noqa: E402

OUT = Path(os.environ.get("CERTESCROW_BENCH_DIR", "/tmp/certescrow-bench"))
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
    # Replacement contents for the changes (two variants per changed file, alternating).
    alt = OUT / f"daemon-alt-{count}"
    variants = [alt / f"v{variant}.pem" for variant in (1, 2)]
    if marker.exists() and all(path.exists() for path in variants):
        return root
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bench CA"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    if not marker.exists():
        print(f"building a store of {count} certificates under {root} (cached) ...", flush=True)
        for i in range(count):
            directory = root / f"d{i // PER_DIR:05}"
            if i % PER_DIR == 0:
                directory.mkdir(parents=True, exist_ok=True)
            (directory / f"c{i:06}.pem").write_bytes(_cert_pem(key, ca_key, ca_name, i, 0))
    # (made again on their own when removed from the cache: any key signs them)
    alt.mkdir(parents=True, exist_ok=True)
    for variant, path in enumerate(variants, start=1):
        path.write_bytes(_cert_pem(key, ca_key, ca_name, count, variant))
    marker.write_text("ok\n")
    return root


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    if len(ordered) < 2:
        return (ordered or [0.0])[0], (ordered or [0.0])[0], (ordered or [0.0])[0]
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

    def open_sightings(self, host: str) -> list[tuple[str, int, str]]:
        """As the real daemon's ledger answers it: a start reconciles the ledger with the
        stores (the ledger's 100,000 open sightings against the read index)."""
        return self.ledger.open_sightings(host)

    def close(self) -> None:
        self.ledger.close()


class ReadyNotifier(Notifier):
    """Notes when the daemon says READY."""

    def __init__(self) -> None:
        super().__init__("")
        self.ready_at = 0.0
        self.is_ready = threading.Event()

    def ready(self, status: str | None = None) -> bool:
        if not self.is_ready.is_set():
            self.ready_at = time.perf_counter()
            self.is_ready.set()
        return False


def store_file(root: Path, i: int) -> Path:
    """The ``i``-th file of a store :func:`build_store` made (a daemon phase computes the
    files it changes: a list of 100,000 ``Path`` objects would be 27 MiB of the peak it
    measures, the bench's, not the daemon's)."""
    return root / f"d{i // PER_DIR:05}" / f"c{i:06}.pem"


def daemon_phase(root: Path, state: Path, count: int, variants: list[bytes],
                 changes: int, quiet_ms: int, profile: Path | None = None) -> dict[str, object]:
    """One daemon process's life: start to READY, then ``changes`` changes, then stop.
    ``profile``: a cProfile of the daemon's thread (start to stop) and of the ledger writer's
    thread, written there."""
    config = config_from_raw({"agent": {"host": "bench", "quiet_period_ms": quiet_ms,
                                        "resync_interval_s": 0, "observer": "inotify",
                                        "stores": [{"path": str(root)}]}})
    intake = TimedIntake(Ledger.open(state / "ledger.sqlite3"))
    configure_logging("text", level=40)  # errors only
    notifier = ReadyNotifier()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    daemon = Daemon(config, intake=intake, clock=lambda: NOT_BEFORE + timedelta(days=20),
                    log=EventLog(), notifier=notifier,
                    read_index_path=state / READ_INDEX_NAME)
    target: Any = daemon.run
    if profile is not None:
        target = _profiled(daemon.run, profile, "daemon")
        writer_run = daemon.writer._run
        daemon.writer._run = _profiled(writer_run, profile, "writer")  # type: ignore[method-assign]
    gc_time = _GcTime()
    thread = threading.Thread(target=target, name="daemon", daemon=True)
    thread.start()
    usage = _CpuUsage()
    while not notifier.is_ready.wait(0.1):
        usage.sample()
        if not thread.is_alive():
            raise SystemExit("the daemon stopped before READY")
    ready_s = notifier.ready_at - t0
    cpu_s = time.process_time() - cpu0  # (read a little after READY: an upper bound)
    usage.sample()
    gc_s, gc_runs, gc_freed = gc_time.stop()
    # The start's reconciliation with the ledger runs inside the scan unless the ledger takes
    # longer than the loop's patience to answer; then the loop finishes it after READY.
    while daemon.sync.reconcile_due or daemon.sync.awaiting_ledger:
        if not thread.is_alive():
            raise SystemExit("the daemon stopped before reconciling")
        time.sleep(0.01)
    reconciled_s = time.perf_counter() - t0
    parsed = daemon.sync.files_read
    indexed = len(daemon.index)
    samples: list[float] = []
    try:
        for n in range(changes):
            target = store_file(root, random.randrange(count))
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
        thread.join(timeout=60)
    return {"ready_s": ready_s, "cpu_s": cpu_s, "reconciled_s": reconciled_s, "parsed": parsed,
            "indexed": indexed, "latencies": samples, "peak_kib": _peak_rss_kib(),
            "threads": usage.threads(), "workers_cpu_s": usage.descendants(),
            "gc_s": gc_s, "gc_runs": gc_runs, "gc_freed": gc_freed}


class _GcTime:
    """Time the daemon's process spends in the cyclic garbage collector, to READY."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self.collected = 0
        """Objects the collector freed (cyclic garbage): what only it would free."""
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._t0
            self.runs[generation] += 1
            self.collected += info["collected"]

    def stop(self) -> tuple[list[float], list[int], int]:
        """Seconds and runs of each generation's collections, and the objects they freed."""
        gc.callbacks.remove(self._callback)
        return self.seconds, self.runs, self.collected


class _CpuUsage:
    """CPU seconds to READY of each thread of this process and of its descendant processes
    (the read-ahead workers, children of the fork server), sampled while waiting: a thread or
    worker that ended between two samples (every 0.1 s) loses at most its last 0.1 s."""

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._threads: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._procs: dict[int, float] = {}

    def _cpu(self, stat: str) -> float:
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / self._tick

    def sample(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self._names.setdefault(thread.native_id, thread.name)
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    self._threads[int(tid)] = self._cpu(f.read())
            except OSError:
                continue
        # descendants through /proc/PID/task/TID/children (no scan of every process)
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as f:
                        children = [int(c) for c in f.read().split()]
                except OSError:
                    continue
                for child in children:
                    todo.append(child)
                    try:
                        with open(f"/proc/{child}/stat") as f:
                            seconds = self._cpu(f.read())
                    except OSError:
                        continue
                    self._procs[child] = max(self._procs.get(child, 0.0), seconds)

    def threads(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tid, seconds in self._threads.items():
            name = self._names.get(tid, "other")
            out[name] = out.get(name, 0.0) + seconds
        return out

    def descendants(self) -> float:
        return sum(self._procs.values())


def _profiled(run: Any, where: Path, name: str) -> Any:
    """``run`` under cProfile (which sees only the thread it runs in), saved as ``name``."""
    import cProfile

    def wrapped() -> Any:
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(run)
        finally:
            profiler.dump_stats(str(where.with_name(f"{where.name}-{name}.prof")))

    return wrapped


def _peak_rss_kib() -> int:
    """This process's own peak (VmHWM). ``ru_maxrss`` is carried across execve, so run from a
    large parent it would report the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover - not Linux


def _phase_in_child(args: argparse.Namespace, state: Path, changes: int,
                    name: str) -> dict[str, Any]:
    profile = ([] if args.profile is None
               else ["--profile", str(args.profile.resolve() / name)])
    done = subprocess.run([sys.executable, __file__, "--certs", str(args.certs), "--quiet-ms",
                           str(args.quiet_ms), "--phase", str(state), "--changes",
                           str(changes), *profile], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"daemon phase failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=200)
    default_quiet = config_from_raw({}).agent.quiet_period_ms
    parser.add_argument("--quiet-ms", type=int, default=default_quiet,
                        help="quiet_period_ms for the daemon run (default: the configuration "
                        "default, %(default)s)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="write cProfile files of each daemon phase (its main thread and "
                        "its ledger writer) into DIR (first-daemon.prof, restart-writer.prof, "
                        "...); the times printed are then profiled times")
    parser.add_argument("--runs", type=int, default=2,
                        help="best of N (by wall time) for the scan baseline and for the "
                        "daemon's lives (each pair of lives in a fresh state directory)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="measure the daemon only (no scan --json, no raw inotify "
                        "baseline): for quick iteration, not for BENCHMARKS.md")
    parser.add_argument("--phase", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    random.seed(3)
    root = build_store(args.certs)
    alt = OUT / f"daemon-alt-{args.certs}"
    variants = [(alt / "v1.pem").read_bytes(), (alt / "v2.pem").read_bytes()]
    if args.phase is not None:  # a child: one daemon life, the result as one JSON line
        print(json.dumps(daemon_phase(root, args.phase, args.certs, variants, args.changes,
                                      args.quiet_ms, args.profile)))
        return
    files = sorted(root.glob("d*/c*.pem"))
    dirs = len({f.parent for f in files}) + 1
    limits = inotify_limits()
    print(f"store: {len(files)} certificates in {dirs} directories "
          f"(inotify watches needed: {dirs}; fs.inotify.max_user_watches = "
          f"{limits['max_user_watches']}, max_user_instances = "
          f"{limits['max_user_instances']})", flush=True)
    from bench.bench_scan import cli_run, floor, warm_bytecode

    warm_bytecode()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    # The store's pages in the page cache before anything is timed, and the best of --runs
    # for both sides of the ratio: one run of each compared a scan of a cold store (14.0 s of
    # CPU) with a daemon that read it warm, or the reverse (2.41x and 1.19x on one machine).
    floor(files)
    scans = [] if args.no_baselines else [cli_run(root, 0) for _ in range(args.runs)]
    scan = min(scans, key=lambda m: m.wall) if scans else None
    base = [] if args.no_baselines else baseline(root, files, variants, args.changes)
    lives = []
    for _ in range(max(1, args.runs)):
        with tempfile.TemporaryDirectory(prefix="bench-daemon-", dir=OUT) as tmp:
            lives.append((_phase_in_child(args, Path(tmp), args.changes, "first"),
                          _phase_in_child(args, Path(tmp), 0, "restart")))
    first, restart = min(lives, key=lambda life: life[0]["ready_s"])
    if len(lives) > 1:
        print(f"(best of {len(lives)} by wall time: scan --json "
              + ", ".join(f"{m.wall:.2f}" for m in scans) + " s; first start "
              + ", ".join(f"{life[0]['ready_s']:.2f}" for life in lives) + " s; restart "
              + ", ".join(f"{life[1]['ready_s']:.2f}" for life in lives) + " s)")
    b50, b95, b99 = percentiles(base)
    d50, d95, d99 = percentiles(first["latencies"])
    quiet = args.quiet_ms / 1000
    ms = 1000.0
    mib = 1024
    print()
    print(f"{'phase':<48} {'seconds':>8} {'CPU s':>7} {'files read':>10} {'peak RSS':>9}")
    if scan is not None:
        print(f"{'scan --json, same store (default jobs, baseline)':<48} {scan.wall:>8.2f} "
              f"{scan.cpu:>7.2f} {len(files):>10} {(scan.rss_kib or 0) / mib:>5.0f} MiB")
    for label, phase in (("daemon first start -> READY (empty state)", first),
                         ("daemon restart -> READY (store unchanged)", restart)):
        print(f"{label:<48} {phase['ready_s']:>8.2f} {phase['cpu_s']:>7.2f} "
              f"{phase['parsed']:>10} {phase['peak_kib'] / mib:>5.0f} MiB")
    print("(CPU s: the daemon's own process, all its threads, to READY, not its read-ahead "
          "workers; the scan's: its process and its workers.)")
    for label, phase in (("first start", first), ("restart", restart)):
        threads = ", ".join(f"{name} {seconds:.2f}" for name, seconds in
                            sorted(phase["threads"].items(), key=lambda x: -x[1])
                            if seconds >= 0.01)
        print(f"({label}: CPU s by thread: {threads}; its child processes (fork server, "
              f"read-ahead workers): {phase['workers_cpu_s']:.2f}; garbage collector: "
              f"{sum(phase['gc_s']):.2f} s in {sum(phase['gc_runs'])} runs, by generation "
              + ", ".join(f"{s:.2f} s/{n}" for s, n in zip(phase["gc_s"], phase["gc_runs"],
                                                          strict=True))
              + f", {phase['gc_freed']} object(s) freed)")
    print(f"(the start's reconciliation with the ledger done at {first['reconciled_s']:.2f} s "
          f"and {restart['reconciled_s']:.2f} s: within READY unless the ledger took longer "
          "than the loop's patience to answer)")
    print()
    measured = bool(first["latencies"])
    if not measured:  # --changes 0: no row of zeros that would read as 0 ms
        print("change -> report: not measured (--changes 0)")
    else:
        print(f"{'change -> report':<44} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
        if base:
            print(f"{'baseline: raw inotify event (watchdog)':<44} {len(base):>5} "
                  f"{b50 * ms:>8.1f} {b95 * ms:>8.1f} {b99 * ms:>8.1f}")
        print(f"{'daemon: change -> reported (quiet ' + str(args.quiet_ms) + ' ms)':<44} "
              f"{len(first['latencies']):>5} {d50 * ms:>8.1f} {d95 * ms:>8.1f} "
              f"{d99 * ms:>8.1f}")
        print(f"{'daemon minus quiet period (processing)':<44} {len(first['latencies']):>5} "
              f"{(d50 - quiet) * ms:>8.1f} {(d95 - quiet) * ms:>8.1f} "
              f"{(d99 - quiet) * ms:>8.1f}")
    print()
    if scan is not None:
        ratio = first["ready_s"] / scan.wall
        print(f"# first start / scan --json: {ratio:.2f}x; target <= 1.2x: "
              f"{'met' if ratio <= 1.2 else 'NOT met'}")
    ok = restart["ready_s"] <= 3 and restart["parsed"] == 0
    print(f"# restart: {restart['ready_s']:.2f} s, {restart['parsed']} file(s) parsed; target "
          f"<= 3 s and 0 parsed: {'met' if ok else 'NOT met'}")
    peak = max(first["peak_kib"], restart["peak_kib"]) / mib
    print(f"# daemon peak memory: {peak:.0f} MiB; target <= 150 MiB: "
          f"{'met' if peak <= 150 else 'NOT met'}")
    if measured:
        print(f"# latency p95 {d95 * ms:.1f} ms; target < 200 ms: "
              f"{'met' if d95 < 0.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
