"""Art.9 — the day a termination takes effect, at its boundaries on both sides."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.decisions import Action
from policy.errors import ContractStateError
from policy.periods import PeriodRule, days_period
from policy.rules.art9 import (
    NO_REFUND_EN,
    NO_REFUND_JA,
    check_cancellation_admissible,
    effective_on_cancellation,
    effective_on_non_renewal,
    termination_decisions,
)

# ---------------------------------------------------------------- Art.9(1)


def test_art9_1_not_after_1459_59z_ends_on_that_tokyo_day() -> None:
    # 14:59:59Z is 23:59:59 JST: still the same Tokyo day.
    assert effective_on_non_renewal(datetime(2026, 6, 30, 14, 59, 59, tzinfo=UTC)) == date(
        2026, 6, 30)


def test_art9_1_not_after_1500_00z_ends_on_the_next_tokyo_day() -> None:
    # 15:00:00Z is 00:00:00 JST of the next day.
    assert effective_on_non_renewal(datetime(2026, 6, 30, 15, 0, 0, tzinfo=UTC)) == date(
        2026, 7, 1)


def test_art9_1_year_end_crosses_into_new_year_in_tokyo() -> None:
    assert effective_on_non_renewal(datetime(2026, 12, 31, 15, 0, tzinfo=UTC)) == date(2027, 1, 1)
    assert effective_on_non_renewal(datetime(2026, 12, 31, 14, 59, 59, tzinfo=UTC)) == date(
        2026, 12, 31)


def test_art9_1_unlimited_certificate_end_is_representable() -> None:
    assert effective_on_non_renewal(datetime(9999, 12, 31, 14, 59, 59, tzinfo=UTC)) == date(
        9999, 12, 31)


# ---------------------------------------------------------------- Art.9(2)


@pytest.mark.parametrize(
    ("arrived", "effective"),
    [
        (date(2026, 4, 1), date(2026, 5, 1)),     # 30-day month: same day next month
        (date(2026, 1, 31), date(2026, 3, 2)),    # month end, non-leap February in between
        (date(2028, 1, 31), date(2028, 3, 1)),    # month end, leap February in between
        (date(2028, 2, 29), date(2028, 3, 30)),   # arrival on a leap day
        (date(2028, 1, 30), date(2028, 2, 29)),   # lands on a leap day
        (date(2027, 1, 30), date(2027, 3, 1)),    # no leap day: the 30th day is March 1
        (date(2026, 12, 1), date(2026, 12, 31)),  # lands on the last day of the year
        (date(2026, 12, 2), date(2027, 1, 1)),    # lands on the first day of the next year
        (date(2026, 12, 31), date(2027, 1, 30)),  # arrival on the last day of the year
        (date(2027, 1, 1), date(2027, 1, 31)),    # arrival on the first day of the year
    ],
)
def test_art9_2_arrival_day_not_counted_effective_on_arrival_plus_30(
        arrived: date, effective: date) -> None:
    assert effective_on_cancellation(arrived, None) == effective


def test_art9_2_requested_day_earlier_than_arrival_plus_30_is_overridden() -> None:
    assert effective_on_cancellation(date(2026, 4, 1), date(2026, 4, 15)) == date(2026, 5, 1)


def test_art9_2_requested_day_one_before_the_boundary_is_overridden() -> None:
    assert effective_on_cancellation(date(2026, 4, 1), date(2026, 4, 30)) == date(2026, 5, 1)


def test_art9_2_requested_day_equal_to_arrival_plus_30_is_that_day() -> None:
    assert effective_on_cancellation(date(2026, 4, 1), date(2026, 5, 1)) == date(2026, 5, 1)


def test_art9_2_requested_day_one_after_the_boundary_is_honoured() -> None:
    assert effective_on_cancellation(date(2026, 4, 1), date(2026, 5, 2)) == date(2026, 5, 2)


def test_art9_2_requested_day_later_across_year_end_is_honoured() -> None:
    assert effective_on_cancellation(date(2026, 12, 20), date(2027, 3, 31)) == date(2027, 3, 31)


@given(arrived=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 1)),
       requested=st.one_of(st.none(), st.dates(min_value=date(2000, 1, 1),
                                               max_value=date(2100, 12, 31))))
def test_art9_2_effective_is_the_later_of_the_two_days(arrived: date,
                                                       requested: date | None) -> None:
    effective = effective_on_cancellation(arrived, requested)
    floor = arrived + timedelta(days=30)
    assert effective >= floor
    assert (effective - arrived).days >= 30
    if requested is not None:
        assert effective >= requested
        assert effective in (floor, requested)
    else:
        assert effective == floor


def test_art9_2_form_arriving_on_the_last_day_of_validity_is_admitted() -> None:
    # notAfter 2026-06-30T14:59:59Z = 23:59:59 JST on June 30.
    check_cancellation_admissible(date(2026, 6, 30), datetime(2026, 6, 30, 14, 59, 59, tzinfo=UTC))


def test_art9_2_form_arriving_after_validity_ended_is_refused() -> None:
    with pytest.raises(ContractStateError, match="after the certificate's validity period ended"):
        check_cancellation_admissible(date(2026, 7, 1),
                                      datetime(2026, 6, 30, 14, 59, 59, tzinfo=UTC))


def test_art9_2_form_without_any_certificate_is_admitted() -> None:
    check_cancellation_admissible(date(2026, 7, 1), None)


# ---------------------------------------------------------------- decisions


def test_art9_terminate_decision_cites_clause_and_says_no_refund() -> None:
    (decision,) = termination_decisions(
        contract_id="c1", effective=date(2026, 5, 1), clause="Art.9(2)",
        at=datetime(2026, 4, 2, tzinfo=UTC), arrived=date(2026, 4, 1), requested=None)
    assert decision.action is Action.TERMINATE
    assert decision.clause == "Art.9(2)"
    assert decision.due == date(2026, 5, 1)
    assert "not refunded" in decision.explanation_en
    assert "返金しません" in decision.explanation_ja
    assert decision.computed["refund"] is False
    assert decision.computed["arrival_plus_30"] == "2026-05-01"


def test_art9_terminate_decision_shown_on_the_effective_day_and_gone_the_day_after() -> None:
    effective = date(2026, 5, 1)
    # 2026-05-01 23:59:59 JST = 14:59:59Z: still the effective day.
    on_day = termination_decisions(contract_id="c1", effective=effective, clause="Art.9(1)",
                                   at=datetime(2026, 5, 1, 14, 59, 59, tzinfo=UTC))
    after = termination_decisions(contract_id="c1", effective=effective, clause="Art.9(1)",
                                  at=datetime(2026, 5, 1, 15, 0, 0, tzinfo=UTC))
    assert [d.action for d in on_day] == [Action.TERMINATE]
    assert after == ()


# ---------------------------------------------------------------- each clause in its own words

AT = datetime(2026, 4, 2, tzinfo=UTC)


def _terminate(clause: str, **kw: object) -> tuple[str, str, dict[str, object]]:
    (decision,) = termination_decisions(contract_id="c1", effective=date(2026, 5, 1),
                                        clause=clause, at=AT, **kw)  # type: ignore[arg-type]
    assert decision.clause == clause
    return decision.explanation_en, decision.explanation_ja, dict(decision.computed)


def test_art9_1_dont_renew_explains_itself_without_the_refund_sentence() -> None:
    en, ja, computed = _terminate("Art.9(1)")
    assert "don't renew" in en
    assert "更新を行わない旨の通知" in ja
    assert "refund" not in en
    assert "返金" not in ja
    assert "refund" not in computed


def test_art8_abolition_is_not_a_customer_answer() -> None:
    en, ja, _ = _terminate("Art.8")
    assert "abolishes" in en
    assert "don't renew" not in en
    assert "廃止" in ja
    assert "更新を行わない" not in ja
    assert "refund" not in en
    assert "返金" not in ja


def test_art6_3_proviso_termination_names_the_period() -> None:
    period = days_period(datetime(2026, 2, 1, 3, tzinfo=UTC), 90, rule=PeriodRule.CIVIL_CODE)
    en, ja, computed = _terminate("Art.6(3) proviso", period=period)
    assert "within 90 days" in en
    assert "don't renew" not in en
    assert "90 日以内" in ja
    assert "起算日 2026-02-02" in ja
    assert computed["period_rule"] == "civil-code"
    assert computed["period_last_day"] == "2026-05-02"
    assert "返金" not in ja


def test_art9_2_alone_says_fees_are_not_refunded() -> None:
    en, ja, _ = _terminate("Art.9(2)", arrived=date(2026, 4, 1))
    assert en.endswith(NO_REFUND_EN)
    assert ja.endswith(NO_REFUND_JA)
    assert "（第9条第2項）" in NO_REFUND_JA
