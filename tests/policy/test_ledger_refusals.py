"""CONTRACT.md "What the ledger refuses": each refusal cites its clause and writes nothing.

Every test here reads like the clause it enforces. The ledger's ``now`` (the time of recording)
is an argument, as the CLI passes the real clock: these tests fix it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from policy.category import Category
from policy.errors import ContractStateError, UnknownContractError
from policy.events import (
    TERMINATION_CLAUSES,
    AnswerReceived,
    CancellationArrived,
    CertificateBound,
    ContractChanged,
    Event,
    NoticeSent,
    RenewalMade,
    Terminated,
)
from policy.facts import CertificateFacts
from policy.ledger import Ledger
from policy.periods import PeriodRule
from policy.rules.art6 import Answer
from policy.settings import PolicySettings
from policy.state import PROVISO, ContractStatus
from policy.tiers import Tier
from policy.tokyo import tokyo_date, tokyo_midnight_utc
from tests.policy.ledger_fixtures import accepted, facts, utc

NOW = utc(2027, 6, 1, 3)
"""The recording clock of every test: after every event below."""
MIDNIGHT = tokyo_midnight_utc(date(2026, 2, 1))
"""2026-02-01 00:00 JST: a period starting here counts its first day (民法第140条)."""
LE_90 = facts(tag="le", not_before=MIDNIGHT, lifetime=timedelta(days=90))
"""Let's Encrypt: 90 days inclusive, ends 2026-05-01 23:59:59 JST (the 90th day)."""
BYO_91 = facts(tag="91", not_before=MIDNIGHT, lifetime=timedelta(days=91))
"""One day longer than the proviso's 90 days under either period rule: renewable."""
YEARLY = facts(tag="yearly", not_before=MIDNIGHT, lifetime=timedelta(days=300))
"""Ends 2026-11-27 (Tokyo); notice sent 2026-09-01 makes the answer deadline 2026-10-01."""
NOTICE = utc(2026, 9, 1, 3)
DEADLINE = date(2026, 10, 1)


def at_day(day: date, hour_jst: int = 12) -> datetime:
    return tokyo_midnight_utc(day) + timedelta(hours=hour_jst)


# `ledger`: tests/policy/conftest.py, once per backend (SQLite, PostgreSQL).


def _contract(ledger: Ledger, cert: CertificateFacts, *, category: Category = Category.III,
              item: str = "byo", tier: Tier | None = Tier.SIX_MONTHS) -> None:
    ledger.append(accepted(at=MIDNIGHT - timedelta(days=1), item=item, category=category,
                           tier=tier), now=NOW)
    ledger.append(CertificateBound(contract_id="c1", at_utc=MIDNIGHT, facts=cert), now=NOW)


def _yearly_category_i(ledger: Ledger, *, notice: bool = True) -> None:
    _contract(ledger, YEARLY, category=Category.I, item="globalsign-ov", tier=Tier.ONE_YEAR)
    if notice:
        ledger.append(NoticeSent(contract_id="c1", at_utc=NOTICE), now=NOW)


def _refused(ledger: Ledger, event: Event, match: str, *, now: datetime = NOW) -> str:
    """The event is refused with a message matching ``match``, and nothing is written."""
    before = ledger.count()
    with pytest.raises(ContractStateError, match=match) as caught:
        ledger.append(event, now=now)
    assert ledger.count() == before
    assert caught.value.exit_code == 15  # the policy family's "refused by the contract"
    return str(caught.value)


def _renewal(at: datetime, *, by_default: bool = False, sha: str | None = None) -> RenewalMade:
    return RenewalMade(contract_id="c1", at_utc=at, by_default=by_default,
                       certificate_sha256=sha)


# ---------------------------------------------------------------- Art.6(3) proviso


def test_a_category_iii_renewal_whose_certificate_is_within_90_days_is_refused(
        ledger: Ledger) -> None:
    _contract(ledger, LE_90)
    ledger.append(NoticeSent(contract_id="c1", at_utc=at_day(date(2026, 3, 1))), now=NOW)
    message = _refused(ledger, _renewal(at_day(date(2026, 4, 1))), r"Art\.6\(3\) proviso")
    assert "within 90 days" in message
    assert "2026-05-01" in message  # it ends with the certificate


