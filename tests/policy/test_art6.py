"""Art.6 — renewal: notice, answer, default renewal (I/II), the 90-day proviso (III)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.category import Category
from policy.decisions import Action, Severity
from policy.periods import PeriodRule
from policy.rules.art6 import (
    Answer,
    answer_deadline,
    renewal_blocked,
    renewal_decisions,
    renewal_notice_due,
)
from policy.settings import PolicySettings
from tests.policy.factsutil import ONE_SECOND, facts, utc

DAY = timedelta(days=1)
SETTINGS = PolicySettings()


def actions(category: Category, f, *, at: datetime, notice: date | None = None,  # type: ignore[no-untyped-def]
            answer: Answer | None = None, settings: PolicySettings = SETTINGS):
    return {d.action: d for d in renewal_decisions(
        category=category, facts=f, contract_id="C-1", notice_sent=notice, answer=answer,
        at=at, settings=settings)}


# ---------------------------------------------------------------- Art.6(1) notice

def test_art6_1_notice_due_90_days_before_the_tokyo_end_of_validity() -> None:
    # notAfter 2026-12-31T14:59:59Z is 23:59:59 JST on Dec 31; one second later is Jan 1 JST.
    assert renewal_notice_due(utc(2026, 12, 31, 14, 59, 59), lead_days=90) == date(2026, 10, 2)
    assert renewal_notice_due(utc(2026, 12, 31, 15, 0, 0), lead_days=90) == date(2026, 10, 3)


def test_art6_1_lead_time_is_the_providers_choice() -> None:
    assert renewal_notice_due(utc(2026, 12, 31, 3), lead_days=30) == date(2026, 12, 1)
    assert renewal_notice_due(utc(2026, 12, 31, 3), lead_days=0) == date(2026, 12, 31)


def test_art6_1_notify_is_upcoming_before_the_due_day_and_overdue_after() -> None:
    f = facts(utc(2026, 1, 1), lifetime=365 * DAY)  # ends 2026-12-31T23:59:59Z = Jan 1 JST
    due = renewal_notice_due(f.not_after_utc, lead_days=90)
    assert due == date(2026, 10, 3)
    # 2026-10-03 00:00 JST is 2026-10-02T15:00Z: due from then, overdue from the next Tokyo day.
    before = actions(Category.I, f, at=utc(2026, 10, 2, 14, 59, 59))[Action.NOTIFY]
    on = actions(Category.I, f, at=utc(2026, 10, 2, 15, 0, 0))[Action.NOTIFY]
    after = actions(Category.I, f, at=utc(2026, 10, 3, 15, 0, 0))[Action.NOTIFY]
    assert before.due == on.due == after.due == due
    assert (before.computed["is_due"], on.computed["is_due"]) == (False, True)
    assert (on.computed["overdue"], after.computed["overdue"]) == (False, True)
    assert after.severity is Severity.WARNING
    assert on.severity is Severity.INFO
    assert before.clause == "Art.6(1)"


def test_art6_1_notice_sent_replaces_notify() -> None:
    f = facts(utc(2026, 1, 1), lifetime=365 * DAY)
    got = actions(Category.I, f, at=utc(2026, 10, 10), notice=date(2026, 10, 3))
    assert Action.NOTIFY not in got
    assert got[Action.AWAIT_ANSWER].due == date(2026, 11, 2)


# ---------------------------------------------------------------- answer deadline

def test_art6_2_answer_deadline_is_notice_plus_30_days() -> None:
    assert answer_deadline(date(2026, 10, 3), utc(2027, 1, 1), deadline_days=30) == \
        date(2026, 11, 2)


def test_art6_2_answer_deadline_never_after_end_of_validity() -> None:
    end = utc(2026, 10, 20, 14, 59, 59)  # 2026-10-20 23:59:59 JST
    assert answer_deadline(date(2026, 10, 3), end, deadline_days=30) == date(2026, 10, 20)
    end_next_day = utc(2026, 10, 20, 15, 0, 0)  # 2026-10-21 00:00 JST
    assert answer_deadline(date(2026, 10, 3), end_next_day, deadline_days=30) == \
        date(2026, 10, 21)
    assert answer_deadline(date(2026, 10, 3), end, deadline_days=10) == date(2026, 10, 13)


# ---------------------------------------------------------------- Art.6(2) categories I/II

@pytest.mark.parametrize("category", [Category.I, Category.II])
def test_art6_2_no_answer_by_the_deadline_is_taken_as_renew(category: Category) -> None:
    f = facts(utc(2026, 1, 1), lifetime=365 * DAY)
    notice = date(2026, 10, 3)  # deadline 2026-11-02
    on_deadline = actions(category, f, at=utc(2026, 11, 2, 14, 59, 59), notice=notice)
    assert set(on_deadline) == {Action.AWAIT_ANSWER}
    day_after = actions(category, f, at=utc(2026, 11, 2, 15, 0, 0), notice=notice)
    assert set(day_after) == {Action.RENEW_BY_DEFAULT}
    decision = day_after[Action.RENEW_BY_DEFAULT]
    assert decision.clause == "Art.6(2)"
    assert decision.due == date(2026, 11, 3)
    assert decision.computed["answer_deadline"] == "2026-11-02"


@pytest.mark.parametrize("category", [Category.I, Category.II])
def test_art6_2_answer_renew_means_the_provider_renews(category: Category) -> None:
    f = facts(utc(2026, 1, 1), lifetime=365 * DAY)
    got = actions(category, f, at=utc(2026, 10, 10), notice=date(2026, 10, 3),
                  answer=Answer.RENEW)
    assert set(got) == {Action.RENEW}
    assert got[Action.RENEW].due == date(2027, 1, 1)


@pytest.mark.parametrize("category", list(Category))
def test_art6_dont_renew_emits_nothing_renewal_wise(category: Category) -> None:
    f = facts(utc(2026, 1, 1), lifetime=365 * DAY)
    got = actions(category, f, at=utc(2026, 12, 1), notice=date(2026, 10, 3),
                  answer=Answer.DONT_RENEW)
    assert got == {}


# ---------------------------------------------------------------- Art.6(3) category III

def test_art6_3_byo_exactly_90_days_cannot_renew() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    assert renewal_blocked(f)
    got = actions(Category.III, f, at=utc(2026, 1, 2))
    assert got[Action.RENEWAL_BLOCKED].clause == "Art.6(3) proviso"
    assert got[Action.RENEWAL_BLOCKED].due == date(2026, 4, 1)


def test_art6_3_byo_90_days_and_one_second_from_mid_day_is_within_90_civil_days() -> None:
    """utc(2026, 1, 1) is 09:00 JST: the 90 days reckon from Jan 2 and end at the end of
    Apr 1, so a certificate ending on Apr 1 (JST) is within them; ``elapsed`` says not."""
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY + ONE_SECOND)
    assert renewal_blocked(f)
    assert not renewal_blocked(f, PeriodRule.ELAPSED)
    elapsed = PolicySettings(period_rule=PeriodRule.ELAPSED)
    assert Action.RENEWAL_BLOCKED not in actions(Category.III, f, at=utc(2026, 1, 2),
                                                 settings=elapsed)


def test_art6_3_byo_ending_the_day_after_the_90th_can_renew() -> None:
    nb = utc(2026, 1, 1)  # 09:00 JST; the 90th day is Apr 1 (JST)
    f = facts(nb, not_after=datetime(2026, 4, 1, 15, 0, 0, tzinfo=UTC))  # Apr 2 00:00 JST
    assert not renewal_blocked(f)
    assert Action.RENEWAL_BLOCKED not in actions(Category.III, f, at=utc(2026, 1, 2))
    g = facts(nb, not_after=datetime(2026, 4, 1, 14, 59, 59, tzinfo=UTC))  # Apr 1 23:59:59 JST
    assert renewal_blocked(g)
    assert Action.RENEWAL_BLOCKED in actions(Category.III, g, at=utc(2026, 1, 2))


def test_art6_3_lets_encrypt_certificate_is_blocked() -> None:
    nb = utc(2026, 3, 1, 7, 12, 0)
    f = facts(nb, not_after=nb + 90 * DAY - ONE_SECOND)
    assert renewal_blocked(f)


def test_art6_3_answer_renew_means_the_customer_renews() -> None:
    f = facts(utc(2026, 1, 1), lifetime=200 * DAY)
    got = actions(Category.III, f, at=utc(2026, 5, 1), notice=date(2026, 4, 20),
                  answer=Answer.RENEW)
    assert set(got) == {Action.CUSTOMER_RENEWS}
    assert got[Action.CUSTOMER_RENEWS].clause == "Art.6(3)"


def test_art6_3_proviso_answer_renew_on_a_90_day_certificate_is_still_blocked() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    got = actions(Category.III, f, at=utc(2026, 1, 10), notice=date(2026, 1, 5),
                  answer=Answer.RENEW)
    assert set(got) == {Action.RENEWAL_BLOCKED}


def test_art6_3_no_answer_is_overdue_never_automatic() -> None:
    f = facts(utc(2026, 1, 1), lifetime=200 * DAY)
    notice = date(2026, 4, 20)  # deadline 2026-05-20
    on_deadline = actions(Category.III, f, at=utc(2026, 5, 20, 14, 59, 59), notice=notice)
    assert set(on_deadline) == {Action.AWAIT_ANSWER}
    after = actions(Category.III, f, at=utc(2026, 5, 20, 15, 0, 0), notice=notice)
    assert set(after) == {Action.ANSWER_OVERDUE}
    assert Action.RENEW_BY_DEFAULT not in after
    assert after[Action.ANSWER_OVERDUE].severity is Severity.WARNING


def test_art6_3_proviso_does_not_apply_to_categories_i_and_ii() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    assert Action.RENEWAL_BLOCKED not in actions(Category.I, f, at=utc(2026, 1, 2))


def test_art6_no_well_defined_expiration_never_falls_due() -> None:
    f = facts(utc(2026, 1, 1), not_after=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert actions(Category.III, f, at=utc(2026, 1, 2)) == {}
    assert renewal_notice_due(f.not_after_utc, lead_days=90) == date(9999, 10, 2)


def test_art6_settings_change_lead_and_deadline() -> None:
    f = facts(utc(2026, 1, 1), lifetime=365 * DAY)
    settings = PolicySettings(notice_lead_days=60, answer_deadline_days=14)
    got = actions(Category.I, f, at=utc(2026, 1, 2), settings=settings)
    assert got[Action.NOTIFY].due == date(2026, 11, 2)
    got = actions(Category.I, f, at=utc(2026, 11, 5), notice=date(2026, 11, 2),
                  settings=settings)
    assert got[Action.AWAIT_ANSWER].due == date(2026, 11, 16)


def test_art6_decisions_explain_themselves_in_english_and_japanese() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    for decision in actions(Category.III, f, at=utc(2026, 1, 2)).values():
        assert decision.explanation_en
        assert decision.explanation_ja
        assert decision.contract_id == "C-1"
        assert decision.facts["sha256"] == f.sha256


# ---------------------------------------------------------------- once due, stays due

@settings(deadline=None)
@given(st.integers(min_value=0, max_value=400 * 86_400),
       st.integers(min_value=0, max_value=400 * 86_400),
       st.integers(min_value=30, max_value=800),
       st.sampled_from(list(Category)))
def test_art6_once_due_stays_due_as_time_advances(s1: int, s2: int, lifetime_days: int,
                                                  category: Category) -> None:
    f = facts(utc(2026, 1, 1), lifetime=lifetime_days * DAY)
    t1, t2 = sorted((s1, s2))
    at1 = utc(2026, 1, 1) + timedelta(seconds=t1)
    at2 = utc(2026, 1, 1) + timedelta(seconds=t2)
    first = actions(category, f, at=at1)
    later = actions(category, f, at=at2)
    notice = {Action.NOTIFY, Action.NOTICE_MISSED}
    # without events, nothing appears or disappears; the notice, once its last day (the end
    # of validity) is over, is missed and stays missed
    assert set(first) - notice == set(later) - notice
    assert len(set(first) & notice) == len(set(later) & notice) == 1
    if Action.NOTICE_MISSED in first:
        assert Action.NOTICE_MISSED in later
        return
    if Action.NOTICE_MISSED in later:
        assert later[Action.NOTICE_MISSED].severity >= first[Action.NOTIFY].severity
        return
    if first[Action.NOTIFY].computed["is_due"]:
        assert later[Action.NOTIFY].computed["is_due"]
    if first[Action.NOTIFY].computed["overdue"]:
        assert later[Action.NOTIFY].computed["overdue"]
    assert later[Action.NOTIFY].severity >= first[Action.NOTIFY].severity


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=120 * 86_400),
       st.integers(min_value=0, max_value=120 * 86_400),
       st.sampled_from(list(Category)))
def test_art6_missed_deadline_stays_missed(s1: int, s2: int, category: Category) -> None:
    f = facts(utc(2026, 1, 1), lifetime=200 * DAY)
    notice = date(2026, 4, 20)
    t1, t2 = sorted((s1, s2))
    base = utc(2026, 4, 20)
    first = actions(category, f, at=base + timedelta(seconds=t1), notice=notice)
    later = actions(category, f, at=base + timedelta(seconds=t2), notice=notice)
    escalated = {Action.ANSWER_OVERDUE, Action.RENEW_BY_DEFAULT}
    if escalated & set(first):
        assert escalated & set(later)


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2090, 1, 1),  # noqa: DTZ001
                    timezones=st.just(UTC)),
       st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=400),
       st.integers(min_value=0, max_value=120))
def test_art6_deadline_is_the_earlier_of_notice_plus_n_and_end_of_validity(
        not_after: datetime, lead: int, sent_before_end: int, deadline_days: int) -> None:
    end_day = renewal_notice_due(not_after, lead_days=0)
    assert renewal_notice_due(not_after, lead_days=lead) == end_day - timedelta(days=lead)
    notice = end_day - timedelta(days=sent_before_end)
    deadline = answer_deadline(notice, not_after, deadline_days=deadline_days)
    assert deadline <= end_day
    assert deadline <= notice + timedelta(days=deadline_days)
    assert deadline in (end_day, notice + timedelta(days=deadline_days))


# ---------------------------------------------------------------- issue 10: notices and words

def test_art6_1_a_47_day_certificate_is_not_overdue_before_it_existed() -> None:
    """A certificate shorter than the 90-day lead time: its notice is due the day it was
    issued (never 43 days before), and once bound later, the day it was bound."""
    nb = utc(2029, 4, 1, 3)  # 12:00 JST
    f = facts(nb, lifetime=47 * DAY)
    got = actions(Category.I, f, at=nb)[Action.NOTIFY]
    assert got.due == date(2029, 4, 1)
    assert got.computed["overdue"] is False
    assert "shorter than the lead time" in got.explanation_en
    bound = renewal_decisions(category=Category.I, facts=f, contract_id="C-1", notice_sent=None,
                              answer=None, at=utc(2029, 4, 10), settings=SETTINGS,
                              bound_on=date(2029, 4, 10))
    (notify,) = bound
    assert notify.due == date(2029, 4, 10)
    assert notify.computed["overdue"] is False
    assert "bound" in notify.explanation_en
    # A certificate longer than the lead time keeps its ordinary due day, on both sides.
    assert renewal_notice_due(utc(2026, 12, 31, 3), lead_days=90,
                              not_before_utc=utc(2026, 1, 1)) == date(2026, 10, 2)
    assert renewal_notice_due(nb + 90 * DAY, lead_days=90, not_before_utc=nb) == \
        date(2029, 4, 1)
    assert renewal_notice_due(nb + 91 * DAY, lead_days=90, not_before_utc=nb) == \
        date(2029, 4, 2)


def test_art6_3_overdue_answer_asks_for_the_answer_not_payment() -> None:
    f = facts(utc(2026, 1, 1), lifetime=200 * DAY)
    got = actions(Category.III, f, at=utc(2026, 6, 1), notice=date(2026, 4, 20))
    text = got[Action.ANSWER_OVERDUE].explanation_ja
    assert "回答を催促" in text
    assert "督促" not in text


def test_art6_3_blocked_decision_names_the_rule_and_last_day_in_both_languages() -> None:
    nb = datetime(2026, 5, 10, 3, 4, 5, tzinfo=UTC)  # 12:04:05 JST
    f = facts(nb, lifetime=90 * DAY + ONE_SECOND)
    decision = actions(Category.III, f, at=nb)[Action.RENEWAL_BLOCKED]
    assert decision.computed["period_rule"] == "civil-code"
    assert decision.computed["period_last_day"] == "2026-08-08"
    assert "起算日 2026-05-11（初日不算入、民法第140条）から 90 日、2026-08-08 満了" in \
        decision.explanation_ja
    assert "90日と1秒" in decision.explanation_ja
    assert "reckoning day 2026-05-11" in decision.explanation_en
    assert "90 days 1 s" in decision.explanation_en
    elapsed = actions(Category.III, facts(nb, lifetime=90 * DAY), at=nb,
                      settings=PolicySettings(period_rule=PeriodRule.ELAPSED))
    blocked = elapsed[Action.RENEWAL_BLOCKED]
    assert blocked.computed["period_rule"] == "elapsed"
    assert blocked.computed["period_last_day"] == "2026-08-08"
    # Every category III decision used the proviso's period and says which rule.
    notify = actions(Category.III, facts(nb, lifetime=200 * DAY), at=nb)[Action.NOTIFY]
    assert notify.computed["period_rule"] == "civil-code"
    assert "period_rule" not in actions(Category.I, facts(nb, lifetime=200 * DAY),
                                        at=nb)[Action.NOTIFY].computed


# ---------------------------------------------------------------- session 13: first observed

def _observed_notify(f, *, at: datetime, first_observed: date | None = None):  # type: ignore[no-untyped-def]
    (notify,) = [d for d in renewal_decisions(
        category=Category.III, facts=f, contract_id=None, notice_sent=None, answer=None, at=at,
        settings=SETTINGS, first_observed=first_observed) if d.action is Action.NOTIFY]
    return notify


def test_art6_1_a_90_day_certificate_first_observed_later_is_due_that_day_not_overdue() -> None:
    """A healthy certbot host's 90-day certificate, issued 10 days before a scan that has no
    ledger: its notice was "overdue" from its second day (a warning on every healthy host),
    while the ledger dates it from the day it is observed (the review of session 13)."""
    nb = utc(2026, 11, 19, 3)
    f = facts(nb, lifetime=90 * DAY - ONE_SECOND)
    at = utc(2026, 11, 29, 3)
    seen_now = _observed_notify(f, at=at, first_observed=date(2026, 11, 29))
    assert seen_now.due == date(2026, 11, 29)
    assert seen_now.severity is Severity.INFO
    assert seen_now.computed["overdue"] is False
    assert seen_now.computed["is_due"] is True
    assert "first observed" in seen_now.explanation_en
    assert "初めて確認した日" in seen_now.explanation_ja
    # remembered from the day after its issue: overdue since then
    seen_before = _observed_notify(f, at=at, first_observed=date(2026, 11, 20))
    assert seen_before.due == date(2026, 11, 20)
    assert seen_before.severity is Severity.WARNING


def test_art6_1_first_observed_moves_only_a_certificate_no_longer_than_the_lead_time() -> None:
    """Both sides of the boundary: validity ending the day after its nominal notice day is the
    issue day (within the lead time: moved) against one a day longer (not moved: its notice day
    came before it was seen, seen or not)."""
    nb = utc(2026, 1, 1, 3)  # 12:00 JST
    at = utc(2026, 3, 1, 3)
    within = facts(nb, lifetime=90 * DAY)  # ends 2026-04-01, nominal notice 2026-01-01
    assert renewal_notice_due(within.not_after_utc, lead_days=90,
                              not_before_utc=nb) == date(2026, 1, 1)
    assert _observed_notify(within, at=at, first_observed=date(2026, 3, 1)).due == \
        date(2026, 3, 1)
    longer = facts(nb, lifetime=91 * DAY)  # nominal notice 2026-01-02, the day after issue
    assert _observed_notify(longer, at=at, first_observed=date(2026, 3, 1)).due == \
        date(2026, 1, 2)


def test_art6_1_a_certificate_first_observed_after_it_ended_keeps_its_notice_day() -> None:
    nb = utc(2025, 4, 7, 3)
    f = facts(nb, lifetime=90 * DAY - ONE_SECOND)
    (got,) = renewal_decisions(
        category=Category.III, facts=f, contract_id=None, notice_sent=None, answer=None,
        at=utc(2026, 2, 1, 3), settings=SETTINGS, first_observed=date(2026, 2, 1))[-1:]
    # the notice comes before the end: moot, not moved -- and, the end being over, missed
    assert got.action is Action.NOTICE_MISSED
    assert got.computed["notice_due"] == "2025-04-07"
    assert got.due == date(2025, 7, 6)  # the last day of validity, the notice's last day


# ------------------------------------------- Art.6(1) once the validity period has ended

# notAfter 2026-09-01T14:59:59Z is 23:59:59 JST, the last second of the last day of validity
# (the ledger's notice is refused from the next Tokyo day: the same instant, one second on).
_LAST_SECOND = utc(2026, 9, 1, 14, 59, 59)
_ENDED = facts(utc(2025, 9, 2, 3), not_after=_LAST_SECOND)


@pytest.mark.parametrize("category", list(Category))
def test_art6_1_notify_is_listed_until_the_last_second_of_validity(category: Category) -> None:
    got = actions(category, _ENDED, at=_LAST_SECOND)
    assert Action.NOTICE_MISSED not in got
    assert got[Action.NOTIFY].due == date(2026, 6, 3)
    assert got[Action.NOTIFY].computed["overdue"] is True


@pytest.mark.parametrize("category", list(Category))
def test_art6_1_no_notify_once_the_validity_period_ended_without_a_notice(
        category: Category) -> None:
    """The reviewer's N2: an expired certificate showed `notify` forever, and the ledger
    refuses that notice (Art.6(1): by the last day of validity). From the first second after
    it: the notice was missed, and Art.6 says what follows (no default renewal, no automatic
    end), citing the clauses."""
    got = actions(category, _ENDED, at=_LAST_SECOND + ONE_SECOND)
    assert Action.NOTIFY not in got
    missed = got[Action.NOTICE_MISSED]
    assert (missed.clause, missed.due, missed.severity) == (
        "Art.6(1)", date(2026, 9, 1), Severity.WARNING)
    assert missed.computed["notice_due"] == "2026-06-03"
    assert missed.computed["notice_missed"] is True
    assert "No renewal notice was sent by 2026-09-01" in missed.explanation_en
    assert "2026-09-01 までに更新に係る通知が行われませんでした" in missed.explanation_ja
    if category is Category.III:
        assert "category III has no renewal by default" in missed.explanation_en
        assert "(Art.6(3))" in missed.explanation_en
    else:
        assert "no renewal can be taken as made by default (Art.6(2))" in missed.explanation_en
    # and it stays missed; a notice recorded in time is what the rules follow instead
    later = actions(category, _ENDED, at=utc(2027, 3, 1))
    assert set(later) & {Action.NOTIFY, Action.NOTICE_MISSED} == {Action.NOTICE_MISSED}
    sent = actions(category, _ENDED, at=_LAST_SECOND + ONE_SECOND, notice=date(2026, 9, 1))
    assert Action.NOTICE_MISSED not in sent


def test_art6_1_notice_missed_on_the_tokyo_day_not_the_utc_instant() -> None:
    """A notAfter at 12:00 JST: the notice may still go out that afternoon (the ledger takes
    it all day, 「までに」), so the rule lists `notify` one second after notAfter too."""
    f = facts(utc(2025, 9, 2, 3), not_after=utc(2026, 9, 1, 3))
    assert Action.NOTIFY in actions(Category.I, f, at=utc(2026, 9, 1, 3) + ONE_SECOND)
    assert Action.NOTICE_MISSED in actions(Category.I, f, at=utc(2026, 9, 1, 15))


def test_art6_1_no_notice_is_missed_for_a_certificate_without_expiration() -> None:
    from policy.facts import NO_WELL_DEFINED_EXPIRATION_UTC

    f = facts(utc(2026, 1, 1), not_after=NO_WELL_DEFINED_EXPIRATION_UTC)
    assert actions(Category.I, f, at=utc(9999, 12, 31, 23, 59, 59)) == {}


def test_the_classification_without_a_ledger_observes_the_certificate_at_its_instant() -> None:
    from policy.catalogue import load_catalogue
    from policy.classification import classify_certificate
    from policy.intake import Binding

    f = facts(utc(2026, 11, 19, 3), lifetime=90 * DAY - ONE_SECOND)
    got = classify_certificate(f, load_catalogue(None), binding=Binding(),
                               at=utc(2026, 11, 29, 3))
    (notify,) = [d for d in got.actions if d.action is Action.NOTIFY]
    assert notify.due == date(2026, 11, 29)
    assert notify.severity is Severity.INFO
    remembered = classify_certificate(f, load_catalogue(None), binding=Binding(),
                                      at=utc(2026, 11, 29, 3), first_observed=date(2026, 11, 21))
    (notify,) = [d for d in remembered.actions if d.action is Action.NOTIFY]
    assert notify.due == date(2026, 11, 21)
    assert notify.severity is Severity.WARNING


def test_a_certificate_bound_to_a_contract_is_not_first_observed_at_the_classification() -> None:
    """A store bound to C-1 whose ledger has the notice overdue since the day it observed the
    certificate: the agent said "due today" at every run, and `--exit-status=contract` missed
    it (the re-review of session 13). Only a certificate no contract binds is observed now."""
    from policy.catalogue import load_catalogue
    from policy.classification import classify_certificate
    from policy.intake import Binding

    f = facts(utc(2026, 10, 31, 3), lifetime=90 * DAY - ONE_SECOND)
    at = utc(2026, 11, 29, 3)
    bound = classify_certificate(f, load_catalogue(None), binding=Binding(contract_id="C-1"),
                                 at=at)
    (notify,) = [d for d in bound.actions if d.action is Action.NOTIFY]
    assert notify.due == date(2026, 10, 31)
    assert notify.severity is Severity.WARNING
    unbound = classify_certificate(f, load_catalogue(None), binding=Binding(), at=at)
    (notify,) = [d for d in unbound.actions if d.action is Action.NOTIFY]
    assert notify.due == date(2026, 11, 29)
