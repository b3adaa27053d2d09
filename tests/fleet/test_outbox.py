"""The agent's outbox: what is committed survives, only acknowledged batches go, it is bounded
and says so before it is full."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.fleet_client import BACKOFF_CAP_S, FleetClient, OutboxIntake, report_settings
from agent.outbox import Outbox, OutboxFullError
from agent.x509facts import facts_from_certificate
from policy.decisions import Severity
from policy.fleet_wire import read_report
from policy.intake import Observation
from tests.certfactory import make_cert

AT = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def _observation(location: str) -> Observation:
    facts = facts_from_certificate(make_cert().cert).facts
    return Observation(facts=facts, host="h1", location=location, index=0, observed_at_utc=AT)


def test_batches_survive_a_reopen_in_order_and_go_only_when_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox.open(path) as outbox:
        first = outbox.add({"n": 1}, size=2)
        second = outbox.add({"n": 2}, size=3)
        outbox_id = outbox.outbox_id
    assert (path.stat().st_mode & 0o777) == 0o600
    with Outbox.open(path) as outbox:
        assert outbox.outbox_id == outbox_id
        assert outbox.status().pending_observations == 5
        oldest = outbox.oldest()
        assert oldest is not None
        assert (oldest.sequence, oldest.body) == (first, {"n": 1})
        outbox.acknowledge(first)
        outbox.acknowledge(first)  # a late duplicate acknowledgement changes nothing
        assert outbox.oldest().sequence == second  # type: ignore[union-attr]
        assert outbox.status().pending_observations == 3


def test_a_new_outbox_has_a_new_id(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "a.sqlite3") as a, Outbox.open(tmp_path / "b.sqlite3") as b:
        assert a.outbox_id != b.outbox_id


def test_the_outbox_is_bounded_and_warns_before_it_is_full(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite3", capacity=10, warning_ratio=0.8) as outbox:
        outbox.add({}, size=7)
        assert outbox.finding() is None
        assert outbox.status().level == "ok"
        outbox.add({}, size=1)  # 8 of 10: the warning level, inclusive
        finding = outbox.finding()
        assert finding is not None
        assert (finding.code, finding.severity) == ("outbox-filling", Severity.WARNING)
        outbox.add({}, size=2)
        assert outbox.finding().severity == Severity.CRITICAL  # type: ignore[union-attr]
        with pytest.raises(OutboxFullError):
            outbox.add({}, size=1)
        assert outbox.status().pending_observations == 10


def _unreachable_client() -> FleetClient:
    import ssl

    # Port 9 on 127.0.0.1 (discard): nothing listens, the connection is refused.
    return FleetClient("https://127.0.0.1:9", ssl.create_default_context(), timeout_s=1)


def test_reports_wait_in_the_outbox_while_the_service_is_unreachable(tmp_path: Path) -> None:
    outbox = Outbox.open(tmp_path / "o.sqlite3")
    intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                          clock=lambda: AT, batch=2)
    receipt = intake.report([_observation(f"/etc/ssl/{i}.pem") for i in range(5)], at=AT)
    assert receipt.recorded == 5
    intake.report_gone("h1", "/etc/ssl/old.pem", at=AT)
    assert outbox.status().pending_batches == 4  # 2 + 2 + 1 observations, then one place
    assert intake.send_one() is False
    assert outbox.status().pending_batches == 4
    intake.close()
    with Outbox.open(tmp_path / "o.sqlite3") as reopened:
        assert reopened.status().pending_batches == 4


def test_outbox_bodies_are_what_the_service_accepts(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                              clock=lambda: AT)
        sent = _observation("/etc/ssl/x.pem")
        intake.report([sent], at=AT)
        batch = outbox.oldest()
        assert batch is not None
        parsed = read_report(intake._body(batch), max_observations=10)
    assert parsed.host == "h1"
    assert parsed.outbox == outbox.outbox_id
    assert parsed.observations[0] == sent


def test_an_outbox_batch_from_before_storable_text_is_sent_storable(tmp_path: Path) -> None:
    """An outbox written by an agent before its reader made certificate text storable may
    hold a NUL in a name or an oversized SAN: the service refused such a batch (400) and it
    stayed at the outbox's head for ever (review 4). It is sent as the reader now writes it."""
    from dataclasses import replace

    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                              clock=lambda: AT)
        sent = _observation("/etc/ssl/x.pem")
        raw = replace(sent, facts=replace(sent.facts, issuer_org="Evil\0Org",
                                          sans=("a" * 300 + ".example.jp",)))
        intake.report([raw], at=AT)  # what the old reader handed over, stored as it was
        batch = outbox.oldest()
        assert batch is not None
        assert "\0" in batch.body["observations"][0]["facts"]["issuer_org"]
        parsed = read_report(intake._body(batch), max_observations=10)
    (got,) = parsed.observations
    assert got.facts.issuer_org == "Evil\\00Org"
    assert got.facts.sha256 == sent.facts.sha256
    assert len(got.facts.sans[0]) == 253