def test_a_category_iii_certificate_one_day_longer_than_90_days_is_renewed(
        ledger: Ledger) -> None:
    _contract(ledger, BYO_91)
    ledger.append(_renewal(at_day(date(2026, 4, 1))), now=NOW)
    assert len(ledger.state("c1", at=NOW).renewals) == 1


def test_the_proviso_does_not_apply_to_category_i(ledger: Ledger) -> None:
    short = facts(tag="short-i", not_before=MIDNIGHT, lifetime=timedelta(days=90))
    _contract(ledger, short, category=Category.I, item="globalsign-ov", tier=Tier.SIX_MONTHS)
    ledger.append(_renewal(at_day(date(2026, 4, 1))), now=NOW)


# ---------------------------------------------------------------- renewal by default


def test_a_renewal_by_default_on_category_iii_is_refused(ledger: Ledger) -> None:
    _contract(ledger, YEARLY)
    ledger.append(NoticeSent(contract_id="c1", at_utc=NOTICE), now=NOW)
    message = _refused(ledger, _renewal(at_day(date(2026, 10, 10)), by_default=True),
                       r"category III: it has no renewal by default \(Art\.6\(3\)\)")
    assert "overdue answer" in message


def test_a_renewal_by_default_before_any_notice_is_refused(ledger: Ledger) -> None:
    _yearly_category_i(ledger, notice=False)
    _refused(ledger, _renewal(at_day(date(2026, 10, 10)), by_default=True),
             r"no renewal notice was recorded.*Art\.6\(2\)")


def test_a_renewal_by_default_on_the_answer_deadline_is_refused_and_the_day_after_admitted(
        ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    _refused(ledger, _renewal(at_day(DEADLINE, 23), by_default=True),
             r"the answer deadline 2026-10-01 has not passed.*Art\.6\(2\)")
    ledger.append(_renewal(tokyo_midnight_utc(DEADLINE + timedelta(days=1)), by_default=True),
                  now=NOW)
    assert ledger.state("c1", at=NOW).renewals[0].by_default


def test_a_renewal_by_default_after_a_timely_dont_renew_is_refused(ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=at_day(DEADLINE, 23),
                                 answer=Answer.DONT_RENEW), now=NOW)
    _refused(ledger, _renewal(at_day(date(2026, 10, 5)), by_default=True),
             r"answered \"don't renew\" on 2026-10-01, by the deadline")


@pytest.mark.parametrize(("answer", "day", "refused"), [
    (Answer.RENEW, date(2026, 8, 20), True),   # early: before the notice, an answer too
    (Answer.RENEW, DEADLINE, True),            # on the deadline: timely
    (Answer.RENEW, DEADLINE + timedelta(days=1), False),  # late: the default stands
])
def test_a_renewal_by_default_after_a_timely_renew_is_refused(
        ledger: Ledger, answer: Answer, day: date, refused: bool) -> None:
    """Art.6(2) takes a renewal as made only when no answer came: after a "renew" by the
    deadline the desk records the renewal itself, billed from acceptance (Art.10)."""
    _yearly_category_i(ledger)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=at_day(day, 9), answer=answer),
                  now=NOW)
    renewal = _renewal(at_day(date(2026, 10, 5)), by_default=True)
    if not refused:
        ledger.append(renewal, now=NOW)
        assert ledger.state("c1", at=NOW).renewals[0].by_default
        return
    message = _refused(ledger, renewal, rf"answered \"renew\" on {day.isoformat()}.*Art\.6\(2\)")
    assert "without --default" in message
    ledger.append(_renewal(at_day(date(2026, 10, 5))), now=NOW)


def test_a_renewal_not_by_default_with_a_designated_day_is_refused(ledger: Ledger) -> None:
    """Art.10: only a default renewal's fee is owed from a designated moment (the CLI's usage
    error is not the only guard: a script appending the event is refused too)."""
    _yearly_category_i(ledger)
    event = RenewalMade(contract_id="c1", at_utc=at_day(date(2026, 9, 10)),
                        designated=date(2026, 12, 31))
    _refused(ledger, event, r"only a default renewal's fee .*Art\.10")
    ledger.append(RenewalMade(contract_id="c1", at_utc=at_day(date(2026, 10, 2)),
                              by_default=True, designated=date(2026, 12, 31)), now=NOW)


