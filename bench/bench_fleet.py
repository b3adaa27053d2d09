"""The fleet under load: N simulated agents report to a real ``policy serve`` over mutual TLS.

One run, on this machine (service and database on it too):

1. a fleet CA, a service certificate, and one client certificate per agent (each registered
   as ``certescrow fleet sign`` registers it);
2. a real ``certescrow policy serve`` process on 127.0.0.1, its ledger on PostgreSQL (a schema
   made for the run and dropped after it) or on SQLite (``--backend sqlite``);
3. **ingest**: every agent (its own TLS session and client certificate; asyncio + aiohttp, in
   this one process) reports ``--per-agent`` certificate observations in batches of
   ``--batch``, all agents at once; prints observations/second, request latency p50/p95/p99;
4. **sustained**: every agent reports one more batch, at a fixed pace that totals ``--rate``
   observations/s (agent ``n`` at ``n * batch / rate`` s, whatever the answers before: an open
   loop); prints the rate reached and each batch's latency from the moment it was due, so a
   queue building up shows in it;
5. **heartbeat**: every agent heartbeats every ``--beat-every`` seconds for ``--beat-for``
   seconds (each at its own random offset); prints latency p50/p95/p99;
6. the CPU seconds the service process and the PostgreSQL server processes used meanwhile
   (``/proc``; PostgreSQL's figure is the whole server's, other users included);
7. the baseline: the same observations through ``Ledger.report`` on a local SQLite ledger, in
   this process, batch by batch (what a lone agent does with no service).

Usage::

    .venv/bin/python bench/bench_fleet.py [--agents 1000] [--per-agent 100] [--batch 100]
        [--backend postgresql|sqlite] [--rate 5000] [--beat-every 10] [--beat-for 30]
        [--max-pending 4] [--workers 1]

Targets (issue 13): >= 5,000 observations/s sustained ingest with p95 < 250 ms; heartbeats of
1,000 agents every 10 s at p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from agent.fleet_ca import (  # noqa: E402
    client_ssl_context,
    issue_ca,
    issue_client_certificate,
    issue_server_certificate,
    make_agent_csr,
)
from policy.events import facts_to_json, instant_to_text  # noqa: E402
from policy.facts import CertificateFacts  # noqa: E402
from policy.fleet_registry import FleetRegistry, IssuedRecord  # noqa: E402
from policy.intake import Observation  # noqa: E402
from policy.ledger import Ledger  # noqa: E402
from vault import KeyFileSource, open_vault  # noqa: E402

NOW = datetime.now(UTC)  # noqa: TID251 - a benchmark's shell; OpenSSL checks the real clock
TICKS = os.sysconf("SC_CLK_TCK")


def _facts(agent: int, index: int) -> CertificateFacts:
    sha = f"{agent:032x}{index:032x}"
    return CertificateFacts(
        sha256=sha, not_before_utc=datetime(2026, 1, 1, tzinfo=UTC),
        not_after_utc=datetime(2026, 12, 31, tzinfo=UTC), subject=f"CN=h{agent}-{index}.example.jp",
        subject_cn=f"h{agent}-{index}.example.jp", issuer="CN=Bench CA", serial=f"{index:x}",
        sans=(f"h{agent}-{index}.example.jp",), key_type="ec", key_size=256,
        signature_algorithm="ecdsa-with-SHA256")


def _wire(agent: int, index: int) -> dict[str, Any]:
    return {"location": f"/etc/ssl/site{index}.pem", "index": 0,
            "observed_at": instant_to_text(NOW), "facts": facts_to_json(_facts(agent, index))}


def _cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _percentiles(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return (f"p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms"
            f" ({len(samples)} requests)")


@contextlib.contextmanager
def _database(backend: str, root: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield str(root / "ledger.sqlite3")
        return
    from tests.pgdb import postgres_schema

    with postgres_schema() as dsn:
        yield dsn


class Service:
    def __init__(self, root: Path, ledger: str, ca: tuple[bytes, bytes], workers: int,
                 max_pending: int, extra: list[str]) -> None:
        server_key, server = issue_server_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1],
                                                      names=["127.0.0.1"],
                                                      at=NOW - timedelta(hours=1))
        (root / "server.pem").write_bytes(server.pem)
        (root / "ca.pem").write_bytes(ca[1])
        with open_vault(root / "vault.sqlite3", KeyFileSource(root / "vault.key"),
                        create=True) as vault:
            key_id = vault.put("private-key", server_key).entry_id
        port = 0
        if workers > 1:  # they share one fixed port
            import socket

            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        config = root / "serve.toml"
        config.write_text(
            f'[serve]\nlisten = "127.0.0.1"\nport = {port}\nworkers = {workers}\n'
            f'ledger = "{ledger}"\n'
            f'ca_certificate = "{root / "ca.pem"}"\ncertificate = "{root / "server.pem"}"\n'
            f'key = "{key_id}"\nmax_observations = 1000\n'
            f"max_pending_batches = {max_pending}\n" + "".join(f"{line}\n" for line in extra) +
            f'[vault]\npath = "{root / "vault.sqlite3"}"\nkey_source = "key-file"\n'
            f'key_file = "{root / "vault.key"}"\n')
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "policy", "serve", "--config", str(config)],
            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert self.process.stderr is not None
        self.port = 0
        for raw in self.process.stderr:
            found = re.search(rb"listening on https://127\.0\.0\.1:(\d+)", raw)
            if found:
                self.port = int(found.group(1))
                break
        if not self.port:
            raise SystemExit("policy serve did not start")

    def pids(self) -> list[int]:
        """The service and its worker processes."""
        pids = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def _bodies(agent: int, per_agent: int, batch: int, first: int = 0) -> list[bytes]:
    """One agent's batches of certificates ``first`` to ``first + per_agent``, serialised
    before the clock starts: a real agent's outbox holds its batches serialised already (the
    bench's client shares the machine's two cores with the service and PostgreSQL; its JSON
    encoding is not the service's cost)."""
    host = f"bench-{agent:05d}"
    return [json.dumps({"host": host, "outbox": f"bench-{agent}",
                        "sequence": 1 + (first + start) // batch,
                        "at": instant_to_text(NOW), "gone": [],
                        "observations": [_wire(agent, i) for i in range(
                            first + start, first + min(per_agent, start + batch))]}).encode()
            for start in range(0, per_agent, batch)]


