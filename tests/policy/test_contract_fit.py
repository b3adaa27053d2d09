"""What `policy classify` says of a certificate against its item and tier, the ledger's
contracts hear too (session 17 review): ``exceeds-item-periods`` with no tier contracted
(CONTRACT.md Art.3: "a finding even with no contracted tier"), ``item-mismatch`` (Art.1),
and no ``item-mismatch`` for a BYO certificate from a CA the catalogue knows (Art.1: category
III is the certificate the customer obtained, from any CA)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.catalogue import load_catalogue
from policy.category import Category
from policy.classification import classify_certificate, contract_fit
from policy.decisions import Action
from policy.evaluate import evaluate_contract
from policy.facts import CertificateFacts
from policy.intake import Binding
from policy.settings import PolicySettings
from policy.state import fold
from policy.tiers import Tier
from tests.policy.factsutil import ONE_SECOND, facts, utc
from tests.policy.ledger_fixtures import accepted, bound

CATALOGUE = load_catalogue()
SETTINGS = PolicySettings()
OV = "2.23.140.1.2.2"
GLOBALSIGN_OV = {"issuer_org": "GlobalSign nv-sa",
                 "issuer_cn": "GlobalSign GCC R3 OV TLS CA 2024", "policy_oids": (OV,)}
LETS_ENCRYPT = {"issuer_org": "Let's Encrypt", "issuer_cn": "R11"}
FIT = (Action.ITEM_MISMATCH, Action.NON_COMPLIANT)

# notBefore 2025-01-10 12:00 JST: reckoning day 2025-01-11, 1 year ends at the end of
# 2026-01-10 JST (2026-01-10T14:59:59Z is its last second).
NB = utc(2025, 1, 10, 3)
LAST_SECOND_OF_1Y = utc(2026, 1, 10, 14, 59, 59)
AT = utc(2025, 2, 1)


def _contract_decisions(cert: CertificateFacts, *, item: str, category: Category,
                        tier: Tier | None, at: datetime) -> list[Action]:
    state = fold("S3", [accepted("S3", item=item, category=category, tier=tier,
                                 at=datetime(2025, 1, 1, tzinfo=UTC)),
                        bound("S3", cert=cert, at=datetime(2025, 1, 11, tzinfo=UTC))], at=at)
    return [d.action for d in evaluate_contract(state, CATALOGUE, SETTINGS, at=at)
            if d.action in FIT]


def _classified(cert: CertificateFacts, *, item: str, tier: Tier | None = None,
                previous: CertificateFacts | None = None, at: datetime = AT
                ) -> tuple[set[str], list[Action]]:
    got = classify_certificate(cert, CATALOGUE, binding=Binding(item=item, tier=tier),
                               at=at, previous=previous)
    return {f.code for f in got.findings}, [d.action for d in got.actions if d.action in FIT]


@pytest.mark.parametrize(("not_after", "exceeds"), [
    (LAST_SECOND_OF_1Y, False),              # within 1 year, the longest globalsign-ov offers
    (LAST_SECOND_OF_1Y + ONE_SECOND, True),  # 00:00 JST the next day: beyond every period
])
def test_appx1_contract_without_a_tier_hears_of_a_certificate_no_tier_admits(
        not_after: datetime, exceeds: bool) -> None:
    """The reviewer's S3: `add S3 --item globalsign-ov` (no tier), `bind S3 gs2y.pem` said
    nothing while `policy classify` said `exceeds-item-periods [Appx1.1]`."""
    cert = facts(NB, not_after=not_after, **GLOBALSIGN_OV)
    at = utc(2025, 2, 1)
    actions = _contract_decisions(cert, item="globalsign-ov", category=Category.I, tier=None,
                                  at=at)
    assert actions == ([Action.NON_COMPLIANT] if exceeds else [])
    codes, classify_actions = _classified(cert, item="globalsign-ov")
    assert ("exceeds-item-periods" in codes) is exceeds
    assert classify_actions == actions  # one function decides both
    fit = contract_fit(cert, CATALOGUE,
                       binding=Binding(contract_id="S3", item="globalsign-ov",
                                       category=Category.I))
    assert [f.code for f in fit.findings] == (["exceeds-item-periods"] if exceeds else [])
    if exceeds:
        (decision,) = fit.decisions
        assert decision.clause == "Appx1.1"
        assert decision.computed["contracted"] is None
        assert decision.computed["longest_offered"] == "1y"
        assert decision.computed["period_last_day"] == "2026-01-10"
        assert "longer than every period globalsign-ov offers" in decision.explanation_en
        assert "2026-01-10" in decision.explanation_ja


def test_appx1_a_contracted_tier_still_decides_compliance_against_itself() -> None:
    """With a tier, the tier decides (the NON_COMPLIANT against it), and there is no second
    decision about every period the item offers."""
    cert = facts(NB, not_after=LAST_SECOND_OF_1Y + ONE_SECOND, **GLOBALSIGN_OV)
    fit = contract_fit(cert, CATALOGUE, binding=Binding(
        contract_id="S3", item="globalsign-ov", category=Category.I, tier=Tier.ONE_YEAR))
    assert [f.code for f in fit.findings] == ["non-compliant"]
    (decision,) = fit.decisions
    assert decision.computed["contracted"] == "1y"


@pytest.mark.parametrize(("issuer", "mismatch"), [
    (GLOBALSIGN_OV, False),
    (LETS_ENCRYPT, True),
])
def test_art1_contract_hears_of_a_certificate_its_items_ca_cannot_have_issued(
        issuer: dict[str, object], mismatch: bool) -> None:
    cert = facts(NB, lifetime=timedelta(days=200), **issuer)  # type: ignore[arg-type]
    at = utc(2025, 2, 1)
    actions = _contract_decisions(cert, item="globalsign-ov", category=Category.I,
                                  tier=Tier.ONE_YEAR, at=at)
    assert actions == ([Action.ITEM_MISMATCH] if mismatch else [])
    codes, classify_actions = _classified(cert, item="globalsign-ov", tier=Tier.ONE_YEAR)
    assert ("item-mismatch" in codes) is mismatch
    assert classify_actions == actions
    if mismatch:
        fit = contract_fit(cert, CATALOGUE, binding=Binding(
            contract_id="S3", item="globalsign-ov", category=Category.I, tier=Tier.ONE_YEAR))
        (decision,) = fit.decisions
        assert (decision.clause, decision.computed["reason"]) == ("Art.1", "issuer")
        # the decision is printed as it is: catalogue words only, never the issuer's text
        assert "Let's Encrypt" not in decision.explanation_en + decision.explanation_ja
        assert "GlobalSign did not issue it" in decision.explanation_en


def test_art1_a_byo_contract_takes_a_globalsign_certificate() -> None:
    """The reviewer's `policy classify --item byo --tier 1y --previous tp.pem t1.pem`:
    `item-mismatch [Art.1] bound to byo but the certificate looks like globalsign-ov`. Category
    III is the certificate the customer obtained (Art.1), from any CA."""
    previous = facts(NB, lifetime=timedelta(days=366), **GLOBALSIGN_OV)
    cert = facts(utc(2025, 12, 20, 3), lifetime=timedelta(days=199), **GLOBALSIGN_OV)
    for prev in (previous, None):
        codes, actions = _classified(cert, item="byo", tier=Tier.ONE_YEAR, previous=prev,
                                     at=utc(2026, 1, 1))
        assert "item-mismatch" not in codes
        assert actions == []
    assert _contract_decisions(cert, item="byo", category=Category.III, tier=Tier.ONE_YEAR,
                               at=utc(2026, 1, 1)) == []


@pytest.mark.parametrize(("sans", "mismatch"), [
    (("www.example.jp",), False),
    (("*.example.jp",), True),  # looks like globalsign-ov-wildcard, not globalsign-ov
])
def test_art1_a_globalsign_item_still_hears_when_the_certificate_is_another_of_its_items(
        sans: tuple[str, ...], mismatch: bool) -> None:
    cert = facts(NB, lifetime=timedelta(days=200), **{**GLOBALSIGN_OV, "sans": sans})
    codes, actions = _classified(cert, item="globalsign-ov", tier=Tier.ONE_YEAR)
    assert ("item-mismatch" in codes) is mismatch
    assert actions == ([Action.ITEM_MISMATCH] if mismatch else [])
