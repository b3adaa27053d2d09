"""``certescrow policy …``: the catalogue, classification of certificate files, the SC-081
forecast (and ``policy actions``, from ``policy.contract_cli``).

Thin by design: a command parses options, calls one library function per input and renders the
result as a table or, with ``--json``, from the same objects. The clock is read once, here,
through ``resolve_at``; ``--at`` replaces it.
"""

from __future__ import annotations

import contextlib
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from policy.catalogue import Catalogue
from policy.category import Category
from policy.certsource import (
    CertificateEntry,
    CertificateFileError,
    CertificateReader,
    entries_or_raise,
    require_reader,
)
from policy.classification import CertificateClassification, classify_certificate
from policy.cliutil import (
    AT_OPTION_HELP,
    CATEGORY_CHOICE,
    InstantType,
    LedgerType,
    catalogue_from,
    config_section,
    echo_json,
    echo_json_with_array,
    echo_lines,
    ledger_named_by,
    resolve_at,
    settings_from,
)
from policy.errors import LedgerError
from policy.facts import CertificateFacts
from policy.forecast import (
    ContractOutlook,
    MaxValiditySchedule,
    TierOutlook,
    embedded_schedule,
    state_outlook,
    tier_outlooks,
)
from policy.intake import Binding
from policy.paths import (
    LedgerLocation,
    ledger_display,
    ledger_exists,
    ledger_path,
    missing_ledger_error,
)
from policy.settings import PolicySettings
from policy.state import ContractState
from policy.tiers import Tier
from policy.timeparse import format_instant
from policy.tokyo import tokyo_date
from untrusted.text import for_terminal

from .contract_cli import (
    actions_command,
    contract_group,
    migrate_command,
    refresh_command,
    verify_command,
)

__all__ = ["contract_group", "policy_group"]

PROGRESS_MIN_FILES = 50
CATALOGUE_OPTION_HELP = ("An amended catalogue TOML file. Default: [policy].catalogue, else the "
                         "embedded catalogue (terms of 2024-06-01).")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain aligned table (East Asian wide characters count double)."""
    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c + " " * (w - width(c)) for c, w in zip(cells, widths, strict=True))

    click.echo(line(headers).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    echo_lines(line(row).rstrip() for row in rows)


@click.group("policy")
def policy_group() -> None:
    """The contract as code: catalogue, classification, forecast, due actions."""


policy_group.add_command(actions_command)
policy_group.add_command(verify_command)
policy_group.add_command(refresh_command)
policy_group.add_command(migrate_command)


# --------------------------------------------------------------------------- catalogue
@policy_group.command("catalogue")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--catalogue", "catalogue_file",
              type=click.Path(dir_okay=False, path_type=Path), help=CATALOGUE_OPTION_HELP)
@click.pass_context
def catalogue_command(ctx: click.Context, as_json: bool, catalogue_file: Path | None) -> None:
    """The items of Art.1 / Appendix 1: category, CA, permitted tiers, validation level."""
    catalogue = catalogue_from(ctx, catalogue_file)
    if as_json:
        echo_json(catalogue)
        return
    click.echo(f"Catalogue {catalogue.source} (terms of {catalogue.terms_date})")
    rows = [
        [item.handle, item.category.value, item.name_ja, catalogue.ca_of(item).name,
         ", ".join(t.value for t in item.tiers), (item.validation or "-").upper(),
         "yes" if item.wildcard else "", str(item.product_end or "")]
        for item in catalogue.items.values()
    ]
    _table(["HANDLE", "CAT", "ITEM", "CA", "TIERS", "VALIDATION", "WILDCARD", "PRODUCT END"],
           rows)
    click.echo("Fees: initial and (categories I/II) agency fee per acquisition or renewal from "
               "the price list ([policy.prices]); monthly fee 0 yen (Appx1.2).")


# --------------------------------------------------------------------------- classify
@dataclass(frozen=True, slots=True, kw_only=True)
class _Row:
    path: str
    index: int
    result: CertificateClassification
    read_findings: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        body = self.result.to_json()
        body["findings"] = [f.to_json() for f in self.read_findings] + body["findings"]
        return {"kind": "certificate", "path": self.path, "index": self.index, **body}


def _read_previous(read: CertificateReader, path: Path) -> CertificateFacts:
    """The previous server certificate: the first one in the file that is not a CA's."""
    for entry in entries_or_raise(read(path)):
        if not entry.facts.is_ca:
            return entry.facts
    raise CertificateFileError(path, "unsupported-format",
                               "--previous holds only CA certificates, no server certificate")


