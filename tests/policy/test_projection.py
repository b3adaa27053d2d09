"""The ledger's projection answers as the fold does (issue 13, docs/ledger.md "The projection").

The fold stays the reference: over random journals (back-dated events, refusals, agent reports
and gone reports, several contracts), each contract's projected state equals its fold, and the
due actions a sweep reads from the projection (cached, or evaluated again from the stored state
when the cache does not hold for the day asked about) equal those ``evaluate_contract`` gives
for the folded states, in ``policy actions``' order, on days before, on and after every change
point. A refused event leaves the projection as it was. SQLite runs under hypothesis;
PostgreSQL runs a fixed set of seeded sequences through the same checks.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.cliutil import json_element
from policy.decisions import Severity
from policy.errors import ContractStateError, PolicyError, UnknownContractError
from policy.evaluate import due_actions, evaluate_contract
from policy.events import (
    AnswerReceived,
    CancellationArrived,
    CertificateBound,
    ContractChanged,
    Event,
    NoticeSent,
    RenewalMade,
    Terminated,
)
from policy.intake import Binding, Observation
from policy.ledger import Ledger
from policy.projection import action_rows
from policy.rules.art6 import Answer
from policy.settings import PolicySettings
from policy.tiers import Tier
from policy.tokyo import tokyo_date, tokyo_midnight_utc
from tests.policy.ledger_fixtures import accepted, facts

START = date(2026, 1, 5)
CATALOGUE = load_catalogue()
CONTRACTS = ("c1", "c2")
ITEMS = {"c1": ("byo", Category.III), "c2": ("globalsign-ov", Category.I)}
CERTS = {
    "long": facts(tag="long", not_before=tokyo_midnight_utc(START), lifetime=timedelta(days=398),
                  sans=("a.example.jp",)),
    "short": facts(tag="short", not_before=tokyo_midnight_utc(START),
                   lifetime=timedelta(days=90), sans=("a.example.jp",)),
    "next": facts(tag="next", not_before=tokyo_midnight_utc(START + timedelta(days=200)),
                  lifetime=timedelta(days=199), sans=("a.example.jp",)),
}
KINDS = ("accept", "bind", "bind-short", "notify", "answer-renew", "answer-dont", "cancel",
         "change", "renew", "renew-default", "terminate", "observe", "observe-unbound", "gone")


def _at(day: int, hour: int = 12) -> datetime:
    return tokyo_midnight_utc(START + timedelta(days=day)) + timedelta(hours=hour)


def _event(kind: str, cid: str, day: int, extra: int) -> Event:
    when = START + timedelta(days=day)
    at = _at(day)
    item, category = ITEMS[cid]
    match kind:
        case "accept":
            return accepted(cid, at=_at(0, 9), item=item, category=category,
                            tier=Tier.ONE_YEAR)
        case "bind" | "bind-short":
            cert = CERTS["short" if kind == "bind-short" else ("next" if extra % 3 == 0
                                                               else "long")]
            return CertificateBound(contract_id=cid, at_utc=at, facts=cert)
        case "notify":
            return NoticeSent(contract_id=cid, at_utc=at)
        case "answer-renew" | "answer-dont":
            return AnswerReceived(contract_id=cid, at_utc=at, answer=(
                Answer.RENEW if kind == "answer-renew" else Answer.DONT_RENEW))
        case "cancel":
            return CancellationArrived(contract_id=cid, at_utc=tokyo_midnight_utc(when),
                                       arrived=when, requested=when + timedelta(days=extra))
        case "change":
            return ContractChanged(contract_id=cid, at_utc=at, service="svc")
        case "renew" | "renew-default":
            return RenewalMade(contract_id=cid, at_utc=at, by_default=kind == "renew-default",
                               designated=when + timedelta(days=extra % 5))
        case _:
            return Terminated(contract_id=cid, at_utc=at, clause="Art.8",
                              effective=when + timedelta(days=extra))


def _snapshot(ledger: Ledger) -> Any:
    """The projection's rows and the journal's length, to show a refusal wrote nothing."""
    ids = ledger._retry(ledger._sql_projection_ids)
    return ledger.count(), sorted(
        (cid, ledger._retry(lambda c=cid: ledger._sql_projection_row(c)))
        for cid in ids if cid is not None)


def _row(ledger: Ledger, contract_id: str) -> Any:
    """The contract's projection row as the ledger reads it back."""
    found = ledger._retry(lambda: ledger._sql_projection_row(contract_id))
    assert found is not None
    return found[0]


