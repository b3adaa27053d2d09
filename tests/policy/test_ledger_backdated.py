"""A back-dated event is checked against the whole journal, and Art.9(2) needs a validity
period (CONTRACT.md "What the ledger refuses", Art.9(2); docs/ledger.md "Back-dated events").

"Any event after the contract's termination has taken effect, except the record that it ended"
is refused whichever was typed first: the event dated later, or the back-dated one that would
end the contract before it. Whether the ledger accepts an event never depends on the order it
was entered in.
"""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.errors import ContractStateError, FutureEventError
from policy.events import (
    AnswerReceived,
    CancellationArrived,
    CertificateBound,
    ContractChanged,
    Event,
    NoticeSent,
    Terminated,
)
from policy.ledger import Ledger
from policy.rules.art6 import Answer
from policy.state import PROVISO
from policy.tiers import Tier
from policy.tokyo import tokyo_date, tokyo_midnight_utc
from tests.policy.ledger_fixtures import accepted, facts, utc

CATALOGUE = load_catalogue()
NOW = utc(2026, 11, 27, 1)
"""The recording clock: 2026-11-27 10:00 JST, after every event below."""
ADDED = tokyo_midnight_utc(date(2026, 4, 1))
CERT = facts(tag="year", not_before=ADDED, lifetime=timedelta(days=365))
"""Valid 2026-04-01 .. 2027-03-31 (Tokyo): every day below is in its validity period."""
ARRIVED = date(2026, 4, 24)


def at_day(day: date, hour_jst: int = 12) -> datetime:
    return tokyo_midnight_utc(day) + timedelta(hours=hour_jst)


def _desk_block(ledger: Ledger) -> None:
    """README's desk block: added and bound in April, notice and answer in November."""
    ledger.append(accepted(at=ADDED, item="globalsign-ov", category=Category.I,
                           tier=Tier.ONE_YEAR), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=ADDED, facts=CERT), now=NOW)
    ledger.append(NoticeSent(contract_id="c1", at_utc=at_day(date(2026, 11, 2))), now=NOW)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 11, 5)),
                                 answer=Answer.RENEW), now=NOW)


def _cancellation(requested: date | None) -> CancellationArrived:
    return CancellationArrived(contract_id="c1", at_utc=tokyo_midnight_utc(ARRIVED),
                               arrived=ARRIVED, requested=requested)


def _refused(ledger: Ledger, event: Event, match: str) -> str:
    before = ledger.count()
    with pytest.raises(ContractStateError, match=match) as caught:
        ledger.append(event, now=NOW)
    assert ledger.count() == before  # nothing written
    return str(caught.value)


# ------------------------------------------------ a back-dated event vs. the events after it


def test_a_cancellation_entered_last_cannot_end_the_contract_before_events_already_recorded(
        ledger: Ledger) -> None:
    """Art.9(2) effective 2026-06-30 would put November's notice and answer after the end."""
    _desk_block(ledger)
    message = _refused(ledger, _cancellation(date(2026, 6, 30)), "already holds")
    assert "a cancellation-arrived event dated 2026-04-24" in message
    assert "a notice-sent event dated 2026-11-02" in message
    assert "terminated on 2026-06-30 (Art.9(2))" in message
    state = ledger.state("c1", at=NOW)
    assert state.terminated_on is None
    assert state.cancellation is None


def test_entered_the_other_way_round_the_later_event_is_the_one_refused(
        ledger: Ledger) -> None:
    """The same events, the cancellation first: the notice is refused instead. Either way the
    journal never holds an event after the termination took effect."""
    ledger.append(accepted(at=ADDED, item="globalsign-ov", category=Category.I,
                           tier=Tier.ONE_YEAR), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=ADDED, facts=CERT), now=NOW)
    ledger.append(_cancellation(date(2026, 6, 30)), now=NOW)
    _refused(ledger, NoticeSent(contract_id="c1", at_utc=at_day(date(2026, 11, 2))),
             r"terminated on 2026-06-30 \(Art.9\(2\)\)")


