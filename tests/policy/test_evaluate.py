"""State after each event type, and what ``evaluate_contract`` calls for from it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from policy.catalogue import Catalogue, load_catalogue, parse_catalogue
from policy.category import Category
from policy.decisions import Action
from policy.evaluate import due_actions, evaluate_contract, fee_history
from policy.events import (
    AnswerReceived,
    CancellationArrived,
    CertificateGone,
    CertificateObserved,
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
from policy.settings import PolicySettings, PriceList
from policy.state import ContractState, ContractStatus, fold
from policy.tiers import Tier
from policy.tokyo import tokyo_date, tokyo_midnight_utc
from tests.policy.ledger_fixtures import T0, accepted, bound, facts, utc

CATALOGUE = load_catalogue()
SETTINGS = PolicySettings()
CERT = facts(tag="first", lifetime=timedelta(days=300))  # ends 2026-11-11 (Tokyo)
END = tokyo_date(CERT.not_after_utc)


def _fold(*events: Event, at: datetime, cid: str = "c1") -> ContractState:
    return fold(cid, sorted(events, key=lambda e: e.at_utc), at=at)


def _actions(state: ContractState, at: datetime,
             catalogue: Catalogue = CATALOGUE) -> list[Action]:
    return [d.action for d in evaluate_contract(state, catalogue, SETTINGS, at=at)]


def _observed(cert: CertificateFacts, at: datetime, *, location: str = "/a.pem",
              contract: str | None = "c1") -> CertificateObserved:
    return CertificateObserved(contract_id=contract, at_utc=at, facts=cert, host="web1",
                               location=location, index=0)


# ---------------------------------------------------------------- state after each event type


def test_state_after_application_accepted() -> None:
    state = _fold(accepted(at=utc(2026, 1, 14, 15, 0)), at=T0)
    assert state.contract_id == "c1"
    assert (state.item, state.category, state.tier) == ("byo", Category.III, Tier.ONE_YEAR)
    assert state.accepted_on == date(2026, 1, 15)  # 15:00Z is the next Tokyo day
    assert state.certificate is None
    assert state.status is ContractStatus.ACTIVE
    assert state.terminated_on is None


def test_state_after_certificate_bound() -> None:
    state = _fold(accepted(), bound(cert=CERT), at=T0)
    assert state.certificate == CERT
    assert state.certificate_source == "bound"
    assert state.previous_certificate is None


def test_state_repeated_notice_is_a_reminder_and_keeps_the_first_day() -> None:
    first, reminder = utc(2026, 8, 13, 1), utc(2026, 9, 1, 1)
    state = _fold(accepted(), bound(cert=CERT), NoticeSent(contract_id="c1", at_utc=first),
                  NoticeSent(contract_id="c1", at_utc=reminder), at=reminder)
    assert state.notice_sent == date(2026, 8, 13)


def test_state_after_notice_sent_and_answer_renew() -> None:
    notice_at = utc(2026, 8, 20, 1)
    state = _fold(accepted(), bound(cert=CERT),
                  NoticeSent(contract_id="c1", at_utc=notice_at),
                  AnswerReceived(contract_id="c1", at_utc=notice_at + timedelta(days=3),
                                 answer=Answer.RENEW), at=notice_at + timedelta(days=4))
    assert state.notice_sent == date(2026, 8, 20)
    assert state.answer is Answer.RENEW
    assert state.answered_on == date(2026, 8, 23)
    assert state.terminated_on is None


def test_state_after_answer_dont_renew_terminates_at_end_of_validity_art9_1() -> None:
    answered = utc(2026, 9, 1)
    events = (accepted(), bound(cert=CERT),
              AnswerReceived(contract_id="c1", at_utc=answered, answer=Answer.DONT_RENEW))
    before = _fold(*events, at=answered + timedelta(days=1))
    assert before.terminated_on == END
    assert before.termination_clause == "Art.9(1)"
    assert before.status is ContractStatus.TERMINATING
    # CONTRACT.md Art.9(1): "the contract runs through that day": still in force all of its
    # last day, terminated from 00:00 JST of the next.
    on_day = _fold(*events, at=tokyo_midnight_utc(END))
    assert on_day.status is ContractStatus.TERMINATING
    day_after = tokyo_midnight_utc(END + timedelta(days=1))
    last_second = _fold(*events, at=day_after - timedelta(seconds=1))
    assert last_second.status is ContractStatus.TERMINATING
    assert _fold(*events, at=day_after).status is ContractStatus.TERMINATED


def test_state_after_cancellation_form_art9_2() -> None:
    state = _fold(accepted(), bound(cert=CERT),
                  CancellationArrived(contract_id="c1", at_utc=utc(2026, 3, 2),
                                      arrived=date(2026, 3, 1), requested=None),
                  at=utc(2026, 3, 3))
    assert state.cancellation is not None
    assert state.cancellation.effective == date(2026, 3, 31)
    assert state.terminated_on == date(2026, 3, 31)
    assert state.termination_clause == "Art.9(2)"


def test_state_earliest_termination_wins() -> None:
    # Don't renew (ends 2026-11-11) and a cancellation effective 2026-12-31 (requested):
    # the contract ends on the earlier day.
    state = _fold(accepted(), bound(cert=CERT),
                  AnswerReceived(contract_id="c1", at_utc=utc(2026, 9, 1),
                                 answer=Answer.DONT_RENEW),
                  CancellationArrived(contract_id="c1", at_utc=utc(2026, 9, 2),
                                      arrived=date(2026, 9, 2), requested=date(2026, 12, 31)),
                  at=utc(2026, 9, 3))
    assert state.terminated_on == END
    assert state.termination_clause == "Art.9(1)"


def test_state_after_contract_change_art5() -> None:
    state = _fold(accepted(), ContractChanged(contract_id="c1", at_utc=utc(2026, 2, 1),
                                              service="IIJ GIO"), at=utc(2026, 2, 2))
    assert state.service == "IIJ GIO"
    assert [(c.service, c.accepted_on) for c in state.changes] == [("IIJ GIO", date(2026, 2, 1))]


def test_state_after_newer_certificate_observed_starts_a_new_cycle() -> None:
    successor = facts(tag="next", not_before=utc(2026, 10, 1), lifetime=timedelta(days=300))
    state = _fold(accepted(), bound(cert=CERT),
                  NoticeSent(contract_id="c1", at_utc=utc(2026, 8, 13)),
                  _observed(successor, utc(2026, 10, 2)), at=utc(2026, 10, 3))
    assert state.certificate == successor
    assert state.previous_certificate == CERT
    assert state.certificate_source == "observed"
    assert state.notice_sent is None  # the notice concerned the previous validity period
    assert state.locations == ("web1:/a.pem",)


def test_state_older_or_ca_certificate_observed_does_not_replace_the_bound_one() -> None:
    older = facts(tag="old", not_before=utc(2025, 1, 1), lifetime=timedelta(days=300))
    intermediate = facts(tag="ca", not_before=utc(2020, 1, 1), lifetime=timedelta(days=3650),
                         is_ca=True, sans=())
    state = _fold(accepted(), bound(cert=CERT), _observed(older, utc(2026, 2, 1)),
                  _observed(intermediate, utc(2026, 2, 1), location="/chain.pem"),
                  at=utc(2026, 2, 2))
    assert state.certificate == CERT


def test_state_after_certificate_gone() -> None:
    state = _fold(accepted(), _observed(CERT, utc(2026, 2, 1)),
                  CertificateGone(contract_id="c1", at_utc=utc(2026, 2, 3), host="web1",
                                  location="/a.pem", sha256s=(CERT.sha256,)),
                  at=utc(2026, 2, 4))
    assert state.locations == ()
    assert state.certificate == CERT  # gone from disk is not gone from the contract


def test_state_after_renewal_made() -> None:
    state = _fold(accepted(item="globalsign-ov", category=Category.I), bound(cert=CERT),
                  RenewalMade(contract_id="c1", at_utc=utc(2026, 10, 20), by_default=True),
                  at=utc(2026, 10, 21))
    assert state.renewal_made_for == CERT.sha256
    assert [(r.on, r.by_default) for r in state.renewals] == [(date(2026, 10, 20), True)]


def test_state_after_terminated_event() -> None:
    state = _fold(accepted(), Terminated(contract_id="c1", at_utc=utc(2026, 3, 1),
                                         effective=date(2026, 3, 31), clause="Art.8"),
                  at=utc(2026, 3, 2))
    assert state.terminated_on == date(2026, 3, 31)
    assert state.termination_clause == "Art.8"


def test_state_fold_ignores_events_after_at() -> None:
    events = (accepted(), bound(cert=CERT), NoticeSent(contract_id="c1", at_utc=utc(2026, 8, 1)))
    assert _fold(*events, at=utc(2026, 7, 31)).notice_sent is None
    assert _fold(*events, at=utc(2026, 7, 31)).events == 2


def test_state_after_each_event_through_the_ledger(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.append(accepted(item="globalsign-ov", category=Category.I))
        assert ledger.state("c1", at=T0).certificate is None
        ledger.append(bound(cert=CERT, at=T0 + timedelta(hours=1)))
        assert ledger.state("c1", at=utc(2026, 2, 1)).certificate == CERT
        ledger.append(NoticeSent(contract_id="c1", at_utc=utc(2026, 8, 13)))
        assert ledger.state("c1", at=utc(2026, 8, 14)).notice_sent == date(2026, 8, 13)
        ledger.append(AnswerReceived(contract_id="c1", at_utc=utc(2026, 8, 20),
                                     answer=Answer.DONT_RENEW))
        state = ledger.state("c1", at=utc(2026, 8, 21))
        assert state.terminated_on == END
        # The past is unchanged by what came later.
        assert ledger.state("c1", at=utc(2026, 8, 14)).terminated_on is None


# ---------------------------------------------------------------- evaluate_contract


def test_evaluate_notify_due_lead_days_before_end_of_validity_art6_1() -> None:
    at = utc(2026, 6, 1)
    decisions = evaluate_contract(_fold(accepted(), bound(cert=CERT), at=at), CATALOGUE,
                                  SETTINGS, at=at)
    notify = [d for d in decisions if d.action is Action.NOTIFY]
    assert len(notify) == 1
    assert notify[0].due == END - timedelta(days=90)
    assert notify[0].contract_id == "c1"


def test_evaluate_category_i_no_answer_renews_by_default_with_its_fees_art6_2() -> None:
    state_events = (accepted(item="globalsign-ov", category=Category.I), bound(cert=CERT),
                    NoticeSent(contract_id="c1", at_utc=utc(2026, 8, 13)))
    at = utc(2026, 9, 20)  # deadline 2026-09-12 (notice + 30 days) has passed
    decisions = evaluate_contract(_fold(*state_events, at=at), CATALOGUE, SETTINGS, at=at)
    (renew,) = [d for d in decisions if d.action is Action.RENEW_BY_DEFAULT]
    assert renew.due == date(2026, 9, 13)
    fees = [d for d in decisions if d.action is Action.FEE_OWED]
    assert {d.computed["fee"] for d in fees} == {"initial", "agency"}
    assert all(d.computed["prospective"] and d.computed["provider_designates"] for d in fees)
    assert {d.due for d in fees} == {date(2026, 9, 13)}


def test_evaluate_category_iii_no_answer_is_overdue_never_automatic_art6_3() -> None:
    at = utc(2026, 9, 20)
    state = _fold(accepted(), bound(cert=CERT),
                  NoticeSent(contract_id="c1", at_utc=utc(2026, 8, 13)), at=at)
    actions = _actions(state, at)
    assert Action.ANSWER_OVERDUE in actions
    assert Action.RENEW_BY_DEFAULT not in actions
    assert Action.FEE_OWED not in actions


def test_evaluate_art6_3_byo_exactly_90_days_cannot_renew() -> None:
    le = facts(tag="le", lifetime=timedelta(days=90))
    at = T0 + timedelta(days=1)
    state = _fold(accepted(tier=Tier.SIX_MONTHS), bound(cert=le), at=at)
    assert Action.RENEWAL_BLOCKED in _actions(state, at)


def test_evaluate_art6_3_byo_90_days_plus_one_second_from_midnight_can_renew() -> None:
    """From 00:00 JST the first day counts (民法第140条ただし書): 90 days + 1 s ends on the
    91st day, outside the 90. From T0 (12:00 JST) it would still end on the 90th day."""
    start = tokyo_midnight_utc(tokyo_date(T0))
    cert = facts(tag="le+1", not_before=start, lifetime=timedelta(days=90, seconds=1))
    at = T0 + timedelta(days=1)
    state = _fold(accepted(tier=Tier.SIX_MONTHS), bound(cert=cert), at=at)
    assert Action.RENEWAL_BLOCKED not in _actions(state, at)


def test_evaluate_art3_byo_longer_than_contracted_tier_is_non_compliant() -> None:
    two_years = facts(tag="2y", lifetime=timedelta(days=700))
    at = T0 + timedelta(days=1)
    decisions = evaluate_contract(_fold(accepted(tier=Tier.ONE_YEAR), bound(cert=two_years),
                                        at=at), CATALOGUE, SETTINGS, at=at)
    (breach,) = [d for d in decisions if d.action is Action.NON_COMPLIANT]
    assert breach.clause.startswith("Art.3")


def test_evaluate_art9_1_dont_renew_calls_for_termination_and_no_renewal_step() -> None:
    at = utc(2026, 9, 2)
    state = _fold(accepted(), bound(cert=CERT),
                  AnswerReceived(contract_id="c1", at_utc=utc(2026, 9, 1),
                                 answer=Answer.DONT_RENEW), at=at)
    decisions = evaluate_contract(state, CATALOGUE, SETTINGS, at=at)
    assert [d.action for d in decisions] == [Action.TERMINATE]
    assert decisions[0].due == END
    assert decisions[0].clause == "Art.9(1)"


def test_evaluate_terminated_contract_calls_for_nothing_the_day_after() -> None:
    events = (accepted(), bound(cert=CERT),
              AnswerReceived(contract_id="c1", at_utc=utc(2026, 9, 1), answer=Answer.DONT_RENEW))
    day_after = tokyo_midnight_utc(END + timedelta(days=1))
    assert evaluate_contract(_fold(*events, at=day_after), CATALOGUE, SETTINGS,
                             at=day_after) == ()
    on_day = tokyo_midnight_utc(END)
    assert _actions(_fold(*events, at=on_day), on_day) == [Action.TERMINATE]


def test_evaluate_renewal_made_waits_for_the_successor_certificate() -> None:
    at = utc(2026, 10, 21)
    state = _fold(accepted(item="globalsign-ov", category=Category.I), bound(cert=CERT),
                  NoticeSent(contract_id="c1", at_utc=utc(2026, 8, 13)),
                  RenewalMade(contract_id="c1", at_utc=utc(2026, 10, 20), by_default=True),
                  at=at)
    actions = _actions(state, at)
    assert Action.REPLACE_CERTIFICATE in actions
    assert Action.RENEW_BY_DEFAULT not in actions


def test_evaluate_art8_abolition_of_the_contracts_item() -> None:
    text = (Path(__file__).resolve().parents[2] / "policy" / "data" / "catalogue.toml").read_text(
        encoding="utf-8")
    amended = parse_catalogue(
        text.replace('handle = "globalsign-ov"\n',
                     'handle = "globalsign-ov"\nproduct_end = 2027-03-31\n', 1),
        source="amended.toml")
    at = utc(2026, 6, 1)
    state = _fold(accepted(item="globalsign-ov", category=Category.I), bound(cert=CERT), at=at)
    (abolish,) = [d for d in evaluate_contract(state, amended, SETTINGS, at=at)
                  if d.action is Action.ABOLISH]
    assert abolish.due == date(2027, 3, 31)
    assert abolish.clause == "Art.8"


def test_evaluate_art10_fees_of_acceptance_due_on_that_day_then_history() -> None:
    state_events = (accepted(item="globalsign-ov", category=Category.I, at=T0),)
    same_day = T0 + timedelta(hours=5)
    next_day = tokyo_midnight_utc(tokyo_date(T0) + timedelta(days=1))
    fees_today = [d for d in evaluate_contract(_fold(*state_events, at=same_day), CATALOGUE,
                                               SETTINGS, at=same_day)
                  if d.action is Action.FEE_OWED]
    assert {d.computed["fee"] for d in fees_today} == {"initial", "agency", "monthly"}
    later = _fold(*state_events, at=next_day)
    assert Action.FEE_OWED not in _actions(later, next_day)
    assert {d.computed["fee"] for d in fee_history(later, SETTINGS.prices)} == {
        "initial", "agency", "monthly"}


def test_evaluate_art10_change_and_renewal_fees_in_history() -> None:
    at = utc(2026, 12, 1)
    state = _fold(accepted(item="globalsign-ov", category=Category.I), bound(cert=CERT),
                  ContractChanged(contract_id="c1", at_utc=utc(2026, 3, 1), service="GIO"),
                  RenewalMade(contract_id="c1", at_utc=utc(2026, 10, 1), by_default=True,
                              designated=date(2026, 10, 15)), at=at)
    history = fee_history(state, SETTINGS.prices)
    by_due = [(d.due, d.computed["fee"]) for d in history]
    # Appendix 1 prices no one-time fee: without a configured change_fee, no fee line.
    assert (date(2026, 3, 1), "change") not in by_due
    assert (date(2026, 10, 15), "initial") in by_due
    assert (date(2026, 10, 15), "agency") in by_due
    priced = fee_history(state, PriceList(change_fee=3_000))
    assert (date(2026, 3, 1), "change") in [(d.due, d.computed["fee"]) for d in priced]


def test_evaluate_unknown_item_is_a_clear_error() -> None:
    from policy.errors import UnknownItemError

    state = _fold(accepted(item="retired-item"), at=T0)
    with pytest.raises(UnknownItemError):
        evaluate_contract(state, CATALOGUE, SETTINGS, at=T0)


def test_due_actions_within_days_keeps_overdue_and_cuts_the_far_future() -> None:
    at = utc(2026, 8, 1)
    state = _fold(accepted(), bound(cert=CERT), at=at)
    decisions = evaluate_contract(state, CATALOGUE, SETTINGS, at=at)
    notify_due = END - timedelta(days=90)  # 2026-08-13
    assert [d.due for d in due_actions(decisions, at=at, within=11)] == []
    assert [d.due for d in due_actions(decisions, at=at, within=12)] == [notify_due]
    overdue_at = utc(2026, 9, 1)
    late = evaluate_contract(_fold(accepted(), bound(cert=CERT), at=overdue_at), CATALOGUE,
                             SETTINGS, at=overdue_at)
    assert [d.action for d in due_actions(late, at=overdue_at, within=0)] == [Action.NOTIFY]


def test_evaluate_is_pure_same_inputs_same_decisions() -> None:
    at = utc(2026, 9, 20)
    state = _fold(accepted(), bound(cert=CERT), at=at)
    assert evaluate_contract(state, CATALOGUE, SETTINGS, at=at) == evaluate_contract(
        state, CATALOGUE, SETTINGS, at=at)


def test_evaluate_art3_counts_the_tier_by_the_configured_rule() -> None:
    """T0 is 12:00 JST on 2026-01-15: 6 civil-code months end at the end of 2026-07-15 (JST),
    6 elapsed months at 12:00 that day. A certificate ending at 18:00 JST complies with the
    first reading only."""
    cert = facts(tag="6m-edge", not_after=utc(2026, 7, 15, 9))  # 18:00 JST
    at = T0 + timedelta(days=1)
    state = _fold(accepted(tier=Tier.SIX_MONTHS), bound(cert=cert), at=at)
    civil = [d.action for d in evaluate_contract(state, CATALOGUE, SETTINGS, at=at)]
    elapsed = [d.action for d in evaluate_contract(
        state, CATALOGUE, PolicySettings(period_rule=PeriodRule.ELAPSED), at=at)]
    assert Action.NON_COMPLIANT not in civil
    assert Action.NON_COMPLIANT in elapsed


def test_evaluate_art6_1_notice_never_due_before_the_certificate_was_bound() -> None:
    """A 47-day certificate issued at T0 and bound ten days later: its notice is due the day it
    was bound, not overdue from the day it was issued (nor 43 days before it existed)."""
    cert = facts(tag="47d", lifetime=timedelta(days=47))
    bound_at = T0 + timedelta(days=10)
    state = _fold(accepted(item="globalsign-ov", category=Category.I, tier=Tier.ONE_YEAR),
                  bound(cert=cert, at=bound_at), at=bound_at)
    assert state.certificate_since == tokyo_date(bound_at)
    (notify,) = [d for d in evaluate_contract(state, CATALOGUE, SETTINGS, at=bound_at)
                 if d.action is Action.NOTIFY]
    assert notify.due == tokyo_date(bound_at)
    assert notify.computed["overdue"] is False
    later = bound_at + timedelta(days=1)
    state_later = _fold(accepted(item="globalsign-ov", category=Category.I, tier=Tier.ONE_YEAR),
                        bound(cert=cert, at=bound_at), at=later)
    (overdue,) = [d for d in evaluate_contract(state_later, CATALOGUE, SETTINGS, at=later)
                  if d.action is Action.NOTIFY]
    assert overdue.computed["overdue"] is True  # once past that day, it is overdue
