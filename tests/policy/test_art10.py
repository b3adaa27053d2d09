"""Art.10 and Appendix 1 — each fee, the moment it arises, and its amount from the price list."""

from __future__ import annotations

from datetime import date

import pytest

from policy.category import Category
from policy.decisions import Action, Decision, Severity
from policy.rules.art10 import fees_on_acceptance, fees_on_change, fees_on_renewal
from policy.settings import PriceList
from policy.tiers import Tier

PRICES = PriceList.from_mapping({
    "change_fee": 5_000,
    "items": {
        "globalsign-ov": {"initial": {"6m": 20_000, "1y": 36_000}, "agency": 3_000},
        "byo": {"initial": {"1y": 1_000}},
    },
})
ACCEPTED = date(2026, 11, 24)


def _by_fee(decisions: tuple[Decision, ...]) -> dict[str, Decision]:
    out = {}
    for d in decisions:
        assert d.action is Action.FEE_OWED
        out[str(d.computed["fee"])] = d
    return out


def test_art10_initial_and_agency_fee_owed_from_acceptance_for_category_i() -> None:
    fees = _by_fee(fees_on_acceptance(contract_id="c1", item="globalsign-ov",
                                      category=Category.I, tier=Tier.ONE_YEAR,
                                      accepted_on=ACCEPTED, prices=PRICES))
    assert set(fees) == {"initial", "agency", "monthly"}
    initial, agency = fees["initial"], fees["agency"]
    assert initial.due == ACCEPTED
    assert initial.computed["amount_yen"] == 36_000
    assert initial.clause == "Art.10, Appx1.1"
    assert agency.due == ACCEPTED
    assert agency.computed["amount_yen"] == 3_000
    assert agency.clause == "Art.10, Appx1.3"


def test_appx1_3_category_iii_owes_no_agency_fee() -> None:
    fees = _by_fee(fees_on_acceptance(contract_id="c1", item="byo", category=Category.III,
                                      tier=Tier.ONE_YEAR, accepted_on=ACCEPTED, prices=PRICES))
    assert set(fees) == {"initial", "monthly"}
    assert fees["initial"].computed["amount_yen"] == 1_000


def test_appx1_2_monthly_fee_is_zero_yen_from_billing_start() -> None:
    fees = _by_fee(fees_on_acceptance(contract_id="c1", item="byo", category=Category.III,
                                      tier=Tier.ONE_YEAR, accepted_on=ACCEPTED, prices=PRICES,
                                      billing_start=date(2026, 12, 1)))
    monthly = fees["monthly"]
    assert monthly.due == date(2026, 12, 1)
    assert monthly.computed["amount_yen"] == 0
    assert monthly.clause == "Art.10, Appx1.2"


def test_art10_amount_not_configured_is_none_and_said_never_zero() -> None:
    fees = _by_fee(fees_on_acceptance(contract_id="c1", item="secure-server-id",
                                      category=Category.I, tier=Tier.ONE_YEAR,
                                      accepted_on=ACCEPTED, prices=PriceList()))
    for name in ("initial", "agency"):
        decision = fees[name]
        assert decision.computed["amount_yen"] is None
        assert decision.computed["amount_configured"] is False
        assert "not configured" in decision.explanation_en
        assert decision.severity is Severity.INFO  # said once per run by the CLI (issue 11)


def test_art10_initial_fee_of_a_contract_without_a_tier_says_the_tier_is_missing() -> None:
    """Every tier of globalsign-ov is priced: without a tier none can be chosen, and the
    decision says that (in both languages), not "not configured"; the agency fee is priced."""
    accepted = _by_fee(fees_on_acceptance(contract_id="c1", item="globalsign-ov",
                                          category=Category.I, tier=None,
                                          accepted_on=ACCEPTED, prices=PRICES))
    renewed = _by_fee(fees_on_renewal(contract_id="c1", item="globalsign-ov",
                                      category=Category.I, tier=None, renewed_on=ACCEPTED,
                                      by_default=False, prices=PRICES))
    for initial in (accepted["initial"], renewed["initial"]):
        assert initial.computed["amount_yen"] is None
        assert initial.computed["no_tier"] is True
        assert "the contract has no tier" in initial.explanation_en
        assert "not configured" not in initial.explanation_en
        assert "有効期間（tier）が定められていない" in initial.explanation_ja
        assert "未設定" not in initial.explanation_ja
    assert accepted["agency"].computed["amount_yen"] == 3_000
    assert accepted["agency"].computed["no_tier"] is False


def test_art10_initial_fee_for_a_tier_without_a_price_is_not_configured() -> None:
    fees = _by_fee(fees_on_acceptance(contract_id="c1", item="byo", category=Category.III,
                                      tier=Tier.TWO_YEARS, accepted_on=ACCEPTED, prices=PRICES))
    assert fees["initial"].computed["amount_yen"] is None