def test_backoff_has_full_jitter_and_a_cap(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                              clock=lambda: AT, rng=random.Random(7))
        intake._failures = 3
        delays = [intake.backoff_s() for _ in range(200)]
        assert all(0 <= d <= 8 for d in delays)
        assert max(delays) > 6
        assert min(delays) < 2
        intake._failures = 60
        assert all(d <= BACKOFF_CAP_S for d in (intake.backoff_s() for _ in range(50)))


def test_report_settings_are_checked(tmp_path: Path) -> None:
    base = {"server": "https://policy.example:8443", "client_certificate": "c.pem",
            "client_key": "abcd", "ca_bundle": "ca.pem"}
    settings = report_settings({"report": base}, source="x.toml",
                               default_outbox=tmp_path / "o.sqlite3")
    assert settings is not None
    assert settings.heartbeat_s == 60
    assert settings.outbox == tmp_path / "o.sqlite3"
    assert report_settings({}, source="x.toml", default_outbox=tmp_path) is None
    for bad in ({**base, "server": "http://plain"}, {**base, "typo": 1},
                {**base, "heartbeat_s": 0}, {k: v for k, v in base.items() if k != "ca_bundle"}):
        with pytest.raises(ConfigError):
            report_settings({"report": bad}, source="x.toml", default_outbox=tmp_path)


def test_a_file_name_that_is_not_utf8_round_trips_through_the_outbox(tmp_path: Path) -> None:
    # os.fsdecode(b"/etc/ssl/caf\xe9.pem"): a lone surrogate, which UTF-8 text cannot hold.
    import os

    location = os.fsdecode(b"/etc/ssl/caf\xe9.pem")
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                              clock=lambda: AT)
        sent = _observation(location)
        intake.report([sent], at=AT)
        batch = outbox.oldest()
        assert batch is not None
        parsed = read_report(intake._body(batch), max_observations=10)
    assert parsed.observations[0].location == location


def test_filling_past_the_warning_level_is_logged_once_and_full_refuses(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    outbox = Outbox.open(tmp_path / "o.sqlite3", capacity=10, warning_ratio=0.8)
    intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                          clock=lambda: AT, batch=1)
    with caplog.at_level(logging.WARNING, logger="certescrow.agent"):
        intake.report([_observation(f"/{i}") for i in range(7)], at=AT)
        assert [r.event for r in caplog.records] == []  # type: ignore[attr-defined]
        intake.report([_observation("/7"), _observation("/8")], at=AT)
        events = [r.event for r in caplog.records]  # type: ignore[attr-defined]
        assert events == ["outbox-filling"]  # said once, not once per batch
        intake.report([_observation("/9")], at=AT)
        with pytest.raises(OutboxFullError):
            intake.report([_observation("/10")], at=AT)
        events = [r.event for r in caplog.records]  # type: ignore[attr-defined]
        assert events == ["outbox-filling", "outbox-full", "outbox-full"]
    outbox.close()


