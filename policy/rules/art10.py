"""Art.10 and Appendix 1 — which fee is owed, and from which moment.

The terms fix the *moments*, not most amounts:

* initial fee (初期費用, the Appx1.1 certificate fee, "per new acquisition or renewal"): owed
  from the moment the provider accepts the application; for a renewal the provider took as made
  by default under Art.6(2), from a moment the provider designates on or after the day it took
  the renewal as made;
* application agency fee (申請代行手数料, Appx1.3): categories I and II only, per new acquisition
  or renewal, alongside the initial fee;
* monthly fee (月額費用, Appx1.2): owed from the billing start date, and 0 yen for every item;
* one-time fee (一時費用): owed from the moment the provider accepts a contract change (Art.5),
  *where the price list names one*: Appendix 1 prices no one-time fee for this service, so a
  change with no configured ``change_fee`` is recorded with no fee line at all.

The Japanese explanations use the terms' own words for each moment: the initial fee arises
「申込を当社が承諾した時点で」, the default-renewal fee at a moment the provider designates on or
after the day it took the renewal as made, the monthly fee 「課金開始日に」.

Amounts "shown to the customer separately" come from :class:`policy.settings.PriceList`. A
missing amount stays ``None`` and the decision says it is not configured: inventing 0 yen would
be a silent under-billing. The initial fee is priced per tier, so a contract accepted without
one (its item offers several, none was given) has no price row at all, however complete the
price list: the decision says that instead, since configuring prices would not help.
"""

from __future__ import annotations

import enum
from datetime import date

from policy.category import Category
from policy.decisions import Action, Decision, Severity
from policy.settings import PriceList
from policy.tiers import Tier

__all__ = [
    "Fee",
    "fee_decision",
    "fees_on_acceptance",
    "fees_on_change",
    "fees_on_renewal",
]


class Fee(enum.Enum):
    """A fee line of Appendix 1. The value is the stable name used in JSON."""

    INITIAL = "initial"
    AGENCY = "agency"
    MONTHLY = "monthly"
    CHANGE = "change"


_CLAUSE = {
    Fee.INITIAL: "Art.10, Appx1.1",
    Fee.AGENCY: "Art.10, Appx1.3",
    Fee.MONTHLY: "Art.10, Appx1.2",
    Fee.CHANGE: "Art.10, Art.5",
}
_NAME_EN = {
    Fee.INITIAL: "initial fee (certificate fee)",
    Fee.AGENCY: "application agency fee",
    Fee.MONTHLY: "monthly fee",
    Fee.CHANGE: "one-time fee for the contract change",
}
_NAME_JA = {
    Fee.INITIAL: "初期費用（証明書料金）",
    Fee.AGENCY: "申請代行手数料",
    Fee.MONTHLY: "月額費用",
    Fee.CHANGE: "契約内容変更の一時費用",
}


def fee_decision(
    *,
    fee: Fee,
    amount_yen: int | None,
    arises: date,
    contract_id: str | None,
    moment_en: str,
    moment_ja: str,
    facts: dict[str, str | None] | None = None,
    provider_designates: bool = False,
    prospective: bool = False,
    no_tier: bool = False,
) -> Decision:
    """One FEE_OWED decision: ``due`` is the Tokyo day the obligation arises (inclusive).

    ``moment_ja`` is the terms' own phrase for the moment, ending in 「で」 or 「に」
    (「申込を当社が承諾した時点で」), so the sentence reads 「…の支払義務は、<moment>発生します」.

    ``provider_designates`` marks the Art.6(2) default-renewal case, where ``arises`` is the
    earliest day the provider may designate, not a fixed day. ``prospective`` marks a fee that
    will arise from a step still to come (a renewal the rules call for), not one recorded.
    ``no_tier`` marks a per-tier fee of a contract that has no tier: no price can be chosen.
    """
    if amount_yen is None and no_tier:
        amount_en = ("amount shown to the customer separately; the contract has no tier, so no "
                     "price in [policy.prices] applies (a tier is given only by `contract add "
                     "--tier`; no command sets it later)")
        amount_ja = ("金額は当社が別途契約者に示す金額です（契約に有効期間（tier）が定められて"
                     "いないため、設定 policy.prices の金額を選べません。有効期間は "
                     "`contract add --tier` でのみ指定でき、後から設定するコマンドは"
                     "ありません）。")
        severity = Severity.INFO
    elif amount_yen is None:
        amount_en = "amount shown to the customer separately, not configured in [policy.prices]"
        amount_ja = "金額は当社が別途契約者に示す金額です（設定 policy.prices に未設定）。"
        # Information, not a warning: a missing price is said once per run by the CLI
        # (issue 11), and must not bury the real actions under one warning per contract.
        severity = Severity.INFO
    else:
        amount_en = f"{amount_yen:,} yen"
        amount_ja = f"金額は {amount_yen:,} 円です。"
        severity = Severity.INFO
    when_en = ("from a moment the provider designates on or after " if provider_designates
               else "from ") + arises.isoformat()
    when_ja = (f"{arises.isoformat()} 以降" if provider_designates else arises.isoformat())
    return Decision(
        action=Action.FEE_OWED,
        clause=_CLAUSE[fee],
        due=arises,
        contract_id=contract_id,
        severity=severity,
        explanation_en=f"{_NAME_EN[fee].capitalize()} owed {when_en} ({moment_en}): {amount_en}.",
        explanation_ja=f"{_NAME_JA[fee]}の支払義務は、{moment_ja}発生します（{when_ja}）。{amount_ja}",
        computed={
            "fee": fee.value,
            "amount_yen": amount_yen,
            "amount_configured": amount_yen is not None,
            "arises": arises.isoformat(),
            "provider_designates": provider_designates,
            "prospective": prospective,
            "no_tier": no_tier,
        },
        facts=facts or {},
    )