async def _paced_report(session: aiohttp.ClientSession, url: str, host: str, body: bytes,
                        due: float, latencies: list[float]) -> float:
    """One batch sent at ``due`` (a ``perf_counter`` time); its latency counts from ``due``,
    not from when the connection was free (no coordinated omission). Returns its end."""
    await asyncio.sleep(max(0.0, due - time.perf_counter()))
    while True:
        async with session.post(url + "/v1/report", data=body,
                                headers={"Content-Type": "application/json"}) as response:
            answer = await response.json()
            if response.status == 503:
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status != 200 or not answer.get("recorded"):
                raise SystemExit(f"{host}: HTTP {response.status}: {answer}")
        end = time.perf_counter()
        latencies.append(end - due)
        return end


async def _agent_reports(session: aiohttp.ClientSession, url: str, host: str,
                         bodies: list[bytes], stats: dict[str, list[float]]) -> int:
    """One agent's batches in order, each resent after a 503's ``Retry-After`` (with jitter,
    as the real agent does) until acknowledged. ``stats``: ``request`` (every answered
    request), ``accepted`` (200s), ``batch`` (first send to acknowledgement), ``busy`` (503s)."""
    recorded = 0
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        first = time.perf_counter()
        while True:
            began = time.perf_counter()
            async with session.post(url + "/v1/report", data=body,
                                    headers=headers) as response:
                answer = await response.json()
                stats["request"].append(time.perf_counter() - began)
                if response.status == 503:
                    stats["busy"].append(1.0)
                    wait = float(response.headers.get("Retry-After", "1"))
                    await asyncio.sleep(random.uniform(0.5 * wait, 1.5 * wait))
                    continue
                if response.status != 200:
                    raise SystemExit(f"{host}: HTTP {response.status}: {answer}")
            stats["accepted"].append(time.perf_counter() - began)
            stats["batch"].append(time.perf_counter() - first)
            break
        recorded += int(answer["recorded"])
    return recorded


