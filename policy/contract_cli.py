"""``certescrow contract …`` and ``certescrow policy actions``: drive a contract's life.

Thin by design: each command parses its options, appends one event to the ledger (which checks
the contract's state admits it) or folds states, calls ``evaluate_contract`` and renders the
result, as a table or as ``--json`` from the same objects. The clock is read once, here, through
``resolve_at``, and handed to the ledger as ``now``.

Two times: a recording command's ``--at`` is when the event happened in the world (default:
now) and may not be in the future (the ledger records what happened); the ledger stamps the
row with the real clock as the time it learned of it. A reading command's ``--at`` asks "what
was true then, by everything recorded so far"; ``--as-recorded`` asks "what did the ledger know
then" (and is the default ``--at``).

Ledger location: ``--ledger PATH``, else ``[policy].ledger``, else the per-user default
(``policy.paths.default_ledger_path``). Read-only commands never create a ledger, and a ledger
someone named that does not exist is an error naming it (a mistyped path must never answer
"Nothing due").
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec

import click

from policy.catalogue import Catalogue
from policy.certsource import (
    CertificateEntry,
    CertificateFileError,
    CertificateReader,
    entries_or_raise,
    require_reader,
)
from policy.cliutil import (
    AT_OPTION_HELP,
    FILE_THE_COMMAND_READS,
    DateType,
    InstantType,
    LedgerType,
    catalogue_from,
    config_section,
    echo_json,
    echo_json_array,
    echo_json_texts,
    echo_lines,
    ledger_named_by,
    resolve_at,
    settings_from,
)
from policy.decisions import SEVERITY_TEXT, Decision, Severity
from policy.errors import (
    ApplicationRefusedError,
    ContractStateError,
    FutureEventError,
    LedgerError,
    PolicyError,
    UnknownContractError,
    UnknownItemError,
)
from policy.evaluate import due_actions, evaluate_contract, fee_history
from policy.events import (
    TERMINATION_CLAUSES,
    AnswerReceived,
    ApplicationAccepted,
    CancellationArrived,
    CertificateBound,
    CertificateObserved,
    ContractChanged,
    Event,
    NoticeSent,
    RenewalMade,
    Terminated,
    event_to_json,
    instant_to_tokyo_text,
)
from policy.facts import CertificateFacts
from policy.ledger import JournalEntry, JournalProblem, Ledger
from policy.paths import (
    LedgerLocation,
    ledger_display,
    ledger_exists,
    ledger_path,
    missing_ledger_error,
    no_ledger_yet,
)
from policy.projection import NO_TIER, action_rows, unpriced_text
from policy.rules.art6 import Answer, answer_deadline, end_of_validity
from policy.rules.art7 import Application, application_refusals
from policy.settings import PolicySettings
from policy.state import PROVISO, ContractState
from policy.tiers import Tier
from policy.tokyo import tokyo_date, tokyo_midnight_utc
from untrusted.text import for_terminal

__all__ = ["PROJECTION_MISMATCH_EXIT", "actions_command", "contract_group", "refresh_command",
           "verify_command"]

PROJECTION_MISMATCH_EXIT = 18
"""``policy verify``: the projection differs from the fold of the journal (the policy family's
next code after 17)."""

_P = ParamSpec("_P")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")

ledger_option = click.option(
    "--ledger", "ledger_opt", type=LedgerType(), default=None,
    help="Ledger file or postgresql:// DSN. Default: [policy].ledger from the configuration, else "
         "$XDG_STATE_HOME/certescrow/ledger.sqlite3.")
at_option = click.option("--at", type=InstantType(), default=None, help=AT_OPTION_HELP)
record_at_option = click.option(
    "--at", type=InstantType(), default=None,
    help="When it happened (ISO 8601; no offset = Asia/Tokyo; a bare date = 00:00 JST). "
         "Default: now. Never in the future: the ledger records what happened.")
as_recorded_option = click.option(
    "--as-recorded", "as_recorded", type=InstantType(), default=None,
    help="Answer from what the ledger had recorded by this time (default: everything). "
         "Without --at, also the time the question is about.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@dataclass(frozen=True, slots=True)
class _Env:
    settings: PolicySettings
    catalogue: Catalogue
    ledger_path: LedgerLocation
    ledger_named_by: str | None
    """``--ledger`` or ``[policy].ledger in FILE`` named it (a missing one is then an error);
    ``None``: the per-user default."""
    problems: list[JournalProblem] = field(default_factory=list)
    """Journal events the ledger skipped while reading, reported by :func:`_finish`."""


def _env(ledger_opt: LedgerLocation | None) -> _Env:
    ctx = click.get_current_context(silent=True)
    section = config_section(ctx, "policy")
    return _Env(settings=settings_from(ctx), catalogue=catalogue_from(ctx),
                ledger_path=ledger_path(ledger_opt, section),
                ledger_named_by=ledger_named_by(ctx, ledger_opt))


@contextmanager
def _ledger(env: _Env, *, create: bool, read_only: bool = False) -> Iterator[Ledger | None]:
    """The ledger, or ``None`` for a read-only command when the per-user default does not
    exist yet. A named ledger that does not exist is an error naming it. Events the ledger
    could not read are kept in ``env.problems`` for :func:`_finish`. ``read_only``: a command
    that only reads (:meth:`Ledger.open`: it never migrates the schema)."""
    if not create and not ledger_exists(env.ledger_path):
        if env.ledger_named_by is not None:
            raise missing_ledger_error(env.ledger_path, named_by=env.ledger_named_by)
        yield None
        return
    ledger = Ledger.open(env.ledger_path, create=create, read_only=read_only,
                         settings=env.settings, catalogue=env.catalogue)
    try:
        yield ledger
    finally:
        env.problems.extend(p for p in ledger.problems if p not in env.problems)
        ledger.close()


def _times(at: datetime | None, as_recorded: datetime | None) -> tuple[datetime, datetime | None]:
    """A reading command's instant: ``--at``, else ``--as-recorded``, else now."""
    return resolve_at(at if at is not None else as_recorded), as_recorded


def _check_id(contract_id: str) -> str:
    if not _ID.fullmatch(contract_id):
        raise click.BadParameter(
            "a contract id is 1-128 characters: letters, digits and . _ : @ / + - "
            "(starting with a letter or digit)", param_hint="'ID'")
    return contract_id


# ---------------------------------------------------------------------- rendering
def _day(value: date | None) -> str:
    return value.isoformat() if value else "-"


def _cert_end(state: ContractState) -> str:
    cert = state.certificate
    return end_of_validity(cert.not_after_utc).isoformat() if cert else "-"


