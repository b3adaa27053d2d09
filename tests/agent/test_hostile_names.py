"""A certificate crafted with a NUL in its issuer's O and a SAN, and a SAN of 8 KB (a
bring-your-own certificate is the customer's): the reader records it in a form every ledger
backend and the fleet's wire take, says so in a finding that quotes none of its text, and the
daemon's writer, should a ledger still refuse a batch for its content, drops the observation
refused rather than its batch."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agent.ledgerwriter import LedgerWriter
from agent.logs import EventLog
from agent.reader import read_file
from agent.records import ReadLimits
from policy.decisions import Severity
from policy.facts import SAN_LIMIT, storable
from policy.fleet_wire import observation_to_wire, read_report, report_body
from policy.intake import Binding, Observation
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert

LONG_SAN = "x" * 8192 + ".example.jp"


def _crafted(tmp_path: Path) -> Path:
    issued = make_cert(sans=("good.example.jp", "a\x00b.example.jp", LONG_SAN),
                       issuer_org="Evil\x00Org", cn="good.example.jp")
    return write(tmp_path / "crafted.pem", issued.pem)


def test_the_reader_records_a_crafted_certificate_storably_and_says_so(tmp_path: Path) -> None:
    result = read_file(str(_crafted(tmp_path)), limits=ReadLimits())
    [record] = result.certificates
    facts = record.facts
    assert storable(facts) == (facts, ())
    assert facts.issuer_org == "Evil\\00Org"
    assert facts.sans[:2] == ("good.example.jp", "a\\00b.example.jp")
    assert len(facts.sans[2]) == SAN_LIMIT
    assert facts.sans[2].endswith("\u2026")
    [finding] = [f for f in record.findings if f.code == "certificate-text-altered"]
    assert finding.severity == Severity.WARNING
    assert finding.message.startswith("issuer_org, sans:")
    assert "Evil" not in finding.message
    assert "\x00" not in finding.message


def test_a_crafted_certificate_passes_the_fleet_wire(tmp_path: Path) -> None:
    """Before, the service answered 400 to the whole batch (a NUL) and the agent's outbox
    held it at its head for ever: nothing more from that host was recorded."""
    [record] = read_file(str(_crafted(tmp_path)), limits=ReadLimits()).certificates
    obs = Observation(facts=record.facts, host="web1", location=record.path, index=0,
                      observed_at_utc=datetime(2026, 3, 1, tzinfo=UTC), binding=Binding())
    body = report_body(host="web1", outbox="o", sequence=1, at=obs.observed_at_utc,
                       observations=[observation_to_wire(obs)], gone=[])
    [back] = read_report(body, max_observations=10).observations
    assert back.facts == record.facts


class _Refusing:
    """An intake that refuses, for its content, any batch holding the location "bad"."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def report(self, observations: list[str]) -> int:
        if "bad" in observations:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
        self.written.extend(observations)
        return len(observations)


class _Lines(EventLog):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _log(self, level: int, event: str, message: str, exc_info: bool,
             fields: dict[str, Any]) -> None:
        self.lines.append((event, fields))


def test_a_batch_refused_for_its_content_is_written_again_an_observation_at_a_time() -> None:
    intake, log = _Refusing(), _Lines()
    writer = LedgerWriter(intake, log=log)  # type: ignore[arg-type]
    writer.start()
    done: list[int] = []
    lock = threading.Lock()

    def said(count: int) -> None:
        with lock:
            done.append(count)

    def batch(names: list[str]) -> None:
        writer.submit(lambda i: i.report(names), observations=len(names), on_done=said,
                      split=lambda: [(lambda i, n=n: i.report([n]), n, said) for n in names])

    batch(["a", "b"])
    batch(["c", "bad", "d"])
    batch(["e"])
    assert writer.wait_idle(10)
    writer.stop(drain_s=1)
    assert intake.written == ["a", "b", "c", "d", "e"]  # in order, only "bad" dropped
    assert sorted(done) == [1, 1, 1, 2]
    refused = [fields for event, fields in log.lines if event == "ledger-refused"]
    assert len(refused) == 1
    assert refused[0]["location"] == "bad"
    assert writer.pending_observations() == 0