@policy_group.command("classify")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(path_type=Path, dir_okay=True))
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array: an object per certificate (kind \"certificate\") and per "
                   "file without one or that could not be read (kind \"error\").")
@click.option("--category", type=CATEGORY_CHOICE,
              help="Bind the certificates to this category (overrides what they show).")
@click.option("--item", "handle", metavar="HANDLE",
              help="Bind the certificates to this catalogue item.")
@click.option("--tier", type=click.Choice([t.value for t in Tier]),
              help="The contracted tier to check compliance against (Art.3).")
@click.option("--contract", "contract_id", metavar="ID",
              help="Contract id to cite in the actions.")
@click.option("--previous", "previous_file", type=click.Path(path_type=Path, dir_okay=False),
              help="The contract's previous certificate (first in the file), for the Art.3 "
                   "proviso's CA transition allowance.")
@click.option("--at", type=InstantType(), help=AT_OPTION_HELP)
@click.option("--catalogue", "catalogue_file",
              type=click.Path(dir_okay=False, path_type=Path), help=CATALOGUE_OPTION_HELP)
@click.pass_context
def classify_command(ctx: click.Context, files: tuple[Path, ...], as_json: bool,
                     category: str | None, handle: str | None, tier: str | None,
                     contract_id: str | None, previous_file: Path | None,
                     at: datetime | None, catalogue_file: Path | None) -> None:
    """Tier, renewability, item and findings for each certificate in FILE...

    Files may hold several PEM certificates, DER, PKCS#7 or unencrypted PKCS#12. A file that
    cannot be read, or holds no certificate (a key, a CSR: what `scan` lists as a file row or
    a skip, since a store holds them), is reported with its error code and the others are
    still classified; the exit status is then 17. A certificate that matches no catalogue
    item is BYO (category III) unless --category/--item says otherwise.
    """
    now = resolve_at(at)
    catalogue = catalogue_from(ctx, catalogue_file)
    settings = settings_from(ctx)
    if handle is not None:
        catalogue.item(handle)  # an unknown item is a usage error before any file is read
    binding = Binding(
        contract_id=contract_id,
        category=Category.parse(category) if category else None,
        item=handle,
        tier=Tier.parse(tier) if tier else None,
    )
    read = require_reader(ctx.find_root().obj)
    previous = _read_previous(read, previous_file) if previous_file is not None else None
    rows: list[_Row] = []
    errors: list[CertificateFileError] = []
    # Progress on stderr only for long runs at a terminal; errors then follow the bar.
    show_progress = len(files) >= PROGRESS_MIN_FILES and sys.stderr.isatty()
    with click.progressbar(files, label="Classifying", file=sys.stderr,
                           hidden=not show_progress) as bar:
        for path in bar:
            entries: Sequence[CertificateEntry] = ()
            try:
                contents = read(path)
            except CertificateFileError as exc:
                failures: tuple[CertificateFileError, ...] = (exc,)
            else:
                failures, entries = contents.errors, contents.entries
            errors.extend(failures)
            if not show_progress:
                for failure in failures:
                    click.echo(for_terminal(f"Error: {failure} [{failure.code}]"), err=True)
            for entry in entries:
                result = classify_certificate(entry.facts, catalogue, binding=binding, at=now,
                                              previous=previous, settings=settings)
                rows.append(_Row(path=str(path), index=entry.index, result=result,
                                 read_findings=entry.findings))
    if show_progress:
        for failure in errors:
            click.echo(for_terminal(f"Error: {failure} [{failure.code}]"), err=True)
    if as_json:
        out: list[Any] = [row.to_json() for row in rows]
        out += [{"kind": "error", "path": e.path,
                 **({} if e.index is None else {"index": e.index}),
                 "error": {"code": e.code, "message": e.reason}} for e in errors]
        echo_json(out)
    else:
        _echo_classifications(rows, now)
    if errors:
        sys.exit(CertificateFileError.exit_code)


