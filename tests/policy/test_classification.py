"""classify_certificate: binding over matchers, BYO by default, findings and actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.classification import PolicySettings, classify_certificate
from policy.decisions import Action
from policy.intake import Binding
from policy.periods import PeriodRule
from policy.tiers import Tier
from tests.policy.factsutil import ONE_SECOND, facts, utc

CATALOGUE = load_catalogue()
DAY = timedelta(days=1)
OV, DV = "2.23.140.1.2.2", "2.23.140.1.2.1"
UNBOUND = Binding()


def codes(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.code for f in result.findings]


def test_art1_unmatched_certificate_is_byo_category_iii() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY, issuer_org="Let's Encrypt", issuer_cn="R11")
    result = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2))
    assert result.item == "byo"
    assert result.category is Category.III
    assert result.tier is Tier.SIX_MONTHS
    assert result.contracted_tier is None
    assert result.compliant is None
    assert result.validity_seconds == 90 * 86_400


def test_art6_3_byo_exactly_90_days_is_not_renewable() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    result = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2))
    assert not result.renewable
    assert "renewal-blocked" in codes(result)
    assert Action.RENEWAL_BLOCKED in [a.action for a in result.actions]


def test_art6_3_byo_90_days_and_a_second_renewable_only_under_elapsed() -> None:
    """09:00 JST start: 90 days + 1 s still ends on the 90th civil day (Apr 1), so the Civil
    Code blocks it; ``elapsed`` counts seconds and does not."""
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY + ONE_SECOND)
    civil = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2))
    assert not civil.renewable
    assert "renewal-blocked" in codes(civil)
    elapsed = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2),
                                   settings=PolicySettings(period_rule=PeriodRule.ELAPSED))
    assert elapsed.renewable
    assert "renewal-blocked" not in codes(elapsed)


def test_art6_3_byo_ending_after_the_90th_civil_day_is_renewable() -> None:
    f = facts(utc(2026, 1, 1), not_after=datetime(2026, 4, 1, 15, tzinfo=UTC))  # Apr 2 JST
    result = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2))
    assert result.renewable
    assert "renewal-blocked" not in codes(result)


def test_art6_3_proviso_only_for_category_iii() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    bound = Binding(item="globalsign-dv")
    result = classify_certificate(f, CATALOGUE, binding=bound, at=utc(2026, 1, 2))
    assert result.category is Category.I
    assert result.renewable


def test_binding_item_overrides_the_matchers() -> None:
    f = facts(utc(2026, 4, 1), lifetime=199 * DAY, issuer_org="DigiCert Inc",
              issuer_cn="DigiCert Global G2 TLS RSA SHA256 2020 CA1", policy_oids=(OV,))
    unbound = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 4, 2))
    assert unbound.item is None
    assert "ambiguous-item" in codes(unbound)
    assert len(unbound.candidates) == 4
    assert unbound.contracted_tier is Tier.ONE_YEAR  # every candidate is 1y only
    bound = classify_certificate(f, CATALOGUE, binding=Binding(item="global-server-id-cloud"),
                                 at=utc(2026, 4, 2))
    assert bound.item == "global-server-id-cloud"
    assert bound.category is Category.II
    assert "ambiguous-item" not in codes(bound)
    assert bound.compliant is True


def test_binding_category_narrows_the_candidates() -> None:
    f = facts(utc(2026, 4, 1), lifetime=199 * DAY, issuer_org="DigiCert Inc",
              issuer_cn="DigiCert TLS RSA SHA256 2020 CA1", policy_oids=(OV,))
    result = classify_certificate(f, CATALOGUE, binding=Binding(category=Category.II),
                                  at=utc(2026, 4, 2))
    assert result.category is Category.II
    assert set(result.candidates) == {"secure-server-id-cloud", "global-server-id-cloud"}


def test_binding_category_iii_makes_a_ca_product_byo() -> None:
    f = facts(utc(2026, 4, 1), lifetime=199 * DAY, issuer_org="GlobalSign nv-sa",
              issuer_cn="GlobalSign GCC R3 DV TLS CA 2020", policy_oids=(DV,))
    result = classify_certificate(f, CATALOGUE, binding=Binding(category=Category.III),
                                  at=utc(2026, 4, 2))
    assert result.item == "byo"
    assert result.ca == "globalsign"


def test_art3_byo_contracted_6m_with_a_199_day_certificate_is_non_compliant() -> None:
    f = facts(utc(2026, 4, 1), lifetime=199 * DAY)
    result = classify_certificate(f, CATALOGUE, binding=Binding(tier=Tier.SIX_MONTHS),
                                  at=utc(2026, 4, 2))
    assert result.tier is Tier.ONE_YEAR
    assert result.compliant is False
    assert "non-compliant" in codes(result)
    assert Action.NON_COMPLIANT in [a.action for a in result.actions]


def test_art3_proviso_globalsign_byo_with_previous_certificate() -> None:
    nb = utc(2027, 6, 1, 3)
    previous = facts(nb - 330 * DAY, lifetime=362 * DAY)  # ends 31 days after nb (+1 s)
    f = facts(nb, lifetime=397 * DAY, issuer_org="GlobalSign nv-sa", issuer_cn="Other CA")
    result = classify_certificate(f, CATALOGUE, binding=Binding(tier=Tier.ONE_YEAR),
                                  at=nb, previous=previous)
    assert result.tier is Tier.TWO_YEARS
    assert result.compliant is True
    assert result.by_allowance
    assert "transition-allowance" in codes(result)


def test_tier_not_offered_for_the_item_is_a_finding() -> None:
    f = facts(utc(2026, 4, 1), lifetime=150 * DAY)
    result = classify_certificate(
        f, CATALOGUE, binding=Binding(item="secure-server-id", tier=Tier.SIX_MONTHS),
        at=utc(2026, 4, 2))
    assert "tier-not-offered" in codes(result)


def test_expired_not_yet_valid_and_days_left_count_tokyo_days() -> None:
    f = facts(utc(2026, 1, 1), not_after=utc(2026, 3, 31, 14, 59, 59))  # Mar 31 23:59:59 JST
    assert classify_certificate(f, CATALOGUE, binding=UNBOUND,
                                at=utc(2026, 3, 30, 14, 59, 59)).days_left == 1
    assert classify_certificate(f, CATALOGUE, binding=UNBOUND,
                                at=utc(2026, 3, 30, 15)).days_left == 0
    on_last = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 3, 31, 14, 59, 59))
    assert on_last.days_left == 0
    assert "expired" not in codes(on_last)
    after = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 3, 31, 15))
    assert after.days_left == -1
    assert "expired" in codes(after)
    early = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2025, 12, 31))
    assert "not-yet-valid" in codes(early)


def test_inverted_validity_ca_certificate_and_missing_san_are_findings() -> None:
    inverted = facts(utc(2026, 2, 1), not_after=utc(2026, 1, 1))
    assert "inverted-validity" in codes(classify_certificate(
        inverted, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 15)))
    ca = facts(utc(2026, 1, 1), lifetime=3650 * DAY, is_ca=True, sans=())
    result = classify_certificate(ca, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 15))
    assert "ca-certificate" in codes(result)
    assert result.actions == ()
    no_san = facts(utc(2026, 1, 1), lifetime=100 * DAY, sans=())
    assert "no-san" in codes(classify_certificate(no_san, CATALOGUE, binding=UNBOUND,
                                                  at=utc(2026, 1, 15)))


def test_sc081_public_ca_certificate_longer_than_the_maximum_is_a_finding() -> None:
    before = utc(2026, 3, 14, 23, 59, 59)
    ok = facts(before, lifetime=398 * DAY, issuer_org="Sectigo Limited")
    too_long = facts(utc(2026, 3, 15), lifetime=200 * DAY + ONE_SECOND,
                     issuer_org="Sectigo Limited")
    at_limit = facts(utc(2026, 3, 15), lifetime=200 * DAY, issuer_org="Sectigo Limited")
    private = facts(utc(2026, 3, 15), lifetime=800 * DAY, issuer_org="Example Corp Root")

    def flagged(f) -> bool:  # type: ignore[no-untyped-def]
        return "public-max-validity-exceeded" in codes(
            classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 4, 1)))

    assert not flagged(ok)
    assert flagged(too_long)
    assert not flagged(at_limit)
    assert not flagged(private)


def test_no_well_defined_expiration_is_unlimited_with_nothing_due() -> None:
    f = facts(utc(2026, 1, 1), not_after=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    result = classify_certificate(f, CATALOGUE, binding=Binding(tier=Tier.UNLIMITED),
                                  at=utc(2026, 1, 2))
    assert result.tier is Tier.UNLIMITED
    assert result.compliant is True
    assert result.actions == ()
    assert result.days_left > 2_900_000


def test_settings_lead_time_reaches_the_actions() -> None:
    f = facts(utc(2026, 1, 1), lifetime=300 * DAY)
    result = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2),
                                  settings=PolicySettings(notice_lead_days=30))
    (notify,) = [a for a in result.actions if a.action is Action.NOTIFY]
    assert notify.computed["lead_days"] == 30


def test_to_json_has_the_documented_keys() -> None:
    f = facts(utc(2026, 1, 1), lifetime=90 * DAY)
    body = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 2)).to_json()
    for key in ("sha256", "not_before", "not_after", "validity_seconds", "tier", "renewable",
                "item", "category", "compliant", "days_left", "findings", "actions"):
        assert key in body
    assert body["not_after"] == "2026-03-31T23:59:59Z"
    assert body["tier"] == "6m"


# ---------------------------------------------------------------- properties

@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=1200 * 86_400),
       st.integers(min_value=1, max_value=1200 * 86_400),
       st.sampled_from([None, Tier.SIX_MONTHS, Tier.ONE_YEAR, Tier.TWO_YEARS]))
def test_classify_longer_certificate_never_classifies_shorter_or_more_renewable(
        s1: int, s2: int, contracted: Tier | None) -> None:
    nb = utc(2026, 2, 1)
    short, long_ = sorted((s1, s2))
    binding = Binding(tier=contracted)
    a = classify_certificate(facts(nb, lifetime=timedelta(seconds=short)), CATALOGUE,
                             binding=binding, at=nb)
    b = classify_certificate(facts(nb, lifetime=timedelta(seconds=long_)), CATALOGUE,
                             binding=binding, at=nb)
    assert a.tier <= b.tier
    assert b.renewable or not a.renewable  # renewable is monotone in the period
    if contracted is not None and b.compliant:
        assert a.compliant


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=500 * 86_400),
       st.integers(min_value=0, max_value=500 * 86_400),
       st.integers(min_value=30, max_value=400))
def test_classify_once_due_stays_due_as_time_advances(t1: int, t2: int, days: int) -> None:
    nb = utc(2026, 2, 1)
    f = facts(nb, lifetime=days * DAY)
    early, late = sorted((t1, t2))
    a = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=nb + timedelta(seconds=early))
    b = classify_certificate(f, CATALOGUE, binding=UNBOUND, at=nb + timedelta(seconds=late))
    due_a = {d.action for d in a.actions if d.computed.get("is_due", True)}
    due_b = {d.action for d in b.actions if d.computed.get("is_due", True)}
    if Action.NOTICE_MISSED in due_b:  # the notice's last day passed: missed, never un-due
        due_a = (due_a - {Action.NOTIFY}) | {Action.NOTICE_MISSED}
    assert due_a <= due_b
    if Action.NOTICE_MISSED in due_a:
        assert Action.NOTIFY not in due_b
    assert b.days_left <= a.days_left
    if "expired" in codes(a):
        assert "expired" in codes(b)


# ---------------------------------------------------------------- issue 10/11: items and periods

CT_OV = {"issuer_org": "Cybertrust Japan Co., Ltd.",
         "issuer_cn": "Cybertrust Japan SureServer CA G4", "policy_oids": (OV,)}


def test_appx1_certificate_longer_than_every_period_its_item_offers_is_a_finding() -> None:
    """sureserver-cloud offers 6 months and 1 year; no tier is contracted (it offers two), yet
    a certificate longer than 1 year cannot comply with any contract for the item."""
    nb = utc(2026, 4, 1, 3)  # 12:00 JST: 1 year ends at the end of 2027-04-01 (JST)
    inside = facts(nb, not_after=utc(2027, 4, 1, 14, 59, 59), **CT_OV)
    outside = facts(nb, not_after=utc(2027, 4, 1, 15, 0, 0), **CT_OV)
    bound = Binding(item="sureserver-cloud")
    ok = classify_certificate(inside, CATALOGUE, binding=bound, at=nb)
    assert ok.contracted_tier is None
    assert "exceeds-item-periods" not in codes(ok)
    bad = classify_certificate(outside, CATALOGUE, binding=bound, at=nb)
    (finding,) = [f for f in bad.findings if f.code == "exceeds-item-periods"]
    assert finding.clause == "Appx1.1"
    assert "sureserver-cloud" in finding.message
    # Recognised without a binding too (the matcher's single candidate).
    unbound = classify_certificate(outside, CATALOGUE, binding=UNBOUND, at=nb)
    assert unbound.item == "sureserver-cloud"
    assert "exceeds-item-periods" in codes(unbound)


def test_art1_bound_item_whose_ca_cannot_have_issued_the_certificate_is_a_mismatch() -> None:
    le = facts(utc(2026, 4, 1), lifetime=90 * DAY, issuer_org="Let's Encrypt",
               issuer_cn="R11", policy_oids=(DV,))
    result = classify_certificate(le, CATALOGUE, binding=Binding(item="globalsign-dv"),
                                  at=utc(2026, 4, 2))
    (finding,) = [f for f in result.findings if f.code == "item-mismatch"]
    assert "GlobalSign cannot have issued it" in finding.message
    assert result.item == "globalsign-dv"  # the binding still decides the contract's item


def test_art1_bound_item_whose_validation_level_contradicts_the_oid_is_a_mismatch() -> None:
    dv = facts(utc(2026, 4, 1), lifetime=199 * DAY, issuer_org="GlobalSign nv-sa",
               issuer_cn="Some future GlobalSign CA", policy_oids=(DV,))
    result = classify_certificate(dv, CATALOGUE, binding=Binding(item="globalsign-ov"),
                                  at=utc(2026, 4, 2))
    (finding,) = [f for f in result.findings if f.code == "item-mismatch"]
    assert "(OV)" in finding.message
    assert "DV" in finding.message
    ov = facts(utc(2026, 4, 1), lifetime=199 * DAY, issuer_org="GlobalSign nv-sa",
               issuer_cn="Some future GlobalSign CA", policy_oids=(OV,))
    fine = classify_certificate(ov, CATALOGUE, binding=Binding(item="globalsign-ov"),
                                at=utc(2026, 4, 2))
    assert "item-mismatch" not in codes(fine)


def test_art1_byo_item_takes_a_certificate_from_any_ca() -> None:
    le = facts(utc(2026, 4, 1), lifetime=90 * DAY, issuer_org="Let's Encrypt", issuer_cn="R11")
    result = classify_certificate(le, CATALOGUE, binding=Binding(item="byo"),
                                  at=utc(2026, 4, 2))
    assert "item-mismatch" not in codes(result)


def test_art3_is_cited_for_category_iii_only_even_for_an_inverted_validity() -> None:
    inverted = facts(utc(2026, 2, 1), not_after=utc(2026, 1, 1))
    byo = classify_certificate(inverted, CATALOGUE, binding=UNBOUND, at=utc(2026, 1, 15))
    (finding,) = [f for f in byo.findings if f.code == "inverted-validity"]
    assert finding.clause == "Art.3"
    ov = classify_certificate(inverted, CATALOGUE, binding=Binding(item="globalsign-ov"),
                              at=utc(2026, 1, 15))
    (finding,) = [f for f in ov.findings if f.code == "inverted-validity"]
    assert finding.clause == "Appx1.1"
    assert not [f for f in ov.findings if f.clause.startswith("Art.3")]


_ISSUERS = [("DigiCert Inc", "DigiCert Global G2 TLS RSA SHA256 2020 CA1"),
            ("DigiCert Inc", "Unknown Intermediate"), ("GlobalSign nv-sa",
                                                       "GlobalSign GCC R3 DV TLS CA 2020"),
            ("Cybertrust Japan Co., Ltd.", "Cybertrust Japan SureServer CA G4"),
            ("Let's Encrypt", "R11"), (None, None)]
_OIDS = [(), (OV,), (DV,), (OV, DV), ("1.3.6.1.4.1.4146.1.10", DV),
         ("2.16.840.1.114412.1.1", DV)]
_BINDINGS = [UNBOUND, Binding(category=Category.III), Binding(category=Category.I),
             Binding(item="globalsign-dv", tier=Tier.SIX_MONTHS), Binding(tier=Tier.ONE_YEAR)]


def test_what_a_certificate_is_to_the_contract_is_remembered_exactly() -> None:
    """Classifying with the remembered item/category/tier (policy.classification._RESOLVED)
    gives what a fresh classification gives, whatever came before it: every combination of
    the facts it is keyed on, each classified right after its neighbours that differ in one."""
    from policy import classification

    at = utc(2026, 3, 1)
    made = [(facts(utc(2026, 1, 1), lifetime=199 * DAY, issuer_org=org, issuer_cn=cn,
                   policy_oids=oids, is_ca=is_ca,
                   sans=("*.example.jp",) if wildcard else ("www.example.jp",)), binding)
            for binding in _BINDINGS for (org, cn) in _ISSUERS for oids in _OIDS
            for is_ca in (False, True) for wildcard in (False, True)]
    for order in (made, made[::-1]):
        classification._RESOLVED.clear()
        warm = [classify_certificate(f, CATALOGUE, binding=b, at=at) for f, b in order]
        for (f, b), remembered in zip(order, warm, strict=True):
            classification._RESOLVED.clear()
            assert classify_certificate(f, CATALOGUE, binding=b, at=at) == remembered