def _echo_actions(decisions: Sequence[Decision], *, at: datetime, with_contract: bool,
                  history: bool = False) -> None:
    if not decisions:
        click.echo("  (none)" if history else "  (nothing due)")
        return
    today = tokyo_date(at)

    def line(d: Decision) -> str:
        when = _day(d.due)
        mark = " overdue" if not history and d.due is not None and d.due < today else ""
        who = f"{d.contract_id:<16} " if with_contract else ""
        return (f"  {when}{mark:<8} {who}{d.action.value:<20} {d.clause:<18} "
                f"{d.severity.name.lower():<8} {d.explanation_en}")

    echo_lines(line(d) for d in decisions)


def _summary(entry: JournalEntry) -> str:
    payload = event_to_json(entry.event)
    skip = {"kind", "contract", "at", "facts"}
    parts = [f"{k}={v}" for k, v in payload.items() if k not in skip and v not in (None, "")]
    event = entry.event
    if isinstance(event, (CertificateBound, CertificateObserved)):
        cert = event.facts
        parts.insert(0, f"sha256={cert.sha256[:16]}… "
                        f"notAfter={instant_to_tokyo_text(cert.not_after_utc)}")
    return " ".join(parts)


def _echo_state(state: ContractState) -> None:
    tier = state.tier.value if state.tier else "(none)"
    click.echo(f"Contract {state.contract_id}: {state.status.value}")
    click.echo(f"  item          {state.item} (category {state.category.value}), tier {tier}")
    click.echo(f"  accepted on   {state.accepted_on.isoformat()}")
    if state.service:
        click.echo(f"  service       {state.service}")
    cert = state.certificate
    if cert is not None:
        click.echo(f"  certificate   {cert.sha256} ({state.certificate_source})")
        click.echo(f"                valid {instant_to_tokyo_text(cert.not_before_utc)} .. "
                   f"{instant_to_tokyo_text(cert.not_after_utc)} "
                   f"(ends {_cert_end(state)} Asia/Tokyo)")
    else:
        click.echo("  certificate   (none bound or observed)")
    if state.renewable is False:
        # The proviso's end stands when a later certificate that cannot be renewed either was
        # bound (review 11): the contract ends on that day, not with the current certificate.
        ends = (state.terminated_on.isoformat()
                if state.terminated_on is not None and state.termination_clause == PROVISO
                else _cert_end(state))
        click.echo(f"  renewable     no: validity within 90 days (Art.6(3) proviso); the "
                   f"contract ends on {ends}")
    click.echo(f"  notice sent   {_day(state.notice_sent)}")
    answer = state.answer.value if state.answer else "-"
    timing = f" ({state.answer_timing})" if state.answer and state.answer_timing in (
        "early", "late") else ""
    click.echo(f"  answer        {answer} "
               f"{_day(state.answered_on) if state.answer else ''}{timing}".rstrip())
    if state.cancellation is not None:
        c = state.cancellation
        click.echo(f"  cancellation  arrived {c.arrived}, requested {_day(c.requested)}, "
                   f"effective {c.effective}")
    if state.terminated_on is not None:
        click.echo(f"  terminates on {state.terminated_on} ({state.termination_clause})")
    if state.locations:
        click.echo(for_terminal(f"  seen at       {', '.join(state.locations)}"))


# ---------------------------------------------------------------------- the group
@click.group("contract")
def contract_group() -> None:
    """Drive a contract's life in the ledger: add, list, show, notify, answer, bind, change,
    cancel, renew, terminate; unbound lists observations no contract claims."""


def _evaluate(env: _Env, state: ContractState, at: datetime) -> tuple[Decision, ...]:
    return evaluate_contract(state, env.catalogue, env.settings, at=at)


def _when(at: datetime | None) -> tuple[datetime, datetime]:
    """A recording command's (happened, now): ``--at`` (default: now) and the real clock."""
    now = resolve_at(None)
    return (at if at is not None else now), now


def _record(env: _Env, event: Event, at: datetime, now: datetime, *,
            dated_by: str = "--at",
            given: str | None = None) -> tuple[ContractState, tuple[Decision, ...]]:
    """Append ``event`` and return the state and due actions. ``dated_by`` is the option that
    dated the event and ``given`` its value as the user wrote it (default: the event's instant
    in Tokyo time): a refusal of a future date names them, not the ledger's storage form."""
    with _ledger(env, create=True) as ledger:
        assert ledger is not None  # noqa: S101 - create=True always yields a ledger
        try:
            ledger.append(event, now=now)
        except FutureEventError as exc:
            shown = given if given is not None else instant_to_tokyo_text(exc.at_utc)
            raise ContractStateError(
                f"{dated_by} {shown} is in the future (now {instant_to_tokyo_text(exc.now_utc)})"
                ": the ledger records what happened; a future time is for questions (contract "
                "show/list, policy actions --at), not for records; nothing was recorded"
            ) from None
        state = ledger.state(str(event.contract_id), at=max(at, event.at_utc))
    return state, _evaluate(env, state, max(at, event.at_utc))


def _current(env: _Env, contract_id: str, at: datetime) -> ContractState:
    if not ledger_exists(env.ledger_path):
        raise UnknownContractError(
            f"no contract {contract_id!r}: the ledger {ledger_display(env.ledger_path)} "
            "does not exist yet")
    with _ledger(env, create=False, read_only=True) as ledger:
        assert ledger is not None  # noqa: S101 - it exists
        return ledger.state(contract_id, at=at)


def _echo_result(as_json: bool, headline: str, state: ContractState,
                 decisions: Sequence[Decision], at: datetime, **extra: Any) -> None:
    if as_json:
        echo_json({**extra, "contract": state, "actions": list(decisions)})
        return
    for line in headline.split("\n"):
        click.echo(for_terminal(line))
    click.echo("Due actions:")
    _echo_actions(decisions, at=at, with_contract=False)


_REFUSAL_DETAILS = "certescrow.refusal_details"
"""``ctx.meta`` key: what a command knows of its refusal beyond the error (``add``'s
``refusals``), for :func:`_refusal_as_json`."""