def _apply(ledger: Ledger, step: tuple[str, int, int, int, int]) -> None:
    kind, which, day, extra, late = step
    cid = CONTRACTS[which % 2]
    at = _at(day)
    now = at + timedelta(days=late)  # recorded later: back-dated entries, varied cache days
    if kind in ("observe", "observe-unbound"):
        cert = CERTS["next" if extra % 2 else "long"]
        binding = Binding() if kind == "observe-unbound" else Binding(contract_id=cid)
        if extra % 5 == 0:
            binding = Binding(match_by_san=True)
        ledger.report([Observation(facts=cert, host=f"h{which}", location="/etc/a.pem",
                                   index=0, observed_at_utc=at, binding=binding)], at=now)
        return
    if kind == "gone":
        ledger.report_gone(f"h{which}", "/etc/a.pem", at=now)
        return
    event = _event(kind, cid, day, extra)
    before = _snapshot(ledger)
    try:
        ledger.append(event, now=max(now, event.at_utc))
    except (ContractStateError, UnknownContractError):
        assert _snapshot(ledger) == before  # a refusal writes nothing, projection included


def _fold_actions(ledger: Ledger, at: datetime, within: int | None) -> list[tuple[Any, ...]]:
    decisions = []
    for state in ledger.folded_states(at=at):
        try:
            decisions.extend(evaluate_contract(state, CATALOGUE, ledger.settings, at=at))
        except (PolicyError, OverflowError, ValueError):
            continue
    return [(d.contract_id, d.action.value, d.due, d.severity, json_element(d))
            for d in due_actions(decisions, at=at, within=within)]


def _projected_actions(ledger: Ledger, at: datetime,
                       within: int | None) -> list[tuple[Any, ...]]:
    """What ``policy actions`` reads (contract_cli._projected_actions, without the output)."""
    import heapq

    stale, cached = ledger.projected_actions(at=at, within=within, json_body=True)
    horizon = None if within is None else (at + timedelta(hours=9)).date() + timedelta(
        days=within)
    fresh = []
    for state in stale:
        try:
            decided = evaluate_contract(state, CATALOGUE, ledger.settings, at=at)
        except (PolicyError, OverflowError, ValueError):
            continue
        fresh.extend(r.as_tuple(json_body=True) for r in action_rows(decided)
                     if horizon is None or r.due is None or r.due <= horizon)
    fresh.sort()
    # The cached elements come as the UTF-8 bytes --json writes, the fresh ones as text.
    return [(cid, action, None if due is None else date.fromisoformat(due), Severity(-sev),
             body.decode() if isinstance(body, bytes) else body)
            for _, sev, cid, action, _, due, body, *_ in heapq.merge(cached, fresh)]


def check_projection_is_the_fold(ledger: Ledger, queries: list[int]) -> None:
    latest = max((e.event.at_utc for cid in CONTRACTS for e in ledger.journal(cid)),
                 default=_at(0))
    for offset in queries:
        at = max(latest, _at(0)) + timedelta(days=offset)
        folded = {s.contract_id: s for s in ledger.folded_states(at=at)}
        assert ledger.projection_answers(at)
        projected = {s.contract_id: s for s, _ in ledger.projected(at=at)}
        assert projected == folded, at
        for within in (None, 30):
            assert _projected_actions(ledger, at, within) == _fold_actions(ledger, at, within)
    mismatches, _, _ = ledger.verify_projection(at=latest)
    assert mismatches == []


step = st.tuples(st.sampled_from(KINDS), st.integers(0, 1), st.integers(0, 420),
                 st.integers(0, 90), st.integers(0, 120))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=14),
       queries=st.lists(st.integers(0, 500), min_size=1, max_size=3))
