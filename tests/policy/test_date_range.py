"""Issue 9: a certificate dated at the ends of ``datetime``'s range (0001-01-01, 9999-12-31,
also with a +09:00 offset) never crashes date arithmetic: classification and every rule return
values, and ``unevaluable`` names what the rules cannot count so intake can refuse it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.classification import classify_certificate
from policy.facts import CertificateFacts, unevaluable
from policy.forecast import contract_outlook, embedded_schedule, tier_outlooks
from policy.intake import Binding
from policy.periods import PeriodRule, days_period, months_period
from policy.rules.art3 import compliance, compliance_decisions
from policy.rules.art6 import (
    Answer,
    answer_deadline,
    art6_3_cannot_renew,
    renewal_decisions,
    renewal_notice_due,
)
from policy.rules.art8 import abolition_decisions
from policy.rules.art9 import (
    effective_on_cancellation,
    effective_on_non_renewal,
    termination_decisions,
)
from policy.settings import PolicySettings
from policy.tiers import TIERS_ASCENDING, Tier, classify, tier_end_utc
from policy.timeparse import format_instant
from policy.tokyo import tokyo_date, tokyo_midnight_utc, tokyo_text

CATALOGUE = load_catalogue()
SCHEDULE = embedded_schedule()
JST = timezone(timedelta(hours=9))
SHA = "ab" * 32
EDGES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=JST),  # 0000-12-31T15:00Z: before anything UTC can hold
    datetime(1, 1, 1, 23, 59, 59, tzinfo=JST),
    datetime(9999, 12, 31, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=JST),
    datetime(9999, 12, 31, 15, tzinfo=UTC),  # 10000-01-01 00:00 in Tokyo
]
ALL_INSTANTS = st.one_of(
    st.sampled_from(EDGES),
    st.datetimes(min_value=datetime(1, 1, 1),  # noqa: DTZ001 - hypothesis adds the zone
                 max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
                 timezones=st.sampled_from([UTC, JST])),
)


def certificate(nb: datetime, na: datetime, **kw: object) -> CertificateFacts:
    return CertificateFacts(sha256=SHA, not_before_utc=nb, not_after_utc=na,
                            sans=("www.example.jp",), **kw)  # type: ignore[arg-type]


def every_rule(f: CertificateFacts, at: datetime) -> None:
    """Run classification and every rule on ``f`` at ``at``: none may raise."""
    for rule in PeriodRule:
        s = PolicySettings(period_rule=rule)
        for binding in (Binding(), Binding(item="globalsign-ov", tier=Tier.ONE_YEAR),
                        Binding(category=Category.III, tier=Tier.SIX_MONTHS)):
            result = classify_certificate(f, CATALOGUE, binding=binding, at=at, settings=s,
                                          previous=f)
            result.to_json()
        classify(f.not_before_utc, f.not_after_utc, rule=rule)
        art6_3_cannot_renew(f, rule)
        for tier in TIERS_ASCENDING:
            tier_end_utc(f.not_before_utc, tier, rule=rule)
            compliance_decisions(compliance(f, tier, category=Category.III, ca=None,
                                            previous=f, rule=rule), f, contract_id="c")
        for days in (1, 90):
            days_period(f.not_before_utc, days, rule=rule).explain_ja()
        months_period(f.not_before_utc, 36, rule=rule).explain_en()
        for category in Category:
            for notice, answer in ((None, None), (date(2026, 1, 1), None),
                                   (date.max, Answer.RENEW), (date.min, None)):
                renewal_decisions(category=category, facts=f, contract_id="c",
                                  notice_sent=notice, answer=answer, at=at, settings=s,
                                  bound_on=tokyo_date(at))
        contract_outlook(contract_id="c", item="byo", category=Category.III, tier=Tier.ONE_YEAR,
                         certificate=f, terminated_on=None, schedule=SCHEDULE, at=at, rule=rule)
        tier_outlooks(SCHEDULE, at=at, rule=rule)
    renewal_notice_due(f.not_after_utc, lead_days=90, not_before_utc=f.not_before_utc)
    answer_deadline(date.max, f.not_after_utc, deadline_days=30)
    end = effective_on_non_renewal(f.not_after_utc)
    effective_on_cancellation(date.max, None)
    for clause in ("Art.9(1)", "Art.9(2)", "Art.8", "Art.6(3) proviso"):
        termination_decisions(contract_id="c", effective=end, clause=clause, at=at,
                              arrived=date.max, not_after_utc=f.not_after_utc)
    item = CATALOGUE.items["globalsign-ov"]
    abolition_decisions(item, contract_id="c", at=at)
    format_instant(f.not_before_utc)
    format_instant(f.not_after_utc)
    unevaluable(f)


@pytest.mark.parametrize("nb", EDGES, ids=str)
@pytest.mark.parametrize("na", EDGES, ids=str)
def test_certificates_at_the_ends_of_the_range_never_raise(nb: datetime, na: datetime) -> None:
    every_rule(certificate(nb, na), datetime(2026, 5, 1, tzinfo=UTC))


@settings(max_examples=150, deadline=None)
@given(nb=ALL_INSTANTS, na=ALL_INSTANTS, at=ALL_INSTANTS)
def test_any_instant_datetime_holds_goes_through_every_rule(nb: datetime, na: datetime,
                                                            at: datetime) -> None:
    every_rule(certificate(nb, na), at)


def test_tokyo_conversions_saturate_at_the_ends() -> None:
    assert tokyo_date(datetime(9999, 12, 31, 15, tzinfo=UTC)) == date.max
    assert tokyo_date(datetime(9999, 12, 31, 14, 59, 59, tzinfo=UTC)) == date(9999, 12, 31)
    assert tokyo_midnight_utc(date(1, 1, 1)) == datetime.min.replace(tzinfo=UTC)
    # Before 1888 the tz database gives Tokyo its local mean time (+09:18:59).
    assert tokyo_midnight_utc(date(1, 1, 2)) == datetime(1, 1, 1, 14, 41, 1, tzinfo=UTC)


@pytest.mark.parametrize(("nb", "na", "bad"), [
    (datetime(1, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), True),
    (datetime(1, 1, 1, tzinfo=JST), datetime(2026, 1, 1, tzinfo=UTC), True),
    (datetime(1, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), True),
    (datetime(2, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), False),
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(1, 12, 31, tzinfo=UTC), True),
    (datetime(9997, 12, 31, tzinfo=UTC), datetime(9997, 12, 31, tzinfo=UTC), False),
    (datetime(9997, 12, 31, 0, 0, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59,
                                                              tzinfo=UTC), True),
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(9997, 12, 31, 0, 0, 1, tzinfo=UTC), True),
    # RFC 5280's 99991231235959Z "no well-defined expiration" is a real, evaluable notAfter.
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), False),
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=JST), True),
])
def test_unevaluable_names_what_the_rules_cannot_count(nb: datetime, na: datetime,
                                                       bad: bool) -> None:
    finding = unevaluable(certificate(nb, na))
    assert (finding is not None) is bad
    if finding is not None:
        assert finding.code == "dates-out-of-range"
        result = classify_certificate(certificate(nb, na), CATALOGUE, binding=Binding(),
                                      at=datetime(2026, 5, 1, tzinfo=UTC))
        assert "dates-out-of-range" in [f.code for f in result.findings]
        assert result.actions == ()


@settings(max_examples=300, deadline=None)
@given(instant=st.datetimes(min_value=datetime(1, 1, 2),  # noqa: DTZ001
                            max_value=datetime(9999, 12, 31, 14, 59, 59),  # noqa: DTZ001
                            timezones=st.just(UTC)))
def test_tokyo_fixed_offset_shortcut_agrees_with_zoneinfo(instant: datetime) -> None:
    from policy.tokyo import TOKYO, tokyo_wall

    assert tokyo_wall(instant) == instant.astimezone(TOKYO).replace(tzinfo=None)
    assert tokyo_date(instant) == instant.astimezone(TOKYO).date()
    day = instant.astimezone(TOKYO).date()
    assert tokyo_midnight_utc(day) == datetime.combine(
        day, datetime.min.time(), tzinfo=TOKYO).astimezone(UTC)


@settings(max_examples=300, deadline=None)
@given(nb=st.datetimes(min_value=datetime(1940, 1, 1),  # noqa: DTZ001
                       max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                       timezones=st.just(UTC)),
       seconds=st.integers(min_value=88 * 86_400, max_value=93 * 86_400),
       rule=st.sampled_from(list(PeriodRule)))
def test_art6_3_length_shortcut_agrees_with_the_period(nb: datetime, seconds: int,
                                                       rule: PeriodRule) -> None:
    f = certificate(nb, nb + timedelta(seconds=seconds - 1))
    assert art6_3_cannot_renew(f, rule) is days_period(nb, 90, rule=rule).admits(
        f.not_after_utc)


@pytest.mark.parametrize(("instant", "text"), [
    ("2026-11-24T00:00:00+00:00", "2026-11-24 09:00:00 JST"),
    ("1951-12-31T15:00:00+00:00", "1952-01-01 00:00:00 JST"),  # the fixed offset's first second
    ("1951-12-31T14:59:59+00:00", "1951-12-31 23:59:59 JST"),  # ... and the zone's before it
    ("1949-07-01T00:00:00+00:00", "1949-07-01 10:00:00 JDT"),  # summer time, 1948-1951
    ("1887-12-31T14:59:59+00:00", "1888-01-01 00:18:58 LMT"),  # local mean time before 1888
    ("0002-01-01T00:00:00+00:00", "0002-01-01 09:18:59 LMT"),
])
def test_tokyo_time_in_words_has_four_digit_years_and_the_zone_tokyo_kept(
        instant: str, text: str) -> None:
    """A certificate or an --at in year 2 was written "2-01-01 09:18 JST": strftime drops the
    year's zeros, and local mean time (+09:18:59) is not JST."""
    assert tokyo_text(datetime.fromisoformat(instant).astimezone(UTC), timespec="seconds") \
        == text