def _refusal_as_json(**always: Any) -> Callable[[Callable[_P, None]], Callable[_P, None]]:
    """A recording command whose record is refused (any :class:`PolicyError`: the terms, an
    unknown contract, an unreadable certificate file, the ledger) prints, with ``--json``, the
    refusal as JSON on stdout: ``{"contract", "recorded": false, "error": {"exit_code",
    "message"}}``, plus ``always`` (``add``: ``"accepted": false``) and what the command put
    under ``ctx.meta[_REFUSAL_DETAILS]`` (``add``: its ``refusals``). The error is raised on:
    the ``Error:`` line on stderr and the exit status are the same as without ``--json``."""

    def wrap(command: Callable[_P, None]) -> Callable[_P, None]:
        @functools.wraps(command)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
            try:
                command(*args, **kwargs)
            except PolicyError as exc:
                if kwargs.get("as_json"):
                    details = click.get_current_context().meta.get(_REFUSAL_DETAILS, {})
                    echo_json({"contract": kwargs.get("contract_id"), "recorded": False,
                               **always, **details,
                               "error": {"exit_code": exc.exit_code, "message": str(exc)}})
                raise

        return run

    return wrap


@contract_group.command("add")
@click.argument("contract_id", metavar="ID")
@click.option("--item", "handle", required=True, metavar="HANDLE",
              help="Catalogue item handle (see `certescrow policy catalogue`).")
@click.option("--tier", type=click.Choice([t.value for t in Tier]), default=None,
              help="Contracted validity period; default: the item's only tier.")
@record_at_option
@click.option("--country", default="JP", show_default=True, metavar="CC",
              help="ISO 3166 country of the applicant organisation (Art.7(2)).")
@click.option("--migrating", is_flag=True,
              help="The certificate is moved from a server outside the provider's designated "
                   "services (refused for category I/II, Art.7(1)).")
@click.option("--designated-service", default=None, metavar="NAME",
              help="The designated provider service (required for category II, Art.4(1)).")
@json_option
@ledger_option
@_refusal_as_json(accepted=False)
def add_command(contract_id: str, handle: str, tier: str | None, at: datetime | None,
                country: str, migrating: bool, designated_service: str | None, as_json: bool,
                ledger_opt: Path | None) -> None:
    """Accept an application for ITEM as contract ID (refused under Art.7/Art.4(1)/Art.8)."""
    _check_id(contract_id)
    env = _env(ledger_opt)
    now, clock = _when(at)
    item = env.catalogue.item(handle)
    contracted = _contracted_tier(item.handle, item.tiers, tier)
    refusals = application_refusals(
        Application(item=item.handle, organisation_country=country,
                    migrating_from_outside=migrating, designated_service=designated_service),
        env.catalogue, at=now)
    if refusals:
        click.get_current_context().meta[_REFUSAL_DETAILS] = {"refusals": list(refusals)}
        # each explanation is a sentence: its full stop would stand before the "; "
        reasons = "; ".join(f"{d.clause}: {d.explanation_en.removesuffix('.')}"
                            for d in refusals)
        raise ApplicationRefusedError(
            f"application for contract {contract_id!r} ({item.handle}) refused, nothing "
            f"recorded — {reasons}")
    event = ApplicationAccepted(
        contract_id=contract_id, at_utc=now, item=item.handle, category=item.category,
        tier=contracted, organisation_country=country.strip().upper(),
        migrating_from_outside=migrating, designated_service=designated_service)
    state, decisions = _record(env, event, now, clock)
    if contracted is None and not as_json:
        click.echo("Warning: no --tier given and the item offers several; Art.3 compliance "
                   "and the initial fee's amount cannot be determined for this contract, and "
                   "no command sets its tier later.", err=True)
    tier_text = contracted.value if contracted else "(none)"
    _echo_result(as_json, f"Contract {contract_id} accepted on {state.accepted_on}: "
                 f"{item.handle} (category {item.category.value}), tier {tier_text}.",
                 state, decisions, now, accepted=True)


def _contracted_tier(handle: str, offered: Sequence[Tier], name: str | None) -> Tier | None:
    if name is None:
        return offered[0] if len(offered) == 1 else None
    tier = Tier.parse(name)
    if tier not in offered:
        raise UnknownItemError(
            f"item {handle!r} does not offer tier {tier.value}: it offers "
            f"{', '.join(t.value for t in offered)} (Appx1.1)")
    return tier


@contract_group.command("list")
@json_option
@at_option
@as_recorded_option
@ledger_option
def list_command(as_json: bool, at: datetime | None, as_recorded: datetime | None,
                 ledger_opt: Path | None) -> None:
    """Every contract with its status and next action."""
    env = _env(ledger_opt)
    now, known = _times(at, as_recorded)
    failures: list[tuple[str, PolicyError]] = []
    with _ledger(env, create=False, read_only=True) as ledger:
        rows: Iterable[tuple[ContractState, tuple[Decision, ...]]] = ()
        if ledger is not None and known is None and ledger.projection_answers(now):
            # Current knowledge: the projection's states, and its cached decisions where they
            # hold for today (docs/ledger.md "The projection"), streamed as they are read.
            rows = _evaluate_projected(env, ledger.projected(at=now), now, failures)
        elif ledger is not None:
            states = ledger.states(at=now, as_recorded=known)
            if sys.stderr.isatty() and not as_json:
                # The fold is slow: a progress bar on the terminal, the table after it.
                total = len(ledger.contract_ids())
                with click.progressbar(states, length=total, file=sys.stderr,
                                       label="Evaluating contracts") as bar:
                    rows = list(_evaluate_each(env, bar, now, failures))
            else:
                rows = _evaluate_each(env, states, now, failures)
        # Written while the rows are read: memory stays flat over 100,000 contracts.
        if as_json:
            echo_json_array({**_jsonable_state(s), "actions": list(d)} for s, d in rows)
        else:
            _echo_list(rows)
    _finish(env, failures)


def _evaluate_each(env: _Env, states: Iterable[ContractState], now: datetime,
                   failures: list[tuple[str, PolicyError]]
                   ) -> Iterator[tuple[ContractState, tuple[Decision, ...]]]:
    """Each contract with its decisions; one that cannot be evaluated is listed with none and
    reported (``failures``, filled as the rows are read), never hiding the others."""
    for state in states:
        try:
            yield state, _evaluate(env, state, now)
        except PolicyError as exc:
            failures.append((state.contract_id, exc))
            yield state, ()
        except (OverflowError, ValueError):
            failures.append((state.contract_id, _unevaluable(state)))
            yield state, ()


def _evaluate_projected(env: _Env,
                        projected: Iterable[tuple[ContractState, tuple[Decision, ...] | None]],
                        now: datetime, failures: list[tuple[str, PolicyError]]
                        ) -> Iterator[tuple[ContractState, tuple[Decision, ...]]]:
    """:func:`_evaluate_each` over the projection: a contract whose cached decisions hold is
    not evaluated again."""
    for state, cached in projected:
        if cached is None:
            yield from _evaluate_each(env, [state], now, failures)
        else:
            yield state, cached