def test_the_projection_is_the_fold_over_any_journal_sqlite(
        steps: list[tuple[str, int, int, int, int]], queries: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            Ledger.open(Path(tmp) / "l.sqlite3", catalogue=CATALOGUE) as ledger:
        for cid in CONTRACTS:
            _apply(ledger, ("accept", CONTRACTS.index(cid), 0, 0, 0))
        for s in steps:
            _apply(ledger, s)
        check_projection_is_the_fold(ledger, [0, *queries])


def _seeded(seed: int) -> tuple[list[tuple[str, int, int, int, int]], list[int]]:
    rng = random.Random(seed)
    steps = [(rng.choice(KINDS), rng.randrange(2), rng.randrange(421), rng.randrange(91),
              rng.randrange(121)) for _ in range(rng.randrange(4, 16))]
    return steps, [rng.randrange(501) for _ in range(2)]


@pytest.mark.parametrize("seed", range(8))
def test_the_projection_is_the_fold_on_seeded_journals_both_backends(
        ledger_location: str, seed: int) -> None:
    steps, queries = _seeded(seed)
    with Ledger.open(ledger_location, catalogue=CATALOGUE) as ledger:
        for cid in CONTRACTS:
            _apply(ledger, ("accept", CONTRACTS.index(cid), 0, 0, 0))
        for s in steps:
            _apply(ledger, s)
        check_projection_is_the_fold(ledger, [0, *queries])


def test_a_back_dated_event_refolds_the_contract(ledger: Ledger) -> None:
    """A cancellation form entered in November but arrived in April: the projected state is
    terminated from then on, as the fold says."""
    ledger.append(accepted("c1", at=_at(0), item="globalsign-ov", category=Category.I),
                  now=_at(0))
    ledger.append(CertificateBound(contract_id="c1", at_utc=_at(1), facts=CERTS["long"]),
                  now=_at(1))
    arrived = START + timedelta(days=100)
    ledger.append(CancellationArrived(contract_id="c1", at_utc=tokyo_midnight_utc(arrived),
                                      arrived=arrived, requested=None), now=_at(300))
    [(state, _)] = list(ledger.projected(at=_at(301)))
    assert state.terminated_on == arrived + timedelta(days=30)
    assert state == ledger.state("c1", at=_at(301))


def test_settings_of_another_reader_fold_instead(ledger_location: str) -> None:
    """Rows written under one period rule are not another's: a reader with other fold
    settings gets the fold, not the stored state."""
    with Ledger.open(ledger_location) as writer:
        writer.append(accepted("c1", at=_at(0)), now=_at(0))
        writer.append(CertificateBound(contract_id="c1", at_utc=_at(0), facts=CERTS["short"]),
                      now=_at(0))
    other = PolicySettings(answer_deadline_days=10)
    with Ledger.open(ledger_location, settings=other) as reader:
        [(state, cached)] = list(reader.projected(at=_at(5)))
        assert cached is None
        assert state == next(iter(reader.folded_states(at=_at(5))))


def test_a_version_2_ledger_is_back_filled_when_opened(tmp_path: Path) -> None:
    """The migration to version 3 creates the projection and fills it from the journal, in
    the transaction that stamps the version."""
    path = tmp_path / "v2.sqlite3"
    with Ledger.open(path) as ledger:
        ledger.append(accepted("c1", at=_at(0)), now=_at(0))
        ledger.append(CertificateBound(contract_id="c1", at_utc=_at(1), facts=CERTS["long"]),
                      now=_at(1))
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE projection; DROP TABLE projection_actions; "
                       "DELETE FROM meta WHERE key = 'projected_seq'; PRAGMA user_version = 2;")
    conn.close()
    with Ledger.open(path, create=False) as ledger:
        assert ledger.projection_answers(_at(10))
        [(state, cached)] = list(ledger.projected(at=_at(10)))
        assert state == ledger.state("c1", at=_at(10))
        assert cached is not None
        assert ledger.verify_projection(at=_at(10))[0] == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


def test_a_version_2_postgresql_ledger_is_back_filled_when_opened() -> None:
    from policy.ledger_pg import PG_SCHEMA_VERSION
    from tests.pgdb import postgres_schema

    with postgres_schema() as dsn:
        with Ledger.open(dsn) as ledger:
            ledger.append(accepted("c1", at=_at(0)), now=_at(0))
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE projection; DROP TABLE projection_actions")
            conn.execute("DELETE FROM meta WHERE key = 'projected_seq'")
            conn.execute("DROP INDEX sightings_key")  # sightings as version 2 keyed them
            conn.execute("ALTER TABLE sightings ADD PRIMARY KEY (host, location, idx)")
            conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        with Ledger.open(dsn, create=False) as ledger:
            assert ledger.projection_answers(_at(10))
            [(state, _)] = list(ledger.projected(at=_at(10)))
            assert state == ledger.state("c1", at=_at(10))
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            assert version == (str(PG_SCHEMA_VERSION),)  # 2 -> 3 -> 4 in one opening


