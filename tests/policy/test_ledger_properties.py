"""Properties of the fold: the past never depends on the future; due stays due; threads."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.catalogue import load_catalogue
from policy.decisions import Action
from policy.evaluate import evaluate_contract
from policy.events import (
    AnswerReceived,
    CancellationArrived,
    ContractChanged,
    Event,
    NoticeSent,
)
from policy.ledger import Ledger
from policy.rules.art6 import Answer
from policy.settings import PolicySettings
from policy.state import fold
from policy.tokyo import tokyo_date
from tests.policy.ledger_fixtures import T0, accepted, bound, facts

CERT = facts(tag="prop", lifetime=timedelta(days=365))
CATALOGUE = load_catalogue()


def _later_event(kind: int, minutes: int) -> Event:
    at = T0 + timedelta(minutes=minutes)
    if kind == 0:
        return NoticeSent(contract_id="c1", at_utc=at)
    if kind == 1:
        return AnswerReceived(contract_id="c1", at_utc=at, answer=Answer.RENEW)
    if kind == 2:
        return AnswerReceived(contract_id="c1", at_utc=at, answer=Answer.DONT_RENEW)
    if kind == 3:
        return ContractChanged(contract_id="c1", at_utc=at, service=f"s{minutes}")
    day = tokyo_date(at)
    return CancellationArrived(contract_id="c1", at_utc=at, arrived=day, requested=None)


events_strategy = st.lists(
    st.tuples(st.integers(0, 4), st.integers(1, 400 * 24 * 60)), max_size=12)


@given(events_strategy, st.integers(0, 400 * 24 * 60))
def test_state_at_an_instant_depends_only_on_events_up_to_it(
        raw: list[tuple[int, int]], cut_minutes: int) -> None:
    later = sorted((_later_event(k, m) for k, m in raw), key=lambda e: e.at_utc)
    history: list[Event] = [accepted(), bound(cert=CERT), *later]
    at = T0 + timedelta(minutes=cut_minutes)
    past_only = [e for e in history if e.at_utc <= at]
    assert fold("c1", history, at=at) == fold("c1", past_only, at=at)


@settings(max_examples=60)
@given(st.integers(0, 360), st.integers(1, 60))
def test_once_the_notice_is_due_it_stays_due_until_sent(day: int, step: int) -> None:
    state_events: list[Event] = [accepted(), bound(cert=CERT)]
    at = T0 + timedelta(days=day)
    later = at + timedelta(days=step)

    def notify_due(when: datetime) -> bool:
        state = fold("c1", state_events, at=when)
        decisions = evaluate_contract(state, CATALOGUE, PolicySettings(), at=when)
        return any(d.action is Action.NOTIFY and d.due is not None
                   and d.due <= tokyo_date(when) for d in decisions)

    if notify_due(at) and later < CERT.not_after_utc:
        assert notify_due(later)


def test_threads_sharing_one_ledger_lose_nothing(ledger: Ledger) -> None:
    ledger.append(accepted())
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                ledger.append(ContractChanged(contract_id="c1", at_utc=T0,
                                              service=f"t{n}-{i}"))
                list(ledger.states(at=T0))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ledger.count() == 1 + 4 * 25
    assert fold("c1", [e.event for e in ledger.journal("c1")],
                at=T0).changes[-1].accepted_on == date(2026, 1, 15)