# ---------------------------------------------------------------- one renewal, one fee


def test_a_second_renewal_of_the_same_certificate_is_refused(ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 9, 10))), now=NOW)
    message = _refused(ledger, _renewal(at_day(date(2026, 9, 11))), "already recorded")
    assert "one renewal, one fee" in message
    assert "Appx1.1" in message


def test_a_second_renewal_recorded_earlier_in_time_is_refused_too(ledger: Ledger) -> None:
    """Entered late with an earlier date, it would still bill the same renewal twice."""
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 9, 20))), now=NOW)
    _refused(ledger, _renewal(at_day(date(2026, 9, 10))), "one renewal, one fee")


def test_the_successors_renewal_is_a_new_renewal(ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 9, 10))), now=NOW)
    successor = facts(tag="successor", not_before=at_day(date(2026, 11, 1)),
                      lifetime=timedelta(days=300))
    ledger.append(CertificateBound(contract_id="c1", at_utc=at_day(date(2026, 11, 2)),
                                   facts=successor), now=NOW)
    ledger.append(_renewal(at_day(date(2027, 5, 1))), now=NOW)
    assert len(ledger.state("c1", at=NOW).renewals) == 2


def test_a_renewal_without_a_certificate_is_refused(ledger: Ledger) -> None:
    ledger.append(accepted(at=MIDNIGHT), now=NOW)
    _refused(ledger, _renewal(at_day(date(2026, 3, 1))), r"no certificate yet.*Art\.6")


def test_a_change_to_the_service_in_use_is_refused_even_back_dated(ledger: Ledger) -> None:
    """Art.5 changes the service that uses the certificate: to the same one, nothing changes
    and no one-time fee is owed. Entered late with an earlier date, a change to the service a
    later change recorded would make that later one a change to the service in use."""
    ledger.append(replace(accepted(at=MIDNIGHT), designated_service="svcA"), now=NOW)
    _refused(ledger, ContractChanged(contract_id="c1", at_utc=at_day(date(2026, 3, 1)),
                                     service="svcA"), r"already uses service 'svcA'.*Art\.5")
    ledger.append(ContractChanged(contract_id="c1", at_utc=at_day(date(2026, 3, 10)),
                                  service="svcB"), now=NOW)
    _refused(ledger, ContractChanged(contract_id="c1", at_utc=at_day(date(2026, 3, 5)),
                                     service="svcB"), "already uses service 'svcB'")
    assert [c.service for c in ledger.state("c1", at=NOW).changes] == ["svcB"]


# ---------------------------------------------------------------- when events may happen


def test_an_event_dated_before_acceptance_is_refused(ledger: Ledger) -> None:
    ledger.append(accepted(at=MIDNIGHT), now=NOW)
    _refused(ledger, ContractChanged(contract_id="c1", at_utc=MIDNIGHT - timedelta(seconds=1),
                                     service="x"), "before contract 'c1' was accepted")
    ledger.append(ContractChanged(contract_id="c1", at_utc=MIDNIGHT, service="x"), now=NOW)


def test_an_event_before_acceptance_on_the_same_day_names_both_instants(
        ledger: Ledger) -> None:
    """Accepted at 23:59 JST, a change dated 12:00 the same day: the refusal used to read
    "dated 2026-09-29 is before contract 'c1' was accepted (2026-09-29, Asia/Tokyo)"."""
    accepted_at = at_day(date(2026, 9, 29), 0) + timedelta(hours=23, minutes=59)
    ledger.append(accepted(at=accepted_at), now=NOW)
    message = _refused(ledger, ContractChanged(contract_id="c1",
                                               at_utc=at_day(date(2026, 9, 29)), service="x"),
                       "before contract")
    assert ("a contract-changed event dated 2026-09-29 12:00 JST is before contract 'c1' was "
            "accepted (2026-09-29 23:59 JST)") in message
    with pytest.raises(UnknownContractError,
                       match="no contract 'c1' in the ledger as of 2026-09-29 12:00 JST"):
        ledger.state("c1", at=at_day(date(2026, 9, 29)))