def test_a_journal_row_written_without_the_ledger_makes_readers_fold(tmp_path: Path) -> None:
    """The projection's watermark: an event inserted by hand is not in the projection, so
    the sweep folds (and verify says so) until the projection is repaired."""
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as ledger:
        ledger.append(accepted("c1", at=_at(0)), now=_at(0))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO journal (contract_id, kind, at_utc, payload, recorded_utc) "
                 "VALUES ('c1', 'contract-changed', ?, ?, ?)",
                 ("2026-01-06T03:00:00.000000Z",
                  '{"kind":"contract-changed","contract":"c1",'
                  '"at":"2026-01-06T03:00:00.000000Z","service":"svc"}',
                  "2026-01-06T03:00:00.000000Z"))
    conn.commit()
    conn.close()
    with Ledger.open(path, create=False) as ledger:
        assert not ledger.projection_answers(_at(10))
        [state] = list(ledger.states(at=_at(10)))
        assert state.service == "svc"  # the fold's answer
        assert ledger.verify_projection(at=_at(10))[0] != []
        ledger.rebuild_projection(at=_at(10))
        assert ledger.projection_answers(_at(10))
        assert ledger.verify_projection(at=_at(10))[0] == []


def test_a_refresh_stores_what_expired_and_answers_as_the_fold(ledger: Ledger) -> None:
    """Days after the last event, contracts whose cached actions expired are evaluated by
    every ``policy actions``; ``refresh_projection`` stores them for that day (the same
    answers as the fold), leaves alone what still holds, and never moves a row back."""
    ledger.append(accepted("c1", at=_at(0), item="globalsign-ov", category=Category.I),
                  now=_at(0))
    ledger.append(CertificateBound(contract_id="c1", at_utc=_at(1), facts=CERTS["long"]),
                  now=_at(1))
    ledger.append(accepted("c2", at=_at(1)), now=_at(1))
    until = {cid: date.fromisoformat(
        _row(ledger, cid).fresh_until)
        for cid in ("c1", "c2")}
    first = min(until, key=lambda cid: until[cid])
    # The last day every row's cached actions hold: nothing to refresh; the next: one stale.
    last_day = datetime.combine(until[first] - timedelta(days=1), time(3), tzinfo=UTC)
    assert ledger.refresh_projection(at=last_day) == 0
    expired = last_day + timedelta(days=1)
    stale, _ = ledger.projected_actions(at=expired)
    assert first in [s.contract_id for s in stale]
    assert ledger.refresh_projection(at=expired) == len(stale)
    assert ledger.projected_actions(at=expired)[0] == []  # nothing left to evaluate
    assert _projected_actions(ledger, expired, None) == _fold_actions(ledger, expired, None)
    assert ledger.refresh_projection(at=expired) == 0  # done once
    # An earlier day does not move the rows back.
    assert ledger.refresh_projection(at=_at(2)) == 0
    assert _row(ledger, first).evaluated_on == \
        tokyo_date(expired).isoformat()


def test_a_refresh_asked_to_stop_ends_between_chunks(ledger: Ledger,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopping service does not wait for the whole refresh: it ends after the chunk under
    way, and what is left stays for the next one."""
    import policy.ledger as ledger_module

    monkeypatch.setattr(ledger_module, "_REFRESH_CHUNK", 1)
    for cid in ("c1", "c2"):
        ledger.append(accepted(cid, at=_at(0)), now=_at(0))
    later = _at(200)
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # the first chunk runs, then it is asked to stop

    assert ledger.refresh_projection(at=later, stop=stop) == 1
    assert len(ledger.projected_actions(at=later)[0]) == 1  # one left for the next refresh
    assert ledger.refresh_projection(at=later) == 1


def test_two_refreshers_do_each_row_once(ledger_location: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two service processes refresh at their start: a row the other stored meanwhile is left
    alone (each chunk asks again which of its rows are still expired, under the write lock)."""
    import policy.ledger as ledger_module

    monkeypatch.setattr(ledger_module, "_REFRESH_CHUNK", 1)
    later = _at(200)
    with Ledger.open(ledger_location) as first, Ledger.open(ledger_location) as second:
        for cid in ("c1", "c2"):
            first.append(accepted(cid, at=_at(0)), now=_at(0))
        other: list[int] = []

        def meanwhile() -> bool:
            if not other:  # before the first chunk, the other process refreshes everything
                other.append(second.refresh_projection(at=later))
            return False

        assert first.refresh_projection(at=later, stop=meanwhile) == 0
        assert other == [2]
        assert first.projected_actions(at=later)[0] == []