def _echo_classifications(rows: Sequence[_Row], now: datetime) -> None:
    if not rows:
        return
    click.echo(f"As of {tokyo_date(now)} (Asia/Tokyo):")
    table = []
    for row in rows:
        r = row.result
        compliant = "-" if r.compliant is None else ("yes" if r.compliant else "NO")
        if r.by_allowance:
            compliant = "yes*"
        table.append([
            for_terminal(f"{row.path}#{row.index}" if row.index else row.path),
            r.item or ("?" if r.candidates else "-"),
            r.category.value,
            r.tier.value,
            r.contracted_tier.value if r.contracted_tier else "-",
            compliant,
            "yes" if r.renewable else "NO",
            str(r.days_left),
            format_instant(r.facts.not_after_utc),
        ])
    _table(["FILE", "ITEM", "CAT", "TIER", "CONTRACT", "COMPLIES", "RENEWABLE", "DAYS LEFT",
            "NOT AFTER"], table)
    for row in rows:
        notes = [*row.read_findings, *row.result.findings]
        if not notes and not row.result.actions:
            continue
        label = f"{row.path}#{row.index}" if row.index else row.path
        # path, CN and finding texts are the certificate maker's: escaped (for_terminal)
        click.echo("\n" + for_terminal(
            f"{label} ({row.result.facts.subject_cn or row.result.facts.sha256[:16]}):"))
        for finding in notes:
            clause = f" [{finding.clause}]" if finding.clause else ""
            click.echo(for_terminal(f"  {finding.severity.name.lower():8} {finding.code}"
                                     f"{clause}: {finding.message}"))
        for action in row.result.actions:
            click.echo(f"  {action.action.value:8} due {action.due} [{action.clause}]: "
                       f"{action.explanation_en}")


# --------------------------------------------------------------------------- forecast
@policy_group.command("forecast")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--at", type=InstantType(), help=AT_OPTION_HELP)
@click.option("--ledger", "ledger_file", type=LedgerType(),
              help="Ledger file or postgresql:// DSN. Default: [policy].ledger, else "
                   "$XDG_STATE_HOME/certescrow/ledger.sqlite3.")
@click.pass_context
def forecast_command(ctx: click.Context, as_json: bool, at: datetime | None,
                     ledger_file: LedgerLocation | None) -> None:
    """The CA/B Forum maximum-validity outlook (SC-081) per tier and per ledger contract.

    For each tier: the longest public certificate issuable now, from which date a new public
    certificate can no longer span the tier, and from which date every new one is 90 days or
    shorter (non-renewable under Art.6(3)'s proviso). For each contract: the same at its next
    renewals. A missing default ledger just means there are no contracts yet; a ledger named
    by --ledger or [policy].ledger that does not exist is an error naming it.
    """
    now = resolve_at(at)
    settings = settings_from(ctx)
    schedule = embedded_schedule()
    tiers = tier_outlooks(schedule, at=now, rule=settings.period_rule)
    path = ledger_path(ledger_file, config_section(ctx, "policy"))
    named_by = ledger_named_by(ctx, ledger_file)
    if not ledger_exists(path) and named_by is not None:
        raise missing_ledger_error(path, named_by=named_by)
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        contracts: Iterable[ContractOutlook] = ()
        ledger_used: str | None = None
        if ledger_exists(path):
            contracts = _contract_outlooks(stack, path, now, settings, problems,
                                           catalogue_from(ctx))
            ledger_used = ledger_display(path)
        if as_json:
            # Written as the contracts are read: a 100,000-contract ledger's forecast is
            # 131 MB of JSON, which held as one document took a gigabyte.
            echo_json_with_array({"at": now, "schedule": schedule, "tiers": list(tiers),
                                  "ledger": ledger_used}, "contracts", contracts)
        else:
            _forecast_table(path, schedule, tiers, ledger_used, contracts, tokyo_date(now))
    _report_problems(problems)


