"""The provider's choices (Art.6(1) lead time, Art.6(2) deadline, Art.10 price list)."""

from __future__ import annotations

import pytest

from policy.settings import PolicySettings, PriceList
from policy.tiers import Tier


def test_defaults_are_90_day_notice_and_30_day_answer_deadline() -> None:
    settings = PolicySettings.from_mapping({})
    assert (settings.notice_lead_days, settings.answer_deadline_days) == (90, 30)
    assert settings.prices.monthly_fee == 0  # Appx1.2: 0 yen for every item


def test_price_list_reads_yen_per_tier_and_agency_fee() -> None:
    prices = PriceList.from_mapping(
        {"change_fee": 5000,
         "items": {"globalsign-ov": {"initial": {"6m": 12000, "1y": 20000}, "agency": 3000}}}
    )
    assert prices.initial_fee("globalsign-ov", Tier.ONE_YEAR) == 20000
    assert prices.initial_fee("globalsign-ov", Tier.TWO_YEARS) is None
    assert prices.agency_fee("globalsign-ov") == 3000
    assert prices.change_fee == 5000


def test_an_unconfigured_amount_is_unknown_not_zero() -> None:
    prices = PriceList.from_mapping({})
    assert prices.initial_fee("byo", Tier.ONE_YEAR) is None
    assert prices.agency_fee("secure-server-id") is None
    assert prices.change_fee is None


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"notice_lead_days": "90"}, "policy.notice_lead_days"),
        ({"answer_deadline_days": -1}, "policy.answer_deadline_days"),
        ({"prices": {"change_fee": 1.5}}, "policy.prices.change_fee"),
        (
            {"prices": {"items": {"byo": {"initial": {"7m": 1}}}}},
            "policy.prices.items.byo.initial.7m",
        ),
        ({"prices": {"items": {"byo": {"agency": True}}}}, "policy.prices.items.byo.agency"),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        PolicySettings.from_mapping(raw)
