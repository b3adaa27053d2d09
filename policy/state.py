"""A contract's state: what folding its journal up to an instant yields.

State is never stored; it is derived. :func:`fold` is a pure function of the events (in journal
order, ``(at_utc, seq)``) and ``at``: events after ``at`` are ignored, so the state "as of last
March" is the same computation as today's. :func:`check_event` is the other half: whether the
state at an event's instant admits it (the ledger refuses what it does not).

Derivation rules (documented in ``docs/ledger.md``):

* the contract's certificate is the last one bound by an operator, or a newer one (later
  ``notAfter``) the agent observed for the contract; CA certificates never become it;
* a new certificate starts a new renewal cycle: notice and answer belong to one validity period;
* a "don't renew" answer fixes the Art.9(1) termination day (that certificate's ``notAfter``);
  a cancellation form fixes the Art.9(2) day; a ``terminated`` event fixes its own; the
  contract terminates on the earliest of them (``terminated_on``), and is ``terminated`` from
  that Tokyo day on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from .category import Category
from .errors import ContractStateError, UnknownContractError
from .events import (
    AnswerReceived,
    ApplicationAccepted,
    CancellationArrived,
    CertificateBound,
    CertificateGone,
    CertificateObserved,
    ContractChanged,
    Event,
    NoticeSent,
    RenewalMade,
    Terminated,
)
from .facts import CertificateFacts
from .rules.art6 import Answer
from .rules.art9 import (
    check_cancellation_admissible,
    effective_on_cancellation,
    effective_on_non_renewal,
)
from .tiers import Tier
from .tokyo import tokyo_date

__all__ = [
    "Cancellation",
    "ContractChange",
    "ContractState",
    "ContractStatus",
    "Renewal",
    "check_event",
    "fold",
]


class ContractStatus(enum.Enum):
    ACTIVE = "active"
    """In force, no termination fixed."""
    TERMINATING = "terminating"
    """In force, a termination day is fixed and still ahead."""
    TERMINATED = "terminated"
    """The termination day has come (inclusive)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancellation:
    """Art.9(2): a cancellation form and the day it takes effect."""

    arrived: date
    requested: date | None
    effective: date


@dataclass(frozen=True, slots=True, kw_only=True)
class Renewal:
    """A renewal made (Art.6): the Tokyo day, whether by default, the billing day designated."""

    on: date
    by_default: bool
    designated: date | None
    certificate_sha256: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractChange:
    """Art.5: an accepted change of the service that uses the certificate."""

    service: str
    accepted_on: date


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractState:
    """One contract as of ``at_utc``. Everything a rule needs, nothing it must look up."""

    contract_id: str
    at_utc: datetime
    item: str
    category: Category
    tier: Tier | None
    accepted_on: date
    organisation_country: str = "JP"
    service: str | None = None
    """The designated service in use (from the application, then from contract changes)."""
    certificate: CertificateFacts | None = None
    previous_certificate: CertificateFacts | None = None
    certificate_source: str | None = None
    """``"bound"`` (an operator bound it) or ``"observed"`` (the agent saw it)."""
    notice_sent: date | None = None
    answer: Answer | None = None
    answered_on: date | None = None
    cancellation: Cancellation | None = None
    non_renewal_effective: date | None = None
    """Art.9(1) day fixed by a "don't renew" answer."""
    termination_recorded: date | None = None
    termination_recorded_clause: str | None = None
    terminated_on: date | None = None
    """The day the contract terminates (earliest of every fixed termination), or ``None``."""
    termination_clause: str | None = None
    renewals: tuple[Renewal, ...] = ()
    changes: tuple[ContractChange, ...] = ()
    renewal_made_for: str | None = None
    """sha256 of the certificate whose renewal was made; cleared when a successor arrives."""
    locations: tuple[str, ...] = ()
    """``host:location`` where the agent currently sees the contract's certificates."""
    last_observed_utc: datetime | None = None
    events: int = 0

    @property
    def status(self) -> ContractStatus:
        if self.terminated_on is None:
            return ContractStatus.ACTIVE
        if tokyo_date(self.at_utc) >= self.terminated_on:
            return ContractStatus.TERMINATED
        return ContractStatus.TERMINATING

    def to_json(self) -> dict[str, object]:
        from .events import facts_to_json  # local: keeps the import graph flat for readers

        cert = self.certificate
        prev = self.previous_certificate
        return {
            "contract": self.contract_id,
            "at": self.at_utc,
            "status": self.status.value,
            "item": self.item,
            "category": self.category.value,
            "tier": self.tier.value if self.tier else None,
            "accepted_on": self.accepted_on,
            "organisation_country": self.organisation_country,
            "service": self.service,
            # Instants stay datetimes here so every CLI renders them alike (…:00Z); the
            # fixed-width microsecond text is the ledger's storage format, not a display one.
            "certificate": None if cert is None else {
                **facts_to_json(cert),
                "not_before": cert.not_before_utc,
                "not_after": cert.not_after_utc,
            },
            "certificate_source": self.certificate_source,
            "previous_certificate": None if prev is None else prev.sha256,
            "notice_sent": self.notice_sent,
            "answer": self.answer.value if self.answer else None,
            "answered_on": self.answered_on,
            "cancellation": None if self.cancellation is None else {
                "arrived": self.cancellation.arrived,
                "requested": self.cancellation.requested,
                "effective": self.cancellation.effective,
            },
            "terminated_on": self.terminated_on,
            "termination_clause": self.termination_clause,
            "renewals": [{"on": r.on, "by_default": r.by_default, "designated": r.designated,
                          "certificate": r.certificate_sha256} for r in self.renewals],
            "changes": [{"service": c.service, "accepted_on": c.accepted_on}
                        for c in self.changes],
            "renewal_made_for": self.renewal_made_for,
            "locations": list(self.locations),
            "last_observed": self.last_observed_utc,
            "events": self.events,
        }


