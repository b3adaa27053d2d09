"""Art.8 — abolition (サービスの廃止).

Category I/II: when DigiCert, Cybertrust or GlobalSign ends the product an item corresponds to,
the provider abolishes the item. The catalogue holds each product's end date when known
(``Item.product_end``, an Asia/Tokyo day, inclusive: abolished *on* that day).

One day for every step: from that day on an application (``rules.art7``), a renewal and a
contract change (``policy.state.check_event``) of the item are refused, through
:func:`abolished`. An ``Art.8`` termination record is admitted only for a category I/II item
whose product end is known, effective no earlier than the day before it: a contract runs
through its termination day, and the product's last day is the last it can run through.
"""

from __future__ import annotations

from datetime import datetime

from policy.catalogue import Item
from policy.decisions import Action, Decision, Severity
from policy.tokyo import tokyo_date

__all__ = ["abolished", "abolition_decisions"]


def abolished(item: Item, *, at: datetime) -> bool:
    """Whether the item is abolished on ``at``'s Tokyo day (``product_end <= that day``)."""
    return (item.category.provider_issued and item.product_end is not None
            and item.product_end <= tokyo_date(at))


def abolition_decisions(item: Item, *, contract_id: str | None,
                        at: datetime) -> tuple[Decision, ...]:
    """``ABOLISH`` due on the product's end date, when the catalogue knows one (upcoming before
    it, severity warning from that day on). Category III has no product to end."""
    end = item.product_end
    if end is None or not item.category.provider_issued:
        return ()
    today = tokyo_date(at)
    past = end <= today
    return (Decision(
        action=Action.ABOLISH,
        clause="Art.8",
        due=end,
        contract_id=contract_id,
        severity=Severity.WARNING if past else Severity.INFO,
        explanation_en=(f"The CA ends the product behind {item.handle} on {end}; the item "
                        + ("is abolished." if past else "will be abolished then.")),
        explanation_ja=(f"認証機関が {end} に {item.name_ja} に対応するサービスの提供を終了する"
                        "ため、当該品目を廃止" + ("しました。" if past else "します。")),
        computed={"product_end": end.isoformat(), "days_until": (end - today).days,
                  "abolished": past},
        facts={"item": item.handle, "category": item.category.value, "ca": item.ca},
    ),)
