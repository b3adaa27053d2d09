"""A contract's state: what folding its journal up to an instant yields.

State is never stored; it is derived. :func:`fold` is a pure function of the events (in journal
order, ``(at_utc, seq)``) and ``at``: events after ``at`` are ignored, so the state "as of last
March" is the same computation as today's. :func:`check_event` is the other half: whether the
state at an event's instant admits it (the ledger refuses what it does not), :func:`check_history`
whether the journal's later events still are with it, and :func:`check_repeat` whether it only
repeats a record.

Derivation rules (documented in ``docs/ledger.md``):

* the contract's certificate is the last one bound by an operator, or a newer one (later
  ``notAfter``) the agent observed for the contract; CA certificates never become it;
* a new certificate starts a new renewal cycle: notice and answer belong to one validity period,
  that of the certificate they name (one about a certificate that is no longer the contract's
  is not the current cycle's; its "don't renew" still ends the contract on that certificate's
  last day);
* a "don't renew" answer fixes the Art.9(1) termination day (that certificate's ``notAfter``);
  a cancellation form fixes the Art.9(2) day; a ``terminated`` event fixes its own; the
  contract terminates on the earliest of them (``terminated_on``): it runs through that Tokyo
  day (Art.9(1) "the contract runs through that day", Art.6(3) "at the end of the last day of
  validity"; one rule for every clause) and is ``terminated`` from the next day on;
* a category III certificate whose validity is within 90 days cannot be renewed (Art.6(3)
  proviso): the contract ends with it, on the last day of its validity, unless a certificate
  that can be renewed becomes the contract's before then (``renewable`` says which it is); a
  successor that cannot be renewed either neither lifts nor moves that end.

Reading never stops at one bad event: with a ``problems`` list, :func:`fold` skips an event it
cannot apply (a certificate at the ends of ``datetime``'s range in an old journal) and says so
there, and the rest of the contract is still derived.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from .catalogue import Item
from .category import Category
from .errors import ContractStateError, UnknownContractError
from .events import (
    TERMINATION_CLAUSES,
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
    instant_to_tokyo_text,
    kind_phrase,
)
from .facts import CertificateFacts, unevaluable
from .rules.art6 import (
    Answer,
    answer_deadline,
    art6_3_cannot_renew,
    end_of_validity,
    never_expires,
    notice_closed,
)
from .rules.art8 import abolished
from .rules.art9 import (
    CANCELLATION_NOTICE_DAYS,
    check_cancellation_admissible,
    effective_on_cancellation,
    effective_on_non_renewal,
)
from .settings import PolicySettings
from .tiers import Tier
from .tokyo import add_days, tokyo_date

__all__ = [
    "PROVISO",
    "STATE_FORMAT",
    "Cancellation",
    "ContractChange",
    "ContractState",
    "ContractStatus",
    "FoldProblem",
    "Renewal",
    "check_event",
    "check_history",
    "check_repeat",
    "facts_evaluable",
    "fold",
    "needs_history_check",
    "renewal_blocked_under",
    "state_from_json",
    "state_to_json",
]

PROVISO = "Art.6(3) proviso"
_DEFAULT_SETTINGS = PolicySettings()


def renewal_blocked_under(facts: CertificateFacts, settings: PolicySettings | None) -> bool:
    """Art.6(3) proviso: whether ``facts``' validity is within 90 days under the configured
    period rule (``[policy] period_rule``, Civil Code by default; the caller checks the
    category)."""
    return art6_3_cannot_renew(facts, (settings or _DEFAULT_SETTINGS).period_rule)


def facts_evaluable(facts: CertificateFacts) -> bool:
    """Whether the rules can evaluate ``facts`` (``policy.facts.unevaluable``, the one
    predicate intake, the ledger and classification share): a certificate dated 0001-01-01,
    or ending in the year 9999 other than RFC 5280's ``99991231235959Z``, cannot be counted
    from. The ledger refuses what this refuses, so that a journal never holds a certificate
    no rule can read."""
    return unevaluable(facts) is None


@dataclass(frozen=True, slots=True, kw_only=True)
class FoldProblem:
    """An event :func:`fold` could not apply (it was skipped): which, and why, in our words."""

    contract_id: str
    kind: str
    at_utc: datetime
    message: str


class ContractStatus(enum.Enum):
    ACTIVE = "active"
    """In force, no termination fixed."""
    TERMINATING = "terminating"
    """In force, a termination day is fixed and still ahead."""
    TERMINATED = "terminated"
    """The termination day is over: from the Tokyo day after ``terminated_on`` on (the contract
    runs through its termination day, whatever the clause)."""


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
    accepted_utc: datetime | None = None
    """The instant the application was accepted (the contract's first event)."""
    organisation_country: str = "JP"
    service: str | None = None
    """The designated service in use (from the application, then from contract changes)."""
    certificate: CertificateFacts | None = None
    previous_certificate: CertificateFacts | None = None
    certificate_source: str | None = None
    """``"bound"`` (an operator bound it) or ``"observed"`` (the agent saw it)."""
    certificate_since: date | None = None
    """The Tokyo day the current certificate became the contract's (bound or first observed):
    its Art.6(1) notice is never due before it."""
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
    answer_timing: str | None = None
    """The ledger's mark on the answer: ``"early"``, ``"on-time"``, ``"late"`` (or ``None``)."""
    first_answer: Answer | None = None
    """The first answer for the current certificate, and its day: an answer given by the
    deadline rules a default renewal out (Art.6(2)) even when a later answer replaced it."""
    first_answered_on: date | None = None
    renewable: bool | None = None
    """``False`` when the certificate cannot be renewed (Art.6(3) proviso: the contract ends
    with it), ``True`` when it can, ``None`` with no certificate."""
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
        if tokyo_date(self.at_utc) > self.terminated_on:
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
            "answer_timing": self.answer_timing,
            "renewable": self.renewable,
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
    certificate_since: date | None = None
    notice_sent: date | None = None
    answer: Answer | None = None
    answered_on: date | None = None
    answer_timing: str | None = None
    first_answer: Answer | None = None
    first_answered_on: date | None = None
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
    settings: PolicySettings | None = None
    renewable_cache: tuple[str, bool] | None = None
    """(sha256, renewable) of the last certificate asked about (see :func:`_renewable`)."""
    non_renewal_for: str | None = None
    """sha256 of the certificate whose "don't renew" fixed ``non_renewal`` (Art.9(1) ends the
    contract on *that* certificate's last day)."""
    not_after_of: dict[str, datetime] = field(default_factory=dict)
    """``notAfter`` of every certificate bound or observed so far, by sha256: an answer about a
    certificate that is no longer the contract's still fixes Art.9(1) on its own last day."""
    proviso_end: date | None = None
    """The Art.6(3) proviso termination an earlier certificate fixed: the last day of a
    certificate that could not be renewed, kept when it was replaced by one that cannot be
    renewed either, or by any certificate after that day had ended. Only a certificate that can
    be renewed, becoming the contract's on or before that day, lifts it (CONTRACT.md Art.6(3):
    "unless a certificate that can be renewed is bound before then")."""

    def new_certificate(self, facts: CertificateFacts, source: str, day: date) -> None:
        if self.certificate is not None and self.certificate.sha256 == facts.sha256:
            self.source = source if source == "bound" else self.source
            return
        old = self.certificate
        if self.accepted is not None:
            if old is not None and not _renewable(self, old):
                # The contract ends with this certificate (Art.6(3) proviso): its replacement
                # does not move that end, it can only lift it (below).
                old_end = end_of_validity(old.not_after_utc)
                self.proviso_end = old_end if self.proviso_end is None \
                    else min(self.proviso_end, old_end)
            if self.proviso_end is not None and day <= self.proviso_end \
                    and _renewable(self, facts):
                self.proviso_end = None  # a renewable certificate, bound in time, lifts it
        self.previous = self.certificate
        self.certificate = facts
        self.source = source
        self.certificate_since = day
        # A notice and an answer concern one validity period: a new certificate starts anew.
        self.notice_sent = None
        self.answer = None
        self.answered_on = None
        self.answer_timing = None
        self.first_answer = None
        self.first_answered_on = None
        if self.renewal_made_for is not None and self.renewal_made_for != facts.sha256:
            self.renewal_made_for = None


def _answer_timing(acc: _Acc, day: date) -> str | None:
    """The answer's mark as the journal now stands: early (no notice for this certificate),
    on-time or late (after the deadline). Derived at fold time, not taken from the record, so
    that a notice entered after the answer but dated before it marks it as if entered in order
    (``None``: not derivable here; the recorded mark is kept)."""
    cert = acc.certificate
    if cert is None:
        return None
    if acc.notice_sent is None:
        return "early"
    try:
        deadline = answer_deadline(acc.notice_sent, cert.not_after_utc, deadline_days=(
            acc.settings or _DEFAULT_SETTINGS).answer_deadline_days)
    except (OverflowError, ValueError):
        return None
    return "late" if day > deadline else "on-time"


def _observed_is_newer(acc: _Acc, facts: CertificateFacts) -> bool:
    if facts.is_ca:
        return False
    current = acc.certificate
    return current is None or facts.not_after_utc > current.not_after_utc


def fold(contract_id: str, events: Iterable[Event], *, at: datetime,
         settings: PolicySettings | None = None,
         problems: list[FoldProblem] | None = None) -> ContractState:
    """Derive ``contract_id``'s state from its events, ignoring those after ``at``.

    ``events`` must be in journal order (``at_utc``, then sequence). Raises
    :class:`UnknownContractError` when no application was accepted by ``at``. ``settings``
    carries the period rule of the Art.6(3) proviso. With ``problems``, an event that cannot be
    applied is skipped and described there instead of failing the whole contract.
    """
    acc = _Acc(settings=settings)
    for event in events:
        if event.at_utc > at:
            continue
        acc.count += 1
        if isinstance(event, _NEEDS_LIVE_CONTRACT) and acc.accepted is not None:
            ended = _after_termination(acc, event)
            if ended is not None:
                # Only a journal written before the ledger checked back-dated events against
                # later ones can hold this: the contract had ended, the event cannot apply.
                if problems is not None:
                    problems.append(FoldProblem(
                        contract_id=contract_id, kind=event.KIND, at_utc=event.at_utc,
                        message=f"ignored: the contract had terminated on {ended[0].isoformat()}"
                                f" ({ended[1]}) before it"))
                continue
        if problems is None:
            _apply(acc, event, contract_id)
            continue
        try:
            _apply(acc, event, contract_id)
        except (OverflowError, ValueError):
            problems.append(FoldProblem(
                contract_id=contract_id, kind=event.KIND, at_utc=event.at_utc,
                message="skipped: it holds a date the contract rules cannot evaluate"))
    return _finish(acc, contract_id, at, settings)


def _apply(acc: _Acc, event: Event, contract_id: str) -> None:
    day = tokyo_date(event.at_utc)
    match event:
        case ApplicationAccepted():
            acc.accepted = event
            acc.service = event.designated_service
        case CertificateBound() | CertificateObserved() if not facts_evaluable(event.facts):
            raise ValueError("a certificate the rules cannot evaluate")
        case CertificateBound():
            acc.not_after_of[event.facts.sha256] = event.facts.not_after_utc
            acc.new_certificate(event.facts, "bound", day)
        case CertificateObserved():
            if not event.facts.is_ca:
                acc.not_after_of[event.facts.sha256] = event.facts.not_after_utc
            acc.locations[f"{event.host}:{event.location}"] = event.facts.sha256
            acc.last_observed = event.at_utc
            if _observed_is_newer(acc, event.facts):
                acc.new_certificate(event.facts, "observed", day)
        case CertificateGone():
            acc.locations.pop(f"{event.host}:{event.location}", None)
        case NoticeSent():
            # A repeated notice is a reminder: the first one of the cycle starts the answer
            # deadline, and a reminder must not extend it. A notice about another certificate
            # (one that is no longer the contract's: a newer one observed and dated before
            # it) belongs to that certificate's cycle, not to this one's (Art.6(1)).
            if acc.notice_sent is None and _concerns_current(acc, event.certificate_sha256):
                acc.notice_sent = day
        case AnswerReceived() if not _concerns_current(acc, event.certificate_sha256):
            _apply_answer_about_another(acc, event)
        case AnswerReceived():
            if event.answer is Answer.DONT_RENEW and acc.certificate is not None:
                effective_on_non_renewal(acc.certificate.not_after_utc)  # may not overflow
            acc.answer = event.answer
            acc.answered_on = day
            if acc.first_answered_on is None:
                acc.first_answer, acc.first_answered_on = event.answer, day
            acc.answer_timing = _answer_timing(acc, day) or event.timing
            if event.answer is Answer.DONT_RENEW and acc.certificate is not None:
                acc.non_renewal = effective_on_non_renewal(acc.certificate.not_after_utc)
                acc.non_renewal_for = acc.certificate.sha256
            elif event.answer is Answer.RENEW:
                # The customer changed their mind before the day: the renewal stands.
                acc.non_renewal = None
                acc.non_renewal_for = None
        case CancellationArrived():
            acc.cancellation = Cancellation(
                arrived=event.arrived, requested=event.requested,
                effective=effective_on_cancellation(event.arrived, event.requested))
        case ContractChanged():
            acc.service = event.service
            acc.changes.append(ContractChange(service=event.service, accepted_on=day))
        case RenewalMade():
            renewed = event.certificate_sha256 or (
                acc.certificate.sha256 if acc.certificate else None)
            acc.renewals.append(Renewal(on=day, by_default=event.by_default,
                                        designated=event.designated,
                                        certificate_sha256=renewed))
            acc.renewal_made_for = renewed
        case Terminated():
            if acc.recorded is None or event.effective < acc.recorded[0]:
                acc.recorded = (event.effective, event.clause)


def _concerns_current(acc: _Acc, sha256: str | None) -> bool:
    """Whether a notice or answer naming certificate ``sha256`` concerns the contract's current
    certificate (``None``: a journal from before events named it, taken as the current one).
    A notice and an answer concern one validity period, that of the certificate they name."""
    return sha256 is None or acc.certificate is None or acc.certificate.sha256 == sha256


def _apply_answer_about_another(acc: _Acc, event: AnswerReceived) -> None:
    """An answer about a certificate that is not the contract's current one: a newer one became
    the contract's, dated before the answer (the agent observed it; a bind dated so is refused
    when the journal holds the answer). It stays with the certificate it names: it is no answer
    in the current certificate's cycle, but a "don't renew" still ends the contract on the last
    day of the certificate the customer answered about (Art.9(1)), and a "renew" withdraws only
    a "don't renew" about that same certificate."""
    sha = event.certificate_sha256
    not_after = acc.not_after_of.get(sha) if sha is not None else None
    if event.answer is Answer.DONT_RENEW and not_after is not None:
        acc.non_renewal = effective_on_non_renewal(not_after)
        acc.non_renewal_for = sha
    elif event.answer is Answer.RENEW and sha is not None and acc.non_renewal_for == sha:
        acc.non_renewal = None
        acc.non_renewal_for = None


def _renewable(acc: _Acc, cert: CertificateFacts) -> bool:
    """Whether ``cert`` can be renewed (not the Art.6(3) proviso's), remembered per certificate:
    the fold asks it for every event that needs a live contract."""
    if acc.renewable_cache is not None and acc.renewable_cache[0] == cert.sha256:
        return acc.renewable_cache[1]
    assert acc.accepted is not None  # noqa: S101 - checked by the callers
    renewable = not (acc.accepted.category is Category.III and not never_expires(cert)
                     and renewal_blocked_under(cert, acc.settings))
    acc.renewable_cache = (cert.sha256, renewable)
    return renewable


def _termination(acc: _Acc, *, renewable: bool | None = None) -> tuple[date, str] | None:
    """The day (and clause) the events folded so far end the contract on: the earliest of
    every termination they fix, or ``None``. ``renewable`` is the certificate's Art.6(3)
    standing when the caller has already worked it out."""
    candidates: list[tuple[date, str]] = []
    if acc.non_renewal is not None:
        candidates.append((acc.non_renewal, "Art.9(1)"))
    if acc.cancellation is not None:
        candidates.append((acc.cancellation.effective, "Art.9(2)"))
    if acc.recorded is not None:
        candidates.append(acc.recorded)
    if acc.proviso_end is not None:
        candidates.append((acc.proviso_end, PROVISO))
    cert = acc.certificate
    if cert is not None and not (_renewable(acc, cert) if renewable is None else renewable):
        candidates.append((end_of_validity(cert.not_after_utc), PROVISO))
    return min(candidates) if candidates else None


def _after_termination(acc: _Acc, event: Event) -> tuple[date, str] | None:
    """The termination (day, clause) that ``event`` comes after, or ``None`` when the
    contract was still in force on its day (see :func:`_is_after`)."""
    ended = _termination(acc)
    return ended if ended is not None and _is_after(ended, event) else None


def _finish(acc: _Acc, contract_id: str, at: datetime,
            settings: PolicySettings | None) -> ContractState:
    base = acc.accepted
    if base is None:
        raise UnknownContractError(
            f"no contract {contract_id!r} in the ledger as of {instant_to_tokyo_text(at)}: add "
            "it with `certescrow contract add`, or check the id and --at"
        )
    cert = acc.certificate
    renewable = _renewable(acc, cert) if cert is not None else None
    ended = _termination(acc, renewable=renewable)
    terminated_on, clause = ended if ended is not None else (None, None)
    # Built once, directly: this runs for every contract of a 100,000-contract sweep.
    return ContractState(
        contract_id=contract_id,
        at_utc=at,
        item=base.item,
        category=base.category,
        tier=base.tier,
        accepted_on=tokyo_date(base.at_utc),
        accepted_utc=base.at_utc,
        organisation_country=base.organisation_country,
        service=acc.service,
        certificate=acc.certificate,
        previous_certificate=acc.previous,
        certificate_source=acc.source,
        certificate_since=acc.certificate_since,
        notice_sent=acc.notice_sent,
        answer=acc.answer,
        answered_on=acc.answered_on,
        cancellation=acc.cancellation,
        non_renewal_effective=acc.non_renewal,
        termination_recorded=acc.recorded[0] if acc.recorded else None,
        termination_recorded_clause=acc.recorded[1] if acc.recorded else None,
        terminated_on=terminated_on,
        termination_clause=clause,
        answer_timing=acc.answer_timing,
        first_answer=acc.first_answer,
        first_answered_on=acc.first_answered_on,
        renewable=renewable,
        renewals=tuple(acc.renewals),
        changes=tuple(acc.changes),
        renewal_made_for=acc.renewal_made_for,
        locations=tuple(sorted(acc.locations)),
        last_observed_utc=acc.last_observed,
        events=acc.count,
    )


_NEEDS_LIVE_CONTRACT = (NoticeSent, AnswerReceived, CancellationArrived, ContractChanged,
                        CertificateBound, RenewalMade)
_AGENT_EVENTS = (CertificateObserved, CertificateGone)


def check_event(state: ContractState | None, event: Event, *,
                settings: PolicySettings | None = None,
                renewed: frozenset[str | None] = frozenset(),
                item: Item | None = None) -> Event:
    """Refuse an event the contract's state at the event's instant does not admit; return the
    event as it is to be recorded (an answer gets its ``timing`` mark).

    This is the one place an event is checked against the contract's state (the ledger calls
    it for every event it is asked to record, and :func:`check_history` again for the events
    a back-dated one precedes); the CLI decides nothing.

    ``state`` is the fold up to the event's instant (``None``: no such contract yet).
    ``renewed`` holds the certificates (sha256) whose renewal the whole journal records, later
    entries included: one renewal, one fee. ``item`` is the contract's catalogue item (its
    Art.8 product end), ``None`` when the catalogue does not know it. Agent observations are
    always admitted: the agent reports what it sees, whatever the contract. Each refusal is a
    :class:`ContractStateError` that cites the clause it rests on.
    """
    if isinstance(event, (CertificateObserved, CertificateGone)):
        return event
    cid = event.contract_id
    when = tokyo_date(event.at_utc).isoformat()
    if isinstance(event, ApplicationAccepted):
        if state is not None:
            raise ContractStateError(
                f"contract {cid!r} already exists (accepted on {state.accepted_on.isoformat()})"
                ": choose another id")
        return event
    if state is None:
        raise UnknownContractError(
            f"no contract {cid!r} in the ledger as of {instant_to_tokyo_text(event.at_utc)}: "
            "add it first with `certescrow contract add`, or check the id and --at")
    settings = settings or _DEFAULT_SETTINGS
    if isinstance(event, Terminated):
        if event.clause not in TERMINATION_CLAUSES:
            raise ContractStateError(
                f"a termination rests on one of the clauses that end a contract "
                f"({', '.join(TERMINATION_CLAUSES)}); {event.clause[:40]!r} is not one of them")
        # The record that it ended is admitted even after it took effect, but only when the
        # clause it cites does end this contract on that day.
        _check_termination(state, event, when, item)
        return event
    _check_live(state, event, when)
    if isinstance(event, (NoticeSent, AnswerReceived, RenewalMade)) \
            and state.certificate is None:
        raise ContractStateError(
            f"contract {cid!r} has no certificate yet: a renewal notice, answer or renewal "
            "concerns a certificate's validity period (Art.6); bind one first with "
            "`certescrow contract bind`")
    if isinstance(event, CertificateBound) and not facts_evaluable(event.facts):
        raise ContractStateError(
            f"the certificate {event.facts.sha256[:16]}… has validity dates the contract rules "
            "cannot evaluate (at the ends of the representable range); it is not recorded")
    if isinstance(event, CertificateBound):
        _check_bound_again(state, event)
    if isinstance(event, (NoticeSent, AnswerReceived, RenewalMade)):
        _check_names_current(state, event, when)
    if isinstance(event, NoticeSent):
        _check_notice(state, event, when)
    if isinstance(event, AnswerReceived):
        return _check_answer(state, event, settings)
    if isinstance(event, CancellationArrived):
        _check_cancellation(state, event, when)
    if isinstance(event, ContractChanged):
        _check_change(state, event, when, item)
    if isinstance(event, RenewalMade):
        return _check_renewal(state, event, when, settings, renewed, item)
    return event


def check_repeat(journal: Sequence[tuple[int, Event]], event: Event) -> None:
    """Refuse ``event`` (as :func:`check_event` admitted it) when it repeats an event the
    journal already holds and would record nothing new (docs/ledger.md, "Repeated events"):
    the same kind with the same content at the same instant (a command run twice), or a
    termination record with the same day and clause, whenever dated (it states one fact, in
    that clause's words, once). The refusal names the journal row that holds it.

    ``journal`` is the contract's events with their sequence numbers. Agent observations have
    their own idempotence (the ledger's sightings); the kinds whose second occurrence the
    terms rule out anyway (an application, a cancellation form, a renewal of one certificate,
    a change to the service in use, a bind of the bound certificate) are refused by
    :func:`check_event` in their clause's words before this runs.
    """
    if isinstance(event, _AGENT_EVENTS):
        return
    key = _repeat_key(event)
    for seq, old in journal:
        if old.KIND != event.KIND or _repeat_key(old) != key:
            continue
        if isinstance(event, Terminated):
            said = (f"a termination effective {event.effective.isoformat()} ({event.clause}) "
                    f"is already recorded: journal event #{seq}, dated "
                    f"{instant_to_tokyo_text(old.at_utc)}; the record says it once")
        else:
            said = (f"{kind_phrase(event)} dated {instant_to_tokyo_text(event.at_utc)} with "
                    f"the same content is already recorded: journal event #{seq}")
        raise ContractStateError(
            f"contract {event.contract_id!r}: {said}; nothing was recorded")


def _repeat_key(event: Event) -> object:
    """What makes two events the same record: a termination's day and clause (its reason is
    free text); any other event's every field, except the ledger's own mark on an answer."""
    if isinstance(event, Terminated):
        return (event.effective, event.clause)
    if isinstance(event, AnswerReceived):
        return replace(event, timing=None)
    return event


_FIXES_TERMINATION = (Terminated, AnswerReceived, CancellationArrived, CertificateBound)
"""Events that may fix a termination day earlier than their own (a "don't renew" answer after
the certificate's last day, a termination record, a certificate the proviso ends)."""


def needs_history_check(journal: Iterable[Event], event: Event) -> bool:
    """Whether :func:`check_history` has anything to check: an event that may fix a
    termination day, or one dated before an event already recorded (the usual case, a notice
    or a change entered as it happens, needs no second pass)."""
    return isinstance(event, _FIXES_TERMINATION) or any(
        old.at_utc > event.at_utc and not isinstance(old, _AGENT_EVENTS) for old in journal)


def check_history(contract_id: str, journal: Sequence[Event], event: Event, *,
                  settings: PolicySettings | None = None) -> None:
    """Refuse ``event`` (already admitted at its own instant by :func:`check_event`) when,
    with it, an event the journal holds would no longer be admitted.

    A back-dated event changes the state every later event was admitted in: a cancellation
    form entered last but dated April ends the contract before the notice recorded for
    November. Whether an event is accepted must not depend on the order it was typed in, so

    * each later event is checked again, in journal order, against the state with ``event``
      folded in, exactly as :func:`check_event` checked it when it came;
    * and the contract's final termination day with ``event`` must not come before the day of
      any event that needs a live contract, wherever it stands in the journal (a termination
      recorded today but effective in February, before a certificate bound in April, is
      refused; one effective on the day of the bind is not: the contract runs through it).

    ``journal`` is the contract's events in journal order (``at_utc``, then sequence) without
    ``event``. One incremental fold; the second pass only runs to word a refusal.
    """
    settings = settings or _DEFAULT_SETTINGS
    later: list[Event] = []
    acc = _Acc(settings=settings)
    for old in journal:
        if old.at_utc > event.at_utc:
            later.append(old)
        else:
            _apply_quietly(acc, old, contract_id)
    _apply_quietly(acc, event, contract_id)
    when = tokyo_date(event.at_utc).isoformat()
    for old in later:
        if isinstance(old, _NEEDS_LIVE_CONTRACT):
            state = _finish(acc, contract_id, old.at_utc, settings)
            try:
                check_event(state, old, settings=settings)
            except ContractStateError as exc:
                if not _admitted_without(contract_id, journal, old, settings):
                    # Already ruled out without ``event`` (a journal from before a check, or
                    # a newer certificate the agent observed): not this event's doing.
                    _apply_quietly(acc, old, contract_id)
                    continue
                # Instants: "later" is by the instant, and both may fall on one day. The
                # reason is said once, and so is "nothing was recorded".
                why = str(exc).removesuffix("; nothing was recorded")
                raise ContractStateError(
                    f"{kind_phrase(event)} dated {instant_to_tokyo_text(event.at_utc)} is "
                    f"refused: the journal already holds {kind_phrase(old)} dated "
                    f"{instant_to_tokyo_text(old.at_utc)} that it would rule out ({why})"
                    f"{_way_for_backdated(event, old, later)}; nothing was recorded") from None
        _apply_quietly(acc, old, contract_id)
    ended = _termination(acc)
    if ended is None:
        return
    offenders = [e for e in journal if _is_after(ended, e)]
    if _is_after(ended, event):
        # A "don't renew" on the certificate's last day fixes that very day (Art.9(1)): it came
        # while the contract was in force. One after the last day could not have.
        offenders.append(event)
    if not offenders:
        return
    # Events already after the end without ``event`` (a journal from before these checks,
    # which the fold skips) are not this event's doing.
    before = _Acc(settings=settings)
    for old in journal:
        _apply_quietly(before, old, contract_id)
    ended_before = _termination(before)
    offenders = [e for e in offenders if e is event or ended_before is None
                 or not _is_after(ended_before, e)]
    if not offenders:
        return
    old = offenders[0]
    day, clause = ended
    if old is event:
        raise ContractStateError(
            f"{kind_phrase(event)} dated {when} (Asia/Tokyo) is refused: with it the contract "
            f"would have terminated on {day.isoformat()} ({clause}), before its own day, "
            "and no event can apply to a contract after its termination has taken effect; "
            "nothing was recorded")
    what = (f"a termination effective {event.effective.isoformat()} ({event.clause})"
            if isinstance(event, Terminated)
            else f"{kind_phrase(event)} dated {when} (Asia/Tokyo)")
    raise ContractStateError(
        f"{what} is refused: with it the contract terminates on {day.isoformat()} ({clause}), "
        f"but the journal already holds {kind_phrase(old)} dated "
        f"{tokyo_date(old.at_utc).isoformat()}, after that day, and no event can apply "
        "to a contract after its termination has taken effect; nothing was recorded")


def _admitted_without(contract_id: str, journal: Sequence[Event], old: Event,
                      settings: PolicySettings) -> bool:
    """Whether ``old`` (a journal event) is admitted by the journal before it alone, as
    :func:`check_event` checks it. Runs only to word a refusal."""
    acc = _Acc(settings=settings)
    for earlier in journal:
        if earlier is old:
            break
        _apply_quietly(acc, earlier, contract_id)
    try:
        check_event(_finish(acc, contract_id, old.at_utc, settings), old, settings=settings)
    except ContractStateError:
        return False
    return True


def _way_for_backdated(event: Event, old: Event, later: Sequence[Event]) -> str:
    """What the desk can do when a back-dated certificate would take a recorded notice, answer
    or renewal (``old``) away from the certificate it names: bind it dated after the last event
    of the journal that names another certificate."""
    def names_another(e: Event) -> bool:
        return isinstance(e, (NoticeSent, AnswerReceived, RenewalMade)) \
            and isinstance(event, CertificateBound) \
            and e.certificate_sha256 not in (None, event.facts.sha256)

    if not names_another(old):
        return ""
    last = max((e.at_utc for e in later if names_another(e)), default=old.at_utc)
    return (f". The recorded {old.KIND} stays with the certificate it names; if the customer "
            "had a successor by then, bind it dated after the events about its predecessor "
            f"(`certescrow contract bind ID FILE --at TIME`, TIME after "
            f"{instant_to_tokyo_text(last)})")


def _is_after(ended: tuple[date, str], event: Event) -> bool:
    """Whether ``event`` needs a live contract and comes after the termination ``ended`` took
    effect. The contract runs through its termination day, whatever the clause (Art.9(1) "runs
    through that day", Art.6(3) "at the end of the last day of validity"), so an event on that
    day still applies; from the next Tokyo day on, nothing does. This is the one place the rule
    is written (:func:`_check_live` and :attr:`ContractState.status` say the same)."""
    if not isinstance(event, _NEEDS_LIVE_CONTRACT):
        return False
    return tokyo_date(event.at_utc) > ended[0]


def _apply_quietly(acc: _Acc, event: Event, contract_id: str) -> None:
    """Apply ``event`` as :func:`fold` does, skipping what it skips."""
    acc.count += 1
    if isinstance(event, _NEEDS_LIVE_CONTRACT) and acc.accepted is not None \
            and _after_termination(acc, event) is not None:
        return
    try:
        _apply(acc, event, contract_id)
    except (OverflowError, ValueError):
        return


def _check_live(state: ContractState, event: Event, when: str) -> None:
    """Any event after the termination took effect is refused: from the Tokyo day after the
    termination day (:func:`_is_after`). The termination day itself is still the contract's,
    so a renewable certificate bound on the last day of one the Art.6(3) proviso ends still
    saves it."""
    ended = state.terminated_on
    if ended is None or state.termination_clause is None:
        return
    if _is_after((ended, state.termination_clause), event):
        raise ContractStateError(
            f"contract {event.contract_id!r} terminated on {ended.isoformat()} "
            f"({state.termination_clause}); {kind_phrase(event)} on {when} cannot apply to it")


def _deadline(state: ContractState, settings: PolicySettings) -> date | None:
    cert = state.certificate
    if state.notice_sent is None or cert is None:
        return None
    return answer_deadline(state.notice_sent, cert.not_after_utc,
                           deadline_days=settings.answer_deadline_days)


def _check_names_current(state: ContractState,
                         event: NoticeSent | AnswerReceived | RenewalMade, when: str) -> None:
    """A notice, an answer and a renewal concern the validity period of one certificate, the
    one they name (Art.6(1)-(3)): that must be the contract's certificate on their day. The
    ledger names the current one when it records them, so this refuses what would make an
    event already recorded speak of another certificate than the contract's: a certificate
    bound, back-dated, before a notice about its predecessor (:func:`check_history` checks the
    later events again). Entered in date order, the notice would have been about the successor;
    the journal keeps what was sent about which certificate, and is never rewritten."""
    sha = event.certificate_sha256
    cert = state.certificate
    assert cert is not None  # noqa: S101 - checked by the caller
    if sha is None or sha == cert.sha256:
        return
    if isinstance(event, NoticeSent):
        what, clause = "a renewal notice", "Art.6(1)"
    else:
        what = "an answer to the renewal notice" if isinstance(event, AnswerReceived) \
            else "a renewal"
        clause = "Art.6(3)" if state.category is Category.III else "Art.6(2)"
    since = state.certificate_since.isoformat() if state.certificate_since else "-"
    raise ContractStateError(
        f"contract {event.contract_id!r}: {kind_phrase(event)} dated {when} (Asia/Tokyo) is "
        f"about certificate {sha[:16]}…, which is not the contract's certificate on that day "
        f"({cert.sha256[:16]}… is, since {since}); {what} concerns the validity period of the "
        f"contract's certificate ({clause}); nothing was recorded")


def _check_bound_again(state: ContractState, event: CertificateBound) -> None:
    """Binding the certificate that is already the contract's bound certificate changes
    nothing (the same certificate starts no new renewal cycle): a repeated record, refused
    rather than written twice (docs/ledger.md, "Repeated events"). A certificate the agent
    observed may still be bound: the operator's declaration is news."""
    cert = state.certificate
    if cert is None or cert.sha256 != event.facts.sha256 or state.certificate_source != "bound":
        return
    since = state.certificate_since.isoformat() if state.certificate_since else "-"
    raise ContractStateError(
        f"contract {event.contract_id!r}: certificate {cert.sha256[:16]}… is already bound to "
        f"it (its certificate since {since}, Asia/Tokyo): the journal already holds a "
        "certificate-bound event for it, and binding it again changes nothing; nothing was "
        "recorded")


def _check_answer(state: ContractState, event: AnswerReceived,
                  settings: PolicySettings) -> AnswerReceived:
    """A "don't renew" after a renewal of the current certificate, by default or explicit, is
    refused: the renewal is recorded and billed (Appx1.1), and an Art.9(1) end at the close of
    this certificate would leave it never taking effect; the way out is Art.9(2). A renewal of
    an earlier certificate does not count: once the next one is bound, an answer belongs to
    the new cycle. Any other answer is recorded, marked early (no notice yet) or late (after
    the deadline)."""
    cert = state.certificate
    assert cert is not None  # noqa: S101 - checked by the caller
    made = [r for r in state.renewals if r.certificate_sha256 in (None, cert.sha256)]
    if event.answer is Answer.DONT_RENEW and made:
        how = ("taken as made by default (Art.6(2))" if made[0].by_default
               else f"recorded on {made[0].on.isoformat()} and its fee is owed (Appx1.1)")
        raise ContractStateError(
            f"contract {event.contract_id!r}: the renewal of the current certificate was "
            f"already {how}, so a \"don't renew\" answer can no longer end the contract under "
            "Art.9(1); the customer's way out is a cancellation form under Art.9(2): record it "
            "with `certescrow contract cancel ID --arrived DATE`")
    deadline = _deadline(state, settings)
    if deadline is None:
        timing = "early"
    elif tokyo_date(event.at_utc) > deadline:
        timing = "late"
    else:
        timing = "on-time"
    return replace(event, timing=timing)


def _check_cancellation(state: ContractState, event: CancellationArrived, when: str) -> None:
    cid = event.contract_id
    if event.arrived > tokyo_date(event.at_utc):
        raise ContractStateError(
            f"the cancellation form cannot have arrived on {event.arrived.isoformat()}, "
            f"after the day it is dated ({when})")
    if event.arrived < state.accepted_on:
        raise ContractStateError(
            f"the cancellation form arrived on {event.arrived.isoformat()}, before contract "
            f"{cid!r} was accepted ({state.accepted_on.isoformat()})")
    if state.cancellation is not None:
        raise ContractStateError(
            f"contract {cid!r} already has a cancellation form (arrived "
            f"{state.cancellation.arrived.isoformat()}, effective "
            f"{state.cancellation.effective.isoformat()} under Art.9(2)): it fixed the "
            "termination day, and a second form is not recorded")
    cert = state.certificate
    if cert is None:
        # 第9条第2項: 「SSL サーバ証明書の有効期間中に」 - the form counts under Art.9(2) only
        # when it arrives during a certificate's validity period. Before any certificate is
        # the contract's there is no validity period: the terms fix no day for such a form.
        raise ContractStateError(
            f"contract {cid!r} had no certificate on {event.arrived.isoformat()} "
            "(Asia/Tokyo), the day the cancellation form arrived: Art.9(2) applies only to a "
            "form received during the certificate's validity period, and there was none; if "
            "a certificate was the contract's by then, bind it first (`certescrow contract bind "
            "--at`)")
    prev = state.previous_certificate
    if prev is not None and event.arrived < tokyo_date(cert.not_before_utc) \
            and tokyo_date(prev.not_before_utc) <= event.arrived \
            <= end_of_validity(prev.not_after_utc):
        # A successor bound before its validity starts: the form arrived during the validity
        # period of the certificate it succeeds, which is what Art.9(2) asks.
        return
    check_cancellation_admissible(event.arrived, cert.not_after_utc,
                                  not_before_utc=cert.not_before_utc)


def _check_change(state: ContractState, event: ContractChanged, when: str,
                  item: Item | None) -> None:
    """Art.5 is a change of the service that uses the certificate, and its acceptance owes the
    one-time fee (Art.10): a "change" to the service already in use changes nothing and must
    not bill it. An abolished item (Art.8, from its product end, as for an application or a
    renewal) has no service left to change to."""
    cid = event.contract_id
    _refuse_abolished(state, item, event.at_utc,
                      f"contract {cid!r}: a change to service {event.service!r} on {when} is "
                      "refused", "a change")
    if event.service == state.service:
        since = next((c.accepted_on for c in reversed(state.changes)
                      if c.service == event.service), None)
        origin = (f"since the change accepted on {since.isoformat()}" if since is not None
                  else "since its application")
        raise ContractStateError(
            f"contract {cid!r} already uses service {event.service!r} ({origin}): Art.5 is a "
            "change of the service that uses the certificate, and a change to the service in "
            "use changes nothing, so no one-time fee is owed (Art.10); nothing was recorded")


def _refuse_abolished(state: ContractState, item: Item | None, at_utc: datetime,
                      refused: str, what: str, way: str = "") -> None:
    """Art.8: from its product end an item of category I/II is abolished, and ``what`` (a
    renewal, a change) would bill a service that no longer exists: refused, in ``refused``'s
    words, with ``way`` out if there is one."""
    if item is None or not state.category.provider_issued or not abolished(item, at=at_utc):
        return
    assert item.product_end is not None  # noqa: S101 - abolished() checked it
    raise ContractStateError(
        f"{refused}: its item {item.handle!r} is abolished, the CA ended the product on "
        f"{item.product_end.isoformat()} (Art.8); {what} would bill a service that no longer "
        f"exists; nothing was recorded{way}")


def _check_renewal(state: ContractState, event: RenewalMade, when: str,
                   settings: PolicySettings, renewed: frozenset[str | None],
                   item: Item | None) -> RenewalMade:
    cid = event.contract_id
    cert = state.certificate
    assert cert is not None  # noqa: S101 - checked by the caller
    sha = event.certificate_sha256 or cert.sha256
    if sha in renewed or any(r.certificate_sha256 == sha for r in state.renewals):
        raise ContractStateError(
            f"contract {cid!r}: the renewal of certificate {sha[:16]}… is already recorded; "
            "fees are per acquisition or renewal (Appx1.1, Appx1.3): one renewal, one fee")
    if state.category is Category.III and renewal_blocked_under(cert, settings):
        raise ContractStateError(
            f"contract {cid!r} cannot be renewed: its certificate's validity period is within "
            f"90 days (Art.6(3) proviso); the contract ends with the certificate on "
            f"{end_of_validity(cert.not_after_utc).isoformat()}, unless a certificate that can "
            "be renewed (validity longer than 90 days) is bound by then "
            "(`certescrow contract bind`); nothing was recorded")
    _refuse_abolished(state, item, event.at_utc,
                      f"contract {cid!r} cannot be renewed on {when}", "a renewal",
                      ". For the customer to keep a certificate, a new contract for an item "
                      "the catalogue still offers is the way (`certescrow contract add`)")
    if event.designated is not None and not event.by_default:
        # Art.10: only the fee of a renewal taken as made by default (Art.6(2)) is owed from a
        # moment the provider designates; an accepted renewal's is owed from its acceptance.
        raise ContractStateError(
            f"contract {cid!r}: a renewal not by default with a designated billing day "
            f"({event.designated.isoformat()}) is refused: only a default renewal's fee is "
            "owed from a designated moment (Art.10, Art.6(2)); an accepted renewal's is owed "
            "from its acceptance; nothing was recorded")
    if event.by_default:
        _check_default_renewal(state, event, when, settings)
    if state.terminated_on is not None:
        raise ContractStateError(_fixed_end_refusal(state, when))
    if event.designated is not None and event.designated < tokyo_date(event.at_utc):
        raise ContractStateError(
            f"the designated billing day {event.designated.isoformat()} is before the day the "
            f"renewal was made ({when}); Art.10 requires a moment on or after it")
    return replace(event, certificate_sha256=sha)  # the journal names what was renewed


def _check_default_renewal(state: ContractState, event: RenewalMade, when: str,
                           settings: PolicySettings) -> None:
    cid = event.contract_id
    if state.category is Category.III:
        raise ContractStateError(
            f"contract {cid!r} is category III: it has no renewal by default (Art.6(3)); no "
            "answer is an overdue answer to escalate, and the customer renews the certificate "
            "themselves")
    deadline = _deadline(state, settings)
    if deadline is None:
        raise ContractStateError(
            f"contract {cid!r}: no renewal notice was recorded for this certificate, so no "
            "renewal can be taken as made by default (Art.6(2): the default follows the notice "
            "and an unanswered deadline); record the notice with `certescrow contract notify`")
    notice = state.notice_sent
    assert notice is not None  # noqa: S101 - _deadline found it
    if deadline <= notice:
        # Art.6(2): the default follows a notice and a deadline the customer let pass after
        # it. A deadline on (or, in a journal from before notices were checked, before) the
        # notice's own day left no day to answer in.
        raise ContractStateError(
            f"contract {cid!r}: the answer deadline {deadline.isoformat()} is not after the "
            f"renewal notice of {notice.isoformat()} ({settings.answer_deadline_days} day(s) "
            "after the notice, and never later than the end of validity: Art.6(2) and "
            "answer_deadline_days), so the customer had no day to answer and no renewal can be "
            "taken as "
            "made by default (Art.6(2)); ask the customer for their answer, and record a "
            "renewal (not by default) if they answer renew; nothing was recorded")
    # Art.6(2) takes the renewal as made only when no answer came (当該通知が無かった場合).
    # An answer by the deadline rules the default out, whichever it was, and whatever came
    # later (CONTRACT.md: no renewal by default after a timely "don't renew", even when a late
    # "renew" followed). One recorded before the notice (marked early) counts too: it concerns
    # this certificate (a new one clears it), the customer gave it, and the ledger records it
    # rather than discarding it (CONTRACT.md "answers before any notice are recorded and marked
    # early"), so the provider cannot say no answer came. A late one (after the deadline) does
    # not: the default was already due. A "renew" is said before the deadline's own refusal
    # (the renewal the customer asked for is the way), a "don't renew" after it.
    timely = (state.first_answered_on is not None and state.first_answered_on <= deadline)
    if timely and state.answer is Answer.RENEW:
        raise _answered_in_time(state, deadline)
    if tokyo_date(event.at_utc) <= deadline:
        raise ContractStateError(
            f"contract {cid!r}: the answer deadline {deadline.isoformat()} has not passed on "
            f"{when}; a renewal is taken as made by default only when no answer came by then "
            "(Art.6(2))")
    if timely:
        raise _answered_in_time(state, deadline)


def _answered_in_time(state: ContractState, deadline: date) -> ContractStateError:
    """The refusal of a renewal by default when the customer's first answer came by
    ``deadline``: what they answered (and answered last, if that differs), and the way on."""
    cid = state.contract_id
    first, first_on = state.first_answer, state.first_answered_on
    assert first is not None  # noqa: S101 - the caller checked
    assert first_on is not None  # noqa: S101 - set with it
    said = "renew" if first is Answer.RENEW else "don't renew"
    early = (" (before the notice, an answer all the same)"
             if state.answer_timing == "early" and state.answered_on == first_on else "")
    later = ""
    if state.answered_on is not None and state.answered_on != first_on:
        later = (f" (and {state.answer.value if state.answer else '-'} on "
                 f"{state.answered_on.isoformat()})")
    if state.answer is Answer.RENEW:
        way = ("record the renewal the customer asked for without --default "
               f"(`certescrow contract renew {cid} --at TIME`): its fee is owed from the "
               "acceptance of the renewal (Art.10), not from a designated day")
    else:
        way = ("the contract ends under Art.9(1). If the customer has changed their mind, "
               f"record their \"renew\" answer (`certescrow contract answer {cid} renew`), "
               "then the renewal (not by default)")
    return ContractStateError(
        f"contract {cid!r}: the customer answered \"{said}\" on {first_on.isoformat()}{early}"
        f"{later}, by the deadline {deadline.isoformat()}; there is no renewal by default after "
        f"a timely answer (Art.6(2)); nothing was recorded; {way}")


def _fixed_end_refusal(state: ContractState, when: str) -> str:
    """Why a renewal is refused when the contract's termination is already fixed on the
    renewal's day, in the words of the clause that fixed it, and what the desk can do."""
    cid = state.contract_id
    day = state.terminated_on
    clause = state.termination_clause
    assert day is not None  # noqa: S101 - the caller checked
    assert clause is not None  # noqa: S101 - set with the day
    new_contract = ("for the customer to keep the service, a new contract is the way "
                    "(`certescrow contract add`)")
    if clause == "Art.9(1)" and state.non_renewal_effective == day:
        why = "the customer answered \"don't renew\"" + (
            f" on {state.answered_on.isoformat()}"
            if state.answer is Answer.DONT_RENEW and state.answered_on is not None else "")
        way = ("if the customer has changed their mind, record their \"renew\" answer first "
               f"(`certescrow contract answer {cid} renew --at TIME`, on or before "
               f"{day.isoformat()}): it withdraws the \"don't renew\" and lifts the Art.9(1) "
               "termination; then record the renewal")
    elif clause == "Art.9(2)" and state.cancellation is not None \
            and state.cancellation.effective == day:
        why = f"a cancellation form arrived on {state.cancellation.arrived.isoformat()}"
        way = f"a cancellation form cannot be withdrawn in the ledger: {new_contract}"
    elif clause == PROVISO:
        why = "its certificate's validity period is within 90 days and it ends with it"
        way = ("only a certificate that can be renewed (validity longer than 90 days), bound "
               f"on or before {day.isoformat()}, lifts it (`certescrow contract bind`); "
               f"otherwise {new_contract}")
    else:
        why = "a termination was recorded"
        way = new_contract
    return (f"contract {cid!r} cannot be renewed on {when}: its termination is already fixed "
            f"for {day.isoformat()} ({clause}: {why}); a renewal would bill a certificate the "
            f"customer is leaving, and nothing was recorded; {way}")


def _check_notice(state: ContractState, event: NoticeSent, when: str) -> None:
    """Art.6(1): the notice goes out by the day the validity period ends (第6条第1項「有効期間が
    経過する日までに」: "by" that day, the last day itself included; the Tokyo date of
    ``notAfter``, as in Art.9(1)). One dated after it is refused: its answer deadline would
    fall before it, and a default renewal could rest on it."""
    cert = state.certificate
    assert cert is not None  # noqa: S101 - checked by the caller
    if never_expires(cert):
        return
    last_day = end_of_validity(cert.not_after_utc)
    if notice_closed(cert.not_after_utc, tokyo_date(event.at_utc)):
        raise ContractStateError(
            f"contract {event.contract_id!r}: a renewal notice dated {when} (Asia/Tokyo) is "
            f"refused: the certificate's validity period ended on {last_day.isoformat()}, and "
            "Art.6(1) has the notice sent by the day the validity period ends (that day "
            "included); nothing was recorded. If the customer has a successor certificate, "
            "bind it (`certescrow contract bind`) and send the notice about it")


def _check_termination(state: ContractState, event: Terminated, when: str,
                       item: Item | None) -> None:
    """A termination record is admitted only when its clause's own conditions hold on its
    day: it states a fact in that clause's words (CONTRACT.md "What the ledger refuses"), and a
    record that no clause supports would end (and stop billing) a contract the terms keep.

    * never before the contract was accepted (Art.2: its events begin with acceptance);
    * ``Art.9(2)``: a cancellation form is recorded, and the day is the day it takes effect
      (the later of arrival + 30 days and the day the customer named), no other;
    * ``Art.9(1)``: a "don't renew" answer fixed the termination, and the day is the one it
      fixed, the last day of the certificate's validity;
    * ``Art.6(3) proviso``: category III with a certificate whose validity is within 90 days
      (or an earlier such certificate that fixed the end), and the day is its last day;
    * ``Art.8``: category I/II, the catalogue knows the item's product end, and the day is no
      earlier than the day before it: the item is abolished *on* its product end (the day the
      ledger starts refusing applications, renewals and changes), so the product's last day is
      the last day the contract can be made to run through under it.
    """
    cid = state.contract_id
    effective = event.effective
    clause = event.clause
    said = f"a termination effective {effective.isoformat()} ({clause}) is refused"
    if effective < state.accepted_on:
        raise ContractStateError(
            f"{said}: contract {cid!r} was accepted on {state.accepted_on.isoformat()}, and "
            "a contract's life begins with its acceptance (Art.2); nothing was recorded")
    if clause == "Art.9(2)":
        form = state.cancellation
        if form is None:
            raise ContractStateError(
                f"{said}: Art.9(2) ends a contract on a cancellation form, and none is "
                f"recorded for contract {cid!r} by {when}; record the form with `certescrow "
                "contract cancel ID --arrived DATE`, which fixes the day itself; nothing was "
                "recorded")
        if effective != form.effective:
            # The form fixes the day; a record naming another would leave the journal saying
            # one day and the state (the earliest termination) another.
            raise ContractStateError(
                f"{said}: under Art.9(2) the form that arrived on {form.arrived.isoformat()} "
                f"takes effect on the later of the day 30 days have passed from its arrival "
                f"({add_days(form.arrived, CANCELLATION_NOTICE_DAYS).isoformat()}) and the day "
                f"the customer named ({form.requested.isoformat() if form.requested else '-'})"
                f": {form.effective.isoformat()}, not another day; nothing was recorded")
    elif clause == "Art.9(1)":
        fixed = state.non_renewal_effective
        if fixed is None:
            raise ContractStateError(
                f"{said}: Art.9(1) ends a contract after the customer answered \"don't "
                f"renew\" (Art.6(2)/(3)), and no such answer stands for contract {cid!r} by "
                f"{when}; record it with `certescrow contract answer ID dont-renew`, which fixes "
                "the day itself; nothing was recorded")
        if effective != fixed:
            raise ContractStateError(
                f"{said}: under Art.9(1) the termination takes effect on the day the "
                f"certificate's validity period ends, {fixed.isoformat()} (Asia/Tokyo), not "
                "another day; nothing was recorded")
    elif clause == PROVISO:
        cert = state.certificate
        proviso_day = state.terminated_on if state.termination_clause == PROVISO else (
            end_of_validity(cert.not_after_utc)
            if cert is not None and state.renewable is False else None)
        if state.category is not Category.III or proviso_day is None:
            what = (f"contract {cid!r} is category {state.category.value}"
                    if state.category is not Category.III else
                    f"contract {cid!r} has no certificate whose validity is within 90 days"
                    + (" (its certificate can be renewed)" if cert is not None else ""))
            raise ContractStateError(
                f"{said}: the Art.6(3) proviso ends a category III contract whose "
                f"certificate's validity period is within 90 days, and {what} by {when}; "
                "nothing was recorded")
        if effective != proviso_day:
            raise ContractStateError(
                f"{said}: under the Art.6(3) proviso the contract ends with its certificate, at "
                f"the end of its last day of validity, {proviso_day.isoformat()}, not another "
                "day; nothing was recorded")
    elif clause == "Art.8":
        if not state.category.provider_issued:
            raise ContractStateError(
                f"{said}: Art.8 abolishes category I/II items when their CA ends the product, "
                f"and contract {cid!r} is category {state.category.value} (its certificate is "
                "the customer's own); nothing was recorded")
        end = item.product_end if item is not None else None
        if end is None:
            raise ContractStateError(
                f"{said}: Art.8 applies when the CA ends the product the item corresponds to, "
                f"and the catalogue knows no product end for {state.item!r}; nothing was "
                "recorded")
        last = add_days(end, -1)
        if effective < last:
            # The item is abolished from its product end on (``rules.art8.abolished``, as for
            # an application, a renewal or a change), and the contract runs through its
            # termination day: the last day it can run under the item is the day before.
            raise ContractStateError(
                f"{said}: the CA ends the product behind {state.item!r} on {end.isoformat()}, "
                f"and Art.8 abolishes the item from that day on (abolished from "
                f"{end.isoformat()}); the contract runs through its termination day, so the "
                f"termination takes effect on {last.isoformat()} at the earliest, the "
                "product's last day; nothing was recorded")


# ---------------------------------------------------------------------- the projection's form
STATE_FORMAT = 4
"""Version of :func:`state_to_json`'s form (the ledger's projection stores it; a change of form
is a schema migration that rebuilds the projection), and of the fold's rules that fill it: it
is part of the projection's ``fold_key``, so rows folded by other rules are never read as they
are (readers fold those contracts from the journal until a write or ``policy verify --repair``
rewrites them). 2: the Art.6(3) proviso's end, fixed by a certificate that cannot be renewed,
is neither lifted nor moved by a successor that cannot be renewed either. 3: the first answer
for the certificate is kept (``first_answer``): one given by the deadline rules a default
renewal out, whatever answer came later. 4: a notice and an answer stay with the
certificate they name: one about a certificate that is no longer the contract's is no notice or
answer of the current certificate's cycle, and a "don't renew" about it ends the contract on
that certificate's last day (Art.9(1))."""


def state_to_json(state: ContractState) -> dict[str, object]:
    """Every field of ``state`` except ``at_utc`` (the instant asked about is the reader's),
    in a form :func:`state_from_json` reads back exactly: the ledger's projection keeps each
    contract's folded state in it, so that a sweep need not refold every journal."""
    from .events import facts_to_json, instant_to_text

    def day(value: date | None) -> str | None:
        return None if value is None else value.isoformat()

    c = state.cancellation
    return {
        "contract": state.contract_id,
        "item": state.item,
        "category": state.category.value,
        "tier": state.tier.value if state.tier else None,
        "accepted_on": state.accepted_on.isoformat(),
        "accepted_utc": None if state.accepted_utc is None
        else instant_to_text(state.accepted_utc),
        "country": state.organisation_country,
        "service": state.service,
        "certificate": None if state.certificate is None
        else facts_to_json(state.certificate),
        "previous": None if state.previous_certificate is None
        else facts_to_json(state.previous_certificate),
        "source": state.certificate_source,
        "since": day(state.certificate_since),
        "notice_sent": day(state.notice_sent),
        "answer": state.answer.value if state.answer else None,
        "answered_on": day(state.answered_on),
        "cancellation": None if c is None else [c.arrived.isoformat(), day(c.requested),
                                                c.effective.isoformat()],
        "non_renewal": day(state.non_renewal_effective),
        "recorded": day(state.termination_recorded),
        "recorded_clause": state.termination_recorded_clause,
        "terminated_on": day(state.terminated_on),
        "clause": state.termination_clause,
        "timing": state.answer_timing,
        "first_answer": [state.first_answer.value, state.first_answered_on.isoformat()]
        if state.first_answer is not None and state.first_answered_on is not None else None,
        "renewable": state.renewable,
        "renewals": [[r.on.isoformat(), r.by_default, day(r.designated), r.certificate_sha256]
                     for r in state.renewals],
        "changes": [[ch.service, ch.accepted_on.isoformat()] for ch in state.changes],
        "renewal_made_for": state.renewal_made_for,
        "locations": list(state.locations),
        "last_observed": None if state.last_observed_utc is None
        else instant_to_text(state.last_observed_utc),
        "events": state.events,
    }


def state_from_json(raw: dict[str, object], *, at: datetime) -> ContractState:
    """The state :func:`state_to_json` wrote, as of ``at`` (the caller knows no event of the
    contract is dated after ``at``). Raises ``KeyError``/``ValueError``/``TypeError`` on a
    damaged form."""
    from typing import Any, cast

    from .events import facts_from_json, text_to_instant

    r = cast(dict[str, Any], raw)

    def day(value: Any) -> date | None:
        return None if value is None else date.fromisoformat(value)

    c = r["cancellation"]
    return ContractState(
        contract_id=str(r["contract"]),
        at_utc=at,
        item=str(r["item"]),
        category=Category(r["category"]),
        tier=None if r["tier"] is None else Tier(r["tier"]),
        accepted_on=date.fromisoformat(r["accepted_on"]),
        accepted_utc=None if r["accepted_utc"] is None else text_to_instant(r["accepted_utc"]),
        organisation_country=str(r["country"]),
        service=r["service"],
        certificate=None if r["certificate"] is None else facts_from_json(r["certificate"]),
        previous_certificate=None if r["previous"] is None else facts_from_json(r["previous"]),
        certificate_source=r["source"],
        certificate_since=day(r["since"]),
        notice_sent=day(r["notice_sent"]),
        answer=None if r["answer"] is None else Answer(r["answer"]),
        answered_on=day(r["answered_on"]),
        cancellation=None if c is None else Cancellation(
            arrived=date.fromisoformat(c[0]), requested=day(c[1]),
            effective=date.fromisoformat(c[2])),
        non_renewal_effective=day(r["non_renewal"]),
        termination_recorded=day(r["recorded"]),
        termination_recorded_clause=r["recorded_clause"],
        terminated_on=day(r["terminated_on"]),
        termination_clause=r["clause"],
        answer_timing=r["timing"],
        first_answer=None if r["first_answer"] is None else Answer(r["first_answer"][0]),
        first_answered_on=None if r["first_answer"] is None
        else date.fromisoformat(r["first_answer"][1]),
        renewable=r["renewable"],
        renewals=tuple(Renewal(on=date.fromisoformat(on), by_default=bool(by_default),
                               designated=day(designated), certificate_sha256=sha)
                       for on, by_default, designated, sha in r["renewals"]),
        changes=tuple(ContractChange(service=str(service), accepted_on=date.fromisoformat(on))
                      for service, on in r["changes"]),
        renewal_made_for=r["renewal_made_for"],
        locations=tuple(str(x) for x in r["locations"]),
        last_observed_utc=None if r["last_observed"] is None
        else text_to_instant(r["last_observed"]),
        events=int(r["events"]),
    )
