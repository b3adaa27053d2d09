"""The journal's vocabulary: everything that can happen in a contract's life, as values.

The ledger stores these and nothing else; a contract's state is what folding them yields
(``policy.state``). Each event is a frozen dataclass with ``at_utc`` (the instant it happened *in
the world*: the form's arrival, the answer's receipt, the certificate's observation; aware UTC)
and ``contract_id`` (``None`` only for a certificate observation no contract claims). When the
ledger learned of it is not part of the event but of its journal row
(``policy.ledger.JournalEntry.recorded_utc``): the two differ whenever something is entered late.
``KIND`` is the stable name stored in the journal; :func:`event_to_json` /
:func:`event_from_json` are exact inverses, so the journal can be read back by any later version
that knows the kind. Paths (``location``, ``source``) are ``os.fsdecode``'d text and may hold
lone surrogates (a file name that is not UTF-8): they survive the round trip unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeAlias

from .category import Category
from .facts import CertificateFacts
from .rules.art6 import Answer
from .tiers import Tier
from .tokyo import require_aware, tokyo_text, tokyo_wall

__all__ = [
    "ANSWER_TIMINGS",
    "EVENT_KINDS",
    "TERMINATION_CLAUSES",
    "AnswerReceived",
    "ApplicationAccepted",
    "CancellationArrived",
    "CertificateBound",
    "CertificateGone",
    "CertificateObserved",
    "ContractChanged",
    "Event",
    "NoticeSent",
    "RenewalMade",
    "Terminated",
    "event_from_json",
    "event_to_json",
    "facts_from_json",
    "facts_to_json",
    "instant_to_text",
    "instant_to_tokyo_text",
    "kind_phrase",
    "text_to_instant",
]


@functools.lru_cache(maxsize=256)
def instant_to_text(instant: datetime) -> str:
    """Fixed-width ISO 8601 UTC (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) so that text order is time
    order: the ledger compares these strings in SQL.

    Cached: intake writes five instants an observation, and three of them (when it was
    observed, twice, and when it was recorded) are the same for a whole batch; ``isoformat``
    costs ~1.8 us, a hit ~0.1 us (equal instants have one text whatever their zone)."""
    if instant.tzinfo is UTC:  # the common case, five times an observation: no conversion
        return instant.isoformat(timespec="microseconds")[:-6] + "Z"
    utc = require_aware(instant).astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def instant_to_tokyo_text(instant: datetime) -> str:
    """An instant as a person reads it in a message: Asia/Tokyo wall time to the second, no
    microseconds (``2027-01-01 00:00 JST``; seconds only when there are some). The storage
    form (:func:`instant_to_text`, UTC) is for the journal, never for a user."""
    try:
        wall = tokyo_wall(require_aware(instant))
    except OverflowError:  # the ends of the range: say the instant as it was given
        return instant.isoformat(sep=" ", timespec="seconds")
    return tokyo_text(instant, timespec="seconds" if wall.second else "minutes")


def kind_phrase(event: Event | type[Event]) -> str:
    """``"an application-accepted event"``, ``"a notice-sent event"``: the kind with its
    article, for messages."""
    kind = event.KIND
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind} event"


def text_to_instant(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)  # Python 3.11 reads the "Z" suffix itself
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def _opt_date(text: Any) -> date | None:
    return None if text is None else date.fromisoformat(str(text))


def facts_to_json(facts: CertificateFacts) -> dict[str, Any]:
    return {
        "sha256": facts.sha256,
        "not_before": instant_to_text(facts.not_before_utc),
        "not_after": instant_to_text(facts.not_after_utc),
        "subject": facts.subject,
        "subject_cn": facts.subject_cn,
        "issuer": facts.issuer,
        "issuer_org": facts.issuer_org,
        "issuer_cn": facts.issuer_cn,
        "serial": facts.serial,
        "sans": list(facts.sans),
        "policy_oids": list(facts.policy_oids),
        "is_ca": facts.is_ca,
        "self_signed": facts.self_signed,
        "key_type": facts.key_type,
        "key_size": facts.key_size,
        "signature_algorithm": facts.signature_algorithm,
        "extra": [list(pair) for pair in facts.extra],
    }


def facts_from_json(raw: Mapping[str, Any]) -> CertificateFacts:
    return CertificateFacts(
        sha256=str(raw["sha256"]),
        not_before_utc=text_to_instant(str(raw["not_before"])),
        not_after_utc=text_to_instant(str(raw["not_after"])),
        subject=str(raw.get("subject", "")),
        subject_cn=raw.get("subject_cn"),
        issuer=str(raw.get("issuer", "")),
        issuer_org=raw.get("issuer_org"),
        issuer_cn=raw.get("issuer_cn"),
        serial=str(raw.get("serial", "")),
        sans=tuple(str(s) for s in raw.get("sans", ())),
        policy_oids=tuple(str(s) for s in raw.get("policy_oids", ())),
        is_ca=bool(raw.get("is_ca", False)),
        self_signed=bool(raw.get("self_signed", False)),
        key_type=str(raw.get("key_type", "")),
        key_size=raw.get("key_size"),
        signature_algorithm=str(raw.get("signature_algorithm", "")),
        extra=tuple((str(k), str(v)) for k, v in raw.get("extra", ())),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    KIND: ClassVar[str] = ""

    contract_id: str | None
    at_utc: datetime

    def __post_init__(self) -> None:
        require_aware(self.at_utc, "at_utc")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationAccepted(_EventBase):
    """The provider accepted an application (Art.2: one contract per item). Starts the contract;
    the initial fee is owed from this moment (Art.10)."""

    KIND: ClassVar[str] = "application-accepted"
    contract_id: str
    item: str
    category: Category
    tier: Tier | None
    organisation_country: str = "JP"
    migrating_from_outside: bool = False
    designated_service: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateBound(_EventBase):
    """An operator declared this certificate to be the contract's (``contract bind``)."""

    KIND: ClassVar[str] = "certificate-bound"
    contract_id: str
    facts: CertificateFacts
    source: str = ""
    """Where the certificate was read from (a file path), for the journal's reader."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeSent(_EventBase):
    """Art.6(1): the renewal notice went out (on ``at_utc``'s Tokyo day)."""

    KIND: ClassVar[str] = "notice-sent"
    contract_id: str
    certificate_sha256: str | None = None
    """The certificate the notice was about: a notice concerns one validity period."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerReceived(_EventBase):
    """Art.6(2)/(3): the customer answered renew / don't renew (``at_utc``: when the answer
    was received).

    ``timing`` is the ledger's mark, set when it records the answer (CONTRACT.md "What the
    ledger refuses"): ``"early"`` (before any notice of the cycle), ``"late"`` (after the answer
    deadline) or ``"on-time"``; ``None`` in journals written before answers were marked.
    """

    KIND: ClassVar[str] = "answer-received"
    contract_id: str
    answer: Answer
    certificate_sha256: str | None = None
    timing: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancellationArrived(_EventBase):
    """Art.9(2): the customer's cancellation form reached the provider on ``arrived`` (Tokyo
    day), optionally naming the day it should take effect."""

    KIND: ClassVar[str] = "cancellation-arrived"
    contract_id: str
    arrived: date
    requested: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractChanged(_EventBase):
    """Art.5: the provider accepted a change of the service that uses the certificate; the
    one-time fee is owed from this moment (Art.10)."""

    KIND: ClassVar[str] = "contract-changed"
    contract_id: str
    service: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateObserved(_EventBase):
    """The agent saw a certificate at ``host``/``location`` (index ``index`` in the file)."""

    KIND: ClassVar[str] = "certificate-observed"
    facts: CertificateFacts
    host: str
    location: str
    index: int
    key_matches: bool | None = None
    binding_category: Category | None = None
    binding_item: str | None = None
    binding_tier: Tier | None = None
    match_by_san: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateGone(_EventBase):
    """Nothing is at ``host``/``location`` any more; ``sha256s`` were last seen there."""

    KIND: ClassVar[str] = "certificate-gone"
    host: str
    location: str
    sha256s: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalMade(_EventBase):
    """Art.6(2)/(3): the renewal of ``certificate_sha256``'s validity period was made.

    ``by_default`` marks an Art.6(2) renewal taken as made for lack of an answer; its initial
    fee is owed from ``designated`` (a provider-chosen day on or after the renewal), Art.10.
    """

    KIND: ClassVar[str] = "renewal-made"
    contract_id: str
    by_default: bool = False
    designated: date | None = None
    certificate_sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminated(_EventBase):
    """The provider recorded a termination taking effect on ``effective`` (e.g. Art.8
    abolition, or an Art.9 termination confirmed by hand). ``clause`` is one of
    :data:`TERMINATION_CLAUSES`, and the ledger admits the record only when that clause's own
    conditions hold (``policy.state.check_event``). ``effective`` is the termination day: the
    contract runs through it and is terminated from the next Tokyo day, as under every
    clause."""

    KIND: ClassVar[str] = "terminated"
    contract_id: str
    effective: date
    clause: str
    reason: str = ""


ANSWER_TIMINGS: tuple[str, ...] = ("early", "on-time", "late")
"""The marks an answer gets when recorded (``AnswerReceived.timing``)."""

TERMINATION_CLAUSES: tuple[str, ...] = ("Art.6(3) proviso", "Art.8", "Art.9(1)", "Art.9(2)")
"""The clauses that end a contract (CONTRACT.md): a termination citing another is refused."""

Event: TypeAlias = (
    ApplicationAccepted | CertificateBound | NoticeSent | AnswerReceived | CancellationArrived
    | ContractChanged | CertificateObserved | CertificateGone | RenewalMade | Terminated
)

EVENT_KINDS: tuple[str, ...] = (
    ApplicationAccepted.KIND, CertificateBound.KIND, NoticeSent.KIND, AnswerReceived.KIND,
    CancellationArrived.KIND, ContractChanged.KIND, CertificateObserved.KIND,
    CertificateGone.KIND, RenewalMade.KIND, Terminated.KIND,
)


def _enum_value(value: Any) -> Any:
    return None if value is None else value.value


def event_to_json(event: Event) -> dict[str, Any]:
    """The journal's payload: ``{"kind": …, "contract": …, "at": …, <fields>}``."""
    if isinstance(event, CertificateObserved):
        # The kind intake writes once per observation (a first start: 100,000 of them): one
        # literal, before the match below tries the other kinds.
        return {"kind": event.KIND, "contract": event.contract_id,
                "at": instant_to_text(event.at_utc), "facts": facts_to_json(event.facts),
                "host": event.host, "location": event.location, "index": event.index,
                "key_matches": event.key_matches,
                "binding": {"category": _enum_value(event.binding_category),
                            "item": event.binding_item,
                            "tier": _enum_value(event.binding_tier),
                            "match_by_san": event.match_by_san}}
    out: dict[str, Any] = {"kind": event.KIND, "contract": event.contract_id,
                           "at": instant_to_text(event.at_utc)}
    match event:
        case ApplicationAccepted():
            out.update(item=event.item, category=event.category.value,
                       tier=_enum_value(event.tier),
                       organisation_country=event.organisation_country,
                       migrating_from_outside=event.migrating_from_outside,
                       designated_service=event.designated_service)
        case CertificateBound():
            out.update(facts=facts_to_json(event.facts), source=event.source)
        case NoticeSent():
            out.update(certificate=event.certificate_sha256)
        case AnswerReceived():
            out.update(answer=event.answer.value, certificate=event.certificate_sha256,
                       timing=event.timing)
        case CancellationArrived():
            out.update(arrived=event.arrived.isoformat(),
                       requested=event.requested.isoformat() if event.requested else None)
        case ContractChanged():
            out.update(service=event.service)
        case CertificateGone():
            out.update(host=event.host, location=event.location, sha256s=list(event.sha256s))
        case RenewalMade():
            out.update(by_default=event.by_default,
                       designated=event.designated.isoformat() if event.designated else None,
                       certificate=event.certificate_sha256)
        case Terminated():
            out.update(effective=event.effective.isoformat(), clause=event.clause,
                       reason=event.reason)
    return out


