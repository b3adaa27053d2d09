"""Art.4 — conditions of use (利用条件).

Only paragraph (1) is a rule the software can decide: category II (the ※クラウド証明書 items)
requires being a customer of a provider service designated for it. Paragraphs (2)-(6) bind the
customer to the CAs' terms and the registrar, and (7) is the escrow consent the vault serves.
"""

from __future__ import annotations

from datetime import datetime

from policy.catalogue import Item
from policy.category import Category
from policy.decisions import Action, Decision, Severity
from policy.tokyo import tokyo_date

__all__ = ["designated_service_refusal", "needs_designated_service"]


def needs_designated_service(item: Item) -> bool:
    """Art.4(1): category II items are for customers of a designated provider service."""
    return item.category is Category.II


def designated_service_refusal(item: Item, designated_service: str | None, *,
                               contract_id: str | None = None,
                               at: datetime) -> Decision | None:
    """Art.4(1): a category II application without a designated service is refused."""
    if not needs_designated_service(item) or (designated_service or "").strip():
        return None
    return Decision(
        action=Action.REFUSE,
        clause="Art.4(1)",
        due=tokyo_date(at),
        contract_id=contract_id,
        severity=Severity.WARNING,
        explanation_en=(f"{item.handle} is a category II item: the applicant must be a customer "
                        "of a provider service designated for it, and none was given."),
        explanation_ja=(f"{item.name_ja} は品目区分 II のため、当社が指定するサービスの契約者で"
                        "ある必要がありますが、指定サービスが示されていません。"),
        computed={},
        facts={"item": item.handle, "category": item.category.value,
               "designated_service": designated_service},
    )
