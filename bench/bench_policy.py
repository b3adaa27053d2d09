"""Sweep a large ledger: fold every contract's journal and evaluate it, as `policy actions` does.

Builds a real SQLite ledger of N contracts (default 100,000) with mixed categories, items, tiers,
certificate lifetimes and contract states (new, notified, answered renew / don't renew,
cancelled, changed, renewed, no certificate yet), then measures, in the same run:

* baseline 1 — read:  the journal rows through SQLite + JSON decoding, nothing else;
* baseline 2 — fold:  ``Ledger.folded_states(at=)``: read + decode + fold every contract;
* full sweep:         ``Ledger.folded_states`` + ``evaluate_contract`` for every contract (what
                      ``certescrow policy actions`` does);
* evaluate only:      ``evaluate_contract`` over states already in memory, with the default
                      ``period_rule = "civil-code"`` and again with ``"elapsed"``, so the cost
                      of counting periods by the Civil Code (issue 10) shows beside the instant
                      arithmetic it replaced.

and prints contracts/second per phase, the ratio of each to the fold baseline, and the peak
resident memory of the process. Usage:

    .venv/bin/python bench/bench_policy.py [--contracts 100000] [--ledger PATH] [--keep]

The ledger is built through the ledger's own insert path in one transaction (building is not
what is measured); the per-event state checks of ``Ledger.append`` are skipped for speed, so
the generator only produces journals those checks would accept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policy.catalogue import load_catalogue  # noqa: E402
from policy.evaluate import evaluate_contract  # noqa: E402
from policy.events import (  # noqa: E402
    AnswerReceived,
    ApplicationAccepted,
    CancellationArrived,
    CertificateBound,
    ContractChanged,
    Event,
    NoticeSent,
    RenewalMade,
)
from policy.facts import CertificateFacts  # noqa: E402
from policy.ledger import Ledger  # noqa: E402
from policy.periods import PeriodRule  # noqa: E402
from policy.rules.art6 import Answer  # noqa: E402
from policy.settings import PolicySettings  # noqa: E402
from policy.tokyo import tokyo_date  # noqa: E402

AT = datetime(2026, 9, 1, 3, 0, tzinfo=UTC)
LIFETIMES_DAYS = (90, 199, 365, 397, 700)
ISSUERS = {
    "digicert": ("DigiCert Inc", "DigiCert Global G2 TLS RSA SHA256 2020 CA1"),
    "cybertrust": ("Cybertrust Japan Co., Ltd.", "Cybertrust Japan SureServer CA G4"),
    "globalsign": ("GlobalSign nv-sa", "GlobalSign GCC R3 OV TLS CA 2024"),
    "any": ("Let's Encrypt", "R11"),
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def contract_events(n: int, items: list[Any]) -> list[Event]:
    """A deterministic, varied journal for contract ``n``."""
    item = items[n % len(items)]
    tier = item.tiers[(n // len(items)) % len(item.tiers)]
    cid = f"C{n:06d}"
    accepted_at = datetime(2025, 1, 1, 1, tzinfo=UTC) + timedelta(minutes=(n * 7) % 500_000)
    events: list[Event] = [ApplicationAccepted(
        contract_id=cid, at_utc=accepted_at, item=item.handle, category=item.category, tier=tier,
        designated_service="IIJ GIO" if item.category.value == "II" else None)]
    shape = n % 10
    if shape == 9:
        return events  # accepted, no certificate yet
    org, cn = ISSUERS.get(item.ca, ISSUERS["any"])
    not_before = accepted_at + timedelta(days=1)
    lifetime = timedelta(days=LIFETIMES_DAYS[n % len(LIFETIMES_DAYS)])
    facts = CertificateFacts(
        sha256=hashlib.sha256(cid.encode()).hexdigest(), not_before_utc=not_before,
        not_after_utc=not_before + lifetime - timedelta(seconds=1),
        subject_cn=f"www{n}.example.jp", issuer_org=org, issuer_cn=cn,
        sans=(f"www{n}.example.jp", f"example{n}.jp"))
    events.append(CertificateBound(contract_id=cid, at_utc=not_before, facts=facts))
    end = tokyo_date(facts.not_after_utc)
    notice_at = datetime.combine(end - timedelta(days=95), datetime.min.time(), tzinfo=UTC)
    if shape in (1, 2, 3, 4) and notice_at > not_before:
        events.append(NoticeSent(contract_id=cid, at_utc=notice_at,
                                 certificate_sha256=facts.sha256))
        if shape == 2:
            events.append(AnswerReceived(contract_id=cid, at_utc=notice_at + timedelta(days=3),
                                         answer=Answer.RENEW))
        elif shape == 3:
            events.append(AnswerReceived(contract_id=cid, at_utc=notice_at + timedelta(days=3),
                                         answer=Answer.DONT_RENEW))
        elif shape == 4 and item.category.provider_issued:
            events.append(RenewalMade(contract_id=cid, at_utc=notice_at + timedelta(days=40),
                                      by_default=True))
    elif shape == 5:
        arrived = tokyo_date(not_before) + timedelta(days=20)
        events.append(CancellationArrived(
            contract_id=cid, at_utc=not_before + timedelta(days=21), arrived=arrived,
            requested=arrived + timedelta(days=45) if n % 20 == 5 else None))
    elif shape == 6:
        events.append(ContractChanged(contract_id=cid, at_utc=not_before + timedelta(days=10),
                                      service="IIJ GIO P2"))
    return events


def _insert_unprojected(ledger: Ledger, events: list[Event], recorded: datetime | None) -> None:
    for event in events:
        ledger._insert(event, None, recorded)
    # The projection is rebuilt in one pass at the end (``build``), not contract by contract.
    ledger._tx.touched.clear()


def build(path: Path | str, count: int, *, recorded: datetime | None = None) -> int:
    """Build the ledger at ``path`` (a file, or a ``postgresql://`` DSN). With ``recorded``,
    the ledger as it stood then: events dated after it are left out and every other one is
    recorded at it (the projection's cached actions are then those of that day, as for a
    ledger written up to it); without, every event, each recorded when it happened."""
    items = list(load_catalogue().items.values())
    total = 0
    with Ledger.open(path) as ledger:
        batch: list[Event] = []
        for n in range(count):
            batch.extend(e for e in contract_events(n, items)
                         if recorded is None or e.at_utc <= recorded)
            if len(batch) >= 20_000 or n == count - 1:
                # The ledger's own insert path, one transaction per batch (private on purpose).
                ledger._write(lambda b=batch: _insert_unprojected(ledger, b, recorded))
                total += len(batch)
                batch = []
                print(f"\r  building: {n + 1:,}/{count:,} contracts", end="", file=sys.stderr)
        # The projection (issue 13) in one ordered pass, as `policy verify --repair` writes it.
        ledger.rebuild_projection(at=recorded or AT)
    print(file=sys.stderr)
    return total


def timed(label: str, fn: Callable[[], int]) -> tuple[str, int, float, float]:
    """Wall and CPU seconds: on a shared machine the CPU time is the steadier number."""
    start, cpu_start = time.perf_counter(), time.process_time()
    done = fn()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"  {label}: {elapsed:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
    return label, done, elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=100_000)
    parser.add_argument("--ledger", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the ledger file")
    args = parser.parse_args()

    workdir = tempfile.TemporaryDirectory(prefix="bench-policy-")
    path = args.ledger or Path(workdir.name) / "ledger.sqlite3"
    if path.exists():
        path.unlink()
    start = time.perf_counter()
    events = build(path, args.contracts)
    build_s = time.perf_counter() - start
    catalogue = load_catalogue()
    settings = PolicySettings()
    rss_after_build = peak_rss_mib()

    with Ledger.open(path, create=False) as ledger:
        def read_only() -> int:
            rows = 0
            cur = ledger._conn.execute(  # the bare baseline: SQL + JSON only
                "SELECT contract_id, payload FROM journal WHERE contract_id IS NOT NULL "
                "ORDER BY contract_id, at_utc, seq")
            seen = None
            for contract_id, payload in cur:
                json.loads(payload)
                if contract_id != seen:
                    rows += 1
                    seen = contract_id
            return rows

        def fold_only() -> int:
            return sum(1 for _ in ledger.folded_states(at=AT))

        decided = {"decisions": 0}

        def full_sweep() -> int:
            contracts = 0
            for state in ledger.folded_states(at=AT):
                decided["decisions"] += len(evaluate_contract(state, catalogue, settings, at=AT))
                contracts += 1
            return contracts

        phases = [timed("read", read_only), timed("fold", fold_only)]
        rss_after_fold = peak_rss_mib()
        phases.append(timed("fold+evaluate", full_sweep))
        states = list(ledger.folded_states(at=AT))

    def evaluate_only() -> int:
        for state in states:
            evaluate_contract(state, catalogue, settings, at=AT)
        return len(states)

    phases.append(timed("evaluate (in memory)", evaluate_only))
    elapsed_settings = PolicySettings(period_rule=PeriodRule.ELAPSED)

    def evaluate_elapsed() -> int:
        for state in states:
            evaluate_contract(state, catalogue, elapsed_settings, at=AT)
        return len(states)

    phases.append(timed("evaluate (elapsed rule)", evaluate_elapsed))
    rss_peak = peak_rss_mib()

    by_label = {label: done / cpu for label, done, _, cpu in phases}
    base = by_label["fold"]
    print(f"certescrow policy benchmark: {args.contracts:,} contracts, {events:,} journal events,"
          f" at {AT.isoformat()}, python {sys.version.split()[0]}")
    print(f"ledger build {build_s:.1f} s ({path.stat().st_size / 2**20:.0f} MiB file); "
          f"{decided['decisions']:,} decisions in the full sweep")
    print()
    print(f"| {'phase':<30} | {'contracts':>9} | {'wall s':>7} | {'CPU s':>6} | "
          f"{'contracts/CPU s':>15} | {'vs fold':>7} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 9}|{'-' * 8}|{'-' * 17}|{'-' * 9}|")
    names = {"read": "baseline: read + JSON decode", "fold": "baseline: read + fold",
             "fold+evaluate": "fold + evaluate_contract",
             "evaluate (in memory)": "evaluate_contract only",
             "evaluate (elapsed rule)": "evaluate only, elapsed rule"}
    for label, done, elapsed, cpu in phases:
        rate = done / cpu
        print(f"| {names[label]:<30} | {done:>9,} | {elapsed:>7.2f} | {cpu:>6.2f} | "
              f"{rate:>15,.0f} | {rate / base:>6.2f}x |")
    print()
    print(f"peak RSS: {rss_after_build:.0f} MiB after build, {rss_after_fold:.0f} MiB after "
          f"fold sweeps, {rss_peak:.0f} MiB at the end (all {len(states):,} states held in "
          "memory for the last phase)")
    if args.keep:
        print(f"ledger kept at {path}")
    else:
        workdir.cleanup()


if __name__ == "__main__":
    main()