@dataclass(slots=True)
class _Acc:
    """Mutable accumulator for :func:`fold` (fast: one object, no copies per event)."""

    accepted: ApplicationAccepted | None = None
    certificate: CertificateFacts | None = None
    previous: CertificateFacts | None = None
    source: str | None = None
    notice_sent: date | None = None
    answer: Answer | None = None
    answered_on: date | None = None
    cancellation: Cancellation | None = None
    non_renewal: date | None = None
    recorded: tuple[date, str] | None = None
    service: str | None = None
    renewals: list[Renewal] = field(default_factory=list)
    changes: list[ContractChange] = field(default_factory=list)
    renewal_made_for: str | None = None
    locations: dict[str, str] = field(default_factory=dict)
    last_observed: datetime | None = None
    count: int = 0

    def new_certificate(self, facts: CertificateFacts, source: str) -> None:
        if self.certificate is not None and self.certificate.sha256 == facts.sha256:
            self.source = source if source == "bound" else self.source
            return
        self.previous = self.certificate
        self.certificate = facts
        self.source = source
        # A notice and an answer concern one validity period: a new certificate starts anew.
        self.notice_sent = None
        self.answer = None
        self.answered_on = None
        if self.renewal_made_for is not None and self.renewal_made_for != facts.sha256:
            self.renewal_made_for = None


def _observed_is_newer(acc: _Acc, facts: CertificateFacts) -> bool:
    if facts.is_ca:
        return False
    current = acc.certificate
    return current is None or facts.not_after_utc > current.not_after_utc


def fold(contract_id: str, events: Iterable[Event], *, at: datetime) -> ContractState:
    """Derive ``contract_id``'s state from its events, ignoring those after ``at``.

    ``events`` must be in journal order (``at_utc``, then sequence). Raises
    :class:`UnknownContractError` when no application was accepted by ``at``.
    """
    acc = _Acc()
    for event in events:
        if event.at_utc > at:
            continue
        acc.count += 1
        _apply(acc, event, contract_id)
    return _finish(acc, contract_id, at)


def _apply(acc: _Acc, event: Event, contract_id: str) -> None:
    day = tokyo_date(event.at_utc)
    match event:
        case ApplicationAccepted():
            acc.accepted = event
            acc.service = event.designated_service
        case CertificateBound():
            acc.new_certificate(event.facts, "bound")
        case CertificateObserved():
            acc.locations[f"{event.host}:{event.location}"] = event.facts.sha256
            acc.last_observed = event.at_utc
            if _observed_is_newer(acc, event.facts):
                acc.new_certificate(event.facts, "observed")
        case CertificateGone():
            acc.locations.pop(f"{event.host}:{event.location}", None)
        case NoticeSent():
            # A repeated notice is a reminder: the first one of the cycle starts the answer
            # deadline, and a reminder must not extend it.
            if acc.notice_sent is None:
                acc.notice_sent = day
        case AnswerReceived():
            acc.answer = event.answer
            acc.answered_on = day
            if event.answer is Answer.DONT_RENEW and acc.certificate is not None:
                acc.non_renewal = effective_on_non_renewal(acc.certificate.not_after_utc)
            elif event.answer is Answer.RENEW:
                # The customer changed their mind before the day: the renewal stands.
                acc.non_renewal = None
        case CancellationArrived():
            acc.cancellation = Cancellation(
                arrived=event.arrived, requested=event.requested,
                effective=effective_on_cancellation(event.arrived, event.requested))
        case ContractChanged():
            acc.service = event.service
            acc.changes.append(ContractChange(service=event.service, accepted_on=day))
        case RenewalMade():
            acc.renewals.append(Renewal(on=day, by_default=event.by_default,
                                        designated=event.designated,
                                        certificate_sha256=event.certificate_sha256))
            acc.renewal_made_for = event.certificate_sha256 or (
                acc.certificate.sha256 if acc.certificate else None)
        case Terminated():
            if acc.recorded is None or event.effective < acc.recorded[0]:
                acc.recorded = (event.effective, event.clause)


