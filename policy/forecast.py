"""The CA/Browser Forum maximum-validity schedule (SC-081) and what it does to the contract.

The terms were written for one-year certificates. BR §6.3.2 now shortens publicly trusted TLS
certificates step by step (398 → 200 → 100 → 47 days), which changes the terms' effect without
changing a word of them: a "1 year" tier can no longer be filled by one certificate, and once
certificates are 90 days or shorter, Art.6(3)'s proviso makes a BYO contract non-renewable. This
module lets an operator see that coming, per tier and per contract.

The schedule is data (``policy/data/sc081.toml``). A day is 86,400 s and any part of a day more
counts as a further day (BR §6.3.2), so an N-day maximum is ``N × 86,400`` seconds of validity
period (inclusive, as Art.3 counts it). Step dates are UTC days compared with ``notBefore``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policy.category import Category
from policy.datafile import DATA_FILE_MAX, DataFileError, read_data_file
from policy.errors import CatalogueError
from policy.facts import CertificateFacts
from policy.periods import DEFAULT_PERIOD_RULE, Period, PeriodRule, days_period
from policy.rules.art6 import (
    NO_WELL_DEFINED_EXPIRATION_UTC,
    PROVISO_DAYS,
    art6_3_cannot_renew,
    never_expires,
)
from policy.tiers import TIERS_ASCENDING, Tier, classify, tier_period, validity_period
from policy.tokyo import tokyo_date
from policy.tomlparse import TomlSyntaxError, parse_toml

if TYPE_CHECKING:  # the fold is not needed to classify a certificate (scan stays light)
    from policy.state import ContractState

__all__ = [
    "EMBEDDED_SCHEDULE",
    "ContractOutlook",
    "MaxValiditySchedule",
    "RenewalOutlook",
    "ScheduleStep",
    "TierOutlook",
    "br_days",
    "contract_outlook",
    "embedded_schedule",
    "load_schedule",
    "state_outlook",
    "tier_outlook",
    "tier_outlooks",
]

EMBEDDED_SCHEDULE = "policy/data/sc081.toml"
RENEWAL_HORIZON = 4
"""How many future renewals a contract outlook lists."""
MAX_PROJECTED_RENEWALS = 64
"""A bound on the projection (47-day certificates renew about 8 times a year)."""


def br_days(period: timedelta, *, day_seconds: int = 86_400) -> int:
    """A validity period in BR days: any part of a day more counts as a further day."""
    seconds = int(period.total_seconds())
    return -(-seconds // day_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleStep:
    start_utc: datetime | None
    """First instant (inclusive) the step applies to; ``None`` = since before the schedule."""
    max_days: int

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start_utc.date() if self.start_utc else None,
                "max_days": self.max_days}


@dataclass(frozen=True, slots=True, kw_only=True)
class MaxValiditySchedule:
    ballot: str
    passed: date
    day_seconds: int
    steps: tuple[ScheduleStep, ...]
    """Ascending by start; the first has ``start_utc=None``."""
    public_organisations: tuple[str, ...] = ()
    source: str = EMBEDDED_SCHEDULE
    _public: frozenset[str] = field(init=False, repr=False, compare=False)
    steps_on_utc_days: bool = field(init=False, repr=False, compare=False)
    """Whether every step starts at 00:00 UTC, so that a notBefore's UTC date alone tells its
    step (what :mod:`policy.classification` keys certificates of one shape by)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_public",
                           frozenset(o.casefold() for o in self.public_organisations))
        object.__setattr__(self, "steps_on_utc_days", all(
            step.start_utc is None or step.start_utc.astimezone(UTC).time() == time(0)
            for step in self.steps))

    def step_at(self, at: datetime) -> ScheduleStep:
        current = self.steps[0]
        for step in self.steps[1:]:
            if step.start_utc is not None and at >= step.start_utc:
                current = step
        return current

    def max_days_at(self, at: datetime) -> int:
        """The BR maximum, in days, for a certificate whose notBefore is ``at``."""
        return self.step_at(at).max_days

    def longest_validity_at(self, at: datetime) -> timedelta:
        """The longest validity period (inclusive) of a public certificate issued at ``at``."""
        return timedelta(seconds=self.max_days_at(at) * self.day_seconds)

    def exceeds(self, facts: CertificateFacts) -> bool:
        """Whether the certificate is longer than BR §6.3.2 allowed on its notBefore."""
        period = validity_period(facts.not_before_utc, facts.not_after_utc)
        return br_days(period, day_seconds=self.day_seconds) > self.max_days_at(
            facts.not_before_utc)

    def is_public_issuer(self, organisation: str | None) -> bool:
        """Whether ``organisation`` is one of the schedule's publicly trusted CAs (the
        catalogue's own CAs are checked by the caller)."""
        if not organisation:
            return False
        return organisation.strip().casefold() in self._public

    def non_renewable_from(self, rule: PeriodRule = DEFAULT_PERIOD_RULE) -> date | None:
        """First day from which every new public certificate is within 90 days (Art.6(3)
        proviso, counted by ``rule``); ``None`` when the schedule never gets there."""
        return _non_renewable_from(self, rule)

    def to_json(self) -> dict[str, Any]:
        return {"ballot": self.ballot, "passed": self.passed, "day_seconds": self.day_seconds,
                "steps": [s.to_json() for s in self.steps], "source": self.source}


