"""A real ``policy serve`` admits a bounded number of report batches at a time: while the
ledger's writer is held up, the next batch waits for its turn (its body unread) and is
recorded when the turn comes; past the wait, or with no room to wait, it gets 503 with
``Retry-After`` (nothing written) instead of queueing without bound; heartbeats still
answer, and the held batch is recorded once the ledger is free."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.fleet_client import SendResult
from policy.ledger_pg import _WRITE_LOCK
from tests.fleet.fleetkit import Fleet, observation, report, served_fleet


@pytest.fixture(params=["admission_wait_ms = 0", "max_waiting_batches = 0"])
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    # PostgreSQL: the writers' lock can be held from outside while the registry still answers
    # (an SQLite service is one connection: a held writer stops it whole).
    with served_fleet(tmp_path / "desk", backend="postgresql",
                      extra=lambda _: f"max_pending_batches = 1\n{request.param}") as made:
        yield made


def test_a_batch_past_the_admitted_ones_gets_503_with_retry_after(fleet: Fleet) -> None:
    first_client, second_client = fleet.client("busy-1"), fleet.client("busy-2")
    first_conn, second_conn = fleet.connect(first_client), fleet.connect(second_client)
    beat_conn = fleet.connect(second_client)
    before = fleet.journal_count()
    import psycopg

    held = psycopg.connect(fleet.ledger, autocommit=True)
    # the ledger's writers' lock, taken from outside
    held.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_WRITE_LOCK,))
    answers: list[SendResult] = []
    try:
        sender = threading.Thread(target=lambda: answers.append(first_conn.request(
            "POST", "/v1/report",
            report("busy-1", 1, [observation("/etc/ssl/a.pem", "a" * 64)], outbox="o1"))))
        sender.start()
        time.sleep(1.0)  # the first batch is admitted and waits for the lock
        busy = second_conn.request(
            "POST", "/v1/report",
            report("busy-2", 1, [observation("/etc/ssl/b.pem", "b" * 64)], outbox="o2"))
        beat = beat_conn.request("POST", "/v1/heartbeat", {
            "host": "busy-2", "at": "2026-11-27T00:00:00Z", "inventory": {"certificates": 1}})
    finally:
        held.close()  # releases the lock
    sender.join(timeout=60)
    assert busy.status == 503
    assert busy.retry_after_s is not None
    assert busy.retry_after_s >= 1
    assert beat.status == 200  # heartbeats do not queue behind batches
    assert [a.status for a in answers] == [200]
    assert answers[0].body["recorded"] == 1
    assert fleet.journal_count() == before + 1  # the refused batch wrote nothing


def test_a_batch_past_the_admitted_ones_waits_for_its_turn_then_is_recorded(
        tmp_path: Path) -> None:
    with served_fleet(tmp_path / "desk", backend="postgresql",
                      extra=lambda _: "max_pending_batches = 1\nadmission_wait_ms = 20000"
                      ) as fleet:
        first_client, second_client = fleet.client("wait-1"), fleet.client("wait-2")
        first_conn, second_conn = fleet.connect(first_client), fleet.connect(second_client)
        before = fleet.journal_count()
        import psycopg

        held = psycopg.connect(fleet.ledger, autocommit=True)
        held.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_WRITE_LOCK,))
        answers: dict[str, SendResult] = {}
        senders = [threading.Thread(target=lambda c=conn, h=host: answers.__setitem__(
            h, c.request("POST", "/v1/report", report(
                h, 1, [observation(f"/etc/ssl/{h}.pem", h[-1] * 64)], outbox=h))))
            for conn, host in ((first_conn, "wait-1"), (second_conn, "wait-2"))]
        try:
            senders[0].start()
            time.sleep(1.0)  # the first batch is admitted and waits for the lock
            senders[1].start()
            time.sleep(1.0)  # the second waits for its turn
            assert answers == {}
        finally:
            held.close()  # the lock is free: both are written, one after the other
        for sender in senders:
            sender.join(timeout=60)
        assert {h: a.status for h, a in answers.items()} == {"wait-1": 200, "wait-2": 200}
        assert fleet.journal_count() == before + 2
