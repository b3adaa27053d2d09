"""Art.9 — the day a termination takes effect (解除の効力が生ずる日).

Two roads lead to termination and each fixes its own day:

* (1) the customer answered "don't renew" under Art.6(2)/(3): the contract ends on the day the
  validity period ends, i.e. the Asia/Tokyo calendar date of the certificate's ``notAfter``
  (a certificate ending 14:59:59Z ends on that Tokyo day; one ending 15:00:00Z already falls on
  the next Tokyo day);
* (2) a cancellation form (解約申込書) that arrives *during the validity period*: the later of
  the day 30 days have passed from arrival and the day the customer named. The arrival day is
  not counted (Civil Code Art.140, 初日不算入), so a form arriving on D takes effect on D + 30.

The no-refund sentence is Art.9(2)'s second sentence and belongs to a cancellation alone: a
termination under Art.9(1), Art.8 (abolition) or the Art.6(3) proviso explains itself in its own
clause's words and says nothing the terms do not say about money.
"""

from __future__ import annotations

from datetime import date, datetime

from policy.decisions import Action, Decision, Severity
from policy.errors import ContractStateError
from policy.periods import Period
from policy.timeparse import format_instant
from policy.tokyo import add_days, tokyo_date

__all__ = [
    "CANCELLATION_NOTICE_DAYS",
    "NO_REFUND_EN",
    "NO_REFUND_JA",
    "check_cancellation_admissible",
    "effective_on_cancellation",
    "effective_on_non_renewal",
    "termination_decisions",
]

CANCELLATION_NOTICE_DAYS = 30
"""Art.9(2): days that must pass from the (uncounted) arrival day of the cancellation form."""

NO_REFUND_EN = "Fees already paid are not refunded (Art.9(2))."
NO_REFUND_JA = "当社に支払われた料金は返金しません（第9条第2項）。"

_PROVISO = "Art.6(3) proviso"


def effective_on_non_renewal(not_after_utc: datetime) -> date:
    """Art.9(1): the Tokyo calendar date of ``notAfter`` — the day the validity period ends.

    The termination takes effect on that day, the last day of the validity period, and the
    contract runs through it (CONTRACT.md Art.9(1)): it is terminated from the next Tokyo day
    on, as under every clause (``policy.state``).
    """
    return tokyo_date(not_after_utc)


def effective_on_cancellation(arrived: date, requested: date | None) -> date:
    """Art.9(2): the later of ``arrived + 30 days`` and ``requested``.

    ``arrived`` is the Tokyo day the form reached the provider. The arrival day is not counted
    (Civil Code Art.140), so the 30 days run from the next day and end at the end of
    ``arrived + 30``: that is the day they "have passed" in the terms' sense. A requested day
    earlier than that is overridden; a later one is honoured.
    """
    earliest = add_days(arrived, CANCELLATION_NOTICE_DAYS)
    if requested is None or requested <= earliest:
        return earliest
    return requested


def check_cancellation_admissible(arrived: date, not_after_utc: datetime | None, *,
                                  not_before_utc: datetime | None = None) -> None:
    """Refuse a cancellation form that arrived outside the certificate's validity period.

    Art.9(2) speaks only of a form sent "during the validity period" (有効期間中), counted in
    Asia/Tokyo days like every contract day: the day ``notBefore`` falls on through the day
    ``notAfter`` falls on, both included. Before the validity starts (a certificate bound
    ahead of its ``notBefore``) or after it ended without renewal there is no validity period
    for the form to fall in, and silently computing a date for it would invent a rule the terms
    do not contain, so it is refused with a clear error. ``not_after_utc`` is ``None`` for a
    contract with no certificate: this check then has nothing to compare, and the ledger
    (``state._check_cancellation``) refuses the form itself, since without a certificate there
    is no validity period (有効期間中).
    """
    if not_after_utc is None:
        return
    if not_before_utc is not None and arrived < tokyo_date(not_before_utc):
        raise ContractStateError(
            f"the cancellation form arrived on {arrived.isoformat()}, before the certificate's "
            f"validity period starts on {tokyo_date(not_before_utc).isoformat()} (Asia/Tokyo); "
            "Art.9(2) applies only to a form received during the validity period")
    last_day = tokyo_date(not_after_utc)
    if arrived > last_day:
        raise ContractStateError(
            f"the cancellation form arrived on {arrived.isoformat()}, after the certificate's "
            f"validity period ended on {last_day.isoformat()} (Asia/Tokyo); Art.9(2) applies "
            "only to a form received during the validity period"
        )