@functools.lru_cache(maxsize=64)
def _non_renewable_from(schedule: MaxValiditySchedule, rule: PeriodRule) -> date | None:
    """:meth:`MaxValiditySchedule.non_renewable_from`, once per schedule and rule (the forecast
    asks it for every category III contract)."""
    for index, step in enumerate(schedule.steps):
        start = _probe(schedule, index)
        longest = timedelta(seconds=step.max_days * schedule.day_seconds)
        if _blocked(start, longest, rule):
            return step.start_utc.date() if step.start_utc else None
    return None


def load_schedule(path: Path | None = None) -> MaxValiditySchedule:
    """Load and validate the schedule (``None`` = embedded); errors name the file and key."""
    if path is None:
        text = resources.files("policy").joinpath("data/sc081.toml").read_text("utf-8")
        source = EMBEDDED_SCHEDULE
    else:
        try:
            text = read_data_file(Path(path), max_bytes=DATA_FILE_MAX)
        except DataFileError as exc:
            raise CatalogueError(f"{path}: the schedule file {exc}") from None
        source = str(path)
    try:
        raw = parse_toml(text)
    except TomlSyntaxError as exc:
        raise CatalogueError(f"{source}: {exc}") from None

    def fail(key: str, reason: str) -> CatalogueError:
        return CatalogueError(f"{source}: {key}: {reason}")

    allowed = {"format", "ballot", "passed", "day_seconds", "steps", "public_cas"}
    for key in raw:
        if key not in allowed:
            raise fail(key, f"unknown key (expected one of {', '.join(sorted(allowed))})")
    if raw.get("format", 1) != 1:
        raise fail("format", f"unsupported schedule format {raw.get('format')!r}")
    ballot = raw.get("ballot", "")
    passed = raw.get("passed")
    day_seconds = raw.get("day_seconds", 86_400)
    if not isinstance(ballot, str):
        raise fail("ballot", "expected a string")
    if not isinstance(passed, date) or isinstance(passed, datetime):
        raise fail("passed", f"expected a date, got {passed!r}")
    if isinstance(day_seconds, bool) or not isinstance(day_seconds, int) or day_seconds <= 0:
        raise fail("day_seconds", f"expected a positive integer, got {day_seconds!r}")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise fail("steps", "expected a non-empty array of [[steps]] tables")
    steps: list[ScheduleStep] = []
    for index, table in enumerate(steps_raw):
        where = f"steps[{index}]"
        if not isinstance(table, dict):
            raise fail(where, "expected a table")
        for key in table:
            if key not in ("from", "max_days"):
                raise fail(f"{where}.{key}", "unknown key (expected from, max_days)")
        max_days = table.get("max_days")
        if isinstance(max_days, bool) or not isinstance(max_days, int) or max_days <= 0:
            raise fail(f"{where}.max_days", f"expected a positive integer, got {max_days!r}")
        start = table.get("from")
        if index == 0:
            if start is not None:
                raise fail(f"{where}.from", "the first step has no start (it is the rule "
                                            "before the schedule)")
            start_utc = None
        else:
            if not isinstance(start, date) or isinstance(start, datetime):
                raise fail(f"{where}.from", f"expected a date, got {start!r}")
            start_utc = datetime.combine(start, time(0), tzinfo=UTC)
            previous = steps[-1].start_utc
            if previous is not None and start_utc <= previous:
                raise fail(f"{where}.from", "steps must be in ascending date order")
        steps.append(ScheduleStep(start_utc=start_utc, max_days=max_days))
    public = raw.get("public_cas", {})
    organisations = public.get("organisations", []) if isinstance(public, dict) else None
    if not isinstance(organisations, list) or not all(isinstance(o, str) for o in organisations):
        raise fail("public_cas.organisations", "expected a list of strings")
    return MaxValiditySchedule(ballot=ballot, passed=passed, day_seconds=day_seconds,
                               steps=tuple(steps), public_organisations=tuple(organisations),
                               source=source)