def _unevaluable(state: ContractState) -> PolicyError:
    return ContractStateError(
        f"its certificate has dates the contract rules cannot evaluate (at the ends of the "
        f"representable range); rebind a certificate with `certescrow contract bind "
        f"{state.contract_id} CERTFILE`")


def _finish(env: _Env, failures: Sequence[tuple[str, PolicyError]] = ()) -> None:
    """Once the output is complete: each contract that could not be evaluated and each journal
    event that could not be read, on stderr, and the highest of their exit statuses (the rest
    was read and shown)."""
    codes = []
    for contract_id, exc in failures:
        click.echo(f"Error: contract {contract_id}: {exc}", err=True)
        codes.append(int(getattr(exc, "exit_code", 1)))
    for problem in env.problems:
        click.echo(f"Error: {ledger_display(env.ledger_path)}: {problem}", err=True)
        codes.append(LedgerError.exit_code)
    if codes:
        sys.exit(max(codes))


def _echo_list(rows: Iterable[tuple[ContractState, tuple[Decision, ...]]]) -> None:
    """The table (fixed columns: each line is written as its row is read), or "No
    contracts."."""
    items = iter(rows)
    first = next(items, None)
    if first is None:
        click.echo("No contracts.")
        return
    click.echo(f"{'ID':<16} {'ITEM':<26} {'CAT':<4} {'TIER':<9} {'STATUS':<12} "
               f"{'CERT ENDS':<11} NEXT ACTION")

    def line(state: ContractState, decisions: tuple[Decision, ...]) -> str:
        nxt = decisions[0] if decisions else None
        nxt_text = f"{nxt.action.value} {_day(nxt.due)}" if nxt else "-"
        return (f"{state.contract_id:<16} {state.item:<26} {state.category.value:<4} "
                f"{(state.tier.value if state.tier else '-'):<9} {state.status.value:<12} "
                f"{_cert_end(state):<11} {nxt_text}")

    echo_lines(line(state, decisions) for state, decisions in itertools.chain((first,), items))


def _jsonable_state(state: ContractState) -> dict[str, Any]:
    return state.to_json()


@contract_group.command("show")
@click.argument("contract_id", metavar="ID")
@json_option
@at_option
@as_recorded_option
@ledger_option
def show_command(contract_id: str, as_json: bool, at: datetime | None,
                 as_recorded: datetime | None, ledger_opt: Path | None) -> None:
    """The contract's state, its journal (when each event happened and when it was recorded)
    and the actions due, as of --at (by what was recorded by --as-recorded)."""
    env = _env(ledger_opt)
    now, known = _times(at, as_recorded)
    with _ledger(env, create=False, read_only=True) as ledger:
        if ledger is None:
            raise UnknownContractError(
                f"no contract {contract_id!r}: the ledger {ledger_display(env.ledger_path)} "
            "does not exist yet")
        state = ledger.state(contract_id, at=now, as_recorded=known)
        journal = ledger.journal(contract_id, at=now, as_recorded=known)
    failures: list[tuple[str, PolicyError]] = []
    [(_, decisions)] = _evaluate_each(env, [state], now, failures)
    fees = fee_history(state, env.settings.prices)
    if as_json:
        echo_json({"state": state, "as_recorded": known, "journal": journal,
                   "actions": list(decisions), "fees": list(fees),
                   "problems": list(env.problems)})
    else:
        _echo_state(state)
        click.echo("Journal (happened / recorded, Asia/Tokyo):")
        for entry in journal:
            click.echo(f"  #{entry.seq:<5} {_instant(entry.event.at_utc)}  "
                       f"{_instant(entry.recorded)}  {entry.event.KIND:<21} "
                       f"{for_terminal(_summary(entry))}")
        click.echo("Fees (Art.10):")
        _echo_actions(fees, at=now, with_contract=False, history=True)
        click.echo("Due actions:")
        _echo_actions(decisions, at=now, with_contract=False)
    _finish(env, failures)


def _instant(value: datetime) -> str:
    """An instant in a column of the desk's text: Tokyo time, as every refusal states it
    (``instant_to_tokyo_text``; the journal's UTC is for ``--json``), padded to the widest
    form, ``YYYY-MM-DD HH:MM:SS JST``, so the columns after it line up."""
    return instant_to_tokyo_text(value).ljust(23)


@contract_group.command("notify")
@click.argument("contract_id", metavar="ID")
@record_at_option
@json_option
@ledger_option
@_refusal_as_json()
def notify_command(contract_id: str, at: datetime | None, as_json: bool,
                   ledger_opt: Path | None) -> None:
    """Record that the renewal notice (Art.6(1)) was sent."""
    env = _env(ledger_opt)
    now, clock = _when(at)
    before = _current(env, contract_id, now)
    sha = before.certificate.sha256 if before.certificate else None
    state, decisions = _record(env, NoticeSent(contract_id=contract_id, at_utc=now,
                                               certificate_sha256=sha), now, clock)
    deadline = None
    if state.certificate is not None and state.notice_sent is not None:
        deadline = answer_deadline(state.notice_sent, state.certificate.not_after_utc,
                                   deadline_days=env.settings.answer_deadline_days)
    today = tokyo_date(now)
    if state.notice_sent == today:
        headline = f"Renewal notice for {contract_id} recorded on {today}"
    else:  # the first notice of the cycle keeps the deadline (Art.6: no extension by reminder)
        headline = (f"Reminder for {contract_id} recorded on {today}; the first notice went "
                    f"out on {_day(state.notice_sent)}")
    _echo_result(as_json, f"{headline}; answer due by {_day(deadline)}.", state, decisions, now,
                 notice_sent=state.notice_sent, answer_deadline=deadline)


@contract_group.command("answer")
@click.argument("contract_id", metavar="ID")
@click.argument("answer", type=click.Choice([a.value for a in Answer]))
@record_at_option
@json_option
@ledger_option
@_refusal_as_json()
def answer_command(contract_id: str, answer: str, at: datetime | None, as_json: bool,
                   ledger_opt: Path | None) -> None:
    """Record the customer's answer to the renewal notice: renew or dont-renew."""
    env = _env(ledger_opt)
    now, clock = _when(at)
    before = _current(env, contract_id, now)
    sha = before.certificate.sha256 if before.certificate else None
    value = Answer(answer)
    state, decisions = _record(env, AnswerReceived(contract_id=contract_id, at_utc=now,
                                                   answer=value, certificate_sha256=sha),
                               now, clock)
    headline = f"Answer {value.value!r} for {contract_id} recorded on {state.answered_on}"
    if state.answer_timing == "late":
        headline += " (late: after the answer deadline)."
    elif state.answer_timing == "early":
        headline += " (early: before any renewal notice)."
    else:
        headline += "."
    if value is Answer.DONT_RENEW and state.terminated_on is not None:
        headline += (f" The contract terminates on {state.terminated_on} "
                     f"({state.termination_clause}).")
    _echo_result(as_json, headline, state, decisions, now, answer=value.value,
                 terminated_on=state.terminated_on, answer_timing=state.answer_timing)


