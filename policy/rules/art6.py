"""Art.6 — renewal of the validity period (有効期間の更新).

* (1) the provider notifies the customer by the day the validity period ends (「有効期間が経過
  する日までに」: that last day included; the ledger refuses a notice dated after it); the lead
  time is the provider's choice (``PolicySettings.notice_lead_days``, default 90 days).
* (2) category I/II: the customer answers renew / don't renew; **no answer is "renew"**.
* (3) category III: the customer renews the certificate themselves; **proviso: a certificate
  whose validity period is 90 days or less cannot be renewed**; no answer is never a renewal.

Days are Asia/Tokyo calendar days (``policy.tokyo``); the validity period is Art.3's inclusive
``notAfter - notBefore + 1 s``. A "don't renew" answer ends the contract under Art.9(1), which is
``policy.rules.art9``'s decision: this module emits nothing renewal-wise for it.
"""

from __future__ import annotations

import enum
import functools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from policy.category import Category
from policy.decisions import Action, Decision, Severity
from policy.facts import NO_WELL_DEFINED_EXPIRATION_UTC, CertificateFacts
from policy.periods import (
    DEFAULT_PERIOD_RULE,
    Period,
    PeriodRule,
    days_period,
    duration_en,
    duration_ja,
)
from policy.settings import PolicySettings
from policy.tiers import validity_period
from policy.timeparse import format_instant
from policy.tokyo import add_days, tokyo_date

__all__ = [
    "BLOCKED_MAX_VALIDITY",
    "NO_WELL_DEFINED_EXPIRATION_UTC",
    "PROVISO_DAYS",
    "Answer",
    "answer_deadline",
    "art6_3_cannot_renew",
    "art6_3_period",
    "end_of_validity",
    "never_expires",
    "notice_closed",
    "renewal_blocked",
    "renewal_decisions",
    "renewal_notice_due",
]

PROVISO_DAYS = 90
"""Art.6(3) proviso: a validity period within this many days (90 日以内) blocks renewal."""
BLOCKED_MAX_VALIDITY = timedelta(days=PROVISO_DAYS)
"""The proviso read by ``elapsed`` arithmetic: a validity period of at most this (inclusive)
blocks renewal. The civil code reads it as a period of 90 days (see :func:`art6_3_period`)."""
_PROVISO_LONGEST = timedelta(days=PROVISO_DAYS + 1)
"""No reading of the 90 days ends later than this after ``notBefore``."""
_FIXED_OFFSET_SINCE = datetime(1952, 1, 1, tzinfo=UTC)


class Answer(enum.Enum):
    """The customer's answer to the renewal notice (Art.6(2)/(3))."""

    RENEW = "renew"
    DONT_RENEW = "dont-renew"


def end_of_validity(not_after_utc: datetime) -> date:
    """The Asia/Tokyo day on which the validity period ends (the Tokyo date of ``notAfter``).

    RFC 5280's ``99991231235959Z`` ("no well-defined expiration") falls on 10000-01-01 in Tokyo,
    which ``date`` cannot hold: ``tokyo_date`` clamps it to ``date.max``.
    """
    return tokyo_date(not_after_utc)


def never_expires(facts: CertificateFacts) -> bool:
    """RFC 5280 §4.1.2.5: ``99991231235959Z`` means the certificate has no well-defined
    expiration; nothing about it ever falls due under Art.6."""
    return facts.not_after_utc >= NO_WELL_DEFINED_EXPIRATION_UTC


def renewal_notice_due(not_after_utc: datetime, *, lead_days: int,
                       not_before_utc: datetime | None = None,
                       bound_on: date | None = None) -> date:
    """Art.6(1): the Asia/Tokyo day by which the renewal notice is due (inclusive): the Tokyo
    date of ``notAfter`` minus ``lead_days`` days, but never before the certificate was issued
    (``notBefore``'s Tokyo day) nor before it was bound to the contract or first observed
    (``bound_on``): a 47-day certificate is not "overdue" 43 days before it existed, its notice
    is due the day it arrives."""
    return _notice_due(end_of_validity(not_after_utc), lead_days,
                       tokyo_date(not_before_utc) if not_before_utc is not None else None,
                       bound_on)


