"""What a contract calls for now: every article's rule applied to one folded state.

``evaluate_contract`` is pure (state, catalogue, settings, ``at`` in; decisions out) and cheap
enough to sweep 100,000 contracts: it touches no file and no clock, and it composes the article
modules rather than re-deriving anything:

* Art.1 and Art.3 / Appx1.1 (the certificate against the contract's item and tier) via
  ``contract_fit``, the function ``policy classify`` decides them with;
* Art.6 renewal (notice, answer, default renewal, the 90-day proviso) via ``renewal_decisions``;
* Art.8 abolition; Art.9 termination; Art.10 fees;
* a contract whose certificate cannot be renewed (Art.6(3) proviso) ends with it: its state
  carries that termination (``policy.state``), and the decision says so beside the renewal
  steps.

Fees: a fee obligation that arose before ``at``'s Tokyo day is history (``fee_history``, shown
by ``contract show``), not an action; obligations arising today or later are actions, including
the prospective fees of a renewal the rules call for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from policy.catalogue import Catalogue
from policy.classification import contract_fit
from policy.decisions import Action, Decision, Severity
from policy.intake import Binding
from policy.rules.art6 import art6_3_period, renewal_decisions
from policy.rules.art8 import abolition_decisions
from policy.rules.art9 import termination_decisions
from policy.rules.art10 import fees_on_acceptance, fees_on_change, fees_on_renewal
from policy.settings import PolicySettings, PriceList
from policy.state import PROVISO, ContractState
from policy.tokyo import tokyo_date

__all__ = ["decision_from_json", "due_actions", "evaluate_contract", "fee_history", "sort_key"]

_RENEWING = (Action.RENEW, Action.RENEW_BY_DEFAULT, Action.CUSTOMER_RENEWS)


def fee_history(state: ContractState, prices: PriceList) -> tuple[Decision, ...]:
    """Every fee obligation the contract's journal has given rise to (Art.10), oldest first."""
    cid = state.contract_id
    out = list(fees_on_acceptance(contract_id=cid, item=state.item, category=state.category,
                                  tier=state.tier, accepted_on=state.accepted_on, prices=prices))
    for renewal in state.renewals:
        out.extend(fees_on_renewal(contract_id=cid, item=state.item, category=state.category,
                                   tier=state.tier, renewed_on=renewal.on,
                                   by_default=renewal.by_default, prices=prices,
                                   designated=renewal.designated))
    for change in state.changes:
        out.extend(fees_on_change(contract_id=cid, service=change.service,
                                  accepted_on=change.accepted_on, prices=prices))
    out.sort(key=lambda d: d.due or date.min)
    return tuple(out)


def evaluate_contract(state: ContractState, catalogue: Catalogue, settings: PolicySettings,
                      *, at: datetime) -> tuple[Decision, ...]:
    """Every action the contract calls for as of ``at``, soonest first.

    A contract whose termination day is over calls for nothing. A contract with a termination
    fixed calls for the termination (Art.9) and no renewal step. Raises ``UnknownItemError``
    when the catalogue no longer knows the contract's item.
    """
    today = tokyo_date(at)
    ended = state.terminated_on
    if ended is not None and today > ended:
        return ()
    cid = state.contract_id
    item = catalogue.item(state.item)
    out: list[Decision] = []

    if ended is not None:
        cert_end = state.certificate.not_after_utc if state.certificate else None
        out.extend(termination_decisions(
            contract_id=cid, effective=ended, clause=state.termination_clause or "Art.9",
            at=at, arrived=state.cancellation.arrived if state.cancellation else None,
            requested=state.cancellation.requested if state.cancellation else None,
            not_after_utc=cert_end,
            period=(art6_3_period(state.certificate, settings.period_rule)
                    if state.termination_clause == PROVISO and state.certificate else None)))

    # Art.8: an abolition matters unless the contract ends before the product does.
    if ended is None or (item.product_end is not None and item.product_end <= ended):
        out.extend(abolition_decisions(item, contract_id=cid, at=at))

    cert = state.certificate
    # A contract that ends only because its certificate cannot be renewed (Art.6(3) proviso)
    # still shows the renewal side: the notice is due and the blocked renewal is the reason.
    if cert is not None and (ended is None or state.termination_clause == PROVISO):
        # Art.1, Art.3 / Appx1.1: what `policy classify` says of the certificate against the
        # contract's item and tier, decided by the same function (ITEM_MISMATCH; NON_COMPLIANT
        # against the tier, naming any CA allowance it used, or, with no tier, against every
        # period the item offers).
        out.extend(contract_fit(
            cert, catalogue,
            binding=Binding(contract_id=cid, category=state.category, item=state.item,
                            tier=state.tier),
            previous=state.previous_certificate, rule=settings.period_rule).decisions)
        if state.renewal_made_for == cert.sha256:
            out.append(_replace_certificate(state, today=today))
        else:
            renewal = renewal_decisions(
                category=state.category, facts=cert, contract_id=cid,
                notice_sent=state.notice_sent, answer=state.answer, at=at, settings=settings,
                bound_on=state.certificate_since)
            if item.product_end is not None:
                # Art.8: the ledger refuses renewing an abolished item from its product end
                # on, so no renewal (nor its fee) is due on or after that day.
                renewal = tuple(d for d in renewal if d.action not in _RENEWING
                                or d.due is None or d.due < item.product_end)
            out.extend(renewal)
            for decision in renewal:
                if decision.action in _RENEWING and decision.due is not None:
                    out.extend(fees_on_renewal(
                        contract_id=cid, item=state.item, category=state.category,
                        tier=state.tier, renewed_on=decision.due,
                        by_default=decision.action is Action.RENEW_BY_DEFAULT,
                        prices=settings.prices, prospective=True))

    if _fee_may_arise_from(state, today):
        out.extend(d for d in fee_history(state, settings.prices)
                   if d.due is not None and d.due >= today)
    out.sort(key=sort_key)
    return tuple(out)