@contract_group.command("bind")
@click.argument("contract_id", metavar="ID")
# refused by the certificate reader (exit 17), as `policy classify` refuses its files
@click.argument("certfile", type=FILE_THE_COMMAND_READS)
@click.option("--index", type=click.IntRange(min=0), default=None,
              help="Which certificate of the file (0-based); default: the first that is not "
                   "a CA certificate.")
@record_at_option
@json_option
@ledger_option
@_refusal_as_json()
def bind_command(contract_id: str, certfile: Path, index: int | None, at: datetime | None,
                 as_json: bool, ledger_opt: Path | None) -> None:
    """Bind the certificate in CERTFILE (PEM, DER, PKCS#7 or PKCS#12) to contract ID."""
    env = _env(ledger_opt)
    now, clock = _when(at)
    entry = _pick_certificate(require_reader(click.get_current_context().find_root().obj),
                              certfile, index)
    facts = entry.facts
    state, decisions = _record(env, CertificateBound(contract_id=contract_id, at_utc=now,
                                                     facts=facts, source=str(certfile)),
                               now, clock)
    # what the reader said of the certificate (its text recorded escaped or shortened, a
    # parser's complaint), then its validity against the day it was bound
    findings = [{"code": f.code, "severity": SEVERITY_TEXT[f.severity], "message": f.message}
                for f in entry.findings] + _validity_findings(facts, now)
    headline = (f"Certificate {facts.sha256} bound to {contract_id} "
                f"(ends {end_of_validity(facts.not_after_utc)} Asia/Tokyo).")
    for finding in findings:
        headline += f"\nWarning: {finding['message']}"
    _echo_result(as_json, headline, state, decisions, now, sha256=facts.sha256,
                 findings=findings)


def _validity_findings(facts: CertificateFacts, at: datetime) -> list[dict[str, str]]:
    """A certificate bound outside its validity is recorded (it is what the customer has) but
    never silently: the output says it has expired or is not yet valid."""
    if at > facts.not_after_utc:
        return [{"code": "certificate-expired", "severity": "warning",
                 "message": f"the certificate expired on "
                            f"{end_of_validity(facts.not_after_utc)} (Asia/Tokyo), before it "
                            f"was bound; bind its successor when it arrives"}]
    if at < facts.not_before_utc:
        return [{"code": "certificate-not-yet-valid", "severity": "warning",
                 "message": f"the certificate is not valid until "
                            f"{instant_to_tokyo_text(facts.not_before_utc)}; it was bound "
                            "before its validity starts"}]
    return []


def _pick_certificate(read: CertificateReader, path: Path,
                      index: int | None) -> CertificateEntry:
    """The certificate of ``path`` to bind: ``--index``'s, else the first that is not a CA
    certificate. A file without it is a problem with bind's certificate file, exit 17 as the
    reader's own refusals (docs/ledger.md), not 15, a refusal by the contract's state:
    ``no-certificate``, the reader's code for a file holding none it was asked for."""
    certificates = list(entries_or_raise(read(path)))
    if not certificates:
        raise CertificateFileError(path, "no-certificate", "contains no certificate")
    if index is not None:
        if index >= len(certificates):
            raise CertificateFileError(
                path, "no-certificate",
                f"has {len(certificates)} certificate(s); --index {index} is out of range")
        return certificates[index]
    for entry in certificates:
        if not entry.facts.is_ca:
            return entry
    raise CertificateFileError(
        path, "no-certificate", "holds only CA certificates; a contract binds a server "
        "certificate (use --index to force one)")


@contract_group.command("change")
@click.argument("contract_id", metavar="ID")
@click.option("--service", required=True, metavar="NAME",
              help="The provider-designated service that will use the certificate (Art.5).")
@record_at_option
@json_option
@ledger_option
@_refusal_as_json()
def change_command(contract_id: str, service: str, at: datetime | None, as_json: bool,
                   ledger_opt: Path | None) -> None:
    """Record an accepted contract change (Art.5); the one-time fee is owed (Art.10)."""
    if not service.strip():
        raise click.BadParameter("the service name is empty", param_hint="'--service'")
    env = _env(ledger_opt)
    now, clock = _when(at)
    state, decisions = _record(env, ContractChanged(contract_id=contract_id, at_utc=now,
                                                    service=service.strip()), now, clock)
    _echo_result(as_json, f"Change of {contract_id} to service {service.strip()!r} accepted on "
                 f"{tokyo_date(now)}.", state, decisions, now)


@contract_group.command("cancel")
@click.argument("contract_id", metavar="ID")
@click.option("--arrived", type=DateType(), required=True,
              help="Day the cancellation form reached the provider (YYYY-MM-DD, Asia/Tokyo).")
@click.option("--requested", type=DateType(), default=None,
              help="Day the customer named for the termination to take effect.")
@json_option
@click.option("--at", type=InstantType(), default=None,
              help="When the form arrived, if the time is known: an instant on the --arrived "
                   "day (ISO 8601; no offset = Asia/Tokyo). Default, and for a later day: 00:00 "
                   "JST of --arrived (now, when it arrived today). Never in the future nor "
                   "before --arrived: refused, nothing recorded.")