def fees_on_acceptance(
    *,
    contract_id: str | None,
    item: str,
    category: Category,
    tier: Tier | None,
    accepted_on: date,
    prices: PriceList,
    billing_start: date | None = None,
) -> tuple[Decision, ...]:
    """Fees that arise when the provider accepts a new application.

    Initial fee (all categories) and, for I/II, the agency fee, from the acceptance; the monthly
    fee (0 yen) from the billing start date, which defaults to the acceptance day because the
    terms leave it to the provider and nothing else fixes it.
    """
    facts = {"item": item, "category": category.value, "tier": tier.value if tier else None}
    moment_en, moment_ja = "the provider accepted the application", "申込を当社が承諾した時点で"
    out = [
        fee_decision(fee=Fee.INITIAL, amount_yen=prices.initial_fee(item, tier),
                     arises=accepted_on, contract_id=contract_id, moment_en=moment_en,
                     moment_ja=moment_ja, facts=facts, no_tier=tier is None),
    ]
    if category.provider_issued:
        out.append(fee_decision(fee=Fee.AGENCY, amount_yen=prices.agency_fee(item),
                                arises=accepted_on, contract_id=contract_id,
                                moment_en=moment_en, moment_ja=moment_ja, facts=facts))
    start = billing_start or accepted_on
    out.append(fee_decision(fee=Fee.MONTHLY, amount_yen=prices.monthly_fee, arises=start,
                            contract_id=contract_id, moment_en="billing start date",
                            moment_ja="課金開始日に", facts=facts))
    return tuple(out)


def fees_on_renewal(
    *,
    contract_id: str | None,
    item: str,
    category: Category,
    tier: Tier | None,
    renewed_on: date,
    by_default: bool,
    prices: PriceList,
    designated: date | None = None,
    prospective: bool = False,
) -> tuple[Decision, ...]:
    """Fees that arise when a renewal is made (Appx1.1 and Appx1.3 are "per renewal").

    For an Art.6(2) default renewal the initial fee is owed from a moment the provider
    designates on or after ``renewed_on`` (the day it took the renewal as made): ``designated``
    when given (it may not be earlier), else ``renewed_on`` flagged as the earliest such day.
    Any other renewal's fee is owed from its acceptance, ``renewed_on``: Art.10 gives the
    designated moment to the default renewal alone, so ``designated`` is ignored there (the
    ledger refuses recording one; a journal from before that check may hold it).
    """
    if not by_default:
        designated = None
    if designated is not None and designated < renewed_on:
        raise ValueError(
            f"the designated billing moment {designated.isoformat()} is before the day the "
            f"renewal was taken as made ({renewed_on.isoformat()}); Art.10 requires on or after"
        )
    arises = designated or renewed_on
    flag = by_default and designated is None
    facts = {"item": item, "category": category.value, "tier": tier.value if tier else None,
             "renewed_on": renewed_on.isoformat()}
    if by_default:
        moment_en = "renewal taken as made by default, Art.6(2)"
        moment_ja = ("第6条第2項により当社が更新をするものとして取り扱うこととした日以降において"
                     "当社が指定した時点で")
    else:
        moment_en, moment_ja = "renewal", "更新の申込を当社が承諾した時点で"
    out = [
        fee_decision(fee=Fee.INITIAL, amount_yen=prices.initial_fee(item, tier), arises=arises,
                     contract_id=contract_id, moment_en=moment_en, moment_ja=moment_ja,
                     facts=facts, provider_designates=flag, prospective=prospective,
                     no_tier=tier is None),
    ]
    if category.provider_issued:
        out.append(fee_decision(fee=Fee.AGENCY, amount_yen=prices.agency_fee(item),
                                arises=arises, contract_id=contract_id, moment_en=moment_en,
                                moment_ja=moment_ja, facts=facts, provider_designates=flag,
                                prospective=prospective))
    return tuple(out)


def fees_on_change(
    *,
    contract_id: str | None,
    service: str,
    accepted_on: date,
    prices: PriceList,
) -> tuple[Decision, ...]:
    """The one-time fee owed from the provider's acceptance of a contract change (Art.5), where
    the price list names one. Appendix 1 prices no one-time fee for this service, so without a
    configured ``change_fee`` the change owes nothing and no fee line is made."""
    if prices.change_fee is None:
        return ()
    return (
        fee_decision(fee=Fee.CHANGE, amount_yen=prices.change_fee, arises=accepted_on,
                     contract_id=contract_id,
                     moment_en=f"change to service \"{service}\" accepted",
                     moment_ja=f"サービス「{service}」への契約内容変更の申込を当社が承諾した時点で",
                     facts={"service": service}),
    )
