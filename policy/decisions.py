"""Findings and decisions: the values every rule returns.

A decision carries everything ``explain`` needs (its clause, the dates it computed, the facts it
used, an English and a Japanese sentence), so explaining is printing, never recomputing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

__all__ = ["SEVERITY_TEXT", "Action", "Decision", "Finding", "Severity"]


class Severity(enum.IntEnum):
    """Ordered so that ``max()`` gives the worst; maps onto monitoring exit codes."""

    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3


SEVERITY_TEXT: tuple[str, ...] = ("ok", "info", "warning", "critical")
"""``severity.name.lower()`` indexed by the severity: what JSON says. ``Enum.name`` is a Python
property; a row renders four severities or more, 100,000 rows a scan."""


class Action(enum.Enum):
    """What follows from the contract. The value is the stable name used in JSON and the CLI."""

    NOTIFY = "notify"
    """Art.6(1): send the renewal notice by ``due``."""
    AWAIT_ANSWER = "await-answer"
    """Art.6(2)/(3): the notice is out; the customer's answer is due by ``due``."""
    RENEW_BY_DEFAULT = "renew-by-default"
    """Art.6(2): category I/II, no answer by the deadline: the provider renews."""
    RENEW = "renew"
    """Art.6(2): the customer answered "renew": the provider renews (I/II)."""
    CUSTOMER_RENEWS = "customer-renews"
    """Art.6(3): category III answered "renew": the customer renews the certificate themselves."""
    RENEWAL_BLOCKED = "renewal-blocked"
    """Art.6(3) proviso: validity period of 90 days or less, the service cannot be renewed."""
    ANSWER_OVERDUE = "answer-overdue"
    """Art.6(3): category III has no default; a missing answer is escalated."""
    TERMINATE = "terminate"
    """Art.9: the contract ends on ``due``."""
    FEE_OWED = "fee-owed"
    """Art.10: a fee obligation arises on ``due``."""
    REFUSE = "refuse"
    """Art.7 / Art.4(1): the application cannot be accepted."""
    ABOLISH = "abolish"
    """Art.8: the CA ended the product; the item is abolished on ``due``."""
    NON_COMPLIANT = "non-compliant"
    """Art.3 (category III) / Appx1.1 (I, II): the certificate's validity period exceeds its
    contracted tier."""
    REPLACE_CERTIFICATE = "replace-certificate"
    """The bound certificate has expired or is about to, and no successor has been observed."""
    NOTICE_MISSED = "notice-missed"
    """Art.6(1): the validity period ended with no renewal notice sent; it can no longer be
    sent for this certificate, and no renewal follows by default (Art.6(2) follows a notice)."""
    ITEM_MISMATCH = "item-mismatch"
    """Art.1: the certificate bound to the contract cannot be one of the contract's item."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """Something true about a certificate or contract that a person should know.

    ``code`` is a stable kebab-case identifier; ``clause`` cites the article it comes from (or
    ``""`` for findings outside the terms, such as an unencrypted key on disk).
    """

    code: str
    clause: str
    message: str
    severity: Severity = Severity.INFO

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "clause": self.clause,
            "message": self.message,
            "severity": SEVERITY_TEXT[self.severity],
        }


@dataclass(frozen=True, kw_only=True)
class Decision:
    """An action the contract calls for, with its clause and its reasons.

    ``due`` is an Asia/Tokyo calendar date (inclusive: the action is due *on* that day).
    ``computed`` holds the dates and durations the rule derived, ``facts`` the inputs it used,
    both as JSON-ready scalars.
    """

    action: Action
    clause: str
    due: date | None
    explanation_en: str
    explanation_ja: str
    contract_id: str | None = None
    severity: Severity = Severity.INFO
    computed: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    _told: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    """:meth:`to_json` but for ``facts``, made on first use and shared by the decisions
    :meth:`with_facts` makes of this one after that (read-only)."""

    def __post_init__(self) -> None:
        # read-only copies: the caller's dicts may change later
        setattr_ = object.__setattr__
        setattr_(self, "computed", MappingProxyType(dict(self.computed or {})))
        setattr_(self, "facts", MappingProxyType(dict(self.facts or {})))

    def with_facts(self, facts: dict[str, Any]) -> Decision:
        """This decision about another certificate of the same shape (see
        :mod:`policy.classification`): the same action, texts and ``computed`` (read-only, so
        shared), ``facts`` -- a dict no one else holds -- for the other certificate. Copied
        attribute dict and all, in one step (why the class has no ``__slots__``): a
        classification served from the memo makes two or three of these per certificate,
        and the constructor's copies cost as much as the rest of it."""
        new = _NEW(Decision)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields["facts"] = MappingProxyType(facts)
        return new

    def to_json(self) -> dict[str, Any]:
        """The decision as JSON; the nested objects may be shared with other calls: read
        them, never change them."""
        return {**self.shape_json(), "facts": dict(self.facts)}

    def shape_json(self) -> dict[str, Any]:
        """:meth:`to_json` but its last key, ``facts``: made once and shared (read it, never
        change it) by the decisions :meth:`with_facts` copies from this one, so a renderer may
        remember what it made of it by its identity (:func:`agent.render.json_line`)."""
        told = self._told
        if told is None:
            told = self.__dict__["_told"] = {
                "action": self.action._value_,  # .value is a Python property, _value_ a slot
                "clause": self.clause,
                "due": self.due.isoformat() if self.due else None,
                "contract": self.contract_id,
                "severity": SEVERITY_TEXT[self.severity],
                "explanation": {"en": self.explanation_en, "ja": self.explanation_ja},
                "computed": dict(self.computed),
            }
        return told


_NEW = object.__new__
