"""Places found empty go to the policy service as batches, not a request each: a fleet agent
stopped while 1,200 files were removed sent 1,201 batches at ~10 a second on its start, and a
new certificate waited behind them (review of b9f2d26). Each removal is still committed to the
outbox on its own as it is found (crash-safe); the sender sends those queued one after another
as one batch of up to ``[report] batch`` places. A real daemon, outbox and ``policy serve``
over real mutual TLS."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Daemon
from agent.fleet_client import FleetClient, OutboxIntake, SendResult
from agent.logs import EventLog
from agent.outbox import Outbox
from agent.readindex import READ_INDEX_NAME
from policy.ledger import Ledger
from tests.agent.daemon_helpers import SteppingClock, store_config
from tests.certfactory import make_cert
from tests.fleet.fleetkit import Fleet

LIMIT = 20
"""``[report] batch``: places (and observations) per batch."""
FILES = 45


@pytest.fixture
def served(fleet: Fleet) -> Iterator[Fleet]:
    """The desk's service, running; its clients closed at the end."""
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.close_clients()


def _now() -> datetime:
    return datetime.now(UTC)  # noqa: TID251 - the service checks instants against its clock


class _AnswerLost:
    """The real client, but the service's answer to the ``lose``-th report never arrives:
    the batch is recorded there and stays in the outbox, as when the agent is killed between
    its request and the answer."""

    def __init__(self, client: FleetClient, lose: int) -> None:
        self.client = client
        self.lose = lose
        self.reports = 0
        self.timeout_s = client.timeout_s

    def request(self, method: str, path: str, body: Any = None) -> SendResult:
        result = self.client.request(method, path, body)
        if path == "/v1/report":
            self.reports += 1
            if self.reports == self.lose:
                return SendResult(status=0, body={"error": "killed before the answer"})
        return result

    def close(self) -> None:
        self.client.close()


def _agent(fleet: Fleet, tmp_path: Path, store: Path,
           client: Callable[[FleetClient], Any] = lambda c: c) -> tuple[Daemon, OutboxIntake]:
    state = tmp_path / "state"
    intake = OutboxIntake(outbox=Outbox.open(state / "outbox.sqlite3"),
                          client=client(fleet.connect(fleet.client("web1"))),
                          host="web1", clock=_now, batch=LIMIT, log=EventLog())
    daemon = Daemon(store_config([{"path": str(store)}]), intake=intake, clock=_now,
                    monotonic=SteppingClock(), sleep=lambda s: None,
                    read_index_path=state / READ_INDEX_NAME)
    return daemon, intake


def _removed_while_stopped(fleet: Fleet, tmp_path: Path) -> tuple[Path, list[str]]:
    """A store of :data:`FILES` certificates the service has recorded, all removed since."""
    store = tmp_path / "store"
    store.mkdir()
    for n in range(FILES):
        (store / f"site{n}.pem").write_bytes(make_cert(sans=(f"s{n}.example.jp",)).pem)
    daemon, intake = _agent(fleet, tmp_path, store)
    daemon.full_scan()
    intake.drain()
    assert intake.outbox.status().pending_batches == 0
    daemon.shutdown()
    with Ledger.open(fleet.ledger) as ledger:
        assert len(ledger.open_sightings("web1")) == FILES
    removed = sorted(str(p) for p in store.iterdir())
    for path in removed:
        Path(path).unlink()
    return store, removed


def test_files_removed_while_stopped_go_in_batches_of_the_configured_size(
        served: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fleet = served
    store, removed = _removed_while_stopped(fleet, tmp_path)
    caplog.set_level(logging.INFO, logger="certescrow.agent")
    daemon, intake = _agent(fleet, tmp_path, store)
    daemon.full_scan()  # the start's walk finds every place empty
    assert intake.outbox.status().pending_observations == FILES
    sent = intake.acknowledged
    intake.drain()
    assert intake.acknowledged - sent == math.ceil(FILES / LIMIT)  # 3, not 45
    assert intake.outbox.status().pending_batches == 0
    daemon.shutdown()
    with Ledger.open(fleet.ledger) as ledger:
        assert ledger.open_sightings("web1") == []  # every place gone, in the service's ledger
    gone = [r for r in caplog.records if getattr(r, "event", "") == "gone"]
    assert sorted(r.fields["path"] for r in gone) == removed  # type: ignore[attr-defined]
    assert {r.fields["certificates"] for r in gone} == {1}  # type: ignore[attr-defined]
    delivered = [r.getMessage() for r in caplog.records
                 if getattr(r, "event", "") == "delivered" and r.levelno == logging.INFO]
    assert delivered[-1].startswith(f"{FILES} observation(s) in {math.ceil(FILES / LIMIT)} "
                                    "batch(es) delivered")


def test_an_answer_lost_mid_delivery_loses_no_place_and_records_none_twice(
        served: Fleet, tmp_path: Path) -> None:
    """The service recorded the second batch and the agent never heard (killed then): its
    outbox still holds it, as it was sent; the next process sends it again under the same
    sequence (a replay the service ignores) and never with more places in it, then the
    rest."""
    fleet = served
    store, _ = _removed_while_stopped(fleet, tmp_path)
    daemon, intake = _agent(fleet, tmp_path, store, client=lambda c: _AnswerLost(c, lose=2))
    daemon.full_scan()
    assert intake.send_one() is True
    assert intake.send_one() is False  # recorded by the service; the answer is lost
    head = intake.outbox.oldest(gone_up_to=LIMIT)
    assert head is not None
    assert head.size == LIMIT
    intake.outbox.close()  # the process dies here: nothing more written by it
    with Ledger.open(fleet.ledger) as ledger:
        assert len(ledger.open_sightings("web1")) == FILES - 2 * LIMIT

    reopened = Outbox.open(tmp_path / "state" / "outbox.sqlite3")
    assert reopened.status().pending_observations == FILES - LIMIT
    again = OutboxIntake(outbox=reopened, client=fleet.connect(fleet.client("web1")),
                         host="web1", clock=_now, batch=LIMIT)
    first = again.outbox.oldest(gone_up_to=LIMIT)
    assert first is not None
    assert (first.sequence, first.body) == (head.sequence, head.body)  # sent as it was
    assert again.drain() == 2
    again.close()
    with Ledger.open(fleet.ledger) as ledger:
        assert ledger.open_sightings("web1") == []