def _forecast_table(path: LedgerLocation, schedule: MaxValiditySchedule,
                    tiers: Sequence[TierOutlook], ledger_used: str | None,
                    contracts: Iterable[ContractOutlook], today: date) -> None:
    click.echo(f"Public TLS maximum validity ({schedule.ballot}, BR §6.3.2), as of {today}:")
    _table(["ISSUED FROM (UTC)", "MAX DAYS"],
           [[str(s.start_utc.date()) if s.start_utc else "(before)", str(s.max_days)]
            for s in schedule.steps])
    click.echo("")
    _table(["TIER", "LONGEST NOW", "FILLS NOW", "CANNOT FILL FROM", "BYO NON-RENEWABLE FROM"],
           [[t.tier.value, f"{t.longest_days} d ({t.longest_tier.value})",
             "yes" if t.fills else "no",
             "never could" if t.never_fillable else str(t.cannot_fill_from or "-"),
             str(t.non_renewable_from or "-")] for t in tiers])
    if ledger_used is None:
        click.echo(f"\nNo ledger at {ledger_display(path)}: no contracts to forecast.")
        return
    # The table's columns fit their widest cell: every row is kept, as its ten short cells
    # only (not the contract's outlook with its renewals).
    rows = [_forecast_row(c) for c in contracts]
    if not rows:
        click.echo(f"\nNo contracts in {ledger_used}.")
        return
    click.echo("")
    _table(["CONTRACT", "ITEM", "CAT", "TIER", "STATUS", "NEXT RENEWAL", "LONGEST THEN",
            "FILLS TIER", "TIER UNFILLED FROM", "BLOCKED FROM"], rows)
    click.echo("\nRenewals are projected the second after each certificate ends, with the longest "
               "public certificate then issuable; BLOCKED = Art.6(3) proviso (category III).")


def _forecast_row(c: ContractOutlook) -> list[str]:
    nxt = c.renewals[0] if c.renewals else None
    return [
        c.contract_id, c.item or "-", c.category.value if c.category else "-",
        c.tier.value if c.tier else "-", c.status,
        # a contract whose termination is fixed has no renewal: the day and clause instead,
        # in `contract show`'s words
        str(nxt.renewal_day) if nxt else (
            f"none: terminates on {c.terminated_on} ({c.termination_clause})"
            if c.terminated_on else "-"),
        f"{nxt.longest_days} d ({nxt.longest_tier.value})" if nxt else "-",
        "-" if nxt is None or nxt.fills_contracted is None
        else ("yes" if nxt.fills_contracted else "no"),
        str(c.first_unfilled_renewal or "-"),
        "NOW" if c.currently_blocked else str(c.first_blocked_renewal or "-"),
    ]


def _contract_outlooks(stack: contextlib.ExitStack, path: LedgerLocation, now: datetime,
                       settings: PolicySettings, problems: list[str], catalogue: Catalogue
                       ) -> Iterator[ContractOutlook]:
    """Each contract's outlook, as its state is read (from the projection when it answers
    for ``now``, else folded from the journal); events the ledger could not read are skipped
    and described in ``problems`` (reported once the output is complete)."""
    from policy.ledger import Ledger  # the ledger is only needed when one exists

    schedule = embedded_schedule()
    ledger = stack.enter_context(Ledger.open(path, create=False, read_only=True,
                                             settings=settings))
    states: Iterable[ContractState] = (
        (state for state, _ in ledger.projected(at=now)) if ledger.projection_answers(now)
        else ledger.states(at=now))
    for state in states:
        item = catalogue.items.get(state.item) if state.item is not None else None
        yield state_outlook(state, schedule=schedule, at=now, rule=settings.period_rule,
                            product_end=item.product_end if item is not None else None)
    problems.extend(f"{ledger_display(path)}: {problem}" for problem in ledger.problems)


def _report_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        sys.exit(LedgerError.exit_code)