def _notice_due(end_day: date, lead_days: int, issued_day: date | None,
                bound_on: date | None) -> date:
    """:func:`renewal_notice_due` in days (``issued_day``: ``notBefore``'s Tokyo day)."""
    if lead_days < 0:
        raise ValueError(f"lead_days must not be negative, got {lead_days}")
    due = add_days(end_day, -lead_days)
    if issued_day is not None:
        due = max(due, issued_day)
    if bound_on is not None:
        due = max(due, bound_on)
    return due


def answer_deadline(notice_sent: date, not_after_utc: datetime, *, deadline_days: int) -> date:
    """Art.6(2)/(3): the last Asia/Tokyo day (inclusive) for the customer's answer:
    ``notice_sent + deadline_days``, never later than the Tokyo date of ``notAfter``."""
    if deadline_days < 0:
        raise ValueError(f"deadline_days must not be negative, got {deadline_days}")
    return min(add_days(notice_sent, deadline_days), end_of_validity(not_after_utc))


def art6_3_period(facts: CertificateFacts, rule: PeriodRule = DEFAULT_PERIOD_RULE) -> Period:
    """The proviso's period of 90 days from the certificate's ``notBefore``, counted by
    ``rule`` (its last day is what a decision shows)."""
    return days_period(facts.not_before_utc, PROVISO_DAYS, rule=rule)


def art6_3_cannot_renew(facts: CertificateFacts,
                        rule: PeriodRule = DEFAULT_PERIOD_RULE) -> bool:
    """Art.6(3) proviso: the certificate's validity period is within 90 days (90 日以内), so a
    category III service cannot be renewed with it. The caller checks the category.

    Civil code (default): ``notAfter``'s Tokyo date is on or before the last day of 90 days
    reckoned from the day after ``notBefore`` (from ``notBefore``'s own day when it is 00:00 JST),
    so a Let's Encrypt certificate (90 days − 1 s) and one of 90 days + 1 s issued mid-day are
    both blocked. ``elapsed``: validity ``notAfter − notBefore + 1 s`` of at most 90 × 86,400 s.
    """
    # Most certificates are decided by their length alone: the 90 days end 90 days after
    # notBefore (elapsed, or a civil-code start at 00:00 JST) or less than 91 days after it (a
    # civil-code start later in its day). Tokyo kept UTC+9 throughout since 1952.
    if facts.not_before_utc >= _FIXED_OFFSET_SINCE:
        period = validity_period(facts.not_before_utc, facts.not_after_utc)
        if period <= BLOCKED_MAX_VALIDITY:
            return True
        if period > _PROVISO_LONGEST:
            return False
    return art6_3_period(facts, rule).admits(facts.not_after_utc)


def renewal_blocked(facts: CertificateFacts, rule: PeriodRule = DEFAULT_PERIOD_RULE) -> bool:
    """Alias of :func:`art6_3_cannot_renew` (the name the classification has always used)."""
    return art6_3_cannot_renew(facts, rule)


def _facts(facts: CertificateFacts, period: timedelta) -> dict[str, Any]:
    return {
        "sha256": facts.sha256,
        "not_before": format_instant(facts.not_before_utc),
        "not_after": format_instant(facts.not_after_utc),
        "validity_seconds": int(period.total_seconds()),
    }