def test_the_heartbeat_inventory_counts_certificates_by_severity(tmp_path: Path) -> None:
    from datetime import timedelta

    from agent.fleet_client import inventory_of
    from agent.index import FileIndex
    from agent.monitoring import ExpiryWindows
    from agent.reader import read_file
    from agent.records import ReadLimits

    now = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 12:00 JST
    ends = {"ok": timedelta(days=200), "warning": timedelta(days=20),
            "critical": timedelta(days=10), "expired": timedelta(days=-1)}
    index: FileIndex[object] = FileIndex()
    for name, left in ends.items():
        path = tmp_path / f"{name}.pem"
        path.write_bytes(make_cert(not_before=now - timedelta(days=30),
                                   not_after=now + left).pem)
        index.put(path, None, read_file(path, limits=ReadLimits()))
    (tmp_path / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n")
    index.put(tmp_path / "broken.pem", None,
              read_file(tmp_path / "broken.pem", limits=ReadLimits()))
    inventory = inventory_of(index, at=now, windows=ExpiryWindows(warning_days=28,
                                                                  critical_days=14))
    assert inventory["files"] == 5
    assert inventory["certificates"] == 4
    assert inventory["errors"] == 1
    assert inventory["by_severity"] == {"ok": 1, "warning": 1, "critical": 2}


def test_the_unassigned_warning_names_a_bounded_number_of_locations() -> None:
    from agent.fleet_client import UNASSIGNED_NAMED, unassigned_message

    many = [{"location": f"/etc/ssl/{i}.pem", "contract_id": "C-1"} for i in range(25)]
    message = unassigned_message(4, {"unassigned": [*many, {"location": "/x", "contract_id":
                                                            None}, 7, {"location": 8}]})
    assert message is not None
    assert message.startswith("the policy service recorded 28 observation(s) of batch 4 "
                              "unbound")
    assert message.count("/etc/ssl/") == UNASSIGNED_NAMED
    assert f"; {28 - UNASSIGNED_NAMED} more)" in message  # the rest, malformed ones included
    assert unassigned_message(4, {"unassigned": [7]}) is not None
    for silent in ({}, {"unassigned": []}, {"unassigned": "x"}):
        assert unassigned_message(4, silent) is None


class _Answering:
    """A client whose every request gets ``status`` (the service's own words as the body)."""

    def __init__(self, status: int) -> None:
        self.status = status

    def request(self, method: str, path: str, body: object = None) -> object:
        from agent.fleet_client import SendResult

        return SendResult(status=self.status, body={"error": "the service's words"},
                          retry_after_s=1)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("status", [408, 429, 503])
def test_a_busy_or_slow_answer_is_transient_not_a_refusal(tmp_path: Path, status: int) -> None:
    """408 (the body arrived too slowly), 429 (this host's previous batch still in progress)
    and 503 (busy, or the ledger unavailable) keep the batch and retry: never the critical
    'report-refused' that tells the operator to file a bug."""
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_Answering(status),  # type: ignore[arg-type]
                              host="h1", clock=lambda: AT)
        intake.report([_observation("/etc/ssl/x.pem")], at=AT)
        assert intake.send_one() is False
        assert outbox.status().pending_batches == 1
        assert intake.refused_finding() is None


@pytest.mark.parametrize("status", [408, 429, 503])
def test_a_busy_answer_to_a_heartbeat_or_bindings_is_not_a_refusal(
        tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture) -> None:
    """The same answers to a heartbeat or a bindings fetch (429: all of this host's
    connections busy) wait for the next beat: no 'heartbeat-refused' or 'bindings-refused'
    error, no critical finding."""
    import logging

    from agent.fleet_bindings import AssignedBindings
    from agent.logs import EventLog

    log = EventLog()
    caplog.set_level(logging.DEBUG)
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_Answering(status),  # type: ignore[arg-type]
                              host="h1", clock=lambda: AT, log=log,
                              bindings=AssignedBindings(tmp_path / "b.json", host="h1", log=log))
        assert intake.heartbeat() is False
        assert intake.fetch_bindings() is False
        assert intake.refused_finding() is None
    assert [r.levelno for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "refused" not in caplog.text
    assert f"cannot take the heartbeat now (HTTP {status})" in caplog.text


class _RefusingOne:
    """A service whose ledger refuses any batch holding ``/deep``: 422, nothing written."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def request(self, method: str, path: str, body: Any = None) -> object:
        from agent.fleet_client import SendResult

        places = [o["location"] for o in body["observations"]]
        if "/deep" in places:
            return SendResult(status=422, body={"error": "the ledger cannot store a value"})
        self.recorded += places
        return SendResult(status=200, body={"sequence": body["sequence"],
                                            "outbox": body["outbox"], "recorded": len(places)})

    def close(self) -> None:
        pass


def test_a_batch_the_service_cannot_store_drops_only_the_observation_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A location the service's PostgreSQL cannot index made it answer 503 for ever, and the
    batch stayed at the outbox's head, holding every later report (review 4). Now 422: the
    agent splits the batch down to the observation refused and drops that one alone."""
    import logging

    caplog.set_level(logging.INFO)
    service = _RefusingOne()
    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=service,  # type: ignore[arg-type]
                              host="h1", clock=lambda: AT)
        intake.report([_observation(p) for p in ("/a", "/b", "/deep", "/c")], at=AT)
        intake.report([_observation("/later")], at=AT)
        while intake.send_one():
            pass
        assert outbox.status().pending_batches == 0
    assert service.recorded == ["/a", "/b", "/c", "/later"]  # in order, /deep alone dropped
    dropped = [r for r in caplog.records if "dropped from the outbox" in r.getMessage()]
    assert len(dropped) == 1
    assert dropped[0].levelno == logging.ERROR