@ledger_option
@_refusal_as_json()
def cancel_command(contract_id: str, arrived: date, requested: date | None, as_json: bool,
                   at: datetime | None, ledger_opt: Path | None) -> None:
    """Record a cancellation form (Art.9(2)) and print the day the termination takes effect.

    The event happened when the form arrived: on ``--arrived``, at ``--at`` when that falls on
    the arrival day, else at its start, 00:00 JST (now when it arrived today; the acceptance
    when the contract was accepted that same day), however late it is entered, so that the
    contract as of any later day knows of it. An ``--at`` in the future or before the arrival
    day is refused."""
    env = _env(ledger_opt)
    now, clock = _when(at)
    future_day = arrived > tokyo_date(clock)
    # a form arriving in the future is the ledger's refusal, naming --arrived
    happened = (tokyo_midnight_utc(arrived) if future_day
                else _arrival_instant(arrived, at, clock))
    if at is None and ledger_exists(env.ledger_path) and tokyo_date(happened) == arrived:
        accepted = _current(env, contract_id, clock).accepted_utc
        if accepted is not None and tokyo_date(accepted) == arrived:
            happened = max(happened, accepted)
    state, decisions = _record(env, CancellationArrived(
        contract_id=contract_id, at_utc=happened, arrived=arrived, requested=requested),
        now, clock, dated_by="--arrived" if future_day else "--at",
        given=arrived.isoformat() if future_day else None)
    assert state.cancellation is not None  # noqa: S101 - just recorded
    effective = state.cancellation.effective
    if as_json:
        echo_json({"contract": contract_id, "arrived": arrived, "requested": requested,
                   "dated": happened, "effective": effective, "clause": "Art.9(2)",
                   "refund": False, "terminated_on": state.terminated_on,
                   "actions": list(decisions)})
        return
    click.echo(f"effective {effective.isoformat()}")
    click.echo(f"Cancellation of {contract_id}: form arrived {arrived}, requested "
               f"{_day(requested)}; the termination takes effect on {effective} (Art.9(2)). "
               "Fees already paid are not refunded.")
    if at is not None and happened != at:
        click.echo(f"Note: --at {instant_to_tokyo_text(at)} is after the arrival day: the form "
                   f"is dated when it arrived, {instant_to_tokyo_text(happened)} (--arrived).")
    if state.terminated_on is not None and state.terminated_on != effective:
        click.echo(f"Note: an earlier termination is already fixed for {state.terminated_on} "
                   f"({state.termination_clause}).")


def _arrival_instant(arrived: date, at: datetime | None, clock: datetime) -> datetime:
    """When the cancellation form arrived, as precisely as we know it: ``--at`` when it falls
    on the arrival day; else now when it arrived today; else 00:00 JST of the arrival day (an
    ``--at`` on a later day too: dated then, the contract would not know of the form on the
    days between). An ``--at`` ahead of the real clock (the ledger records what happened) or
    before the arrival day (a form dated before it arrived, CONTRACT.md "What the ledger
    refuses") is refused, naming both options."""
    if at is None:
        return clock if tokyo_date(clock) == arrived else tokyo_midnight_utc(arrived)
    given = instant_to_tokyo_text(at)
    if at > clock:
        raise ContractStateError(
            f"--at {given} is in the future (now {instant_to_tokyo_text(clock)}): --at is when "
            f"the form arrived, on --arrived {arrived}, and the ledger records what happened; "
            "nothing was recorded")
    if tokyo_date(at) < arrived:
        raise ContractStateError(
            f"--at {given} is before the arrival day --arrived {arrived}: a form is never dated "
            "before it arrived (give --at on that day, or leave it out to date the form 00:00 "
            "JST of --arrived); nothing was recorded")
    if tokyo_date(at) > arrived:  # entered later: dated when it arrived (the output says so)
        return tokyo_midnight_utc(arrived)
    return at


@contract_group.command("renew")
@click.argument("contract_id", metavar="ID")
@click.option("--default", "by_default", is_flag=True,
              help="The renewal was taken as made for lack of an answer (Art.6(2)).")
@click.option("--designated", type=DateType(), default=None,
              help="With --default only: day the provider designates for the default "
                   "renewal's initial fee (Art.10; on or after the renewal day).")
@record_at_option
@json_option
@ledger_option
@_refusal_as_json()
def renew_command(contract_id: str, by_default: bool, designated: date | None,
                  at: datetime | None, as_json: bool, ledger_opt: Path | None) -> None:
    """Record that the renewal of the current certificate's validity period was made."""
    if designated is not None and not by_default:
        # Art.10: an accepted renewal's fee is owed from its acceptance; only a default
        # renewal's from a designated moment (the ledger refuses the event too).
        raise click.UsageError(
            "--designated goes with --default: only a default renewal's fee (Art.6(2)) is owed "
            "from a day the provider designates (Art.10); an accepted renewal's is owed from "
            "its acceptance, the renewal's --at")
    env = _env(ledger_opt)
    now, clock = _when(at)
    before = _current(env, contract_id, now)
    sha = before.certificate.sha256 if before.certificate else None
    state, decisions = _record(env, RenewalMade(contract_id=contract_id, at_utc=now,
                                                by_default=by_default, designated=designated,
                                                certificate_sha256=sha), now, clock)
    _echo_result(as_json, f"Renewal of {contract_id} recorded on {tokyo_date(now)}"
                 + (" (by default, Art.6(2))." if by_default else "."), state, decisions, now)


@contract_group.command("terminate")
@click.argument("contract_id", metavar="ID")
@click.option("--effective", type=DateType(), required=True,
              help="Day the termination takes effect (YYYY-MM-DD, Asia/Tokyo, inclusive).")
@click.option("--clause", required=True, type=click.Choice(TERMINATION_CLAUSES),
              help="The clause that ends the contract: Art.6(3) proviso (a certificate that "
                   "cannot be renewed), Art.8 (abolition), Art.9(1) (don't renew), Art.9(2) "
                   "(cancellation form).")
@click.option("--reason", default="", help="Free text kept in the journal.")
@record_at_option
@json_option
@ledger_option
@_refusal_as_json()
def terminate_command(contract_id: str, effective: date, clause: str, reason: str,
                      at: datetime | None, as_json: bool, ledger_opt: Path | None) -> None:
    """Record a termination the provider fixed (e.g. the item's abolition under Art.8)."""
    env = _env(ledger_opt)
    now, clock = _when(at)
    state, decisions = _record(env, Terminated(contract_id=contract_id, at_utc=now,
                                               effective=effective, clause=clause.strip(),
                                               reason=reason), now, clock)
    # The record's own day and clause; then the contract's termination when it differs (the
    # earliest day any clause fixed, and the one clause the state names for it).
    headline = f"Termination of {contract_id} recorded: effective {effective} ({clause.strip()})."
    if (state.terminated_on, state.termination_clause) != (effective, clause.strip()):
        headline += (f" The contract terminates on {state.terminated_on} "
                     f"({state.termination_clause}).")
    _echo_result(as_json, headline, state, decisions, now, terminated_on=state.terminated_on)