def test_period_texts_name_the_zone_tokyo_kept_in_both_languages() -> None:
    """A period starting at midnight in the 1949 summer said "00:00 JST" (it was 00:00 JDT),
    and the Japanese elapsed-time text called local mean time 日本時間."""
    from policy.periods import PeriodRule, days_period

    summer_midnight = datetime(1949, 5, 31, 14, tzinfo=UTC)  # 1949-06-01 00:00 JDT
    civil = days_period(summer_midnight, 90, rule=PeriodRule.CIVIL_CODE)
    assert "starts at 00:00 Tokyo time, so its first day counts" in civil.explain_en()
    assert "JST" not in civil.explain_en()
    elapsed = days_period(summer_midnight, 90, rule=PeriodRule.ELAPSED)
    assert "from 1949-06-01 00:00:00 JDT" in elapsed.explain_en()
    assert "1949-06-01 00:00:00（日本夏時間） から" in elapsed.explain_ja()
    lmt = days_period(datetime(2, 1, 1, tzinfo=UTC), 90, rule=PeriodRule.ELAPSED)
    assert "0002-01-01 09:18:59（東京の地方平均時） から" in lmt.explain_ja()
    today = days_period(datetime(2026, 5, 10, 15, tzinfo=UTC), 90, rule=PeriodRule.ELAPSED)
    assert "2026-05-11 00:00:00（日本時間） から" in today.explain_ja()