async def _agent_heartbeats(session: aiohttp.ClientSession, url: str, agent: int,
                            every: float, duration: float, latencies: list[float]) -> None:
    host = f"bench-{agent:05d}"
    await asyncio.sleep(random.uniform(0, every))
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        body = {"host": host, "at": instant_to_text(NOW),
                "inventory": {"certificates": 100, "files": 100, "errors": 0,
                              "by_severity": {"ok": 100}}}
        began = time.perf_counter()
        async with session.post(url + "/v1/heartbeat", json=body) as response:
            await response.read()
            if response.status != 200:
                raise SystemExit(f"{host}: heartbeat HTTP {response.status}")
        latencies.append(time.perf_counter() - began)
        await asyncio.sleep(every)


async def _run_agents(port: int, contexts: list[ssl.SSLContext], args: argparse.Namespace
                      ) -> None:
    url = f"https://127.0.0.1:{port}"
    # A loaded machine takes long to accept a thousand TLS handshakes at once: the bench
    # measures it rather than giving up after aiohttp's default 30 s connect timeout.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=300)
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=1),
                                      timeout=timeout)
                for ctx in contexts]
    try:
        stats: dict[str, list[float]] = {"request": [], "accepted": [], "batch": [],
                                         "busy": []}
        bodies = [_bodies(n, args.per_agent, args.batch) for n in range(len(sessions))]
        began = time.perf_counter()
        recorded = await asyncio.gather(*(
            _agent_reports(s, url, f"bench-{n:05d}", bodies[n], stats)
            for n, s in enumerate(sessions)))
        del bodies
        wall = time.perf_counter() - began
        total = args.agents * args.per_agent
        print(f"ingest: {total} observations from {args.agents} agents in {wall:.1f} s = "
              f"{total / wall:,.0f} observations/s (recorded {sum(recorded)}); "
              f"{len(stats['busy'])} answered 503 busy")
        print(f"  latency, every request: {_percentiles(stats['request'])}")
        print(f"  latency, accepted requests: {_percentiles(stats['accepted'])}")
        print(f"  batch, first send to acknowledgement: {_percentiles(stats['batch'])}")
        if args.rate > 0:
            paced = [_bodies(n, args.batch, args.batch, first=args.per_agent)[0]
                     for n in range(len(sessions))]
            latencies: list[float] = []
            began = time.perf_counter() + 0.5
            step = args.batch / args.rate
            ends = await asyncio.gather(*(
                _paced_report(s, url, f"bench-{n:05d}", paced[n], began + n * step, latencies)
                for n, s in enumerate(sessions)))
            total = args.agents * args.batch
            wall = max(ends) - began
            print(f"sustained: {total} observations offered at {args.rate:,} observations/s "
                  f"(a batch of {args.batch} every {step * 1000:.0f} ms) took {wall:.1f} s = "
                  f"{total / wall:,.0f} observations/s; latency from due "
                  f"{_percentiles(latencies)}")
        beats: list[float] = []
        await asyncio.gather(*(_agent_heartbeats(s, url, n, args.beat_every, args.beat_for,
                                                 beats) for n, s in enumerate(sessions)))
        print(f"heartbeat: {args.agents} agents every {args.beat_every:g} s for "
              f"{args.beat_for:g} s; latency {_percentiles(beats)}")
    finally:
        for session in sessions:
            await session.close()