def test_a_back_dated_event_refused_for_a_later_one_that_day_names_both_instants(
        ledger: Ledger) -> None:
    """A renewal recorded at 15:00, then a "don't renew" dated 10:00 the same day: the answer
    would rule out the renewal after it. Both instants are shown (it read "dated 2026-11-05
    (Asia/Tokyo) ... a renewal-made event dated 2026-11-05 that it would rule out")."""
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 11, 5), 15)), now=NOW)
    answer = AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 11, 5), 10),
                            answer=Answer.DONT_RENEW)
    message = _refused(ledger, answer, "would rule out")
    assert message.startswith(
        "an answer-received event dated 2026-11-05 10:00 JST is refused: the journal already "
        "holds a renewal-made event dated 2026-11-05 15:00 JST that it would rule out (")


def test_an_event_after_the_termination_took_effect_is_refused_but_its_record_is_not(
        ledger: Ledger) -> None:
    """A form that arrived on 08-31 takes effect on 09-30 (Art.9(2)): the contract runs through
    that day (one rule for every clause), so a change on 09-30 is admitted and one on 10-01 is
    not; the record that it ended is admitted after it."""
    _yearly_category_i(ledger)
    ledger.append(CancellationArrived(contract_id="c1", at_utc=at_day(date(2026, 8, 31)),
                                      arrived=date(2026, 8, 31)), now=NOW)
    ledger.append(ContractChanged(contract_id="c1", at_utc=at_day(date(2026, 9, 30), 23),
                                  service="on the termination day"), now=NOW)
    _refused(ledger, ContractChanged(contract_id="c1", at_utc=tokyo_midnight_utc(
        date(2026, 10, 1)), service="too late"), r"terminated on 2026-09-30 \(Art\.9\(2\)\)")
    ledger.append(Terminated(contract_id="c1", at_utc=at_day(date(2026, 10, 2)),
                             effective=date(2026, 9, 30), clause="Art.9(2)",
                             reason="the record that it ended"), now=NOW)


def test_an_event_in_the_future_of_the_clock_is_refused(ledger: Ledger) -> None:
    """The ledger records what happened: --at in the future is for questions."""
    message = _refused(ledger, accepted(at=NOW + timedelta(seconds=1)), "in the future",
                       now=NOW)
    assert "for questions" in message
    ledger.append(accepted(at=NOW), now=NOW)


def test_the_time_of_recording_is_the_callers_now(ledger: Ledger) -> None:
    ledger.append(accepted(at=MIDNIGHT), now=NOW)
    [entry] = ledger.journal("c1")
    assert entry.event.at_utc == MIDNIGHT
    assert entry.recorded == NOW


# ---------------------------------------------------------------- answers


def test_dont_renew_after_a_default_renewal_is_refused_pointing_to_art9_2(
        ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 10, 2)), by_default=True), now=NOW)
    message = _refused(ledger, AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 10, 3)),
                                              answer=Answer.DONT_RENEW), r"Art\.9\(1\)")
    assert "cancellation form under Art.9(2)" in message
    assert "certescrow contract cancel" in message


def test_dont_renew_after_an_explicit_renewal_of_the_certificate_is_refused_too(
        ledger: Ledger) -> None:
    """Review 12, defect 5: the explicit renewal is recorded and billed like a default one; an
    Art.9(1) end at the close of this certificate would leave it never taking effect."""
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 9, 20))), now=NOW)
    message = _refused(ledger, AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 9, 20),
                                                                                 13),
                                              answer=Answer.DONT_RENEW), r"Art\.9\(1\)")
    assert "recorded on 2026-09-20" in message
    assert "cancellation form under Art.9(2)" in message
    assert ledger.state("c1", at=NOW).terminated_on is None  # the renewal stands


def test_a_renew_answer_after_an_explicit_renewal_is_still_recorded(ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 9, 20))), now=NOW)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 9, 21)),
                                 answer=Answer.RENEW), now=NOW)
    assert ledger.state("c1", at=NOW).answer is Answer.RENEW