@functools.cache
def embedded_schedule() -> MaxValiditySchedule:
    """The embedded schedule, parsed once per process."""
    return load_schedule(None)


# ------------------------------------------------------------------------- per tier

def _fills(tier: Tier, start_utc: datetime, longest: timedelta, rule: PeriodRule) -> bool:
    """Whether a certificate of validity ``longest`` starting at ``start_utc`` spans the whole
    tier counted by ``rule`` (unlimited is never filled by a public certificate)."""
    period = tier_period(start_utc, tier, rule=rule)
    if period is None:
        return False
    try:
        not_after = start_utc + longest - timedelta(seconds=1)
    except OverflowError:
        return False
    return period.filled_by(not_after)


def _last_second(start_utc: datetime, longest: timedelta) -> datetime:
    """The ``notAfter`` of a certificate of validity ``longest`` from ``start_utc``, held at
    ``99991231235959Z`` when the end of the range comes first."""
    try:
        return start_utc + longest - timedelta(seconds=1)
    except OverflowError:
        return NO_WELL_DEFINED_EXPIRATION_UTC


def _blocked(start_utc: datetime, longest: timedelta, rule: PeriodRule) -> bool:
    """Art.6(3) proviso for a certificate of validity ``longest`` starting at ``start_utc``."""
    try:
        not_after = start_utc + longest - timedelta(seconds=1)
    except OverflowError:
        return False
    return art6_3_period_from(start_utc, rule).admits(not_after)


def art6_3_period_from(start_utc: datetime, rule: PeriodRule) -> Period:
    """The proviso's 90 days from a projected certificate's start."""
    return days_period(start_utc, PROVISO_DAYS, rule=rule)


def _probe(schedule: MaxValiditySchedule, index: int) -> datetime:
    """The instant at which a step is evaluated: its start, or for the open first step the last
    second before the next step (the latest instant it governs)."""
    step = schedule.steps[index]
    if step.start_utc is not None:
        return step.start_utc
    if len(schedule.steps) > 1 and schedule.steps[1].start_utc is not None:
        return schedule.steps[1].start_utc - timedelta(seconds=1)
    return datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class TierOutlook:
    tier: Tier
    at: datetime
    longest_days: int
    """The longest public certificate issuable at ``at``, in days."""
    longest_tier: Tier
    """The strict tier of that certificate."""
    fills: bool
    """Whether a public certificate issued at ``at`` can span the whole tier."""
    cannot_fill_from: date | None
    """First (UTC) day from which a new public certificate can no longer span the tier;
    ``None`` when it never can (``never_fillable``) or always will under the schedule."""
    never_fillable: bool
    non_renewable_from: date | None
    """First day from which every new public certificate is within 90 days, so a BYO contract
    renewed with one is blocked by Art.6(3)'s proviso."""
    period_rule: PeriodRule = DEFAULT_PERIOD_RULE

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "period_rule": self.period_rule.value,
            "at": self.at,
            "longest_days": self.longest_days,
            "longest_tier": self.longest_tier.value,
            "fills": self.fills,
            "cannot_fill_from": self.cannot_fill_from,
            "never_fillable": self.never_fillable,
            "non_renewable_from": self.non_renewable_from,
        }