@pytest.mark.parametrize(("requested", "admitted"), [
    (date(2026, 11, 4), False),  # effective the day before the answer's: the answer is after it
    # effective on the answer's day: the contract runs through its termination day (CONTRACT.md
    # Art.9(1), Art.6(3); one rule for every clause), so the answer is not after it
    (date(2026, 11, 5), True),
])
def test_a_back_dated_cancellation_taking_effect_after_every_recorded_event_is_recorded(
        ledger: Ledger, requested: date, admitted: bool) -> None:
    _desk_block(ledger)
    if not admitted:
        message = _refused(ledger, _cancellation(requested),
                           "an answer-received event dated 2026-11-05")
        assert "terminated on 2026-11-04 (Art.9(2))" in message
        return
    ledger.append(_cancellation(requested), now=NOW)
    assert ledger.state("c1", at=NOW).terminated_on == requested


@pytest.mark.parametrize(("effective", "admitted"), [
    (date(2026, 11, 4), False),
    (date(2026, 11, 5), True),  # the contract runs through its termination day
])
def test_a_termination_record_cannot_take_effect_before_events_already_recorded(
        ledger_location: str, effective: date, admitted: bool) -> None:
    """Recorded today, effective earlier (Art.8): not before an event the journal holds, even
    one dated before the record itself. The CA ended the product on 2026-10-01 (an amended
    catalogue), so Art.8's own conditions hold on both days."""
    items = dict(CATALOGUE.items)
    items["globalsign-ov"] = dataclasses.replace(items["globalsign-ov"],
                                                 product_end=date(2026, 10, 1))
    amended = dataclasses.replace(CATALOGUE, items=items)
    with Ledger.open(ledger_location, catalogue=amended) as ledger:
        _check_termination_record(ledger, effective, admitted)


def _check_termination_record(ledger: Ledger, effective: date, admitted: bool) -> None:
    _desk_block(ledger)
    ended = Terminated(contract_id="c1", at_utc=NOW, effective=effective, clause="Art.8")
    if not admitted:
        message = _refused(ledger, ended, "a termination effective 2026-11-04")
        assert "an answer-received event dated 2026-11-05" in message
        return
    ledger.append(ended, now=NOW)
    assert ledger.state("c1", at=NOW).termination_clause == "Art.8"


def test_a_back_dated_bind_of_a_certificate_that_cannot_be_renewed_is_checked_too(
        ledger: Ledger) -> None:
    """Art.6(3) proviso: a 90-day certificate bound in April would end a category III contract
    on 2026-06-29, before the change recorded for November."""
    ledger.append(accepted(at=ADDED, tier=Tier.ONE_YEAR), now=NOW)  # byo, category III
    ledger.append(CertificateBound(contract_id="c1", at_utc=ADDED, facts=CERT), now=NOW)
    ledger.append(ContractChanged(contract_id="c1", at_utc=at_day(date(2026, 11, 2)),
                                  service="svc"), now=NOW)
    short = facts(tag="90", not_before=ADDED, lifetime=timedelta(days=90))
    message = _refused(ledger, CertificateBound(contract_id="c1", at_utc=at_day(ARRIVED),
                                                facts=short), "already holds")
    assert PROVISO in message


def test_an_event_dated_now_after_the_journal_is_checked_only_at_its_own_day(
        ledger: Ledger) -> None:
    _desk_block(ledger)
    ledger.append(CancellationArrived(contract_id="c1", at_utc=at_day(date(2026, 11, 20)),
                                      arrived=date(2026, 11, 20)), now=NOW)
    assert ledger.state("c1", at=NOW).terminated_on == date(2026, 12, 20)


@pytest.mark.parametrize(("notice_day", "timing"), [
    (date(2026, 10, 5), "on-time"),  # deadline 2026-11-04: the answer of 11-04 is in time
    (date(2026, 10, 4), "late"),     # deadline 2026-11-03: the answer of 11-04 is after it
])
def test_an_answer_is_marked_by_the_notice_dated_before_it_whenever_that_was_entered(
        ledger: Ledger, notice_day: date, timing: str) -> None:
    """Recorded first, the answer was "early" (no notice yet); the notice entered afterwards
    but dated before it marks it as if they had been entered in date order."""
    ledger.append(accepted(at=ADDED, item="globalsign-ov", category=Category.I,
                           tier=Tier.ONE_YEAR), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=ADDED, facts=CERT), now=NOW)
    answer = AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 11, 4)),
                            answer=Answer.RENEW)
    ledger.append(answer, now=NOW)
    assert ledger.state("c1", at=NOW).answer_timing == "early"
    ledger.append(NoticeSent(contract_id="c1", at_utc=at_day(notice_day)), now=NOW)
    assert ledger.state("c1", at=NOW).answer_timing == timing