@contract_group.command("unbound")
@json_option
@at_option
@as_recorded_option
@ledger_option
def unbound_command(as_json: bool, at: datetime | None, as_recorded: datetime | None,
                    ledger_opt: Path | None) -> None:
    """Certificates the agent sees that no contract claims (those since reported gone or
    replaced are history, kept in the journal)."""
    env = _env(ledger_opt)
    now, known = _times(at, as_recorded)
    entries: list[JournalEntry] = []
    with _ledger(env, create=False, read_only=True) as ledger:
        if ledger is not None:
            entries = ledger.unbound_observations(at=now, as_recorded=known)
    if as_json:
        echo_json(entries)
    elif not entries:
        click.echo("No unbound observations.")
    for entry in entries if not as_json else ():
        event = entry.event
        assert isinstance(event, CertificateObserved)  # noqa: S101 - selected by kind
        claimed = (f" (its agent binds it to {event.contract_id}, which is no contract: "
                   "a typo in the store's contract, or a contract not added yet)"
                   if event.contract_id is not None else "")
        click.echo(for_terminal(
            f"#{entry.seq:<5} {_instant(event.at_utc)} {event.host}:{event.location}"
            f"[{event.index}] {event.facts.sha256} ends "
            f"{end_of_validity(event.facts.not_after_utc)} {','.join(event.facts.sans)}"
            f"{claimed}"))
    _finish(env)


