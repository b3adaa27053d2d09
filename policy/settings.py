"""The provider's choices that the terms leave to it: lead times, deadlines, the price list.

Art.6(1) leaves the notice lead time to the provider, Art.6(2) the answer deadline, and Art.10 /
Appx1 say most amounts are "shown to the customer separately": all of that is configuration, not
constants. Money is an integer number of yen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .periods import DEFAULT_PERIOD_RULE, PeriodRule
from .tiers import Tier

__all__ = ["ItemPrices", "PolicySettings", "PriceList"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemPrices:
    """Appx1.1 initial (certificate) fee per tier, and Appx1.3 agency fee (categories I/II)."""

    initial: Mapping[Tier, int] = field(default_factory=dict)
    agency: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", MappingProxyType(dict(self.initial)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceList:
    """Amounts in yen. A missing amount is ``None``: the fee is still owed, its amount unknown
    here (the decision says so rather than inventing 0)."""

    items: Mapping[str, ItemPrices] = field(default_factory=dict)
    change_fee: int | None = None
    monthly_fee: int = 0
    """Appx1.2 sets the monthly fee to 0 yen for every item."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", MappingProxyType(dict(self.items)))

    def initial_fee(self, handle: str, tier: Tier | None) -> int | None:
        prices = self.items.get(handle)
        if prices is None or tier is None:
            return None
        return prices.initial.get(tier)

    def agency_fee(self, handle: str) -> int | None:
        prices = self.items.get(handle)
        return None if prices is None else prices.agency

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> PriceList:
        """Build from the ``[policy.prices]`` table; raises ``ValueError`` naming the bad key."""
        items: dict[str, ItemPrices] = {}
        for handle, table in dict(raw.get("items", {})).items():
            if not isinstance(table, Mapping):
                raise ValueError(f"policy.prices.items.{handle}: expected a table")
            initial: dict[Tier, int] = {}
            for tier_name, amount in dict(table.get("initial", {})).items():
                key = f"policy.prices.items.{handle}.initial.{tier_name}"
                try:
                    tier = Tier.parse(tier_name)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
                initial[tier] = _yen(amount, key)
            agency = table.get("agency")
            agency_key = f"policy.prices.items.{handle}.agency"
            items[handle] = ItemPrices(
                initial=initial, agency=None if agency is None else _yen(agency, agency_key)
            )
        change = raw.get("change_fee")
        return cls(items=items,
                   change_fee=None if change is None else _yen(change, "policy.prices.change_fee"))


def _yen(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}: expected a whole number of yen (>= 0), got {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    notice_lead_days: int = 90
    """Art.6(1): how many days before the end of validity the renewal notice is due."""
    answer_deadline_days: int = 30
    """Art.6(2)/(3): days after the notice for the customer's answer (never past the end of
    validity)."""
    prices: PriceList = field(default_factory=PriceList)
    period_rule: PeriodRule = DEFAULT_PERIOD_RULE
    """How the terms' periods (Art.3 tiers, the Art.6(3) 90 days) are counted: the Civil Code
    by default (the terms say nothing of it, 民法第138条), or ``elapsed`` instant arithmetic."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> PolicySettings:
        """Build from the ``[policy]`` table (unknown keys are the config loader's concern)."""
        lead = raw.get("notice_lead_days", 90)
        deadline = raw.get("answer_deadline_days", 30)
        for key, value in (("notice_lead_days", lead), ("answer_deadline_days", deadline)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"policy.{key}: expected a whole number of days, got {value!r}")
        rule_name = raw.get("period_rule", DEFAULT_PERIOD_RULE.value)
        if not isinstance(rule_name, str):
            raise ValueError(f"policy.period_rule: expected a string, got {rule_name!r}")
        try:
            rule = PeriodRule.parse(rule_name)
        except ValueError as exc:
            raise ValueError(f"policy.period_rule: {exc}") from None
        return cls(notice_lead_days=lead, answer_deadline_days=deadline,
                   prices=PriceList.from_mapping(dict(raw.get("prices", {}))),
                   period_rule=rule)