def _finish(acc: _Acc, contract_id: str, at: datetime) -> ContractState:
    base = acc.accepted
    if base is None:
        raise UnknownContractError(
            f"no contract {contract_id!r} in the ledger as of {tokyo_date(at).isoformat()} "
            "(Asia/Tokyo): add it with `certescrow contract add`, or check the id and --at"
        )
    candidates: list[tuple[date, str]] = []
    if acc.non_renewal is not None:
        candidates.append((acc.non_renewal, "Art.9(1)"))
    if acc.cancellation is not None:
        candidates.append((acc.cancellation.effective, "Art.9(2)"))
    if acc.recorded is not None:
        candidates.append(acc.recorded)
    terminated_on, clause = min(candidates) if candidates else (None, None)
    # Built once, directly: this runs for every contract of a 100,000-contract sweep.
    return ContractState(
        contract_id=contract_id,
        at_utc=at,
        item=base.item,
        category=base.category,
        tier=base.tier,
        accepted_on=tokyo_date(base.at_utc),
        organisation_country=base.organisation_country,
        service=acc.service,
        certificate=acc.certificate,
        previous_certificate=acc.previous,
        certificate_source=acc.source,
        notice_sent=acc.notice_sent,
        answer=acc.answer,
        answered_on=acc.answered_on,
        cancellation=acc.cancellation,
        non_renewal_effective=acc.non_renewal,
        termination_recorded=acc.recorded[0] if acc.recorded else None,
        termination_recorded_clause=acc.recorded[1] if acc.recorded else None,
        terminated_on=terminated_on,
        termination_clause=clause,
        renewals=tuple(acc.renewals),
        changes=tuple(acc.changes),
        renewal_made_for=acc.renewal_made_for,
        locations=tuple(sorted(acc.locations)),
        last_observed_utc=acc.last_observed,
        events=acc.count,
    )


_NEEDS_LIVE_CONTRACT = (NoticeSent, AnswerReceived, CancellationArrived, ContractChanged,
                        CertificateBound, RenewalMade)


def check_event(state: ContractState | None, event: Event) -> None:
    """Refuse an event the contract's state at the event's instant does not admit.

    ``state`` is the fold up to the event's instant (``None``: no such contract yet). Agent
    observations are always admitted: the agent reports what it sees, whatever the contract.
    """
    if isinstance(event, (CertificateObserved, CertificateGone)):
        return
    cid = event.contract_id
    when = tokyo_date(event.at_utc).isoformat()
    if isinstance(event, ApplicationAccepted):
        if state is not None:
            raise ContractStateError(
                f"contract {cid!r} already exists (accepted on {state.accepted_on.isoformat()})"
                ": choose another id")
        return
    if state is None:
        raise UnknownContractError(
            f"no contract {cid!r} in the ledger as of {when} (Asia/Tokyo): add it first "
            "with `certescrow contract add`, or check the id and --at")
    if isinstance(event, Terminated):
        return
    if isinstance(event, _NEEDS_LIVE_CONTRACT) and state.terminated_on is not None \
            and tokyo_date(event.at_utc) >= state.terminated_on:
        raise ContractStateError(
            f"contract {cid!r} terminated on {state.terminated_on.isoformat()} "
            f"({state.termination_clause}); a {event.KIND} event on {when} cannot apply to it")
    if isinstance(event, (NoticeSent, AnswerReceived)) and state.certificate is None:
        raise ContractStateError(
            f"contract {cid!r} has no certificate yet: a renewal notice or answer concerns a "
            "certificate's validity period (Art.6); bind one first with `certescrow contract "
            "bind`")
    if isinstance(event, CancellationArrived):
        if event.arrived > tokyo_date(event.at_utc):
            raise ContractStateError(
                f"the cancellation form cannot have arrived on {event.arrived.isoformat()}, "
                f"after the day it is recorded ({when})")
        if event.arrived < state.accepted_on:
            raise ContractStateError(
                f"the cancellation form arrived on {event.arrived.isoformat()}, before contract "
                f"{cid!r} was accepted ({state.accepted_on.isoformat()})")
        if state.cancellation is not None:
            raise ContractStateError(
                f"contract {cid!r} already has a cancellation form (arrived "
                f"{state.cancellation.arrived.isoformat()}, effective "
                f"{state.cancellation.effective.isoformat()})")
        cert = state.certificate
        check_cancellation_admissible(event.arrived, None if cert is None else cert.not_after_utc)
    if isinstance(event, RenewalMade) and event.designated is not None \
            and event.designated < tokyo_date(event.at_utc):
        raise ContractStateError(
            f"the designated billing day {event.designated.isoformat()} is before the day the "
            f"renewal was made ({when}); Art.10 requires a moment on or after it")