def test_dont_renew_for_the_next_cycle_after_a_renewal_and_a_new_certificate_is_recorded(
        ledger: Ledger) -> None:
    """The refusal is about the renewal of the *current* certificate: once the renewed one is
    bound, an early "don't renew" answers the new cycle and ends it under Art.9(1)."""
    _yearly_category_i(ledger)
    ledger.append(_renewal(at_day(date(2026, 9, 20))), now=NOW)
    successor = facts(tag="next", not_before=tokyo_midnight_utc(date(2026, 11, 20)),
                      lifetime=timedelta(days=300))
    ledger.append(CertificateBound(contract_id="c1", at_utc=at_day(date(2026, 11, 20)),
                                   facts=successor), now=NOW)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=at_day(date(2026, 11, 21)),
                                 answer=Answer.DONT_RENEW), now=NOW)
    state = ledger.state("c1", at=NOW)
    assert state.answer is Answer.DONT_RENEW
    assert state.answer_timing == "early"


@pytest.mark.parametrize(("day", "timing"), [
    (DEADLINE, "on-time"),
    (DEADLINE + timedelta(days=1), "late"),
])
def test_an_answer_after_the_deadline_is_recorded_and_marked_late(
        ledger: Ledger, day: date, timing: str) -> None:
    _yearly_category_i(ledger)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=at_day(day, 23),
                                 answer=Answer.RENEW), now=NOW)
    assert ledger.state("c1", at=NOW).answer_timing == timing
    [answer] = [e.event for e in ledger.journal("c1") if isinstance(e.event, AnswerReceived)]
    assert answer.timing == timing
    assert ledger.journal("c1")[-1].to_json()["timing"] == timing


def test_an_answer_before_any_notice_is_recorded_and_marked_early(ledger: Ledger) -> None:
    _yearly_category_i(ledger, notice=False)
    ledger.append(AnswerReceived(contract_id="c1", at_utc=NOTICE, answer=Answer.RENEW), now=NOW)
    assert ledger.state("c1", at=NOW).answer_timing == "early"


# ---------------------------------------------------------------- termination clauses


def test_a_termination_under_an_unknown_clause_is_refused(ledger: Ledger) -> None:
    _yearly_category_i(ledger)
    message = _refused(ledger, Terminated(contract_id="c1", at_utc=NOTICE,
                                          effective=date(2026, 9, 30), clause="Art.99"),
                       "clauses that end a contract")
    for clause in TERMINATION_CLAUSES:
        assert clause in message


@pytest.mark.parametrize("clause", ["Art.6(3) proviso", "Art.9(1)", "Art.9(2)"])
def test_each_clause_that_ends_a_contract_is_admitted_when_its_conditions_hold(
        ledger: Ledger, clause: str) -> None:
    """A termination record states a fact in its clause's words, so each clause's own
    conditions must hold (Art.8's, which need the catalogue's product end, are in
    tests/policy/test_ledger_fixed_end.py)."""
    if clause == PROVISO:
        _contract(ledger, LE_90)  # category III, 90 days: ends 2026-05-01
        effective = date(2026, 5, 1)
    else:
        _yearly_category_i(ledger)
        if clause == "Art.9(1)":
            ledger.append(AnswerReceived(contract_id="c1", at_utc=NOTICE,
                                         answer=Answer.DONT_RENEW), now=NOW)
            effective = tokyo_date(YEARLY.not_after_utc)
        else:
            ledger.append(CancellationArrived(contract_id="c1", at_utc=NOTICE,
                                              arrived=date(2026, 9, 1)), now=NOW)
            effective = date(2026, 10, 1)
    ledger.append(Terminated(contract_id="c1", at_utc=at_day(date(2026, 9, 2)),
                             effective=effective, clause=clause), now=NOW)
    state = ledger.state("c1", at=at_day(date(2026, 4, 1)) if clause == PROVISO else NOW)
    assert (state.terminated_on, state.termination_clause) == (effective, clause)


# ---------------------------------------------------------------- cannot be renewed (proviso)


def test_a_contract_whose_certificate_cannot_be_renewed_ends_with_it(ledger: Ledger) -> None:
    _contract(ledger, LE_90)
    last_day = tokyo_date(LE_90.not_after_utc)
    assert last_day == date(2026, 5, 1)
    known = ledger.state("c1", at=at_day(date(2026, 2, 2)))
    assert known.renewable is False
    assert known.status is ContractStatus.TERMINATING  # said from the moment it is known
    assert (known.terminated_on, known.termination_clause) == (last_day, PROVISO)
    assert ledger.state("c1", at=at_day(last_day + timedelta(days=1))).status is \
        ContractStatus.TERMINATED
    assert known.to_json()["renewable"] is False