def _split(ledger: str, args: argparse.Namespace, batches: int = 20) -> None:
    """Where a batch's time goes in the service, in this process, without HTTP: the wire
    checks (``json.loads`` + :func:`policy.fleet_wire.read_report`) against the ledger's write
    (``record_batch`` on PostgreSQL, under the writers' lock; ``report`` + marker on SQLite)."""

    from policy.fleet_wire import read_report

    bodies = [json.dumps({"host": "split", "outbox": "split", "sequence": n + 1,
                          "at": instant_to_text(NOW), "gone": [],
                          "observations": [_wire(10_000_000 + n, i)
                                           for i in range(args.batch)]}).encode()
              for n in range(batches)]
    began = time.perf_counter()
    parsed = [read_report(json.loads(b), max_observations=10_000) for b in bodies]
    wire = (time.perf_counter() - began) / batches
    with Ledger.open(ledger) as target:
        record = getattr(target, "record_batch", None)
        began = time.perf_counter()
        for batch in parsed:
            if record is not None:
                record(host="split", outbox=batch.outbox, sequence=batch.sequence,
                       observations=batch.observations, gone=[], at=batch.at_utc, now=NOW)
            else:
                target.report(batch.observations, at=batch.at_utc)
        write = (time.perf_counter() - began) / batches
    print(f"per batch of {args.batch}, in process: wire checks {wire * 1000:.1f} ms, ledger "
          f"write {write * 1000:.1f} ms ({args.batch / write:,.0f} observations/s: the "
          "ceiling of one writer at a time)")


def _baseline(root: Path, args: argparse.Namespace) -> None:
    with Ledger.open(root / "baseline.sqlite3") as ledger:
        began = time.perf_counter()
        for agent in range(args.agents):
            for start in range(0, args.per_agent, args.batch):
                ledger.report([Observation(facts=_facts(agent, i), host=f"bench-{agent:05d}",
                                           location=f"/etc/ssl/site{i}.pem", index=0,
                                           observed_at_utc=NOW)
                               for i in range(start, min(args.per_agent, start + args.batch))],
                              at=NOW)
        wall = time.perf_counter() - began
    total = args.agents * args.per_agent
    print(f"baseline (local SQLite ledger, Ledger.report): {total / wall:,.0f} observations/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--per-agent", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rate", type=int, default=5000,
                        help="observations/s offered in the sustained phase (0: none)")
    parser.add_argument("--beat-every", type=float, default=10.0)
    parser.add_argument("--beat-for", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1, help="[serve] workers")
    parser.add_argument("--max-pending", type=int, default=4,
                        help="[serve] max_pending_batches (10000: no bound, every batch queues)")
    parser.add_argument("--serve", action="append", default=[], metavar="KEY=VALUE",
                        help="another [serve] setting, as TOML (repeatable), e.g. "
                             "max_waiting_batches=1000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o700)
        ca = issue_ca(name="bench fleet CA", at=NOW - timedelta(days=1))
        with _database(args.backend, root) as ledger:
            Ledger.open(ledger).close()
            contexts = []
            made = time.perf_counter()
            with FleetRegistry.open(ledger) as registry:
                for n in range(args.agents):
                    host = f"bench-{n:05d}"
                    key_pem, csr_pem = make_agent_csr(host=host)
                    issued = issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1],
                                                      csr_pem=csr_pem, host=host,
                                                      at=NOW - timedelta(hours=1))
                    registry.record_certificate(IssuedRecord(
                        host=host, serial=issued.serial, not_before_utc=issued.not_before_utc,
                        not_after_utc=issued.not_after_utc), at=NOW)
                    contexts.append(client_ssl_context(cert_pem=issued.pem, key_pem=key_pem,
                                                       ca_cert_pem=ca[1]))
            print(f"setup: {args.agents} client certificates in "
                  f"{time.perf_counter() - made:.1f} s; backend {args.backend}")
            service = Service(root, ledger, ca, args.workers, args.max_pending, args.serve)
            try:
                time.sleep(2 if args.workers > 1 else 0)  # the workers start
                pids = service.pids()
                service_cpu = _cpu_of(pids)
                pg_before = _cpu_of(_postgres_pids())
                asyncio.run(_run_agents(service.port, contexts, args))
                print(f"CPU: service ({len(pids)} process(es)) "
                      f"{_cpu_of(pids) - service_cpu:.1f} s, "
                      f"PostgreSQL server {_cpu_of(_postgres_pids()) - pg_before:.1f} s "
                      "(whole server)")
                print("peak memory: service " + ", ".join(
                    f"{_peak_rss_mib(pid):.0f} MiB" for pid in pids) + " (VmHWM, per process)")
            finally:
                service.stop()
            _split(ledger, args)
        _baseline(root, args)


if __name__ == "__main__":
    main()
