"""Art.7 — applications that are refused (利用の申込の制限), with Art.4(1) and Art.8, the other
reasons an application for an item cannot be accepted.

* (1) category I/II: moving a certificate in use on a server outside the provider's designated
  services onto the provider's servers;
* (2) category I/II: an application for an organisation located outside Japan;
* Art.4(1): category II without a designated service;
* Art.8: an item already abolished (``product_end`` on or before ``at``'s Tokyo day).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from policy.catalogue import Catalogue
from policy.decisions import Action, Decision, Severity
from policy.errors import PolicyError
from policy.rules.art4 import designated_service_refusal
from policy.rules.art8 import abolished
from policy.tokyo import tokyo_date

__all__ = ["Application", "application_refusals"]

JAPAN = "JP"
_COUNTRY = re.compile(r"[A-Za-z]{2}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Application:
    """An application for a contract on one item (Art.2)."""

    item: str
    organisation_country: str = "JP"
    """ISO 3166-1 alpha-2 code of the country the applicant organisation is located in."""
    migrating_from_outside: bool = False
    """The certificate is in use on a server outside the provider's designated services and is
    to be moved onto the provider's servers."""
    designated_service: str | None = None
    """Art.4(1): the designated provider service a category II applicant uses."""

    def __post_init__(self) -> None:
        # "Japan" or "JPN" must not silently count as "outside Japan" under Art.7(2).
        if not _COUNTRY.fullmatch(self.organisation_country.strip()):
            raise PolicyError(
                f"organisation country {self.organisation_country!r} is not an ISO 3166-1 "
                "alpha-2 code such as JP, US or SG")


def application_refusals(application: Application, catalogue: Catalogue, *,
                         at: datetime) -> tuple[Decision, ...]:
    """Every reason the application must be refused (empty: it can be accepted).

    Raises ``UnknownItemError`` for an item the catalogue does not know.
    """
    item = catalogue.item(application.item)
    today = tokyo_date(at)
    facts = {
        "item": item.handle,
        "category": item.category.value,
        "organisation_country": application.organisation_country,
        "migrating_from_outside": application.migrating_from_outside,
        "designated_service": application.designated_service,
    }
    refusals: list[Decision] = []
    if item.category.provider_issued and application.migrating_from_outside:
        refusals.append(Decision(
            action=Action.REFUSE, clause="Art.7(1)", due=today, severity=Severity.WARNING,
            explanation_en=(f"{item.handle} is category {item.category.value}: a certificate in "
                            "use on a server outside the provider's designated services cannot "
                            "be moved onto the provider's servers under this item."),
            explanation_ja=(f"{item.name_ja} は品目区分 {item.category.value} のため、"
                            "当社の提供するサービス且つ当社が指定するサービスに係るサーバではない"
                            "サーバにおいて利用している SSL サーバ証明書を、当社の提供する"
                            "サービスに係るサーバへ移設し利用する態様で契約の申込を行うことは"
                            "できません。"),
            facts=facts,
        ))
    country = application.organisation_country.strip().upper()
    if item.category.provider_issued and country != JAPAN:
        refusals.append(Decision(
            action=Action.REFUSE, clause="Art.7(2)", due=today, severity=Severity.WARNING,
            explanation_en=(f"{item.handle} is category {item.category.value}: an application "
                            f"for an organisation outside Japan ({country or 'unknown'}) "
                            "cannot be accepted."),
            explanation_ja=(f"{item.name_ja} は品目区分 {item.category.value} のため、"
                            f"日本国外に存する組織（{country or '不明'}）を対象とする申込は"
                            "できません。"),
            facts=facts,
        ))
    art4 = designated_service_refusal(item, application.designated_service, at=at)
    if art4 is not None:
        refusals.append(art4)
    if abolished(item, at=at):
        refusals.append(Decision(
            action=Action.REFUSE, clause="Art.8", due=today, severity=Severity.WARNING,
            explanation_en=(f"{item.handle} was abolished on {item.product_end}: the CA ended "
                            "the product."),
            explanation_ja=(f"{item.name_ja} は {item.product_end} に廃止されました（認証機関"
                            "によるサービスの提供終了）。"),
            computed={"product_end": str(item.product_end)},
            facts=facts,
        ))
    return tuple(refusals)