@functools.lru_cache(maxsize=4096)
def _blocked_texts(period: timedelta, proviso_en: str, proviso_ja: str,
                   end_day: date) -> tuple[str, str]:
    """The proviso decision's sentences: a function of the validity period, the proviso's
    words and the last day, shared by the certificates of one length that end on one day."""
    return ((f"The certificate's validity period ({duration_en(period)}) is within 90 days "
             f"({proviso_en}), so the service cannot be renewed; it ends with the certificate "
             f"on {end_day}."),
            (f"SSL サーバ証明書の有効期間（{duration_ja(period)}）が 90 日以内"
             f"（{proviso_ja}）のため、サービスを更新することはできず、サービスは証明書とともに"
             f" {end_day}（有効期間の末日）に終了します。"))


_SINCE_EN = {"bound": "bound to the contract", "observed": "first observed"}
_SINCE_JA = {"bound": "契約に紐付けた日", "observed": "初めて確認した日"}


@functools.lru_cache(maxsize=4096)
def _notice(end_day: date, issued_day: date, bound_on: date | None, lead_days: int,
            today: date, since: str) -> tuple[date, bool, str, str, dict[str, Any]]:
    """Art.6(1)'s notice when none was sent yet: (due, overdue, English, Japanese, computed
    fields). A function of days alone, so the certificates that end on one Tokyo day share it
    (bounded; every argument is a plain value). ``since`` says what ``bound_on`` is: the day
    the certificate was ``"bound"`` or ``"observed"`` first. The fields are shared: copy,
    never change."""
    nominal = add_days(end_day, -lead_days)
    if since == "observed" and bound_on is not None:
        # First observed (no contract yet): Art.6(1) moves the notice of a certificate that is
        # no longer than the lead time only (a longer one's notice day came before, seen or
        # not), and not one first seen after it ended (the notice comes before the end: moot).
        if issued_day < nominal or bound_on > end_day:
            bound_on = None
    due = _notice_due(end_day, lead_days, issued_day, bound_on)
    overdue = today > due
    late_start_en = late_start_ja = ""
    if due > nominal:
        # Art.6(1): never before the certificate was issued, bound or first observed
        kind = since if bound_on is not None and due == bound_on and due > issued_day \
            else "issued"
        if kind == "issued":
            late_start_en = ("; the certificate is shorter than the lead time, so the notice is "
                             "due from the day it was issued")
            late_start_ja = "。証明書の有効期間が通知期間より短いため、発行日を期日とします"
        else:
            late_start_en = f"; not before the day the certificate was {_SINCE_EN[kind]}"
            late_start_ja = f"、ただし{_SINCE_JA[kind]}より前にはなりません"
    text_en = (f"Send the renewal notice by {due} ({lead_days} days before the validity period "
               f"ends on {end_day}{late_start_en})" + (": it is overdue." if overdue else "."))
    text_ja = (f"{due} までに更新に係る通知を行ってください（有効期間の末日 {end_day} の "
               f"{lead_days} 日前{late_start_ja}）"
               + ("。期限を過ぎています。" if overdue else "。"))
    fields = {"notice_due": due.isoformat(), "lead_days": lead_days,
              "end_of_validity": end_day.isoformat(), "overdue": overdue, "is_due": today >= due}
    return due, overdue, text_en, text_ja, fields


def notice_closed(not_after_utc: datetime, day: date) -> bool:
    """Art.6(1): whether the Asia/Tokyo ``day`` is after the last day a renewal notice can go
    out for a certificate ending at ``not_after_utc``: the notice is sent *by* the day the
    validity period ends (第6条第1項「有効期間が経過する日までに」, that day included), so it is
    closed from the next Tokyo day. The ledger refuses a notice dated then, and the rules call
    for ``NOTICE_MISSED`` instead of ``NOTIFY``. Never, for ``99991231235959Z`` (its Tokyo day
    is clamped to ``date.max``)."""
    return day > end_of_validity(not_after_utc)