@functools.lru_cache(maxsize=256)
def tier_outlook(tier: Tier, schedule: MaxValiditySchedule, *, at: datetime,
                 rule: PeriodRule = DEFAULT_PERIOD_RULE) -> TierOutlook:
    """Whether public certificates can span ``tier`` (counted by ``rule``) now and from when
    they no longer can. Cached by its values: the forecast asks it again for every contract
    of the tier, with the same ``at``."""
    longest = schedule.longest_validity_at(at)
    cannot: date | None = None
    never = False
    for index, step in enumerate(schedule.steps):
        probe = _probe(schedule, index)
        if not _fills(tier, probe, timedelta(seconds=step.max_days * schedule.day_seconds),
                      rule):
            if step.start_utc is None:
                never = True
            else:
                cannot = step.start_utc.date()
            break
    return TierOutlook(
        tier=tier, at=at, longest_days=schedule.max_days_at(at),
        longest_tier=classify(at, _last_second(at, longest), rule=rule),
        fills=_fills(tier, at, longest, rule), cannot_fill_from=cannot, never_fillable=never,
        non_renewable_from=schedule.non_renewable_from(rule), period_rule=rule,
    )


def tier_outlooks(schedule: MaxValiditySchedule, *, at: datetime,
                  rule: PeriodRule = DEFAULT_PERIOD_RULE) -> tuple[TierOutlook, ...]:
    return tuple(tier_outlook(t, schedule, at=at, rule=rule) for t in TIERS_ASCENDING)


# ------------------------------------------------------------------------- per contract

@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalOutlook:
    renewal_utc: datetime
    """When the renewal certificate starts at the latest: the second after the current
    certificate's notAfter, then after each projected certificate's end."""
    renewal_day: date
    longest_days: int
    longest_tier: Tier
    fills_contracted: bool | None
    """``None`` when the contracted tier is unknown."""
    renewable: bool
    """``False`` for category III when the longest public certificate is within 90 days."""

    def to_json(self) -> dict[str, Any]:
        return {"renewal": self.renewal_utc, "renewal_day": self.renewal_day,
                "longest_days": self.longest_days, "longest_tier": self.longest_tier.value,
                "fills_contracted": self.fills_contracted, "renewable": self.renewable}


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractOutlook:
    contract_id: str
    item: str | None
    category: Category | None
    tier: Tier | None
    certificate_sha256: str | None
    certificate_not_after: datetime | None
    terminated_on: date | None
    """The day a fixed termination takes effect (any clause, the Art.6(3) proviso's
    included): the contract has no renewal to project."""
    currently_blocked: bool
    """Category III whose current certificate is already <= 90 days (Art.6(3) proviso)."""
    renewals: tuple[RenewalOutlook, ...]
    """The next ``horizon`` projected renewals."""
    first_unfilled_renewal: date | None
    """Tokyo day of the first projected renewal whose longest certificate no longer spans the
    contracted tier."""
    first_blocked_renewal: date | None
    """Tokyo day of the first projected renewal blocked by Art.6(3)'s proviso (category III)."""
    cannot_fill_from: date | None
    never_fillable: bool
    non_renewable_from: date | None
    """For category III: the first day from which a renewal is blocked (today's day when the
    current certificate already is); ``None`` for I/II."""
    period_rule: PeriodRule = DEFAULT_PERIOD_RULE
    status: str = "active"
    """The contract's own status at ``at``, in its words (``active``, ``terminating``,
    ``terminated``: :attr:`policy.state.ContractState.status`)."""
    termination_clause: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "contract": self.contract_id,
            "status": self.status,
            "period_rule": self.period_rule.value,
            "item": self.item,
            "category": self.category.value if self.category else None,
            "tier": self.tier.value if self.tier else None,
            "certificate": self.certificate_sha256,
            "not_after": self.certificate_not_after,
            "terminated_on": self.terminated_on,
            "termination_clause": self.termination_clause,
            "currently_blocked": self.currently_blocked,
            "cannot_fill_from": self.cannot_fill_from,
            "never_fillable": self.never_fillable,
            "non_renewable_from": self.non_renewable_from,
            "first_unfilled_renewal": self.first_unfilled_renewal,
            "first_blocked_renewal": self.first_blocked_renewal,
            "renewals": [r.to_json() for r in self.renewals],
        }