def _fee_may_arise_from(state: ContractState, today: date) -> bool:
    """Cheap pre-check for the sweep: whether any recorded fee moment is today or later (most
    contracts' fees are all history, and building their decisions would be wasted)."""
    return (state.accepted_on >= today
            or any(r.on >= today or (r.by_default and r.designated is not None
                                     and r.designated >= today)
                   for r in state.renewals)
            or any(c.accepted_on >= today for c in state.changes))


def _replace_certificate(state: ContractState, *, today: date) -> Decision:
    cert = state.certificate
    assert cert is not None  # noqa: S101 - the caller checked
    end = tokyo_date(cert.not_after_utc)
    late = today > end
    return Decision(
        action=Action.REPLACE_CERTIFICATE,
        clause="Art.6",
        due=end,
        contract_id=state.contract_id,
        severity=Severity.CRITICAL if late else Severity.WARNING,
        # "by" the last day of validity, that day included: the due day is that day, as the
        # Japanese 「までに」 says.
        explanation_en=(f"The renewal was made but no successor certificate has been bound or "
                        f"observed; install it by {end.isoformat()}, the last day of the "
                        "current one's validity"
                        + (" (the current one has expired)." if late else ".")),
        explanation_ja=(f"更新済みですが後継の証明書が紐付けも確認もされていません。現在の証明書の"
                        f"有効期間の末日 {end.isoformat()} までに設置してください"
                        + ("（現在の証明書は有効期間が終了しています）。" if late else "。")),
        computed={"end_of_validity": end.isoformat(), "expired": late},
        facts={"sha256": cert.sha256},
    )


def sort_key(decision: Decision) -> tuple[date, int, str, str]:
    """Soonest first; on the same day the most severe first; then contract and action."""
    return (decision.due or date.max, -int(decision.severity), decision.contract_id or "",
            decision.action.value)


def due_actions(decisions: Iterable[Decision], *, at: datetime,
                within: int | None = None) -> list[Decision]:
    """Decisions due by ``at``'s Tokyo day + ``within`` days (inclusive; overdue ones
    included), soonest first. ``within=None`` keeps everything."""
    if within is None:
        return sorted(decisions, key=sort_key)
    horizon = tokyo_date(at) + timedelta(days=within)
    return sorted((d for d in decisions if d.due is None or d.due <= horizon), key=sort_key)


def decision_from_json(raw: Mapping[str, Any]) -> Decision:
    """The decision :meth:`Decision.to_json` wrote (the ledger's projection caches decisions
    in that form): the same decision, its ``computed`` and ``facts`` as JSON scalars."""
    explanation = raw["explanation"]
    due = raw["due"]
    return Decision(action=Action(raw["action"]), clause=str(raw["clause"]),
                    due=None if due is None else date.fromisoformat(due),
                    explanation_en=str(explanation["en"]), explanation_ja=str(explanation["ja"]),
                    contract_id=raw["contract"], severity=Severity[str(raw["severity"]).upper()],
                    computed=dict(raw["computed"]), facts=dict(raw["facts"]))