@functools.lru_cache(maxsize=1024)
def _missed_texts(end_day: date, due: date, byo: bool) -> tuple[str, str]:
    """``NOTICE_MISSED``'s sentences: what follows from Art.6 once the validity period ended
    with no notice sent. Art.6(2)'s default renewal and Art.6(3)'s answer both follow "the
    notice of the preceding paragraph" (前項の通知後 / 第1項の通知後), so neither can follow;
    Art.9(1) needs a "don't renew" answer, so the contract does not end by itself either. What
    the ledger still takes: a renewal the customer asks for, or a successor certificate."""
    was_due_en = f" (it was due by {due})" if due < end_day else ""
    was_due_ja = f"（期日 {due}）" if due < end_day else ""
    missed_en = (f"No renewal notice was sent by {end_day}, the last day of the certificate's "
                 f"validity period{was_due_en}; Art.6(1) has it sent by that day, so it can no "
                 "longer be sent for this certificate")
    missed_ja = (f"有効期間の末日 {end_day} までに更新に係る通知が行われませんでした{was_due_ja}。"
                 "第6条第1項は通知をその日までに行うと定めているため、この証明書についての通知は"
                 "もう行えません")
    if byo:
        return ((f"{missed_en}. Without it the customer was never asked whether they renew "
                 "(Art.6(3)), and category III has no renewal by default; the contract does not "
                 "end by itself either (Art.9(1) follows a \"don't renew\" answer). The "
                 "customer renews the certificate themselves: bind the successor certificate "
                 "when they have one."),
                (f"{missed_ja}。通知が無いため契約者に更新を行うか否かを確認しておらず"
                 "（第6条第3項）、品目区分 III では更新をするものとしては取り扱いません。"
                 "更新を行わない旨の通知も無いため契約は自動では終了しません（第9条第1項）。"
                 "契約者自ら更新手続きを行うため、後継の証明書を入手したら紐付けてください。"))
    return ((f"{missed_en}. Without a notice there is no answer deadline, so no renewal can be "
             "taken as made by default (Art.6(2)), and the contract does not end by itself "
             "either (Art.9(1) follows a \"don't renew\" answer). Ask the customer whether "
             "they renew: record the renewal if they ask for it, and bind the successor "
             "certificate."),
            (f"{missed_ja}。通知が無いため回答期限も無く、有効期間の更新をするものとして"
             "取り扱うことはできません（第6条第2項）。更新を行わない旨の通知も無いため契約は"
             "自動では終了しません（第9条第1項）。契約者に更新を行うか否かを確認し、更新する"
             "場合は更新を記録して後継の証明書を紐付けてください。"))