def contract_outlook(*, contract_id: str, item: str | None, category: Category | None,
                     tier: Tier | None, certificate: CertificateFacts | None,
                     terminated_on: date | None, schedule: MaxValiditySchedule,
                     at: datetime, horizon: int = RENEWAL_HORIZON,
                     rule: PeriodRule = DEFAULT_PERIOD_RULE,
                     status: str = "active",
                     termination_clause: str | None = None,
                     product_end: date | None = None) -> ContractOutlook:
    """The schedule's effect on one contract at its next ``horizon`` renewals, each assumed to
    use the longest public certificate issuable then; periods counted by ``rule``. A contract
    with a termination fixed (``terminated_on``, whatever its clause) has none: it ends. Nor
    is a renewal projected on or after the item's ``product_end`` (Art.8: the ledger refuses
    renewing an abolished item)."""
    is_byo = category is Category.III
    blocked_now = bool(is_byo and certificate is not None
                       and art6_3_cannot_renew(certificate, rule))
    renewals: list[RenewalOutlook] = []
    if terminated_on is None and not (certificate is not None and never_expires(certificate)):
        # The successor takes over, at the latest, the second after the current one ends.
        try:
            start = at if certificate is None else max(
                certificate.not_after_utc + timedelta(seconds=1), at)
        except OverflowError:  # a notAfter at the very end of the range: nothing follows it
            start = datetime.max.replace(tzinfo=UTC)
        # Project at least `horizon` renewals, and on until one falls under the schedule's
        # last step, so the first unfilled / blocked renewal is known even years ahead.
        last_step = schedule.steps[-1].start_utc
        for count in range(MAX_PROJECTED_RENEWALS):
            if count >= horizon and (last_step is None or renewals[-1].renewal_utc >= last_step):
                break
            longest = schedule.longest_validity_at(start)
            try:
                end = start + longest
                longest_tier = classify(start, end - timedelta(seconds=1), rule=rule)
                renewal_day = tokyo_date(start)
            except OverflowError:
                break
            if product_end is not None and renewal_day >= product_end:
                break
            renewals.append(RenewalOutlook(
                renewal_utc=start, renewal_day=renewal_day,
                longest_days=schedule.max_days_at(start), longest_tier=longest_tier,
                fills_contracted=None if tier is None else _fills(tier, start, longest, rule),
                renewable=not (is_byo and _blocked(start, longest, rule)),
            ))
            start = end
    outlook = tier_outlook(tier, schedule, at=at, rule=rule) if tier is not None else None
    first_unfilled = next((r.renewal_day for r in renewals if r.fills_contracted is False),
                          None)
    first_blocked = next((r.renewal_day for r in renewals if not r.renewable), None)
    non_renewable: date | None = None
    if is_byo:
        non_renewable = tokyo_date(at) if blocked_now else schedule.non_renewable_from(rule)
    return ContractOutlook(
        contract_id=contract_id, item=item, category=category, tier=tier,
        certificate_sha256=certificate.sha256 if certificate else None,
        certificate_not_after=certificate.not_after_utc if certificate else None,
        terminated_on=terminated_on, currently_blocked=blocked_now,
        renewals=tuple(renewals[:horizon]),
        first_unfilled_renewal=first_unfilled, first_blocked_renewal=first_blocked,
        cannot_fill_from=outlook.cannot_fill_from if outlook else None,
        never_fillable=outlook.never_fillable if outlook else False,
        non_renewable_from=non_renewable, period_rule=rule, status=status,
        termination_clause=termination_clause,
    )


def state_outlook(state: ContractState, *, schedule: MaxValiditySchedule, at: datetime,
                  rule: PeriodRule = DEFAULT_PERIOD_RULE,
                  product_end: date | None = None) -> ContractOutlook:
    """:func:`contract_outlook` of a contract's folded state (``state`` as of ``at``): its
    status and termination are the state's own, so the forecast says what ``contract list`` and
    ``contract show`` say. A termination fixed by the Art.6(3) proviso ends the contract like
    any other (CONTRACT.md Art.6(3): it terminates with the certificate unless a renewable one
    is bound first): no renewal is projected, ``currently_blocked`` says why."""
    return contract_outlook(
        contract_id=state.contract_id, item=state.item, category=state.category,
        tier=state.tier, certificate=state.certificate, terminated_on=state.terminated_on,
        schedule=schedule, at=at, rule=rule, status=state.status.value,
        termination_clause=state.termination_clause, product_end=product_end)
