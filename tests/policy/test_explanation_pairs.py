"""Every decision's English and Japanese explanations say the same facts: the same dates, the
same bound (「までに」 is "by", that day included), the same clause. The desk reads one, the
customer the other (a contract-desk review: "install it before 2026-07-30" against
「2026-07-30 までに」, and a 「サービスを更新することはできません」 that never said the service
ends)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.decisions import Action, Decision
from policy.evaluate import evaluate_contract
from policy.events import NoticeSent, RenewalMade
from policy.rules.art6 import Answer, renewal_decisions
from policy.rules.art7 import Application, application_refusals
from policy.rules.art9 import termination_decisions
from policy.rules.art10 import fees_on_acceptance
from policy.settings import PolicySettings, PriceList
from policy.state import fold
from policy.tokyo import tokyo_date, tokyo_midnight_utc
from tests.policy.factsutil import facts
from tests.policy.ledger_fixtures import accepted, bound
from tests.policy.ledger_fixtures import facts as ledger_facts
from tests.policy.test_japanese_text import _rendered

CATALOGUE = load_catalogue()
SETTINGS = PolicySettings()
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
CERT = ledger_facts(tag="pairs", lifetime=timedelta(days=300))
END = tokyo_date(CERT.not_after_utc)


def _replace_certificate(at: datetime) -> Decision:
    """The contract's decision after a renewal with no successor bound, as of ``at``."""
    state = fold("c1", [accepted(item="globalsign-ov", category=Category.I), bound(cert=CERT),
                        NoticeSent(contract_id="c1", at_utc=datetime(2026, 8, 13, tzinfo=UTC)),
                        RenewalMade(contract_id="c1",
                                    at_utc=datetime(2026, 10, 20, tzinfo=UTC))], at=at)
    (decision,) = [d for d in evaluate_contract(state, CATALOGUE, SETTINGS, at=at)
                   if d.action is Action.REPLACE_CERTIFICATE]
    return decision


def _all() -> list[Decision]:
    return [*_rendered(), _replace_certificate(tokyo_midnight_utc(END)),
            _replace_certificate(tokyo_midnight_utc(END + timedelta(days=1))),
            *fees_on_acceptance(contract_id="c", item="globalsign-ov", category=Category.I,
                                tier=None, accepted_on=date(2026, 5, 1), prices=PriceList())]


def test_every_explanation_names_the_same_days_in_both_languages() -> None:
    decisions = _all()
    assert len({d.action for d in decisions}) >= 12
    differ = [(d.action.value, d.explanation_en, d.explanation_ja) for d in decisions
              if sorted(set(ISO_DAY.findall(d.explanation_en)))
              != sorted(set(ISO_DAY.findall(d.explanation_ja)))]
    assert differ == []


def test_no_english_explanation_says_before_a_day_the_japanese_includes() -> None:
    """「D までに」 includes D; "before D" does not. Every English deadline says "by". (An
    `elapsed` period's end "just before 2026-08-08 12:04:05 JST" is an instant, not a day.)"""
    for d in _all():
        for day in ISO_DAY.findall(d.explanation_ja):
            if f"{day} までに" in d.explanation_ja:
                assert f"by {day}" in d.explanation_en, (d.action, d.explanation_en)
                assert not re.search(rf"before {day}(?! \d\d:)", d.explanation_en), (
                    d.action, d.explanation_en)
                assert "before it ends" not in d.explanation_en, (d.action, d.explanation_en)


def test_replace_certificate_is_due_by_the_last_day_and_says_when_it_has_expired() -> None:
    day = END.isoformat()
    on_the_day = _replace_certificate(tokyo_midnight_utc(END))
    assert on_the_day.due == END
    assert f"install it by {day}" in on_the_day.explanation_en
    assert f"{day} までに設置してください" in on_the_day.explanation_ja
    assert "expired" not in on_the_day.explanation_en
    assert "終了しています" not in on_the_day.explanation_ja
    late = _replace_certificate(tokyo_midnight_utc(END + timedelta(days=1)))
    assert late.explanation_en.endswith("(the current one has expired).")
    assert late.explanation_ja.endswith("（現在の証明書は有効期間が終了しています）。")


def test_renewal_blocked_says_in_both_languages_that_the_service_ends_with_it() -> None:
    nb = datetime(2026, 5, 10, 3, 4, 5, tzinfo=UTC)  # 90 days: within the proviso
    f = facts(nb, lifetime=timedelta(days=90))
    (blocked, *_) = renewal_decisions(category=Category.III, facts=f, contract_id="c",
                                      notice_sent=None, answer=None, at=nb, settings=SETTINGS)
    assert blocked.action is Action.RENEWAL_BLOCKED
    day = blocked.computed["end_of_validity"]
    assert f"it ends with the certificate on {day}" in blocked.explanation_en
    assert f"サービスは証明書とともに {day}（有効期間の末日）に終了します" in blocked.explanation_ja


def test_renew_and_customer_renews_are_due_by_the_last_day_in_both() -> None:
    nb = datetime(2026, 5, 10, 3, 4, 5, tzinfo=UTC)
    f = facts(nb, lifetime=timedelta(days=200))
    end = tokyo_date(f.not_after_utc).isoformat()
    for category, action in ((Category.I, Action.RENEW), (Category.III, Action.CUSTOMER_RENEWS)):
        (decision,) = [d for d in renewal_decisions(
            category=category, facts=f, contract_id="c", notice_sent=date(2026, 9, 1),
            answer=Answer.RENEW, at=nb + timedelta(days=120), settings=SETTINGS)
            if d.action is action]
        assert decision.due == date.fromisoformat(end)
        assert f"by {end}, the last day of its validity" in decision.explanation_en
        assert f"有効期間の末日 {end} までに" in decision.explanation_ja


def test_answer_overdue_without_a_default_says_no_answer_came_in_both() -> None:
    """A notice on the last day of validity: the deadline is that day, no default renewal."""
    f = facts(datetime(2026, 5, 10, 3, tzinfo=UTC), lifetime=timedelta(days=200))
    end = tokyo_date(f.not_after_utc)
    (decision,) = renewal_decisions(category=Category.I, facts=f, contract_id="c",
                                    notice_sent=end, answer=None,
                                    at=tokyo_midnight_utc(end + timedelta(days=1)),
                                    settings=SETTINGS)
    assert decision.action is Action.ANSWER_OVERDUE
    assert f"No answer by {end}" in decision.explanation_en
    assert f"{end} までに回答がありません" in decision.explanation_ja


def test_art7_2_names_the_country_and_category_in_both() -> None:
    at = datetime(2026, 5, 10, tzinfo=UTC)
    (abroad,) = application_refusals(Application(item="globalsign-ov",
                                                 organisation_country="US"), CATALOGUE, at=at)
    assert "(US)" in abroad.explanation_en
    assert "category I" in abroad.explanation_en
    assert "（US）" in abroad.explanation_ja
    assert "品目区分 I " in abroad.explanation_ja


def test_art9_1_cites_the_answer_of_art6_2_and_3_in_both() -> None:
    (decision,) = termination_decisions(contract_id="c", effective=date(2026, 8, 8),
                                        clause="Art.9(1)", at=datetime(2026, 5, 10, tzinfo=UTC))
    assert "Art.6(2)/(3)" in decision.explanation_en
    assert "第6条第2項・第3項" in decision.explanation_ja