def test_art10_default_renewal_fee_arises_from_the_designated_moment() -> None:
    fees = _by_fee(fees_on_renewal(contract_id="c1", item="globalsign-ov", category=Category.I,
                                   tier=Tier.ONE_YEAR, renewed_on=date(2027, 1, 10),
                                   by_default=True, prices=PRICES,
                                   designated=date(2027, 1, 20)))
    assert fees["initial"].due == date(2027, 1, 20)
    assert fees["agency"].due == date(2027, 1, 20)
    assert fees["initial"].computed["amount_yen"] == 36_000


@pytest.mark.parametrize(("by_default", "due"), [
    (True, date(2027, 1, 20)),   # by default (Art.6(2)): from the day the provider designated
    (False, date(2027, 1, 10)),  # accepted: from the acceptance, whatever a journal holds
])
def test_art10_only_a_default_renewal_is_billed_from_a_designated_moment(
        by_default: bool, due: date) -> None:
    fees = _by_fee(fees_on_renewal(contract_id="c1", item="globalsign-ov", category=Category.I,
                                   tier=Tier.ONE_YEAR, renewed_on=date(2027, 1, 10),
                                   by_default=by_default, prices=PRICES,
                                   designated=date(2027, 1, 20)))
    assert (fees["initial"].due, fees["agency"].due) == (due, due)
    assert fees["initial"].computed["provider_designates"] is False


def test_art10_default_renewal_without_designation_is_earliest_day_provider_designates() -> None:
    fees = _by_fee(fees_on_renewal(contract_id="c1", item="globalsign-ov", category=Category.I,
                                   tier=Tier.ONE_YEAR, renewed_on=date(2027, 1, 10),
                                   by_default=True, prices=PRICES))
    initial = fees["initial"]
    assert initial.due == date(2027, 1, 10)
    assert initial.computed["provider_designates"] is True
    assert "on or after 2027-01-10" in initial.explanation_en


def test_art10_designated_moment_before_the_renewal_day_is_refused() -> None:
    with pytest.raises(ValueError, match="on or after"):
        fees_on_renewal(contract_id="c1", item="globalsign-ov", category=Category.I,
                        tier=Tier.ONE_YEAR, renewed_on=date(2027, 1, 10), by_default=True,
                        prices=PRICES, designated=date(2027, 1, 9))


def test_art10_designated_moment_on_the_renewal_day_is_accepted() -> None:
    fees = fees_on_renewal(contract_id="c1", item="globalsign-ov", category=Category.I,
                           tier=Tier.ONE_YEAR, renewed_on=date(2027, 1, 10), by_default=True,
                           prices=PRICES, designated=date(2027, 1, 10))
    assert {d.due for d in fees} == {date(2027, 1, 10)}


def test_appx1_3_agency_fee_per_renewal_for_category_ii_not_iii() -> None:
    ii = _by_fee(fees_on_renewal(contract_id="c", item="secure-server-id-cloud",
                                 category=Category.II, tier=Tier.ONE_YEAR,
                                 renewed_on=ACCEPTED, by_default=False, prices=PRICES))
    iii = _by_fee(fees_on_renewal(contract_id="c", item="byo", category=Category.III,
                                  tier=Tier.ONE_YEAR, renewed_on=ACCEPTED, by_default=False,
                                  prices=PRICES))
    assert set(ii) == {"initial", "agency"}
    assert set(iii) == {"initial"}


def test_art10_one_time_fee_owed_from_acceptance_of_the_contract_change() -> None:
    (fee,) = fees_on_change(contract_id="c1", service="IIJ GIO", accepted_on=ACCEPTED,
                            prices=PRICES)
    assert fee.action is Action.FEE_OWED
    assert fee.clause == "Art.10, Art.5"
    assert fee.due == ACCEPTED
    assert fee.computed["amount_yen"] == 5_000
    assert isinstance(fee.computed["amount_yen"], int)


def test_appx1_prices_no_one_time_fee_so_an_unpriced_change_owes_nothing() -> None:
    """Appendix 1 names no one-time fee for this service: a contract change owes one only where
    the price list names it; otherwise there is no fee line (not an "amount unknown" one)."""
    assert fees_on_change(contract_id="c1", service="x", accepted_on=ACCEPTED,
                          prices=PriceList()) == ()
    (fee,) = fees_on_change(contract_id="c1", service="x", accepted_on=ACCEPTED,
                            prices=PriceList(change_fee=0))
    assert fee.computed["amount_yen"] == 0


def test_art10_initial_fee_arises_when_the_provider_accepts_the_application() -> None:
    fees = fees_on_acceptance(contract_id="c1", item="byo", category=Category.III,
                              tier=Tier.ONE_YEAR, accepted_on=ACCEPTED, prices=PriceList())
    initial = next(f for f in fees if f.computed["fee"] == "initial")
    assert "申込を当社が承諾した時点で" in initial.explanation_ja
    assert "初期費用（証明書料金）" in initial.explanation_ja
    assert "当社が別途契約者に示す金額" in initial.explanation_ja