@pytest.mark.parametrize(("answered", "admitted"), [
    (date(2027, 3, 31), True),   # the certificate's last day: the contract is still in force
    (date(2027, 4, 1), False),   # the day after: Art.9(1) would end it before the answer came
])
def test_a_dont_renew_answer_is_admitted_up_to_the_certificates_last_day(
        ledger: Ledger, answered: date, admitted: bool) -> None:
    now = utc(2027, 5, 1)
    ledger.append(accepted(at=ADDED, item="globalsign-ov", category=Category.I,
                           tier=Tier.ONE_YEAR), now=now)
    ledger.append(CertificateBound(contract_id="c1", at_utc=ADDED, facts=CERT), now=now)
    answer = AnswerReceived(contract_id="c1", at_utc=at_day(answered), answer=Answer.DONT_RENEW)
    if admitted:
        ledger.append(answer, now=now)
        assert ledger.state("c1", at=now).terminated_on == date(2027, 3, 31)
        return
    before = ledger.count()
    with pytest.raises(ContractStateError, match=r"terminated on 2027-03-31 \(Art.9\(1\)\)"):
        ledger.append(answer, now=now)
    assert ledger.count() == before


# ------------------------------------------------ the fold's rule for an older journal


def test_the_fold_ignores_an_event_an_older_ledger_recorded_after_the_termination(
        ledger: Ledger) -> None:
    """A journal written before these checks may hold such an event: it is skipped (journal
    order decides), said in ``problems``, and the termination stands."""
    ledger.append(accepted(at=ADDED, item="globalsign-ov", category=Category.I,
                           tier=Tier.ONE_YEAR), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=ADDED, facts=CERT), now=NOW)
    ledger.append(_cancellation(date(2026, 6, 30)), now=NOW)
    notice = NoticeSent(contract_id="c1", at_utc=at_day(date(2026, 11, 2)))
    ledger._write(lambda: ledger._insert(notice, None, NOW))  # as an older certescrow did
    state = ledger.state("c1", at=NOW)
    assert state.terminated_on == date(2026, 6, 30)
    assert state.notice_sent is None
    assert any("terminated on 2026-06-30 (Art.9(2))" in str(p) for p in ledger.problems)


# ------------------------------------------------ Art.9(2) needs a validity period


def test_a_cancellation_form_with_no_certificate_is_not_an_art_9_2_cancellation(
        ledger: Ledger) -> None:
    """第9条第2項: 「SSL サーバ証明書の有効期間中に」: before any certificate is the contract's
    there is no validity period, and the terms fix no day for the form."""
    ledger.append(accepted(at=ADDED), now=NOW)
    message = _refused(ledger, _cancellation(None), "had no certificate on 2026-04-24")
    assert "Art.9(2)" in message
    assert "validity period" in message


def test_a_cancellation_form_after_the_certificate_was_bound_is_recorded(
        ledger: Ledger) -> None:
    ledger.append(accepted(at=ADDED), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=tokyo_midnight_utc(ARRIVED)
                                   - timedelta(seconds=1), facts=CERT), now=NOW)
    ledger.append(_cancellation(None), now=NOW)
    assert ledger.state("c1", at=NOW).terminated_on == date(2026, 5, 24)


# ------------------------------------------------ messages in Tokyo time


def test_a_future_event_is_refused_in_tokyo_time_with_its_article(ledger: Ledger) -> None:
    future = tokyo_midnight_utc(date(2027, 1, 1))
    with pytest.raises(FutureEventError) as caught:
        ledger.append(accepted(at=future), now=NOW)
    message = str(caught.value)
    assert "an application-accepted event dated 2027-01-01 00:00 JST" in message
    assert "now 2026-11-27 10:00 JST" in message
    assert "T15:00" not in message
    assert "000000" not in message
    assert caught.value.exit_code == 15


# ------------------------------------------------ property: whatever the insertion order