def termination_decisions(
    *,
    contract_id: str | None,
    effective: date,
    clause: str,
    at: datetime,
    arrived: date | None = None,
    requested: date | None = None,
    not_after_utc: datetime | None = None,
    period: Period | None = None,
) -> tuple[Decision, ...]:
    """The TERMINATE decision for a termination that takes effect on ``effective``.

    Nothing is returned once the effective day is over (``at``'s Tokyo date after
    ``effective``): the contract has ended and there is no action left to take. ``clause`` is
    the clause the termination rests on, and the explanation is that clause's:

    * ``Art.9(1)``: the customer answered "don't renew"; it ends on the day validity ends;
    * ``Art.9(2)``: a cancellation form; the later of arrival + 30 days and the named day, and
      fees paid are not refunded (the only clause that says so);
    * ``Art.8``: the CA ended the product; the provider abolishes the item;
    * ``Art.6(3) proviso``: the certificate's validity is within 90 days, so the service cannot
      be renewed and ends with the certificate (``period``, when given, is the proviso's period,
      named in words with its rule and last day).

    Any other clause is explained as exactly that, with no words borrowed from another.
    """
    today = tokyo_date(at)
    if today > effective:
        return ()
    facts: dict[str, str | None] = {}
    computed: dict[str, str | int | bool | None] = {"effective": effective.isoformat()}
    refund_en = refund_ja = ""
    if not_after_utc is not None:
        facts["not_after"] = format_instant(not_after_utc)
    if clause == "Art.9(2)":
        if arrived is not None:
            facts["arrived"] = arrived.isoformat()
            computed["arrival_plus_30"] = add_days(arrived, CANCELLATION_NOTICE_DAYS).isoformat()
        facts["requested"] = requested.isoformat() if requested else None
        why_en = ("the cancellation form takes effect on the later of the day 30 days have "
                  "passed from its arrival and the day the customer named")
        why_ja = ("解約申込書が当社に到達した日から30日を経過する日又は契約者が指定した日の"
                  "いずれか遅い日に解除の効力が生じます")
        refund_en, refund_ja = f" {NO_REFUND_EN}", NO_REFUND_JA
        computed["refund"] = False
    elif clause == "Art.9(1)":
        why_en = ("the customer answered \"don't renew\" (Art.6(2)/(3)); the contract ends on "
                  "the day the validity period ends")
        why_ja = ("契約者から更新を行わない旨の通知（第6条第2項・第3項）があったため、有効期間を"
                  "経過する日に解除の効力が生じます")
    elif clause == "Art.8":
        why_en = ("the CA ended the product the item corresponds to, so the provider abolishes "
                  "the item")
        why_ja = ("認証機関が対応するサービスの提供を終了したため、当社は当該品目を廃止します")
    elif clause == _PROVISO and not_after_utc is not None \
            and tokyo_date(not_after_utc) != effective:
        # The end was fixed by an earlier certificate: its successor could not be renewed
        # either, and only one that can be renewed, bound by then, lifts it (Art.6(3)).
        why_en = ("an earlier certificate's validity period was within 90 days, so the service "
                  "could not be renewed and the contract ends with that certificate at the end "
                  "of its last day of validity, unless a certificate that can be renewed is "
                  "bound by then")
        why_ja = ("以前の SSL サーバ証明書の有効期間が 90 日以内のためサービスを更新することは"
                  "できず、その有効期間の末日の終了をもって契約が終了します（それまでに更新できる"
                  "証明書が紐付けられた場合を除きます）")
    elif clause == _PROVISO:
        why_en = ("the certificate's validity period is within 90 days, so the service cannot "
                  "be renewed and the contract ends with the certificate at the end of its last "
                  "day of validity")
        why_ja = ("SSL サーバ証明書の有効期間が 90 日以内のためサービスを更新することはできず、"
                  "有効期間の末日の終了をもって契約が終了します")
        if period is not None:
            why_en += f" ({period.explain_en()})"
            why_ja += f"（{period.explain_ja()}）"
            computed.update(period.to_json())
    else:
        why_en = f"the contract terminates under {clause}"
        why_ja = f"{clause} に基づき契約が終了します"
    computed["days_left"] = (effective - today).days
    return (
        Decision(
            action=Action.TERMINATE,
            clause=clause,
            due=effective,
            contract_id=contract_id,
            severity=Severity.WARNING if effective == today else Severity.INFO,
            explanation_en=f"Terminate on {effective.isoformat()}: {why_en}.{refund_en}",
            explanation_ja=(f"{why_ja}（効力発生日 {effective.isoformat()}）。{refund_ja}"
                            if clause.startswith("Art.9(") else
                            f"{effective.isoformat()} に契約が終了します。{why_ja}。"),
            computed=computed,
            facts=facts,
        ),
    )