def _accepted(raw: Mapping[str, Any], common: dict[str, Any]) -> Event:
    tier = raw.get("tier")
    return ApplicationAccepted(
        **common, item=str(raw["item"]), category=Category(raw["category"]),
        tier=None if tier is None else Tier(tier),
        organisation_country=str(raw.get("organisation_country", "JP")),
        migrating_from_outside=bool(raw.get("migrating_from_outside", False)),
        designated_service=raw.get("designated_service"))


def _observed(raw: Mapping[str, Any], common: dict[str, Any]) -> Event:
    binding = raw.get("binding") or {}
    category, tier = binding.get("category"), binding.get("tier")
    return CertificateObserved(
        **common, facts=facts_from_json(raw["facts"]), host=str(raw["host"]),
        location=str(raw["location"]), index=int(raw["index"]),
        key_matches=raw.get("key_matches"),
        binding_category=None if category is None else Category(category),
        binding_item=binding.get("item"),
        binding_tier=None if tier is None else Tier(tier),
        match_by_san=bool(binding.get("match_by_san", False)))


_READERS: dict[str, Callable[[Mapping[str, Any], dict[str, Any]], Event]] = {
    ApplicationAccepted.KIND: _accepted,
    CertificateBound.KIND: lambda raw, common: CertificateBound(
        **common, facts=facts_from_json(raw["facts"]), source=str(raw.get("source", ""))),
    NoticeSent.KIND: lambda raw, common: NoticeSent(
        **common, certificate_sha256=raw.get("certificate")),
    AnswerReceived.KIND: lambda raw, common: AnswerReceived(
        **common, answer=Answer(raw["answer"]), certificate_sha256=raw.get("certificate"),
        timing=raw.get("timing")),
    CancellationArrived.KIND: lambda raw, common: CancellationArrived(
        **common, arrived=date.fromisoformat(raw["arrived"]),
        requested=_opt_date(raw.get("requested"))),
    ContractChanged.KIND: lambda raw, common: ContractChanged(
        **common, service=str(raw["service"])),
    CertificateObserved.KIND: _observed,
    CertificateGone.KIND: lambda raw, common: CertificateGone(
        **common, host=str(raw["host"]), location=str(raw["location"]),
        sha256s=tuple(str(s) for s in raw.get("sha256s", ()))),
    RenewalMade.KIND: lambda raw, common: RenewalMade(
        **common, by_default=bool(raw.get("by_default", False)),
        designated=_opt_date(raw.get("designated")),
        certificate_sha256=raw.get("certificate")),
    Terminated.KIND: lambda raw, common: Terminated(
        **common, effective=date.fromisoformat(raw["effective"]), clause=str(raw["clause"]),
        reason=str(raw.get("reason", ""))),
}


def event_from_json(raw: Mapping[str, Any]) -> Event:
    """Rebuild an event from :func:`event_to_json`'s output; ``ValueError`` names what is
    wrong (an unknown kind means the journal was written by a newer certescrow)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"an event is a JSON object, got {type(raw).__name__}")
    kind = raw.get("kind")
    reader = _READERS.get(str(kind))
    if reader is None:
        raise ValueError(f"unknown event kind {kind!r}: expected one of {', '.join(EVENT_KINDS)}")
    try:
        common = {"contract_id": raw.get("contract"), "at_utc": text_to_instant(str(raw["at"]))}
        return reader(raw, common)
    except KeyError as exc:
        raise ValueError(f"malformed {kind} event: field {str(exc)[:40]} missing") from exc
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        # The stored text may be anything: say what is wrong without quoting it.
        raise ValueError(f"malformed {kind} event: a field has the wrong type or an "
                         f"out-of-range value ({type(exc).__name__})") from exc