def renewal_decisions(
    *,
    category: Category,
    facts: CertificateFacts,
    contract_id: str | None,
    notice_sent: date | None,
    answer: Answer | None,
    at: datetime,
    settings: PolicySettings,
    bound_on: date | None = None,
    first_observed: date | None = None,
    proviso: Period | None = None,
) -> tuple[Decision, ...]:
    """What Art.6 calls for about the certificate ``facts`` as of ``at``.

    ``proviso``: :func:`art6_3_period` of ``facts`` under ``settings.period_rule`` when the
    caller already computed it (the classification does, for its finding): the same period,
    not reckoned twice per certificate.

    * no notice sent and the validity period over (:func:`notice_closed`): ``NOTICE_MISSED``
      due on its last day (the notice can no longer go out, and no renewal follows by
      default);
    * no notice sent yet: ``NOTIFY`` due on :func:`renewal_notice_due` (never before the
      certificate was issued, nor before ``bound_on`` -- the day a contract took it -- or,
      without one, ``first_observed``; upcoming until then, overdue — severity warning — once
      ``at``'s Tokyo day is past it);
    * notice sent, no answer, deadline not passed: ``AWAIT_ANSWER`` due on the deadline;
    * deadline passed without an answer: I/II ``RENEW_BY_DEFAULT`` (due the day after the
      deadline), III ``ANSWER_OVERDUE`` (never automatic); I/II ``ANSWER_OVERDUE`` too when
      the deadline is not after the notice (a notice on the last day of validity: the customer
      had no day to answer, and the ledger refuses a default renewal resting on it);
    * answered renew: I/II ``RENEW``, III ``CUSTOMER_RENEWS``, both due by the last day of
      validity;
    * category III whose validity period is within 90 days (counted by
      ``settings.period_rule``): ``RENEWAL_BLOCKED`` always, and never ``CUSTOMER_RENEWS``;
    * answered don't renew: nothing here (Art.9(1) ends the contract);
    * a certificate with no well-defined expiration (``99991231235959Z``): nothing ever.

    Every category III decision used the proviso's period, so each carries
    ``computed.period_rule`` and ``computed.period_last_day``.
    """
    if never_expires(facts):
        return ()
    today = tokyo_date(at)
    end_day = end_of_validity(facts.not_after_utc)
    period = validity_period(facts.not_before_utc, facts.not_after_utc)
    used = _facts(facts, period)
    decisions: list[Decision] = []
    byo = category is Category.III
    if not byo:
        proviso = None
    elif proviso is None:
        proviso = art6_3_period(facts, settings.period_rule)
    # art6_3_cannot_renew's shortcuts decide what the proviso's period decides
    blocked = proviso is not None and proviso.admits(facts.not_after_utc)
    period_fields: dict[str, Any] = proviso.to_json() if proviso is not None else {}

    if blocked and proviso is not None:
        text_en, text_ja = _blocked_texts(period, proviso.explain_en(), proviso.explain_ja(),
                                          end_day)
        decisions.append(Decision(
            action=Action.RENEWAL_BLOCKED,
            clause="Art.6(3) proviso",
            due=end_day,
            contract_id=contract_id,
            severity=Severity.CRITICAL if today >= end_day else Severity.WARNING,
            explanation_en=text_en,
            explanation_ja=text_ja,
            computed={"validity_seconds": used["validity_seconds"],
                      "end_of_validity": end_day.isoformat(), **period_fields},
            facts=used,
        ))

    if answer is Answer.DONT_RENEW:
        return tuple(decisions)

    if notice_sent is None:
        since, since_kind = (bound_on, "bound") if bound_on is not None \
            else (first_observed, "observed")
        due, overdue, text_en, text_ja, notice_fields = _notice(
            end_day, tokyo_date(facts.not_before_utc), since, settings.notice_lead_days,
            today, since_kind)
        if notice_closed(facts.not_after_utc, today):
            # Art.6(1)'s "by" the last day of validity is over: the ledger refuses the notice
            # from the next Tokyo day on, so a NOTIFY would be an action no record can clear.
            text_en, text_ja = _missed_texts(end_day, due, byo)
            decisions.append(Decision(
                action=Action.NOTICE_MISSED,
                clause="Art.6(1)",
                due=end_day,
                contract_id=contract_id,
                severity=Severity.WARNING,
                explanation_en=text_en,
                explanation_ja=text_ja,
                computed={**notice_fields, "notice_missed": True, **period_fields},
                facts=used,
            ))
            return tuple(decisions)
        decisions.append(Decision(
            action=Action.NOTIFY,
            clause="Art.6(1)",
            due=due,
            contract_id=contract_id,
            severity=Severity.WARNING if overdue else Severity.INFO,
            explanation_en=text_en,
            explanation_ja=text_ja,
            computed={**notice_fields, **period_fields},
            facts=used,
        ))
        return tuple(decisions)

    deadline = answer_deadline(notice_sent, facts.not_after_utc,
                               deadline_days=settings.answer_deadline_days)
    computed: dict[str, Any] = {
        "notice_sent": notice_sent.isoformat(),
        "answer_deadline": deadline.isoformat(),
        "deadline_days": settings.answer_deadline_days,
        "end_of_validity": end_day.isoformat(),
        **period_fields,
    }
    paragraph = "Art.6(3)" if byo else "Art.6(2)"

    if answer is Answer.RENEW:
        if proviso is not None:
            if not blocked:
                decisions.append(Decision(
                    action=Action.CUSTOMER_RENEWS, clause="Art.6(3)", due=end_day,
                    contract_id=contract_id,
                    severity=Severity.WARNING if today > end_day else Severity.INFO,
                    explanation_en=(f"The customer answered renew: they renew the certificate "
                                    f"themselves by {end_day}, the last day of its validity "
                                    f"(its validity is longer than 90 days: "
                                    f"{proviso.explain_en()})."),
                    explanation_ja=(f"契約者が更新すると通知したため、契約者自ら有効期間の末日 "
                                    f"{end_day} までに更新手続きを行います（有効期間は 90 日を"
                                    f"超えています。{proviso.explain_ja()}）。"),
                    computed=computed, facts=used,
                ))
        else:
            decisions.append(Decision(
                action=Action.RENEW, clause="Art.6(2)", due=end_day, contract_id=contract_id,
                severity=Severity.WARNING if today > end_day else Severity.INFO,
                explanation_en=(f"The customer answered renew: renew the certificate by "
                                f"{end_day}, the last day of its validity."),
                explanation_ja=(f"契約者が更新すると通知したため、有効期間の末日 {end_day} までに"
                                "有効期間を更新します。"),
                computed=computed, facts=used,
            ))
        return tuple(decisions)

    if today <= deadline:
        decisions.append(Decision(
            action=Action.AWAIT_ANSWER, clause=paragraph, due=deadline, contract_id=contract_id,
            explanation_en=(f"Notice sent on {notice_sent}; the customer's answer (renew or "
                            f"not) is due by {deadline}."),
            explanation_ja=(f"{notice_sent} に通知済みです。更新を行うか否かの回答期限は "
                            f"{deadline} です。"),
            computed=computed, facts=used,
        ))
    elif not byo and deadline <= notice_sent:
        decisions.append(Decision(
            action=Action.ANSWER_OVERDUE, clause="Art.6(2)", due=deadline,
            contract_id=contract_id, severity=Severity.WARNING,
            explanation_en=(f"No answer by {deadline}, but the notice went out on {notice_sent}"
                            ", leaving no day after it to answer in: no renewal can be taken as "
                            "made by default; ask the customer for their answer."),
            explanation_ja=(f"{deadline} までに回答がありませんが、通知を {notice_sent} に"
                            "行ったため通知後に回答できる日が無く、更新をするものとしては"
                            "取り扱えません。契約者に回答を催促してください。"),
            computed={**computed, "no_default": True},
            facts=used,
        ))
    elif byo:
        decisions.append(Decision(
            action=Action.ANSWER_OVERDUE, clause="Art.6(3)", due=deadline,
            contract_id=contract_id, severity=Severity.WARNING,
            explanation_en=(f"No answer by {deadline}: category III has no default renewal; "
                            "ask the customer for their answer."),
            explanation_ja=(f"{deadline} までに回答がありません。品目区分 III では回答が無くても"
                            "更新するものとしては取り扱わないため、契約者に回答を催促して"
                            "ください。"),
            computed=computed, facts=used,
        ))
    else:
        renew_on = add_days(deadline, 1)
        decisions.append(Decision(
            action=Action.RENEW_BY_DEFAULT, clause="Art.6(2)", due=renew_on,
            contract_id=contract_id,
            severity=Severity.WARNING if today > end_day else Severity.INFO,
            explanation_en=(f"No answer by {deadline}: the renewal is taken as requested "
                            f"(default renewal from {renew_on})."),
            explanation_ja=(f"{deadline} までに契約者から更新を行うか否かの通知が無かったため、"
                            f"有効期間の更新をするものとして取り扱います（{renew_on} から）。"),
            computed={**computed, "renewal_taken_as_made": renew_on.isoformat()},
            facts=used,
        ))
    return tuple(decisions)