def test_report_unreachable_is_logged_when_its_reason_changes_and_as_a_reminder(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import socket
    import ssl

    from agent.fleet_client import UNREACHABLE_REMINDER_S

    now = [1000.0]
    outbox = Outbox.open(tmp_path / "o.sqlite3")
    intake = OutboxIntake(outbox=outbox, client=_unreachable_client(), host="h1",
                          clock=lambda: AT, monotonic=lambda: now[0])
    intake.report([_observation("/a")], at=AT)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if getattr(r, "event", "") == "report-unreachable"]

    with caplog.at_level(logging.WARNING, logger="certescrow.agent"):
        for _ in range(7):  # the same reason every attempt: said once
            assert intake.send_one() is False
            now[0] += 30
        assert len(said()) == 1, said()
        assert "connection refused by 127.0.0.1:9" in said()[0]
        now[0] += UNREACHABLE_REMINDER_S  # still down: a reminder, with the attempts
        assert intake.send_one() is False
        assert len(said()) == 2
        assert said()[1].endswith("(still: 8 attempt(s) failed)")
        # Another reason (a port that takes the connection and never answers): said at once.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            intake.client = FleetClient(f"https://127.0.0.1:{silent.getsockname()[1]}",
                                        ssl.create_default_context(), timeout_s=0.2)
            now[0] += 30
            assert intake.send_one() is False
        assert len(said()) == 3
        assert "no answer from 127.0.0.1:" in said()[2]
    outbox.close()


def test_places_found_empty_one_after_another_go_as_one_batch_in_order(tmp_path: Path) -> None:
    """Each place is committed alone (crash-safe); the sender merges those queued one after
    another, up to the batch size, never across an observation (what was seen after it stays
    after it) and never into a batch already handed out."""
    sent: list[list[str]] = []

    class _Recording:
        timeout_s = 1.0

        def request(self, method: str, path: str, body: Any = None) -> object:
            from agent.fleet_client import SendResult

            sent.append([g["location"] for g in body["gone"]]
                        + [o["location"] for o in body["observations"]])
            return SendResult(status=200, body={"sequence": body["sequence"],
                                                "outbox": body["outbox"], "recorded": 0})

        def close(self) -> None:
            pass

    with Outbox.open(tmp_path / "o.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, client=_Recording(),  # type: ignore[arg-type]
                              host="h1", clock=lambda: AT, batch=3)
        for name in ("/a", "/b", "/c", "/d"):
            intake.report_gone("h1", name, at=AT)
        intake.report([_observation("/e")], at=AT)
        intake.report_gone("h1", "/f", at=AT)
        handed = outbox.oldest(gone_up_to=3)  # the sender took it: nothing joins it now
        assert handed is not None
        assert [g["location"] for g in handed.body["gone"]] == ["/a", "/b", "/c"]
        intake.report_gone("h1", "/g", at=AT)
        assert intake.drain() == 4
        assert outbox.status().pending_batches == 0
    assert sent == [["/a", "/b", "/c"], ["/d"], ["/e"], ["/f", "/g"]]
