"""The ledger's projection: each contract's folded state and its due actions, kept beside the
journal so that a sweep (``policy actions``, ``contract list``) reads an index instead of
refolding every journal and re-evaluating every contract.

Why it can be trusted:

* **Written with the events.** The ledger rebuilds a contract's row in the same transaction as
  every event it appends for that contract (``append``, ``append_many``, ``report``'s
  observations and gone reports, back-dated events: the row is the fold of the whole journal,
  in journal order, so a back-dated event refolds the contract). A refused event writes
  nothing, its projection included.
* **The fold stays the reference.** A row is the fold of *all* the contract's events; it
  answers a question about an instant ``at`` only when no event of the contract is dated after
  ``at`` (``last_at``) and the fold settings (period rule, answer deadline) are the reader's.
  Anything else (``--as-recorded``, an ``--at`` before a contract's latest event) folds the
  journal as before. ``certescrow policy verify`` refolds everything and compares.
* **Cached decisions know when they expire.** The decisions (``evaluate_contract``) are a
  function of the state and the Tokyo day asked about. A row keeps those of the day it was
  written (``evaluated_on``) and the first day they may differ (``fresh_until``): the day of,
  and the day after, every date the decisions mention (a due day, an end of validity, an answer
  deadline: severities and "overdue" flip on them), the day after a termination (the contract
  then calls for nothing), the next day when a decision counts days (a termination's
  ``days_left``, an abolition's ``days_until``), and the item's product end. A conservative
  "re-evaluate from" day, not an exact one: a reader evaluates the state again on or after it
  (cheap: no fold), and ``policy verify --repair`` (or any event for the contract) refreshes
  the row. The decisions also depend on the settings and the catalogue: a row is used as is
  only by a reader whose settings and catalogue hash (``eval_key``) are the writer's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .catalogue import Catalogue
from .decisions import Action, Decision, Severity
from .errors import PolicyError, UnknownContractError
from .evaluate import evaluate_contract
from .events import Event, event_from_json, instant_to_text, instant_to_tokyo_text
from .settings import PolicySettings
from .state import STATE_FORMAT, ContractState, FoldProblem, fold, state_to_json
from .tokyo import tokyo_midnight_utc

__all__ = [
    "FOREVER",
    "NO_DUE",
    "NO_TIER",
    "PROJECTION_RULES",
    "ActionRow",
    "ProjectionRow",
    "action_rows",
    "build_row",
    "decode_event",
    "eval_key",
    "fold_key",
    "fold_problem_text",
    "fresh_until",
    "noon",
]

PROJECTION_RULES = 3
"""Bumped when ``evaluate_contract``'s output changes for the same state and day: rows written
by another version of the rules are then evaluated again by readers (their ``eval_key``
differs), never shown as they are."""
FOREVER = date.max
"""``fresh_until`` of decisions no day changes (a contract whose termination is over)."""
NO_DUE = date.max.isoformat()
"""Sort key of a decision without a due day: last, as ``evaluate.sort_key`` orders it."""
_END = datetime.max.replace(tzinfo=UTC)
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAILY = (Action.TERMINATE, Action.ABOLISH)
"""Actions whose ``computed`` counts days from today (``days_left``, ``days_until``)."""


def fold_key(settings: PolicySettings) -> str:
    """What a folded state depends on besides the events: the period rule (the Art.6(3)
    proviso) and the answer deadline (an answer's timing), and the state's stored form."""
    return f"{STATE_FORMAT}|{settings.period_rule.value}|{settings.answer_deadline_days}"


def eval_key(settings: PolicySettings, catalogue: Catalogue) -> str:
    """What cached decisions depend on besides the state and the day: every setting, the
    catalogue (an amended one changes items, tiers, product ends) and the rules' version."""
    text = repr((PROJECTION_RULES, settings, catalogue))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def decode_event(payload: Any) -> Event | str:
    """The event of a journal payload, or why it cannot be read (the ledger's wording)."""
    try:
        return event_from_json(json.loads(payload))
    except (ValueError, TypeError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) and str(exc).startswith(
            ("malformed ", "unknown event kind", "an event is")) else "not valid JSON"
        return f"cannot be read ({reason[:160]}); skipped"


def fold_problem_text(p: FoldProblem) -> str:
    return f"the {p.kind} event of {instant_to_tokyo_text(p.at_utc)} was {p.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRow:
    """One due action as ``policy actions`` prints it: its sort key, what the text line shows,
    and the element ``--json`` writes (already rendered)."""

    due: date | None
    severity: Severity
    contract_id: str
    action: str
    ordinal: int
    """Its place among the contract's decisions (``evaluate_contract``'s order): ties keep it."""
    clause: str
    explanation_en: str
    unpriced: str | None
    """The fee's description when its amount is not configured (``policy actions``' Info
    line), else ``None``."""
    body: str
    """The decision as ``--json`` writes an array element (``cliutil.json_element``)."""

    @property
    def sort_key(self) -> tuple[str, int, str, str, int]:
        return (self.due.isoformat() if self.due else NO_DUE, -int(self.severity),
                self.contract_id, self.action, self.ordinal)

    def as_tuple(self, *, json_body: bool) -> tuple[Any, ...]:
        """The row as the ledger streams it: the sort key (tuples compare in
        ``policy actions``' order), the due day's text, then ``(body, None, None, None)``
        or ``(None, clause, explanation, unpriced)``."""
        shown = (self.body, None, None, None) if json_body else (
            None, self.clause, self.explanation_en, self.unpriced)
        return (*self.sort_key, self.due.isoformat() if self.due else None, *shown)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectionRow:
    """A contract's row: its state (``state_to_json``), the latest instant among its events,
    the keys it was computed under and its cached decisions."""

    contract_id: str
    state: str
    last_at: str
    fold_key: str
    eval_key: str
    evaluated_on: str
    fresh_until: str
    next_due: str | None
    decisions: str
    problems: str | None
    actions: tuple[ActionRow, ...]


NO_TIER = "no tier: "
"""How :func:`unpriced_text` marks a fee missing because its contract has no tier (followed by
the contract's id): the price list cannot help, so ``policy actions`` says so apart."""


def unpriced_text(d: Decision) -> str | None:
    """What ``policy actions``' Info line names for a fee without an amount: the item, tier and
    fee whose price is missing, or :data:`NO_TIER` and the contract that has no tier."""
    if d.computed.get("amount_configured") is not False:
        return None
    if d.computed.get("no_tier"):
        return NO_TIER + (d.contract_id or "")
    return " ".join(str(part) for part in (
        d.facts.get("item") or "contract change", d.facts.get("tier") or "",
        d.computed.get("fee")) if part)


def action_rows(decisions: Sequence[Decision]) -> list[ActionRow]:
    """The rows of one contract's decisions (in ``evaluate_contract``'s order)."""
    from .cliutil import json_element  # rendering is the CLI's; cached here as text

    return [ActionRow(due=d.due, severity=d.severity, contract_id=d.contract_id or "",
                      action=d.action.value, ordinal=i, clause=d.clause,
                      explanation_en=d.explanation_en, unpriced=unpriced_text(d),
                      body=json_element(d))
            for i, d in enumerate(decisions)]


def _days_in(value: Any, out: set[date]) -> None:
    if isinstance(value, str):
        if _ISO_DAY.match(value):
            try:
                out.add(date.fromisoformat(value))
            except ValueError:
                pass
    elif isinstance(value, date):
        out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _days_in(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _days_in(v, out)


def fresh_until(state: ContractState, decisions: Sequence[Decision], today: date,
                catalogue: Catalogue) -> date:
    """The first Tokyo day after ``today`` on which ``evaluate_contract`` may answer otherwise
    for ``state`` (see the module docstring); :data:`FOREVER` when no day changes it."""
    if state.terminated_on is not None and today > state.terminated_on:
        return FOREVER  # a contract whose termination is over calls for nothing, ever
    tomorrow = today + timedelta(days=1)
    if any(d.action in _DAILY for d in decisions):
        return tomorrow
    days: set[date] = set()
    for d in decisions:
        if d.due is not None:
            days.add(d.due)
        _days_in(dict(d.computed), days)
        _days_in(dict(d.facts), days)
    if state.terminated_on is not None:
        days.add(state.terminated_on)
    try:
        end = catalogue.item(state.item).product_end
    except PolicyError:
        end = None
    if end is not None:
        days.add(end)
    candidates = [x for d in days for x in (d, _next_day(d)) if x > today]
    return min(candidates, default=FOREVER)


def _next_day(d: date) -> date:
    return d if d == date.max else d + timedelta(days=1)


def build_row(contract_id: str, journal: Sequence[tuple[int, Any, str]], *,
              settings: PolicySettings, catalogue: Catalogue, today: date,
              keys: tuple[str, str]) -> ProjectionRow | None:
    """The contract's row from its journal rows ``(seq, payload, at_utc)`` in journal order,
    with decisions for ``today``; ``None`` when no application was accepted (no row).
    ``keys``: :func:`fold_key` and :func:`eval_key` of ``settings`` and ``catalogue``."""
    events: list[Event] = []
    problems: list[list[Any]] = []
    for seq, payload, _ in journal:
        event = decode_event(payload)
        if isinstance(event, str):
            problems.append([int(seq), event])
        else:
            events.append(event)
    found: list[FoldProblem] = []
    try:
        state = fold(contract_id, events, at=_END, settings=settings, problems=found)
    except UnknownContractError:
        return None
    problems.extend([None, fold_problem_text(p)] for p in found)
    last_at = max((str(at) for _, _, at in journal), default=instant_to_text(_END))
    try:
        decisions = evaluate_contract(state, catalogue, settings,
                                      at=noon(today))
        until = fresh_until(state, decisions, today, catalogue)
    except (PolicyError, OverflowError, ValueError):
        # Not evaluable here: readers evaluate it themselves (and report why); never cached.
        decisions, until = (), today
    rows = action_rows(decisions)
    dues = [d.due for d in decisions if d.due is not None]
    return ProjectionRow(
        contract_id=contract_id,
        state=json.dumps(state_to_json(state), ensure_ascii=True, separators=(",", ":")),
        last_at=last_at, fold_key=keys[0], eval_key=keys[1],
        evaluated_on=today.isoformat(), fresh_until=until.isoformat(),
        next_due=min(dues).isoformat() if dues else None,
        decisions="[" + ",".join(r.body for r in rows) + "]",
        problems=json.dumps(problems, ensure_ascii=True) if problems else None,
        actions=tuple(rows))


def noon(day: date) -> datetime:
    """An instant on Tokyo ``day`` (12:00 JST): the decisions depend on the day only."""
    return tokyo_midnight_utc(day) + timedelta(hours=12)