def test_a_renewable_certificate_bound_on_the_last_day_saves_the_contract(
        ledger: Ledger) -> None:
    _contract(ledger, LE_90)
    last_day = tokyo_date(LE_90.not_after_utc)
    successor = facts(tag="renewable", not_before=at_day(last_day), lifetime=timedelta(days=200))
    ledger.append(CertificateBound(contract_id="c1", at_utc=at_day(last_day, 20),
                                   facts=successor), now=NOW)
    state = ledger.state("c1", at=NOW)
    assert state.renewable is True
    assert state.terminated_on is None
    assert state.status is ContractStatus.ACTIVE


def test_a_certificate_bound_the_day_after_comes_too_late(ledger: Ledger) -> None:
    _contract(ledger, LE_90)
    after = tokyo_date(LE_90.not_after_utc) + timedelta(days=1)
    successor = facts(tag="late", not_before=at_day(after), lifetime=timedelta(days=200))
    _refused(ledger, CertificateBound(contract_id="c1", at_utc=at_day(after), facts=successor),
             r"terminated on 2026-05-01 \(Art\.6\(3\) proviso\)")


@pytest.mark.parametrize(("rule", "refused"), [
    (PeriodRule.CIVIL_CODE, True), (PeriodRule.ELAPSED, False)])
def test_the_proviso_counts_90_days_by_the_configured_period_rule(
        tmp_path: Path, rule: PeriodRule, refused: bool) -> None:
    """Issued 12:00 JST, 90 days and 1 s: under the Civil Code the first day is not counted
    (民法第140条) and the certificate ends on the period's last day (within 90 days); by
    elapsed time it is one second longer than 90 days."""
    mid_day = at_day(date(2026, 2, 1))
    cert = facts(tag="mid-day", not_before=mid_day, lifetime=timedelta(days=90, seconds=1))
    settings = PolicySettings(period_rule=rule)
    with Ledger.open(tmp_path / "l.sqlite3", settings=settings) as ledger:
        ledger.append(accepted(at=mid_day, tier=Tier.SIX_MONTHS), now=NOW)
        ledger.append(CertificateBound(contract_id="c1", at_utc=mid_day, facts=cert), now=NOW)
        assert ledger.state("c1", at=NOW).renewable is not refused
        renewal = _renewal(at_day(date(2026, 4, 1)))
        if refused:
            _refused(ledger, renewal, r"Art\.6\(3\) proviso")
        else:
            ledger.append(renewal, now=NOW)


def test_the_non_renewable_contracts_termination_explains_the_proviso(ledger: Ledger) -> None:
    from policy.catalogue import load_catalogue
    from policy.decisions import Action
    from policy.evaluate import evaluate_contract

    _contract(ledger, LE_90)
    at = at_day(date(2026, 4, 20))
    decisions = evaluate_contract(ledger.state("c1", at=at), load_catalogue(),
                                  PolicySettings(), at=at)
    [end] = [d for d in decisions if d.action is Action.TERMINATE]
    assert (end.clause, end.due) == (PROVISO, date(2026, 5, 1))
    assert "90" in end.explanation_en
    assert "not refunded" not in end.explanation_en  # that sentence is Art.9(2)'s alone
    assert Action.RENEWAL_BLOCKED in {d.action for d in decisions}


def test_a_certificate_the_agent_sees_after_the_last_day_does_not_revive_the_contract(
        ledger: Ledger) -> None:
    """Observations are always recorded, but the contract ended with its non-renewable
    certificate: a successor seen the day after changes nothing about that."""
    from policy.intake import Binding, Observation

    _contract(ledger, LE_90)
    after = tokyo_date(LE_90.not_after_utc) + timedelta(days=1)
    successor = facts(tag="seen-late", not_before=at_day(after), lifetime=timedelta(days=200))
    ledger.report([Observation(facts=successor, host="web1", location="/srv/site.pem", index=0,
                               observed_at_utc=at_day(after), binding=Binding(contract_id="c1"))],
                  at=at_day(after))
    state = ledger.state("c1", at=at_day(after + timedelta(days=1)))
    assert state.certificate == successor  # what is deployed is recorded
    assert (state.terminated_on, state.termination_clause) == (date(2026, 5, 1), PROVISO)
    assert state.status is ContractStatus.TERMINATED