# ---------------------------------------------------------------------- policy actions
@click.command("actions")
@json_option
@at_option
@click.option("--within", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Only actions due within DAYS days of --at (overdue ones always shown).")
@as_recorded_option
@ledger_option
def actions_command(as_json: bool, at: datetime | None, within: int | None,
                    as_recorded: datetime | None, ledger_opt: Path | None) -> None:
    """Every action due across all contracts, soonest first."""
    env = _env(ledger_opt)
    now, known = _times(at, as_recorded)
    decisions: list[Decision] = []
    failures: list[tuple[str, PolicyError]] = []
    with _ledger(env, create=False, read_only=True) as ledger:
        if ledger is not None and known is None and ledger.projection_answers(now):
            _projected_actions(env, ledger, now, within, as_json, failures)
            ledger = None  # answered: nothing more to sweep
            answered = True
        else:
            answered = False
        if ledger is not None:
            show_progress = sys.stderr.isatty() and not as_json
            states = ledger.states(at=now, as_recorded=known)
            if show_progress:
                total = len(ledger.contract_ids())
                with click.progressbar(states, length=total, label="Evaluating contracts",
                                       file=sys.stderr) as bar:
                    _sweep(env, bar, now, decisions, failures)
            else:
                _sweep(env, states, now, decisions, failures)
    if answered:
        _finish(env, failures)
        return
    due = due_actions(decisions, at=now, within=within)
    decisions.clear()  # the sorted copy is all that is needed now
    if as_json:
        echo_json_array(due)
    elif not due:
        click.echo("Nothing due.")
    else:
        click.echo(f"{len(due)} action(s) as of {tokyo_date(now)} (Asia/Tokyo):")
        _echo_actions(due, at=now, with_contract=True)
        _echo_unpriced(due)
    _finish(env, failures)


def _projected_actions(env: _Env, ledger: Ledger, now: datetime, within: int | None,
                       as_json: bool, failures: list[tuple[str, PolicyError]]) -> None:
    """``policy actions`` from the projection: the cached actions streamed from the ledger in
    order, merged with those of the contracts whose cache does not hold for today (evaluated
    here, from their stored states). Memory grows with those contracts only."""
    stale, cached = ledger.projected_actions(at=now, within=within, json_body=as_json)
    with contextlib.ExitStack() as stack:
        counted: Callable[[], int] = functools.partial(
            ledger.projected_action_count, at=now, within=within,
            excluding={state.contract_id for state in stale})
        if not as_json and ledger.concurrent_reads:
            # The text's first line says how many: counted by the server on another
            # connection while this process evaluates the stale contracts.
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            counted = pool.submit(counted).result
        _merge_projected(env, now, within, as_json, failures, stale, cached, counted)


def _merge_projected(env: _Env, now: datetime, within: int | None, as_json: bool,
                     failures: list[tuple[str, PolicyError]], stale: list[ContractState],
                     cached: Iterator[tuple[Any, ...]], counted: Callable[[], int]) -> None:
    horizon = None if within is None else tokyo_date(now) + timedelta(days=within)
    fresh: list[tuple[Any, ...]] = []
    for state in stale:
        try:
            decided = _evaluate(env, state, now)
        except PolicyError as exc:
            failures.append((state.contract_id, exc))
            continue
        except (OverflowError, ValueError):
            failures.append((state.contract_id, _unevaluable(state)))
            continue
        fresh.extend(r.as_tuple(json_body=as_json) for r in action_rows(decided)
                     if horizon is None or r.due is None or r.due <= horizon)
    fresh.sort()
    # Rows are (due_key, sev_key, contract, action, ordinal, due, body, clause, explanation,
    # unpriced): the first five are unique and in policy actions' order.
    merged = heapq.merge(cached, fresh)
    if as_json:
        echo_json_texts(row[6] for row in merged)
        return
    first = next(merged, None)
    if first is None:
        click.echo("Nothing due.")
        return
    today = tokyo_date(now).isoformat()
    unpriced: set[str] = set()
    click.echo(f"{counted() + len(fresh)} "
               f"action(s) as of {today} (Asia/Tokyo):")
    severities = {-int(s): s.name.lower() for s in Severity}

    def lines() -> Iterator[str]:
        for _, sev, cid, action, _, due, _, clause, text, missing in itertools.chain(
                (first,), merged):
            if missing is not None:
                unpriced.add(missing)
            mark = " overdue" if due is not None and due < today else ""
            yield (f"  {due or '-'}{mark:<8} {cid:<16} {action:<20} {clause:<18} "
                   f"{severities[sev]:<8} {text}")

    echo_lines(lines())
    _echo_missing_prices(sorted(unpriced))


@click.command("verify")
@json_option
@click.option("--repair", is_flag=True,
              help="Rewrite the whole projection from the journal (decisions as of --at).")
@at_option
@ledger_option
def verify_command(as_json: bool, repair: bool, at: datetime | None,
                   ledger_opt: Path | None) -> None:
    """Refold every contract's journal and compare it with the ledger's projection.

    Each mismatch is listed and the exit status is 18; with --repair the projection is
    rewritten from the journal (and checked again). The fold is the reference: a mismatch
    never changes what the journal says, only what sweeps read. The per-user default ledger
    not existing yet is nothing to verify (exit 0); a ledger named that does not exist is
    an error (exit 13)."""
    env = _env(ledger_opt)
    now = resolve_at(at)
    with _ledger(env, create=False, read_only=not repair) as ledger:
        if ledger is None:
            _say_no_ledger_yet(env, as_json, "verify", {
                "checked": 0, "other_settings": 0, "mismatches": [], "repaired": False,
                "rows_written": None, "mismatches_after_repair": None})
            return
        mismatches, checked, foreign = ledger.verify_projection(at=now)
        written: int | None = None
        left = mismatches
        if repair:
            written = ledger.rebuild_projection(at=now)
            left, _, _ = ledger.verify_projection(at=now)
    where = ledger_display(env.ledger_path)
    if as_json:
        echo_json({"ledger": where, "ledger_exists": True, "checked": checked,
                   "other_settings": foreign,
                   "mismatches": [{"contract": c, "problem": p} for c, p in mismatches],
                   "repaired": written is not None, "rows_written": written,
                   "mismatches_after_repair": None if written is None else [
                       {"contract": c, "problem": p} for c, p in left]})
    else:
        click.echo(f"{where}: {checked} contract(s) refolded from the journal and compared "
                   f"with the projection: {len(mismatches)} mismatch(es).")
        for contract_id, problem in mismatches:
            click.echo(for_terminal(f"  {contract_id}: {problem}"))
        if foreign:
            click.echo(f"Note: {foreign} row(s) were written with other settings or another "
                       "catalogue (their cached actions are evaluated again by readers).")
        if written is not None:
            click.echo(f"Repaired: the projection was rewritten from the journal ({written} "
                       f"row(s), actions as of {tokyo_date(now)}); "
                       + ("it now matches the fold." if not left
                          else f"{len(left)} mismatch(es) remain."))
    _finish(env)
    if left:
        sys.exit(PROJECTION_MISMATCH_EXIT)


@click.command("refresh")
@json_option
@at_option
@ledger_option
def refresh_command(as_json: bool, at: datetime | None, ledger_opt: LedgerLocation | None
                    ) -> None:
    """Evaluate again the contracts whose cached actions expired by --at's day.

    `policy actions` evaluates such contracts itself on every run; after this it reads them
    from the projection again. Run it once a day (a cron job or systemd timer after midnight
    Asia/Tokyo); `policy serve` does it by itself every hour. Writers wait for a chunk of 200
    contracts at most. Before the first contract is recorded the per-user default ledger does
    not exist: nothing to refresh (exit 0, so the daily job does not fail); a ledger named
    that does not exist is an error (exit 13)."""
    env = _env(ledger_opt)
    now = resolve_at(at)
    day = tokyo_date(now)
    with _ledger(env, create=False) as ledger:
        if ledger is None:
            _say_no_ledger_yet(env, as_json, "refresh", {"day": day, "refreshed": 0})
            return
        refreshed = ledger.refresh_projection(at=now)
    where = ledger_display(env.ledger_path)
    if as_json:
        echo_json({"ledger": where, "ledger_exists": True, "day": day, "refreshed": refreshed})
    else:
        click.echo(f"{where}: {refreshed} contract(s) evaluated again for {day} "
                   "(Asia/Tokyo).")
    _finish(env)


@click.command("migrate")
@json_option
@ledger_option
def migrate_command(as_json: bool, ledger_opt: LedgerLocation | None) -> None:
    """Bring the ledger's schema up to this certescrow's version.

    Every write does it first; this does it alone, as the ledger's owner, when this version's
    writers are about to start (docs/fleet.md, "Upgrading a PostgreSQL ledger"). Commands that
    only read never migrate: they read an older ledger as it is, or refuse one too old,
    naming this command. The per-user default ledger not existing yet is nothing to migrate
    (exit 0); a ledger named that does not exist is an error (exit 13)."""
    env = _env(ledger_opt)
    with _ledger(env, create=False) as ledger:
        if ledger is None:
            _say_no_ledger_yet(env, as_json, "migrate", {
                "schema_version_before": None, "schema_version": None, "migrated": False})
            return
        try:
            ledger.migrate()
        except LedgerError as exc:
            if "SQLSTATE 42501" not in str(exc):
                raise
            # No GRANT makes a role able to change tables it does not own.
            raise LedgerError(f"{ledger_display(env.ledger_path)}: migrating changes the "
                              "ledger's tables, which only their owner may do: run `certescrow "
                              "policy migrate` connected as the ledger's owner (SQLSTATE "
                              "42501)") from None
        before, after = ledger.opened_version, ledger.schema_version
    where = ledger_display(env.ledger_path)
    if as_json:
        echo_json({"ledger": where, "ledger_exists": True, "schema_version_before": before,
                   "schema_version": after, "migrated": before != after})
    elif before == after:
        click.echo(f"{where}: schema version {after}, up to date: nothing to migrate.")
    else:
        click.echo(f"{where}: migrated from schema version {before} to {after}.")
    _finish(env)


def _say_no_ledger_yet(env: _Env, as_json: bool, nothing_to: str,
                       empty: dict[str, Any]) -> None:
    """A maintenance command's answer when the per-user default ledger does not exist yet:
    where it looked and how the ledger comes to be; with ``--json``, the command's object
    with ``ledger_exists`` false and ``empty``'s values."""
    if as_json:
        echo_json({"ledger": ledger_display(env.ledger_path), "ledger_exists": False, **empty})
    else:
        click.echo(no_ledger_yet(env.ledger_path, nothing_to=nothing_to))


def _echo_unpriced(decisions: Sequence[Decision]) -> None:
    """Prices missing from ``[policy.prices]``, said once per run as information: a fee is
    still owed, its amount is shown to the customer separately (Art.10)."""
    _echo_missing_prices(sorted({text for d in decisions
                                 if (text := unpriced_text(d)) is not None}))


def _echo_missing_prices(missing: Sequence[str]) -> None:
    """``missing``: :func:`~policy.projection.unpriced_text`'s texts, sorted. Contracts with no
    tier are said apart: no price list can price them, the tier is what is missing."""
    no_tier = [m[len(NO_TIER):] for m in missing if m.startswith(NO_TIER)]
    unset = [m for m in missing if not m.startswith(NO_TIER)]
    if unset:
        click.echo(f"Info: {len(unset)} fee amount(s) are not configured in [policy.prices] "
                   f"({_first_five(unset)}); the fees are owed, their amounts are shown to the "
                   "customer separately (Art.10).")
    if no_tier:
        click.echo(f"Info: {len(no_tier)} contract(s) have no tier ({_first_five(no_tier)}), so "
                   "no initial fee in [policy.prices] applies to them; the fees are owed, their "
                   "amounts are shown to the customer separately (Art.10). A tier is given "
                   "only by `contract add --tier`; no command sets it later.")


def _first_five(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _sweep(env: _Env, states: Any, now: datetime, out: list[Decision],
           failures: list[tuple[str, PolicyError]]) -> None:
    for state in states:
        try:
            out.extend(_evaluate(env, state, now))
        except PolicyError as exc:  # one bad contract must not hide the others' actions
            failures.append((state.contract_id, exc))
        except (OverflowError, ValueError):
            failures.append((state.contract_id, _unevaluable(state)))