@pytest.mark.parametrize("threaded", [True, False], ids=["daemon", "once"])
def test_a_location_of_4_kb_is_recorded_on_postgresql(threaded: bool) -> None:
    """A file path of a few KB (a deep tree: anyone who can make directories in a store can
    make one) overflowed PostgreSQL's index on sightings, so the certificate there was never
    recorded (session 10: sightings are keyed by the location's digest)."""
    from policy.ledger import Ledger
    from tests.pgdb import postgres_schema

    deep = _deep_path()
    assert len(deep.encode()) > 4000
    observations = _observations(["/srv/a.pem", deep, "/srv/b.pem"])
    with postgres_schema() as dsn, Ledger.open(dsn) as ledger:
        log = _Lines()
        writer = LedgerWriter(ledger, log=log)
        if threaded:
            writer.start()
        recorded: list[int] = []
        writer.submit(lambda i: i.report(observations, at=_AT), observations=3,
                      on_done=lambda r: recorded.append(r.recorded))
        if threaded:
            assert writer.wait_idle(30)
            writer.stop(drain_s=1)
        assert recorded == [3]
        assert sorted(loc for loc, _, _ in ledger.open_sightings("web1")) == \
            sorted(["/srv/a.pem", deep, "/srv/b.pem"])
        assert not [event for event, _ in log.lines if event.startswith("ledger-")]
        # Seen again, unchanged: nothing new (the sighting is found by its digest and path).
        assert ledger.report(observations[1:2], at=_AT).recorded == 0
        ledger.report_gone("web1", deep, at=_AT)
        assert deep not in [loc for loc, _, _ in ledger.open_sightings("web1")]


_AT = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def _deep_path() -> str:
    import secrets

    return "/srv/" + "/".join(secrets.token_hex(16) for _ in range(150)) + "/cert.pem"


def _observations(places: list[str]) -> list[Observation]:
    from datetime import timedelta

    from agent.x509facts import facts_from_certificate

    return [Observation(
        facts=facts_from_certificate(make_cert(sans=(f"s{n}.example.jp",),
                                               lifetime=timedelta(days=90)).cert).facts,
        host="web1", location=place, index=0, observed_at_utc=_AT)
        for n, place in enumerate(places)]


@pytest.mark.parametrize("threaded", [True, False], ids=["daemon", "once"])
def test_a_value_postgresql_refuses_drops_that_observation_only(threaded: bool) -> None:
    """A value PostgreSQL refuses for what it is (SQLSTATE 54000: before session 10, a path
    too long for the sightings index): the writer took that refusal for a ledger fault and
    retried the batch for ever, and ``agent run --once`` failed (review 4). It is a refusal of
    that observation; the rest of its batch is recorded, in both the daemon's writer thread
    and ``--once``. The refusal is made by a trigger (tests/pgdb.py): no real value has it."""
    from policy.ledger import Ledger
    from tests.pgdb import postgres_schema, refuse_locations_containing

    refused_place = "/srv/refused/cert.pem"
    places = ["/srv/a.pem", refused_place, "/srv/b.pem"]
    observations = _observations(places)
    with postgres_schema() as dsn, Ledger.open(dsn) as ledger:
        refuse_locations_containing(dsn, "/refused/")
        log = _Lines()
        writer = LedgerWriter(ledger, log=log)
        if threaded:
            writer.start()
        recorded: list[int] = []

        def one(intake: Any, obs: Observation) -> Any:
            return intake.report([obs], at=_AT)

        writer.submit(lambda i: i.report(observations, at=_AT), observations=3,
                      on_done=lambda r: recorded.append(r.recorded),
                      split=lambda: [(partial(one, obs=o), o.location,
                                      lambda r: recorded.append(r.recorded))
                                     for o in observations])
        # a batch of that one observation alone (the start's reconciliation reports it again
        # each run): refused and logged, never raised (agent run --once failed on it: review 5)
        writer.submit(lambda i: i.report(observations[1:2], at=_AT), observations=1,
                      on_done=lambda r: recorded.append(r.recorded), label=refused_place)
        if threaded:
            assert writer.wait_idle(30)
            writer.stop(drain_s=1)
        assert sorted(loc for loc, _, _ in ledger.open_sightings("web1")) == \
            ["/srv/a.pem", "/srv/b.pem"]
        assert recorded == [1, 1]
        refused = [fields for event, fields in log.lines if event == "ledger-refused"]
        assert [fields["location"] for fields in refused] == [refused_place, refused_place]
        assert not [event for event, _ in log.lines if event.startswith("ledger-") and
                    event != "ledger-refused"]  # no fault, no retry