START = date(2026, 4, 1)
step = st.tuples(
    st.sampled_from(["bind", "bind-short", "notify", "answer-dont", "answer-renew", "cancel",
                     "change", "terminate"]),
    st.integers(min_value=0, max_value=420),
    st.integers(min_value=0, max_value=120),
)
SHORT = facts(tag="short", not_before=tokyo_midnight_utc(START), lifetime=timedelta(days=60))
LONG = facts(tag="long", not_before=tokyo_midnight_utc(START), lifetime=timedelta(days=400))
NEXT = facts(tag="next", not_before=tokyo_midnight_utc(START), lifetime=timedelta(days=400))
"""Another long certificate: binding the bound one again is a repeated record, refused."""
LAST = utc(2027, 6, 1)


def _event(kind: str, day: int, extra: int) -> Event:
    when = START + timedelta(days=day)
    at = at_day(when)
    match kind:
        case "bind" | "bind-short" | "bind-next":
            return CertificateBound(contract_id="c1", at_utc=at, facts={
                "bind-short": SHORT, "bind-next": NEXT}.get(kind, LONG))
        case "notify":
            return NoticeSent(contract_id="c1", at_utc=at)
        case "answer-dont" | "answer-renew":
            return AnswerReceived(contract_id="c1", at_utc=at, answer=(
                Answer.RENEW if kind == "answer-renew" else Answer.DONT_RENEW))
        case "cancel":
            return CancellationArrived(contract_id="c1", at_utc=tokyo_midnight_utc(when),
                                       arrived=when,
                                       requested=when + timedelta(days=extra))
        case "change":
            return ContractChanged(contract_id="c1", at_utc=at, service="svc")
        case _:
            return Terminated(contract_id="c1", at_utc=at, clause="Art.8",
                              effective=when + timedelta(days=extra - 60))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(category=st.sampled_from([Category.I, Category.III]),
       steps=st.lists(step, min_size=1, max_size=12))
def test_no_accepted_event_is_dated_after_the_termination_took_effect_whatever_the_order(
        category: Category, steps: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            Ledger.open(Path(tmp) / "l.sqlite3") as ledger:
        item = "byo" if category is Category.III else "globalsign-ov"
        ledger.append(accepted(at=tokyo_midnight_utc(START), item=item, category=category,
                               tier=Tier.ONE_YEAR), now=LAST)
        for kind, day, extra in steps:
            before = ledger.count()
            try:
                ledger.append(_event(kind, day, extra), now=LAST)
            except ContractStateError:
                assert ledger.count() == before  # a refusal writes nothing
        state = ledger.state("c1", at=LAST)
        assert not ledger.problems  # nothing the fold had to skip
        ended = state.terminated_on
        if ended is None:
            return
        # The contract runs through its termination day whatever the clause (policy/state.py
        # _is_after, review 11): an event that day applies, none from the next day on. (This
        # said "before the day" for Art.9(2) and Art.8 until a run found a bind on the day an
        # Art.9(2) cancellation took effect, which that rule admits.)
        for entry in ledger.journal("c1"):
            event = entry.event
            if isinstance(event, Terminated) or entry.seq == 1:
                continue
            day = tokyo_date(event.at_utc)
            assert day <= ended, (event, ended, state.termination_clause)


@pytest.mark.parametrize("cancel_first", [True, False])
def test_a_bind_on_the_day_a_cancellation_takes_effect_applies_the_next_day_none(
        cancel_first: bool) -> None:
    """Art.9(2): the form arrived on day 210, the customer named day 330; the contract runs
    through day 330 (one rule for every clause), so a certificate bound that day is the
    contract's, one bound the day after is refused, in either order of recording."""
    with tempfile.TemporaryDirectory() as tmp, \
            Ledger.open(Path(tmp) / "l.sqlite3") as ledger:
        ledger.append(accepted(at=tokyo_midnight_utc(START), item="globalsign-ov",
                               category=Category.I, tier=Tier.ONE_YEAR), now=LAST)
        ledger.append(_event("bind", 0, 0), now=LAST)
        steps = [("cancel", 210, 120), ("bind-next", 330, 0)]
        for kind, day, extra in (steps if cancel_first else steps[::-1]):
            ledger.append(_event(kind, day, extra), now=LAST)
        state = ledger.state("c1", at=LAST)
        assert state.terminated_on == START + timedelta(days=330)
        assert state.termination_clause == "Art.9(2)"
        with pytest.raises(ContractStateError, match="terminated on"):
            ledger.append(_event("bind", 331, 0), now=LAST)
